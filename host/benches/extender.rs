//! `extender`: kube-scheduler's view of `hamr serve` (issue #6): one `/filter` with
//! `nodeCacheCapable` (every node name in, the chosen node out) and one `/bind` per pod, over
//! loopback HTTP on fresh connections, at concurrency 1 and 16, on the `decide` cluster of
//! 5,000 nodes (50,000 running pods), with the native library and with the component behind
//! the same server (the component is what `hamr serve` runs; the native row shows what the
//! component costs a pod end to end). Criterion reports the time per pod and pods/s
//! ("elem/s"). Run: `cargo bench -p hamr --bench extender`.
//!
//! Each pod is released after its bind (as if deleted), so the cluster stays as generated.
//! The memory figure has its own bench (`benches/memory.rs`), in a process that holds nothing
//! but the server.

mod cluster;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hamr::engine::EngineKind;
use hamr::k8s;
use hamr::serve::backend::Backend;
use hamr::serve::engine::{HttpEngine, post};
use hamr_guest::api::{Delta, Scheduler};
use serde_json::{Value, json};

const NODES: usize = 5000;

fn loaded(kind: &EngineKind) -> HttpEngine {
    let inner = kind.start().expect("the engine starts");
    let mut engine = HttpEngine::start(inner).expect("the server starts");
    engine
        .configure("{}")
        .expect("no fault")
        .expect("valid config");
    // In batches of 1,024, as `hamr serve`'s watchers send them: the guest's linear memory
    // grows to the largest batch and never shrinks.
    for batch in cluster::batches(NODES, 1024) {
        let errors = engine.apply(&batch).expect("no fault");
        assert!(errors.is_empty(), "the generated cluster is valid");
    }
    engine
}

/// Filters and binds one new pod over HTTP, then releases it.
fn schedule_one(engine: &HttpEngine, names: &str, n: usize) {
    let name = format!("ext-{n}");
    // A pending pod: `/filter` records it as the API server's copy that bind then patches.
    let pod = cluster::pod(&name, 1, 10240, 30, &[]);
    // The names are serialised once for the run: the load generator shares the machine.
    let pod_json = serde_json::to_string(&k8s::to_pod(&pod)).expect("serialises");
    let body = format!(r#"{{"Pod":{pod_json},"NodeNames":{names}}}"#).into_bytes();
    let (status, answer) = post(engine.addr(), "/filter", &body).expect("filter answers");
    assert_eq!(status, 200);
    let answer: Value = serde_json::from_slice(&answer).expect("JSON");
    let node = answer["NodeNames"][0]
        .as_str()
        .unwrap_or_else(|| panic!("a node is chosen: {answer}"))
        .to_string();
    let bind =
        json!({"PodName": name, "PodNamespace": pod.namespace, "PodUID": pod.uid, "Node": node});
    let body = serde_json::to_vec(&bind).expect("serialises");
    let (status, answer) = post(engine.addr(), "/bind", &body).expect("bind answers");
    assert_eq!(status, 200);
    let answer: Value = serde_json::from_slice(&answer).expect("JSON");
    assert!(
        answer["Error"].as_str().unwrap_or("").is_empty(),
        "bind succeeds: {answer}"
    );
    // Deleted: gone from the API server's copy and from the guest's ledger.
    if let Backend::Memory(m) = &engine.server().backend {
        m.remove_named(&pod.namespace, &pod.name);
    }
    engine.server().apply_now(&[Delta::PodRemove(pod.uid)]);
}

fn extender(c: &mut Criterion) {
    let names: Value = cluster::names(NODES)
        .into_iter()
        .map(Value::String)
        .collect();
    let names = Arc::new(names.to_string());
    let counter = Arc::new(AtomicUsize::new(0));
    let mut group = c.benchmark_group(format!("extender/{NODES}"));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Elements(1));
    // One engine at a time: the other's 5,000 nodes would only crowd the caches.
    for kind in [EngineKind::Native, EngineKind::Component(None)] {
        let engine = Arc::new(loaded(&kind));
        for concurrency in [1usize, 16] {
            let id = BenchmarkId::new(format!("{}/filter+bind", kind.label()), concurrency);
            group.bench_function(id, |b| {
                b.iter_custom(|iters| {
                    let per_thread = (iters as usize).div_ceil(concurrency);
                    let started = Instant::now();
                    std::thread::scope(|s| {
                        for _ in 0..concurrency {
                            let (engine, names, counter) = (&engine, &names, &counter);
                            s.spawn(move || {
                                for _ in 0..per_thread {
                                    let n = counter.fetch_add(1, Ordering::Relaxed);
                                    schedule_one(engine, names, n);
                                }
                            });
                        }
                    });
                    // Time per pod, whatever the rounding up per thread added.
                    started
                        .elapsed()
                        .mul_f64(iters as f64 / (per_thread * concurrency) as f64)
                });
            });
        }
    }
    group.finish();
}

criterion_group!(benches, extender);
criterion_main!(benches);
