//! The kube-scheduler-wasm-extension module under hamr's test host of its ABI: the per-node
//! cost of `filter` and `score` (what the real host pays per node, serialised under its
//! scheduling lock), and a whole decision cycle next to the `decide` benchmark's engines.
//! Run: `cargo bench -p hamr --bench wasm_extension`.

mod cluster;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use hamr::wasm_extension::{WasmExtensionScheduler, code};
use hamr_guest::api::Scheduler;

const SIZES: &[usize] = &[100, 1000];

fn loaded(n: usize) -> WasmExtensionScheduler {
    let s = WasmExtensionScheduler::load().expect("the embedded module loads");
    cluster::loaded(s, n)
}

fn per_node(c: &mut Criterion) {
    let pod = cluster::pod("vgpu", 1, 10240, 30, &[]);
    for &n in SIZES {
        let names = cluster::names(n);
        let mut s = loaded(n);
        // Every node decoded once (first sight of its resourceVersion), as after a restart.
        assert_eq!(s.begin_cycle(&pod, 0).expect("no fault").0, code::SUCCESS);
        for name in &names {
            s.filter_node(name).expect("no fault");
        }
        let mut group = c.benchmark_group(format!("wasm-extension/{n}"));
        group.sample_size(20);
        group.measurement_time(Duration::from_secs(5));
        // A cycle's filters: the node fetched over the ABI (protobuf from the host, its
        // resourceVersion read, unchanged) and evaluated; prefilter amortised over the nodes.
        group.bench_function(BenchmarkId::new("filter", "per-node"), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    s.begin_cycle(&pod, 0).expect("no fault");
                    for name in &names {
                        black_box(s.filter_node(name).expect("no fault"));
                    }
                }
                start.elapsed() / n as u32
            })
        });
        // A cycle's scores, after its filters (nodes already fresh in the cycle).
        group.bench_function(BenchmarkId::new("score", "per-node"), |b| {
            s.begin_cycle(&pod, 0).expect("no fault");
            for name in &names {
                s.filter_node(name).expect("no fault");
            }
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    for name in &names {
                        black_box(s.score_node(name).expect("no fault"));
                    }
                }
                start.elapsed() / n as u32
            })
        });
        // The whole cycle: prefilter, filter × n, prescore, score × feasible, normalizescore,
        // reserve; then unreserve.
        group.bench_function(BenchmarkId::new("decide", "vgpu"), |b| {
            b.iter(|| {
                let outcome = s
                    .filter(&pod, &names, 0)
                    .expect("no fault")
                    .expect("evaluates");
                assert!(outcome.decision.is_some());
                s.unreserve(&pod.uid).expect("no fault");
                black_box(outcome);
            })
        });
        group.finish();
    }
}

criterion_group!(benches, per_node);
criterion_main!(benches);
