//! `memory`: the resident memory of `hamr serve` (the component, its caches, the HTTP server)
//! holding the `decide` cluster of 5,000 nodes × 8 cards and 50,000 running pods (issue #6).
//! Run: `cargo bench -p hamr --bench memory`.
//!
//! The cluster is generated and fed in batches of 1,024 deltas, as `hamr serve`'s watchers send
//! them, so the generator never holds it whole; nothing else lives in this process. The figures
//! come from `/proc/self/status` (Linux): `VmRSS` now and `VmHWM`, the peak. The guest's share is
//! the size of its linear memory, which wasmtime reports and which never shrinks.

mod cluster;

use hamr::engine::{Engine, EngineKind};
use hamr::serve::engine::HttpEngine;
use hamr_guest::api::Scheduler;

const NODES: usize = 5000;

/// A `/proc/self/status` field, in MiB.
fn status_mib(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

fn main() {
    // `cargo bench -- --test` (CI) runs the same load: it takes about a second.
    let before = status_mib("VmRSS:");
    let inner = EngineKind::Component(None)
        .start()
        .expect("the embedded component loads");
    let compiled = status_mib("VmRSS:");
    let mut engine = HttpEngine::start(inner).expect("the server starts");
    engine
        .configure("{}")
        .expect("no fault")
        .expect("valid config");
    let started = status_mib("VmRSS:");
    let mut pods = 0;
    for batch in cluster::batches(NODES, 1024) {
        pods += batch.len();
        let errors = engine
            .server()
            .with_engine_now(|e| e.apply(&batch))
            .expect("no fault");
        assert!(
            errors.is_empty(),
            "the generated cluster is valid: {errors:?}"
        );
    }
    pods -= NODES;
    let loaded = status_mib("VmRSS:");
    let peak = status_mib("VmHWM:");
    let guest = engine.server().with_engine_now(|e| match e {
        Engine::Component(c) => c.guest_memory_bytes() as f64 / (1024.0 * 1024.0),
        _ => f64::NAN,
    });
    println!(
        "memory: hamr serve holding {NODES} nodes and {pods} pods: {loaded:.0} MiB resident, \
         {peak:.0} MiB peak"
    );
    println!("  before the server:            {before:6.0} MiB");
    println!(
        "  the component, compiled:      {:6.0} MiB",
        compiled - before
    );
    println!(
        "  the server around it:         {:6.0} MiB",
        started - compiled
    );
    println!("  the guest's linear memory:    {guest:6.0} MiB");
    println!(
        "  the rest (host caches, heap): {:6.0} MiB",
        loaded - started - guest
    );
}
