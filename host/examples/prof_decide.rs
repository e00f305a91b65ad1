//! A profiling loop for one decision (BENCHMARKS.md, "Profiling the component"): loads the
//! `decide` bench's cluster, then repeats `filter` + `unreserve` for one pod and prints the time
//! per decision. Unlike the criterion bench it runs nothing else, so a profiler that starts
//! after the load (`perf record -D`, callgrind's `--toggle-collect='prof_decide::measured*'`)
//! sees only the decisions.
//!
//! ```sh
//! cargo build --release -p hamr --example prof_decide
//! target/release/examples/prof_decide 5000 vgpu component 100000
//! ```
//!
//! Arguments: nodes, pod (`vgpu`, `topology` or `nowhere`), engine (`native` or `component`),
//! decisions. `GUEST=path.wasm` loads that component instead of the embedded one (an unstripped
//! build names the guest's functions in `perf report`).

#[path = "../benches/cluster.rs"]
mod cluster;

use std::time::Instant;

use hamr::runtime::ComponentScheduler;
use hamr_guest::api::{Pod, Scheduler};

/// The decisions, apart so that a profiler can collect just this function.
#[inline(never)]
fn measured<S: Scheduler>(s: &mut S, pod: &Pod, names: &str, decisions: usize) {
    for _ in 0..decisions {
        let outcome = s
            .filter_lines(pod, names, 0)
            .ok()
            .expect("no fault")
            .expect("evaluates");
        std::hint::black_box(&outcome);
        s.unreserve(&pod.uid).ok().expect("no fault");
    }
}

fn run<S: Scheduler>(s: S, nodes: usize, pod: &Pod, decisions: usize) {
    let mut s = cluster::loaded(s, nodes);
    let names = hamr_guest::join_node_names(&cluster::names(nodes)).expect("no line breaks");
    measured(&mut s, pod, &names, 100);
    let started = Instant::now();
    measured(&mut s, pod, &names, decisions);
    let per = started.elapsed().as_secs_f64() * 1e6 / decisions.max(1) as f64;
    println!("{per:.2} µs per decision");
    // Leave without dropping 5,000 nodes, so that a profiler does not sample the teardown.
    std::process::exit(0);
}

fn main() {
    const USAGE: &str = "usage: prof_decide NODES vgpu|topology|nowhere native|component DECISIONS";
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [nodes, pod, engine, decisions] = args.as_slice() else {
        eprintln!("{USAGE}");
        std::process::exit(2);
    };
    let (Ok(nodes), Ok(decisions)) = (nodes.parse::<usize>(), decisions.parse::<usize>()) else {
        eprintln!("{USAGE}: NODES and DECISIONS are whole numbers");
        std::process::exit(2);
    };
    let pod = match pod.as_str() {
        "vgpu" => cluster::pod("vgpu", 1, 10240, 30, &[]),
        "topology" => cluster::pod(
            "topo",
            4,
            8192,
            10,
            &[("hami.io/gpu-scheduler-policy", "topology-aware")],
        ),
        "nowhere" => cluster::pod("huge", 1, 200_000, 10, &[]),
        other => {
            eprintln!("{USAGE}: no pod {other:?}");
            std::process::exit(2);
        }
    };
    match engine.as_str() {
        "native" => run(hamr_guest::Engine::new(), nodes, &pod, decisions),
        "component" => {
            let path = std::env::var_os("GUEST").map(std::path::PathBuf::from);
            let s = ComponentScheduler::load(path.as_deref()).unwrap_or_else(|e| {
                eprintln!("loading the component: {e:#}");
                std::process::exit(1);
            });
            run(s, nodes, &pod, decisions)
        }
        other => {
            eprintln!("{USAGE}: no engine {other:?}");
            std::process::exit(2);
        }
    }
}
