//! `decide`, `delta` and `rebuild`: the guest's decision path, native library and component
//! side by side (issue #6). Run: `cargo bench -p hamr --bench decide`.

mod cluster;

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use hamr::runtime::ComponentScheduler;
use hamr_guest::api::{Delta, Scheduler};

const SIZES: &[usize] = &[100, 1000, 5000];

fn component() -> ComponentScheduler {
    ComponentScheduler::load(None).expect("the embedded component loads")
}

/// One filter over every node, the choice, and the assumption; then its release. The
/// candidates are WIT's `node-names` text, as `hamr serve` hands them to either engine (the
/// extender reads the request's `NodeNames` straight into it).
fn decide_once<S: Scheduler>(s: &mut S, pod: &hamr_guest::api::Pod, names: &str, fits: bool) {
    let outcome = s
        .filter_lines(pod, names, 0)
        .ok()
        .expect("no fault")
        .expect("evaluates");
    assert_eq!(outcome.decision.is_some(), fits);
    s.unreserve(&pod.uid).ok().expect("no fault");
    black_box(outcome);
}

fn decide(c: &mut Criterion) {
    let pods = [
        ("vgpu", cluster::pod("vgpu", 1, 10240, 30, &[]), true),
        (
            "topology-4",
            cluster::pod(
                "topo",
                4,
                8192,
                10,
                &[("hami.io/gpu-scheduler-policy", "topology-aware")],
            ),
            true,
        ),
        (
            "fits-nowhere",
            cluster::pod("huge", 1, 200_000, 10, &[]),
            false,
        ),
    ];
    for &n in SIZES {
        let names = hamr_guest::join_node_names(&cluster::names(n)).expect("no line breaks");
        let mut native = cluster::loaded(hamr_guest::Engine::new(), n);
        let mut comp = cluster::loaded(component(), n);
        let mut group = c.benchmark_group(format!("decide/{n}"));
        group.sample_size(if n >= 5000 { 20 } else { 50 });
        group.measurement_time(Duration::from_secs(5));
        for (label, pod, fits) in &pods {
            group.bench_function(BenchmarkId::new("native", label), |b| {
                b.iter(|| decide_once(&mut native, pod, &names, *fits))
            });
            group.bench_function(BenchmarkId::new("component", label), |b| {
                b.iter(|| decide_once(&mut comp, pod, &names, *fits))
            });
        }
        group.finish();
    }
}

fn apply<S: Scheduler>(s: &mut S, deltas: &[Delta]) {
    let errors = s.apply(deltas).ok().expect("no fault");
    assert!(errors.is_empty());
}

fn delta(c: &mut Criterion) {
    let n = 5000;
    let mut native = cluster::loaded(hamr_guest::Engine::new(), n);
    let mut comp = cluster::loaded(component(), n);
    // Two versions of node 0, applied in turn: one where a card's health flips (the
    // registration is parsed again), one where only the scheduler's handshake stamp moves (as
    // most node updates do; the parse is kept).
    let versions = |change: &dyn Fn(&mut hamr_guest::api::Node, usize)| {
        [0, 1].map(|v| {
            let mut node = cluster::nodes(1).remove(0);
            change(&mut node, v);
            [Delta::NodeUpsert(node)]
        })
    };
    let registration = versions(&|node, v| {
        if v == 1 {
            let register = &mut node.annotations[0].1;
            *register = register.replacen(r#","health":true"#, "", 1);
        }
    });
    let heartbeat = versions(&|node, v| {
        node.annotations.push((
            "hami.io/node-handshake".into(),
            format!("Requesting_2026-11-29 10:00:0{v}"),
        ));
    });
    let mut placed = cluster::running(1).remove(1); // a 20 GiB task on card 1
    placed.uid = "uid-delta".into();
    let add = Delta::PodUpsert(placed);
    let remove = Delta::PodRemove("uid-delta".into());
    let pod = [add, remove];
    let mut group = c.benchmark_group("delta/5000");
    for (row, node) in [
        ("node-registration-changed", &registration),
        ("node-heartbeat", &heartbeat),
    ] {
        let mut turn = 0;
        group.bench_function(format!("native/{row}"), |b| {
            b.iter(|| {
                turn ^= 1;
                apply(&mut native, &node[turn])
            })
        });
        group.bench_function(format!("component/{row}"), |b| {
            b.iter(|| {
                turn ^= 1;
                apply(&mut comp, &node[turn])
            })
        });
    }
    group.bench_function("native/pod-add-remove", |b| {
        b.iter(|| apply(&mut native, &pod))
    });
    group.bench_function("component/pod-add-remove", |b| {
        b.iter(|| apply(&mut comp, &pod))
    });
    // The pod updated while it holds the same cards (a watch confirming an assumption, the
    // bind's own writes echoed back, a relist): what most pod deltas are.
    let [add, remove] = pod;
    let (held, release) = ([add], [remove]);
    apply(&mut native, &held);
    group.bench_function("native/pod-update-same-cards", |b| {
        b.iter(|| apply(&mut native, &held))
    });
    apply(&mut native, &release);
    apply(&mut comp, &held);
    group.bench_function("component/pod-update-same-cards", |b| {
        b.iter(|| apply(&mut comp, &held))
    });
    apply(&mut comp, &release);
    group.finish();
}

fn rebuild(c: &mut Criterion) {
    // 5,000 nodes and their running pods fed to a fresh instance: what a rebuild after a trap
    // replays (the host's cache is the same batch).
    let n = 5000;
    let all = cluster::deltas(n);
    let mut group = c.benchmark_group("rebuild/5000");
    group.sample_size(10);
    group.bench_function("component/fresh-instance-and-replay", |b| {
        let mut s = component();
        s.configure("{}").expect("no fault").expect("valid");
        b.iter(|| {
            s.clear().expect("no fault");
            apply(&mut s, &all);
        })
    });
    group.finish();
}

criterion_group!(benches, decide, delta, rebuild);
criterion_main!(benches);
