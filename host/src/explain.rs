//! `hamr explain`: why a pod fits or does not fit each node, card by card.
//!
//! The pod goes through admission first (so the scheduler's view, with injected defaults, is
//! explained); a denial is reported and the pod as written is explained anyway.

use hamr_guest::api::{self, Scheduler};
use serde::Serialize;

use crate::engine::EngineFault;
use crate::place::{self, Cluster};
use crate::simulate::SimulateError;

/// The explanation, as `--format json` prints it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// `namespace/name`.
    pub pod: String,
    /// The admission's denial message, when it denies the pod.
    pub denied: Option<String>,
    pub nodes: Vec<api::NodeExplanation>,
}

/// Loads the cluster and explains `pod` on `nodes` (every node when empty).
pub fn explain<S: Scheduler>(
    engine: &mut S,
    config: &str,
    cluster: Cluster,
    pod: &api::Pod,
    nodes: &[String],
    now: i64,
) -> Result<Explanation, SimulateError> {
    let fault = |f: S::Fault| EngineFault(f.to_string());
    place::load_strict(engine, config, cluster)?;
    let invalid = |error: api::Error| SimulateError::Invalid {
        object: pod.object(),
        error: Box::new(error),
    };
    let admission = engine.admit(pod).map_err(fault)?.map_err(invalid)?;
    let (seen, denied) = if admission.allowed {
        let mutated = hamr_guest::admission::apply(pod, &admission.mutations);
        (mutated, None)
    } else {
        (pod.clone(), Some(admission.message))
    };
    let nodes = if nodes.is_empty() {
        cluster.node_names()
    } else {
        nodes.to_vec()
    };
    let explained = engine
        .explain(&seen, &nodes, now)
        .map_err(fault)?
        .map_err(invalid)?;
    Ok(Explanation {
        pod: format!("{}/{}", pod.namespace, pod.name),
        denied,
        nodes: explained,
    })
}

/// The explanation as text.
///
/// ```text
/// pod default/p1
/// gpu-node-1: does not fit: 1/2 CardInsufficientMemory, 1/2 CardUuidMismatch
///     container 0, card 0 GPU-aaa: CardInsufficientMemory: asked 8192 MiB, free 4096 of 40960 MiB
///     container 0, card 1 GPU-bbb: CardUuidMismatch
/// ```
pub fn render_text(e: &Explanation) -> String {
    let mut out = format!("pod {}\n", e.pod);
    if let Some(m) = &e.denied {
        out.push_str(&format!("admission: denied: {m}\n"));
    }
    for n in &e.nodes {
        let v = &n.verdict;
        if v.code == api::Code::Success {
            out.push_str(&format!("{}: fits (score {})\n", n.node, v.score));
        } else {
            out.push_str(&format!("{}: does not fit: {}\n", n.node, v.reason));
        }
        for c in &n.cards {
            let check = if c.reason.is_empty() {
                "fits".to_string()
            } else {
                c.reason.clone()
            };
            let detail = if c.detail.is_empty() {
                String::new()
            } else {
                format!(": {}", c.detail)
            };
            out.push_str(&format!(
                "    container {}, card {} {}: {check}{detail}\n",
                c.container, c.index, c.uuid
            ));
        }
    }
    out
}
