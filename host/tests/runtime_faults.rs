//! The component runtime survives a guest that traps: the fault is reported to the caller,
//! counted, and the next call runs on a fresh instance rebuilt from the host's cache.

use hamr::runtime::{ComponentScheduler, Limits};
use hamr_guest::api::{Container, Delta, Node, Pod, Scheduler};

fn node(name: &str) -> Node {
    Node {
        name: name.into(),
        annotations: vec![(
            "hami.io/node-nvidia-register".into(),
            r#"[{"id":"GPU-a","index":0,"count":10,"devmem":40960,"devcore":100,"type":"NVIDIA A100-SXM4-40GB","numa":0,"mode":"hami-core","health":true}]"#.into(),
        )],
        ..Node::default()
    }
}

fn pod(name: &str, mem: &str) -> Pod {
    Pod {
        uid: format!("uid-{name}"),
        namespace: "default".into(),
        name: name.into(),
        containers: vec![Container {
            name: "main".into(),
            limits: vec![
                ("nvidia.com/gpu".into(), "1".into()),
                ("nvidia.com/gpumem".into(), mem.into()),
            ],
            ..Container::default()
        }],
        ..Pod::default()
    }
}

#[test]
fn a_trapping_call_faults_and_the_next_call_runs_on_a_rebuilt_instance() {
    let limits = Limits {
        memory_bytes: 64 << 20,
        ..Limits::default()
    };
    let mut s =
        ComponentScheduler::with_limits(None, limits).expect("the embedded component loads");
    s.configure("{}").expect("no fault").expect("valid config");
    assert!(
        s.apply(&[Delta::NodeUpsert(node("n1"))])
            .expect("no fault")
            .is_empty()
    );
    let first = s
        .filter(&pod("p1", "30000"), &["n1".to_string()], 0)
        .expect("no fault")
        .expect("evaluates");
    assert_eq!(first.decision.expect("p1 fits").node, "n1");

    // A 100 MiB annotation cannot be copied into a guest limited to 64 MiB: the guest's
    // allocator fails and the call traps.
    let mut huge = node("n2");
    huge.annotations.push(("x".into(), "y".repeat(100 << 20)));
    let fault = s
        .apply(&[Delta::NodeUpsert(huge)])
        .expect_err("the call must fault");
    assert_eq!(fault.call, "apply");
    assert_eq!(s.stats().traps, 1);
    assert_eq!(s.stats().rebuilds, 1);

    // The rebuilt instance holds n1 and p1's assumed share: 30000 of 40960 MiB is taken, so a
    // second 30000 MiB pod no longer fits, while a 10000 MiB pod does.
    let second = s
        .filter(&pod("p2", "30000"), &["n1".to_string()], 0)
        .expect("the next call succeeds")
        .expect("evaluates");
    assert!(
        second.decision.is_none(),
        "p1's assumed share survived the rebuild"
    );
    assert_eq!(second.failures[0].reason, "1/1 CardInsufficientMemory");
    let third = s
        .filter(&pod("p3", "10000"), &["n1".to_string()], 0)
        .expect("no fault")
        .expect("evaluates");
    assert_eq!(third.decision.expect("p3 fits").node, "n1");
}

#[test]
fn a_guest_that_runs_past_its_time_limit_is_interrupted() {
    // 50 ms: a few epoch ticks, so that a small call is not interrupted by a tick that lands
    // while a busy machine has descheduled it (a 1 ms limit, one tick, flaked under load).
    let limits = Limits {
        call_timeout: std::time::Duration::from_millis(50),
        ..Limits::default()
    };
    let mut s =
        ComponentScheduler::with_limits(None, limits).expect("the embedded component loads");
    // 20,000 nodes take about a second to parse in a release build (BENCHMARKS.md: ~54 µs per
    // node upsert), far beyond the limit: the epoch deadline interrupts the call.
    let nodes: Vec<Delta> = (0..20_000)
        .map(|i| Delta::NodeUpsert(node(&format!("n{i}"))))
        .collect();
    let fault = s.apply(&nodes).expect_err("the call must be interrupted");
    assert!(fault.message.contains("interrupt"), "{}", fault.message);
    assert_eq!(s.stats().rebuilds, 1);
    assert_eq!(
        s.managed_resources()
            .expect("the rebuilt instance answers")
            .first()
            .map(String::as_str),
        Some("nvidia.com/gpu")
    );
}

/// Verdicts name candidates by position. WIT's `node-names` text skips empty names, so the
/// runtime maps the component's positions back onto the list it was given.
#[test]
fn verdicts_name_the_candidates_given_even_past_an_empty_name() {
    let mut s = ComponentScheduler::load(None).expect("the embedded component loads");
    s.configure("{}").expect("no fault").expect("valid config");
    let deltas = [Delta::NodeUpsert(node("n1")), Delta::NodeUpsert(node("n2"))];
    assert!(s.apply(&deltas).expect("no fault").is_empty());
    let candidates: Vec<String> = ["n1", "", "ghost", "n2"].map(String::from).to_vec();
    let outcome = s
        .filter(&pod("p1", "50000"), &candidates, 0)
        .expect("no fault")
        .expect("evaluates");
    let named: Vec<(String, String)> = outcome
        .named(&candidates)
        .map(|v| (v.node.to_string(), v.reason.to_string()))
        .collect();
    let expected = [
        ("n1", "1/1 CardInsufficientMemory"),
        ("ghost", "node unregistered"),
        ("n2", "1/1 CardInsufficientMemory"),
    ]
    .map(|(n, r)| (n.to_string(), r.to_string()));
    assert_eq!(named, expected);
}
