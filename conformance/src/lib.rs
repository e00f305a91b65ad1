//! `hamr-conformance`: the scenario files under `scenarios/` and the suite that runs them.
//!
//! A scenario is one YAML file: real Kubernetes objects in, what a user sees out. The same file
//! runs through every engine (the native library, the WebAssembly component, later the HTTP
//! extender); a difference between engines is a contract bug. The runner is
//! [`hamr::conformance`] (the `hamr conformance` command uses it too); this crate documents the
//! format, re-exports the runner and holds the suite (`tests/scenarios.rs`, native engine; CI
//! runs the component through `hamr conformance` in release mode).
//!
//! # Format
//!
//! ```yaml
//! name: binpack picks the busier card      # required; shown on the PASS/FAIL line
//! config: {gpuSchedulerPolicy: binpack}    # optional; the config file's keys, handed to `configure` as JSON ({} when absent)
//! now: "2026-11-28T12:00:00Z"              # optional, RFC 3339; default 2026-11-28T12:00:00Z
//! nodes:    [v1.Node, ...]                 # the cluster
//! pods:     [v1.Pod, ...]                  # pods already on the cluster (with their allocation annotations)
//! quotas:   [v1.ResourceQuota, ...]        # optional
//! schedule: [v1.Pod, ...]                  # pods to place, in order
//! expect:
//!   - pod: p1                # `name` (namespace default) or `namespace/name`; must be in `schedule`
//!     node: gpu-node-2       # the chosen node; `null` = no node chosen; absent = not checked
//!     annotations: {hami.io/vgpu-devices-to-allocate: "GPU-b,NVIDIA,1000,20:;"}  # each key exactly
//!     reasons: {gpu-node-1: "1/2 CardInsufficientMemory, 1/2 CardUuidMismatch"}  # node -> exact verdict reason
//!     admission: allowed     # allowed | denied
//! ```
//!
//! Unknown keys (at the top level and in an expectation) are errors, so a typo cannot turn a
//! check off. Objects may omit `apiVersion` and `kind` (the list they are in says what they
//! are); a pod without `metadata.namespace` is in `default`, and one without `metadata.uid` gets
//! the uid `<namespace>/<name>`.
//!
//! # Run
//!
//! For each engine, on a fresh instance:
//!
//! 1. `configure(config)`; then one `apply` with an upsert per node, pod and quota, in that
//!    order. A refused configuration stops the scenario, which fails with the error's text. A
//!    refused delta (a malformed registration or allocation annotation) is recorded and the
//!    rest goes on, as HAMi ignores such objects: a node seen first with a malformed
//!    registration has no cards (`node unregistered`), a pod with a malformed allocation holds
//!    none. The engines must refuse the same objects with the same errors.
//! 2. For each `schedule` pod, in order: `admit`. An `Err` (e.g. `invalid-input` for
//!    `gpumem: 16Gi`) or `allowed: false` means *admission denied*: the pod gets no node and is
//!    not filtered. Otherwise the admission's mutations are applied to the pod
//!    (`hamr_guest::admission::apply`) and `filter` runs over every node name, in `nodes` order.
//!    A decision places the pod: the decision's annotations and labels are merged into it,
//!    `spec.nodeName` is set, its phase becomes Running, and it is upserted, so it counts for
//!    every pod after it. No decision (no node fits, a `filter` error, or a pod that asks for no
//!    managed device) means node `null`.
//!
//! # Checks
//!
//! Each expectation is checked against what the engine did with that pod:
//!
//! - `node`: equal to the chosen node (or `null`).
//! - `annotations`: each listed key equals the decision's annotation exactly; keys not listed
//!   are not compared, so `hami.io/vgpu-time` (a time stamp) is only checked when listed.
//! - `reasons`: for each listed node, the `reason` of that node's verdict equals the text exactly.
//! - `admission`: `denied` as defined above, `allowed` otherwise.
//!
//! An expectation about a pod that is not in `schedule` fails. A failing scenario lists every
//! difference as `pod p1: node: expected "n2", got "n1"`.
//!
//! With several engines, each engine's observations are also compared with the first engine's:
//! the refused objects, and per scheduled pod the admission result (and denial message), the chosen node, the decision's
//! annotations without `hami.io/vgpu-time`, every verdict's code and reason, and any `filter`
//! error. A difference fails the later engine's line (`differs from native: pod p1: ...`).
//!
//! # Output
//!
//! ```text
//! PASS  native     nvidia/f1-spread.yaml  spread puts a pod on the idler card
//! FAIL  component  nvidia/f1-spread.yaml  spread puts a pod on the idler card: pod p1: node: expected "n2", got "n1"
//! 1 passed, 1 failed
//! ```
//!
//! One line per scenario and engine, then `N passed, M failed` counting those lines; the
//! command exits with 1 when any line failed.

pub use hamr::conformance::{
    EngineResult, FindError, ScenarioPath, ScenarioResult, Summary, find, line, observe, run,
    run_scenario, scenario,
};
pub use hamr::engine::EngineKind;

/// The folder of this crate's scenario files.
pub fn scenarios_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios")
}
