//! hamr's host of the kube-scheduler-wasm-extension ABI refuses what the real host refuses and
//! speaks the ABI's protocols (hand-written `.wat` modules), and the embedded core module loads
//! under it with the hooks and imports the ABI allows.

use std::sync::Arc;

use hamr::wasm_extension::{
    Compiled, LoadError, WasmExtensionScheduler, code, unpack_permit, unpack_score,
};
use hamr_guest::api::{self, Scheduler};

fn load(text: &str) -> Result<Arc<Compiled>, LoadError> {
    Compiled::new(&wat::parse_str(text).expect("the test module is valid text"))
}

const MEMORY: &str = r#"(memory (export "memory") 1 1)"#;

/// A module with `memory` and the given hooks, each returning 0 with its right signature.
fn hooks(names: &[&str]) -> String {
    let mut body = String::from(MEMORY);
    for n in names {
        let f = match *n {
            "enqueue" | "unreserve" | "postbind" => format!(r#"(func (export "{n}"))"#),
            "postfilter" | "score" | "permit" => {
                format!(r#"(func (export "{n}") (result i64) i64.const 0)"#)
            }
            _ => format!(r#"(func (export "{n}") (result i32) i32.const 0)"#),
        };
        body.push_str(&f);
    }
    format!("(module {body})")
}

#[test]
fn a_module_without_memory_is_refused() {
    let text = r#"(module (func (export "filter") (result i32) i32.const 0))"#;
    assert_eq!(load(text).err(), Some(LoadError::NoMemory));
}

#[test]
fn a_module_with_only_memory_is_not_a_plugin() {
    assert_eq!(load(&hooks(&[])).err(), Some(LoadError::NotPlugin));
}

#[test]
fn hooks_with_the_wrong_signature_are_refused() {
    for (name, func) in [
        (
            "filter",
            r#"(func (export "filter") (result i64) i64.const 0)"#,
        ),
        (
            "score",
            r#"(func (export "score") (result i32) i32.const 0)"#,
        ),
        (
            "filter",
            r#"(func (export "filter") (param i32) (result i32) i32.const 0)"#,
        ),
        (
            "unreserve",
            r#"(func (export "unreserve") (result i32) i32.const 0)"#,
        ),
        (
            "permit",
            r#"(func (export "permit") (result i32) i32.const 0)"#,
        ),
        (
            "postfilter",
            r#"(func (export "postfilter") (result i32) i32.const 0)"#,
        ),
    ] {
        let text = format!("(module {MEMORY} {func})");
        match load(&text) {
            Err(LoadError::WrongSignature { name: n, .. }) => assert_eq!(n, name, "{func}"),
            other => panic!("{func}: expected a wrong signature, got {:?}", other.err()),
        }
    }
}

#[test]
fn exactly_the_23_combinations_of_main_hooks_are_accepted() {
    // The spec's list of refused sets (R+P needs B; F+R+B, F+P+B and S+R+P are missing).
    let refused = ["RP", "FRB", "FPB", "FRP", "SRP", "FSRP", "FRPB", "SRPB"];
    let letters = [
        ('F', "filter"),
        ('S', "score"),
        ('R', "reserve"),
        ('P', "permit"),
        ('B', "bind"),
    ];
    let mut accepted = 0;
    for mask in 1u32..32 {
        let set: String = letters
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .map(|(_, (c, _))| *c)
            .collect();
        let names: Vec<&str> = letters
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .map(|(_, (_, n))| *n)
            .collect();
        match load(&hooks(&names)) {
            Ok(c) => {
                assert!(!refused.contains(&set.as_str()), "{set} must be refused");
                assert_eq!(c.hooks.main(), set);
                accepted += 1;
            }
            Err(e) => {
                assert!(refused.contains(&set.as_str()), "{set} refused: {e}");
                assert_eq!(e, LoadError::Combination(set.clone()));
            }
        }
    }
    assert_eq!(accepted, 23);
}

#[test]
fn riders_need_their_hook_and_prefilter_alone_is_a_plugin() {
    for (names, rider) in [
        (&["filter", "prescore"][..], "prescore"),
        (&["filter", "normalizescore"][..], "normalizescore"),
        (&["score", "addpod"][..], "addpod"),
        (&["filter", "postbind"][..], "postbind"),
    ] {
        match load(&hooks(names)) {
            Err(LoadError::RiderWithoutHook { rider: r, .. }) => assert_eq!(r, rider),
            other => panic!("{names:?}: expected a refusal, got {:?}", other.err()),
        }
    }
    let only = load(&hooks(&["prefilter"])).expect("a PreFilter-only plugin loads");
    assert_eq!(only.hooks.main(), "");
    let unreserve = load(&hooks(&["unreserve"])).expect("unreserve alone is Reserve");
    assert_eq!(unreserve.hooks.main(), "R");
    // The shapes the spec calls safe.
    load(&hooks(&[
        "prefilter",
        "filter",
        "prescore",
        "score",
        "normalizescore",
        "reserve",
        "unreserve",
    ]))
    .expect("F+S+R loads");
    load(&hooks(&[
        "filter",
        "score",
        "reserve",
        "unreserve",
        "permit",
        "prebind",
        "bind",
        "postbind",
    ]))
    .expect("F+S+R+P+B loads");
}

#[test]
fn unknown_imports_and_wrong_import_signatures_fail_instantiation() {
    for import in [
        r#"(import "k8s.io/scheduler" "no_such_function" (func (param i32 i32) (result i32)))"#,
        r#"(import "k8s.io/scheduler" "currentPod" (func (param i32) (result i32)))"#,
        r#"(import "k8s.io/klog" "log" (func (param i32 i32) (result i32)))"#,
        r#"(import "k8s.io/other" "node" (func (param i32 i32 i32 i32) (result i32)))"#,
    ] {
        let text = format!(
            r#"(module {import} {MEMORY} (func (export "filter") (result i32) i32.const 0))"#
        );
        let compiled = load(&text).expect("the exports are fine");
        match compiled.instantiate("") {
            Err(LoadError::Instantiate(_)) => {}
            Err(other) => panic!("{import}: expected an instantiation error, got {other}"),
            Ok(_) => panic!("{import}: expected an instantiation error, got an instance"),
        }
    }
}

#[test]
fn a_read_writes_nothing_when_the_value_does_not_fit_and_returns_its_length() {
    let text = format!(
        r#"(module
          (import "k8s.io/scheduler" "currentNodeName" (func $name (param i32 i32) (result i32)))
          (import "k8s.io/scheduler" "result.status_reason" (func $reason (param i32 i32)))
          {MEMORY}
          (func (export "filter") (result i32) (local $len i32)
            (i32.store8 (i32.const 100) (i32.const 0xAA))
            (local.set $len (call $name (i32.const 100) (i32.const 3)))
            ;; too small: the sentinel is untouched
            (if (i32.ne (i32.load8_u (i32.const 100)) (i32.const 0xAA)) (then unreachable))
            ;; again with room for the whole value
            (if (i32.ne (call $name (i32.const 100) (local.get $len)) (local.get $len))
              (then unreachable))
            (call $reason (i32.const 100) (local.get $len))
            (i32.const 2)))"#
    );
    let mut guest = load(&text)
        .expect("loads")
        .instantiate("")
        .expect("instantiates");
    guest.state().current_node = "gpu-node-1".into();
    assert_eq!(
        guest.status("filter").expect("no trap"),
        (code::UNSCHEDULABLE, "gpu-node-1".to_string())
    );
    // An empty value is length 0 and writes nothing.
    guest.state().current_node = String::new();
    assert_eq!(
        guest.status("filter").expect("no trap"),
        (code::UNSCHEDULABLE, String::new())
    );
}

#[test]
fn a_range_outside_memory_traps_the_call() {
    let text = format!(
        r#"(module
          (import "k8s.io/scheduler" "result.status_reason" (func $reason (param i32 i32)))
          {MEMORY}
          (func (export "filter") (result i32)
            (call $reason (i32.const 65000) (i32.const 1000))
            (i32.const 0)))"#
    );
    let mut guest = load(&text)
        .expect("loads")
        .instantiate("")
        .expect("instantiates");
    let fault = guest.status("filter").expect_err("traps");
    assert!(fault.message.contains("out of memory reading"), "{fault}");
}

#[test]
fn score_and_permit_are_unpacked_as_the_sdk_packs_them() {
    // As the upstream `*_from_global.wat` modules: the hook returns a mutable global.
    let text = format!(
        r#"(module {MEMORY}
          (global (export "score_global") (mut i64) (i64.const 0))
          (func (export "filter") (result i32) i32.const 0)
          (func (export "score") (result i64) global.get 0)
          (func (export "permit") (result i64) i64.const {permit})
          (func (export "bind") (result i32) i32.const 5))"#,
        permit = (4i64 << 32) | 1500,
    );
    let mut guest = load(&text)
        .expect("F+S+P+B loads")
        .instantiate("")
        .expect("instantiates");
    for (status, score) in [(0i32, 77i32), (0, 100), (3, -5), (1, 0), (2, i32::MIN)] {
        // The TinyGo SDK's packing: (score << 32) | status.
        let packed = (i64::from(score) << 32) | i64::from(status as u32);
        guest
            .set_global("score_global", wasmtime::Val::I64(packed))
            .expect("the global is mutable");
        let (v, _) = guest.wide("score").expect("no trap");
        assert_eq!(unpack_score(v), (status, score));
    }
    let (v, _) = guest.wide("permit").expect("no trap");
    assert_eq!(unpack_permit(v), (code::WAIT, 1500));
    assert_eq!(guest.status("bind").expect("no trap").0, code::SKIP);
}

#[test]
fn a_trap_in_start_fails_instantiation_with_the_guests_stderr() {
    let text = format!(
        r#"(module
          (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
          {MEMORY}
          (data (i32.const 16) "bad config")
          (func (export "_start")
            ;; iovec at 0: {{ptr 16, len 10}}
            (i32.store (i32.const 0) (i32.const 16))
            (i32.store (i32.const 4) (i32.const 10))
            (drop (call $w (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 8)))
            unreachable)
          (func (export "filter") (result i32) i32.const 0))"#
    );
    match load(&text).expect("loads").instantiate("") {
        Err(LoadError::Instantiate(m)) => assert!(m.contains("bad config"), "{m}"),
        Err(other) => panic!("expected an instantiation error, got {other}"),
        Ok(_) => panic!("expected an instantiation error, got an instance"),
    }
}

#[test]
fn the_embedded_module_exports_filter_score_reserve_and_imports_only_the_abi() {
    let compiled = Compiled::embedded().expect("the embedded module loads");
    assert_eq!(compiled.hooks.main(), "FSR");
    let h = &compiled.hooks;
    assert!(h.prefilter && h.filter && h.prescore && h.score && h.normalizescore);
    assert!(h.reserve && h.unreserve);
    assert!(!h.permit && !h.bind && !h.prebind && !h.postbind && !h.postfilter);
    for (module, name) in compiled.imports() {
        assert!(
            [
                "k8s.io/api",
                "k8s.io/scheduler",
                "k8s.io/klog",
                "wasi_snapshot_preview1"
            ]
            .contains(&module.as_str()),
            "{module}.{name}"
        );
    }
    assert!(
        hamr::wasm_extension::EMBEDDED.len() < 2 << 20,
        "the module grew past 2 MiB: {} bytes",
        hamr::wasm_extension::EMBEDDED.len()
    );
}

#[test]
fn a_refused_guest_config_stops_the_guest_at_start() {
    let compiled = Compiled::embedded().expect("the embedded module loads");
    match compiled.instantiate(r#"{"nodeSchedulerPolicy":"random"}"#) {
        Err(LoadError::Instantiate(m)) => {
            assert!(m.contains("guestConfig refused"), "{m}");
            assert!(m.contains("nodeSchedulerPolicy"), "{m}");
        }
        Err(other) => panic!("expected an instantiation error, got {other}"),
        Ok(_) => panic!("a refused config must fail the start"),
    }
    let mut engine = WasmExtensionScheduler::load().expect("loads");
    let refused = engine
        .configure(r#"{"nodeSchedulerPolicy":"random"}"#)
        .expect("no fault");
    assert!(
        matches!(refused, Err(api::Error::InvalidConfig(_))),
        "{refused:?}"
    );
}

fn node(name: &str) -> api::Node {
    api::Node {
        name: name.into(),
        annotations: vec![(
            "hami.io/node-nvidia-register".into(),
            r#"[{"id":"GPU-a","index":0,"count":10,"devmem":40960,"devcore":100,"type":"NVIDIA A100-SXM4-40GB","numa":0,"mode":"hami-core","health":true}]"#.into(),
        )],
        ..api::Node::default()
    }
}

fn pod(name: &str, mem: &str) -> api::Pod {
    api::Pod {
        uid: format!("uid-{name}"),
        namespace: "default".into(),
        name: name.into(),
        containers: vec![api::Container {
            name: "main".into(),
            limits: vec![
                ("nvidia.com/gpu".into(), "1".into()),
                ("nvidia.com/gpumem".into(), mem.into()),
            ],
            ..api::Container::default()
        }],
        ..api::Pod::default()
    }
}

#[test]
fn a_reserved_pod_counts_until_the_published_usage_includes_it() {
    let mut engine = WasmExtensionScheduler::load().expect("loads");
    engine.configure("{}").expect("no fault").expect("valid");
    let errors = engine
        .apply(&[api::Delta::NodeUpsert(node("n1"))])
        .expect("no fault");
    assert!(errors.is_empty());
    let now = 1_795_867_200;
    let nodes = vec!["n1".to_string()];
    // 30000 of 40960 MiB, reserved but not yet bound: the next pod does not fit.
    let first = engine
        .filter(&pod("a", "30000"), &nodes, now)
        .expect("no fault")
        .expect("no error");
    let decision = first.decision.expect("a fits");
    assert_eq!(decision.node, "n1");
    assert!(
        decision
            .annotations
            .iter()
            .any(|(k, v)| k == "hami.io/vgpu-devices-to-allocate" && v == "GPU-a,NVIDIA,30000,0:;"),
        "{decision:?}"
    );
    let second = engine
        .filter(&pod("b", "20000"), &nodes, now)
        .expect("no fault")
        .expect("no error");
    assert_eq!(second.decision, None, "a's reservation counts");
    let verdict = second.node_verdicts(&nodes).remove(0);
    assert_eq!(verdict.code, api::Code::Unschedulable);
    assert_eq!(verdict.reason, "1/1 CardInsufficientMemory");
    // a is bound: the agent publishes it, and it is counted once, not twice.
    let placed = hamr::k8s::placed(&pod("a", "30000"), &decision);
    engine
        .apply(&[api::Delta::PodUpsert(placed)])
        .expect("no fault");
    let third = engine
        .filter(&pod("c", "10960"), &nodes, now)
        .expect("no fault")
        .expect("no error");
    assert_eq!(third.decision.map(|d| d.node), Some("n1".to_string()));
    // a is gone: its use is gone with the next publication.
    engine
        .apply(&[api::Delta::PodRemove("uid-a".into())])
        .expect("no fault");
    engine.unreserve("uid-c").expect("no fault");
    let fourth = engine
        .filter(&pod("d", "40960"), &nodes, now)
        .expect("no fault")
        .expect("no error");
    assert_eq!(fourth.decision.map(|d| d.node), Some("n1".to_string()));
}
