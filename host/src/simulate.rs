//! `hamr simulate`: place pods on a cluster snapshot and report every decision and the cards'
//! use afterwards. The placing itself is [`crate::place`]; this module shapes the report
//! (text or JSON) and treats a malformed pod as fatal, since a simulation that silently skips
//! a pod answers a different question.

use hamr_guest::api::{self, Scheduler};
use serde::Serialize;

use crate::engine::EngineFault;
use crate::place::{self, Admitted, Cluster, PlaceError};
use crate::table;

/// Why a simulation (or an explanation) stopped.
#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    /// The configuration or a cluster object was refused, or the engine faulted.
    #[error(transparent)]
    Place(#[from] PlaceError),
    /// The guest could not evaluate a pod (e.g. `nvidia.com/gpumem: 16Gi`, a negative
    /// percentage): the message names the pod and the field.
    #[error("{}", invalid_message(object, error))]
    Invalid {
        object: String,
        error: Box<api::Error>,
    },
}

fn invalid_message(object: &str, error: &api::Error) -> String {
    match error {
        api::Error::InvalidInput(i) | api::Error::InvalidConfig(i) => i.to_string(),
        other => format!("{object}: {other}"),
    }
}

impl From<EngineFault> for SimulateError {
    fn from(f: EngineFault) -> Self {
        SimulateError::Place(PlaceError::Fault(f))
    }
}

/// The whole simulation, as `--format json` prints it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The time handed to the guest, Unix seconds.
    pub now: i64,
    pub pods: Vec<PodReport>,
    /// Every card of every node that has cards, by node then vendor and index.
    pub cards: Vec<CardRow>,
    pub placed: usize,
    pub unplaced: usize,
}

/// What became of one pod.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PodReport {
    /// `namespace/name`.
    pub pod: String,
    /// `placed`, `unschedulable` (no node fits), `denied` (admission) or `unmanaged` (the pod
    /// asks for no managed device; left to the default scheduler).
    pub outcome: &'static str,
    pub node: Option<String>,
    /// The cards granted, container by container.
    pub cards: Vec<api::DeviceGrant>,
    /// When no node fits: every failing node's aggregated reason, in candidate order.
    pub reasons: Vec<NodeReason>,
    /// The admission's denial message.
    pub message: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NodeReason {
    pub node: String,
    pub reason: String,
}

/// One card's use after the simulation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CardRow {
    pub node: String,
    pub vendor: String,
    pub index: u32,
    pub uuid: String,
    pub model: String,
    pub used_slots: u32,
    pub total_slots: u32,
    pub used_memory_mib: u64,
    pub total_memory_mib: u64,
    pub used_cores: u32,
    pub total_cores: u32,
    /// `healthy`, `unhealthy`, `cordoned`, or `not-live` when the node's registration is not live.
    pub health: &'static str,
}

/// How often (in pods) the progress callback runs, and above how many pods it runs at all.
pub const PROGRESS_EVERY: usize = 1_000;
pub const PROGRESS_ABOVE: usize = 2_000;

/// Loads the cluster, places `pods` in order, and reports. `progress(done, total)` is called
/// every [`PROGRESS_EVERY`] pods when there are more than [`PROGRESS_ABOVE`].
pub fn simulate<S: Scheduler>(
    engine: &mut S,
    config: &str,
    cluster: Cluster,
    pods: &[api::Pod],
    now: i64,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Report, SimulateError> {
    place::load_strict(engine, config, cluster)?;
    let candidates = cluster.node_names();
    let mut reports = Vec::with_capacity(pods.len());
    for (i, pod) in pods.iter().enumerate() {
        let p = place::place(engine, pod, &candidates, now)?;
        if let Some(e) = p.error() {
            return Err(SimulateError::Invalid {
                object: pod.object(),
                error: Box::new(e.clone()),
            });
        }
        reports.push(pod_report(&p));
        if pods.len() > PROGRESS_ABOVE && (i + 1) % PROGRESS_EVERY == 0 {
            progress(i + 1, pods.len());
        }
    }
    let usage = engine
        .usage(&[], now)
        .map_err(|f| EngineFault(f.to_string()))?;
    let placed = reports.iter().filter(|r| r.node.is_some()).count();
    Ok(Report {
        now,
        unplaced: reports.len() - placed,
        placed,
        pods: reports,
        cards: card_rows(&usage),
    })
}

fn pod_report(p: &place::Placement) -> PodReport {
    let mut r = PodReport {
        pod: p.id(),
        outcome: "unschedulable",
        node: None,
        cards: Vec::new(),
        reasons: Vec::new(),
        message: None,
    };
    match (&p.admitted, &p.filter) {
        (Admitted::Denied(m), _) => {
            r.outcome = "denied";
            r.message = Some(m.clone());
        }
        (_, Some(Ok(outcome))) if !outcome.managed => r.outcome = "unmanaged",
        (_, Some(Ok(outcome))) => match &outcome.decision {
            Some(d) => {
                r.outcome = "placed";
                r.node = Some(d.node.clone());
                r.cards = d.grants.clone();
            }
            None => {
                r.reasons = p
                    .verdicts
                    .iter()
                    .filter(|v| v.code != api::Code::Success)
                    .map(|v| NodeReason {
                        node: v.node.clone(),
                        reason: v.reason.clone(),
                    })
                    .collect();
            }
        },
        _ => {}
    }
    r
}

/// The cards of every node that has any, as report rows.
pub fn card_rows(usage: &[api::NodeUsage]) -> Vec<CardRow> {
    let mut rows = Vec::new();
    for n in usage {
        for c in &n.cards {
            let health = match (n.live, c.cordoned, c.healthy) {
                (false, _, _) => "not-live",
                (true, true, _) => "cordoned",
                (true, false, false) => "unhealthy",
                (true, false, true) => "healthy",
            };
            rows.push(CardRow {
                node: n.node.clone(),
                vendor: c.vendor.clone(),
                index: c.index,
                uuid: c.uuid.clone(),
                model: c.model.clone(),
                used_slots: c.used_slots,
                total_slots: c.total_slots,
                used_memory_mib: c.used_memory_mib,
                total_memory_mib: c.total_memory_mib,
                used_cores: c.used_cores,
                total_cores: c.total_cores,
                health,
            });
        }
    }
    rows
}

/// One grant in words: `container 0: GPU-1a2b (index 0, NVIDIA A100-SXM4-40GB) 8192 MiB, 30% cores`.
pub fn grant_line(g: &api::DeviceGrant) -> String {
    format!(
        "container {}: {} (index {}, {}) {} MiB, {}% cores",
        g.container, g.uuid, g.index, g.model, g.memory_mib, g.cores
    )
}

/// The report as text: one block per pod, then the card table.
pub fn render_text(r: &Report) -> String {
    let mut out = String::new();
    for p in &r.pods {
        match p.outcome {
            "placed" => {
                let node = p.node.as_deref().unwrap_or_default();
                out.push_str(&format!("{} -> {node}\n", p.pod));
                for g in &p.cards {
                    out.push_str(&format!("    {}\n", grant_line(g)));
                }
            }
            "denied" => out.push_str(&format!(
                "{} -> denied at admission: {}\n",
                p.pod,
                p.message.as_deref().unwrap_or_default()
            )),
            "unmanaged" => out.push_str(&format!(
                "{} -> asks for no managed device (left to the default scheduler)\n",
                p.pod
            )),
            _ => {
                out.push_str(&format!("{} -> no node fits\n", p.pod));
                for n in &p.reasons {
                    out.push_str(&format!("    {}: {}\n", n.node, n.reason));
                }
            }
        }
    }
    out.push_str(&format!(
        "\n{} placed, {} not placed\n\n",
        r.placed, r.unplaced
    ));
    out.push_str(&card_table(&r.cards));
    out
}

/// The per-card utilisation table.
pub fn card_table(rows: &[CardRow]) -> String {
    if rows.is_empty() {
        return "no cards registered\n".to_string();
    }
    let header = [
        "NODE",
        "INDEX",
        "MODEL",
        "SLOTS",
        "MEMORY MiB",
        "CORES %",
        "HEALTH",
    ];
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|c| {
            vec![
                c.node.clone(),
                c.index.to_string(),
                c.model.clone(),
                format!("{}/{}", c.used_slots, c.total_slots),
                format!("{}/{}", c.used_memory_mib, c.total_memory_mib),
                format!("{}/{}", c.used_cores, c.total_cores),
                c.health.to_string(),
            ]
        })
        .collect();
    table::render(&header, &body)
}
