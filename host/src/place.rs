//! Placing pods one at a time, the way `simulate` and the conformance runner both do it:
//!
//! 1. `configure`, then the cluster's nodes, pods and quotas go in as upsert deltas;
//! 2. per pod, in order: `admit`; when allowed, the mutations are applied to the pod
//!    ([`hamr_guest::admission::apply`]) and `filter` runs over every node name (file order);
//! 3. a decision places the pod: its annotations and labels, `spec.nodeName` and phase Running
//!    ([`crate::k8s::placed`]), and the pod is upserted, so it counts for the pods after it.

use hamr_guest::api::{self, Scheduler};

use crate::engine::EngineFault;
use crate::k8s;

/// What stops a run: the guest refused the configuration or a delta, or the engine faulted.
#[derive(Debug, thiserror::Error)]
pub enum PlaceError {
    /// `configure` refused the configuration. Fix the named key.
    #[error("{0}")]
    Config(Box<api::Error>),
    /// `apply` refused a delta (a malformed registration, quota, or pod annotation); `object`
    /// is the delta's object. Nothing about the input is guessed: fix the named field.
    #[error("{}", delta_message(object, error))]
    Delta {
        object: String,
        error: Box<api::Error>,
    },
    /// The engine trapped or could not start: a bug, not an input problem.
    #[error("engine fault: {0}")]
    Fault(#[from] EngineFault),
}

fn delta_message(object: &str, error: &api::Error) -> String {
    match error {
        api::Error::InvalidInput(i) | api::Error::InvalidConfig(i) => i.to_string(),
        other => format!("{object}: {other}"),
    }
}

fn fault(f: impl std::fmt::Display) -> EngineFault {
    EngineFault(f.to_string())
}

/// The objects that make up the cluster before any pod is placed.
#[derive(Clone, Copy, Debug, Default)]
pub struct Cluster<'a> {
    pub nodes: &'a [api::Node],
    pub pods: &'a [api::Pod],
    pub quotas: &'a [api::Quota],
}

impl Cluster<'_> {
    /// The candidate list of every filter: all node names, in file order.
    pub fn node_names(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.name.clone()).collect()
    }
}

/// A delta the guest refused while loading the cluster: the object's name and the error. The
/// guest skipped it (or, for a node, kept what it knew before) and applied the rest.
pub type Rejected = (String, api::Error);

/// Configures the engine and feeds it the cluster; the first refused delta stops the run
/// (`simulate` and `explain`: bad input is reported, never guessed around).
pub fn load_strict<S: Scheduler>(
    engine: &mut S,
    config: &str,
    cluster: Cluster,
) -> Result<(), PlaceError> {
    match load(engine, config, cluster)?.into_iter().next() {
        None => Ok(()),
        Some((object, error)) => Err(PlaceError::Delta {
            object,
            error: Box::new(error),
        }),
    }
}

/// Configures the engine (`config` is a JSON object's text) and feeds it the cluster,
/// returning the deltas the guest refused.
pub fn load<S: Scheduler>(
    engine: &mut S,
    config: &str,
    cluster: Cluster,
) -> Result<Vec<Rejected>, PlaceError> {
    engine
        .configure(config)
        .map_err(fault)?
        .map_err(|e| PlaceError::Config(Box::new(e)))?;
    let mut deltas = Vec::new();
    let mut objects = Vec::new();
    for n in cluster.nodes {
        deltas.push(api::Delta::NodeUpsert(n.clone()));
        objects.push(format!("node/{}", n.name));
    }
    for p in cluster.pods {
        deltas.push(api::Delta::PodUpsert(p.clone()));
        objects.push(p.object());
    }
    for q in cluster.quotas {
        deltas.push(api::Delta::QuotaUpsert(q.clone()));
        objects.push(format!("quota/{}/{}", q.namespace, q.name));
    }
    let errors = engine.apply(&deltas).map_err(fault)?;
    Ok(errors
        .into_iter()
        .map(|e| {
            (
                objects.get(e.index as usize).cloned().unwrap_or_default(),
                e.error,
            )
        })
        .collect())
}

/// The admission outcome of one pod.
#[derive(Clone, Debug, PartialEq)]
pub enum Admitted {
    /// Admitted; `pod` is the pod with the admission's mutations applied, as the scheduler
    /// sees it. `managed` is false when the pod asks for no managed device.
    Allowed { pod: api::Pod, managed: bool },
    /// Denied by an admission rule, with the webhook's message.
    Denied(String),
    /// The guest could not evaluate the pod (a malformed device request).
    Error(api::Error),
}

/// What happened to one pod.
#[derive(Clone, Debug, PartialEq)]
pub struct Placement {
    /// The pod as given.
    pub pod: api::Pod,
    pub admitted: Admitted,
    /// The filter's answer; `None` when the pod was not admitted.
    pub filter: Option<Result<api::FilterOutcome, api::Error>>,
    /// The filter's verdicts with their nodes' names (the outcome names candidates by
    /// position); empty without an outcome.
    pub verdicts: Vec<api::NodeVerdict>,
}

impl Placement {
    /// The decision, when a node was chosen.
    pub fn decision(&self) -> Option<&api::Decision> {
        match &self.filter {
            Some(Ok(outcome)) => outcome.decision.as_ref(),
            _ => None,
        }
    }

    /// `namespace/name`.
    pub fn id(&self) -> String {
        format!("{}/{}", self.pod.namespace, self.pod.name)
    }

    /// The first error the guest returned for this pod (admission or filter), if any.
    pub fn error(&self) -> Option<&api::Error> {
        match (&self.admitted, &self.filter) {
            (Admitted::Error(e), _) | (_, Some(Err(e))) => Some(e),
            _ => None,
        }
    }
}

/// Admits, filters and, when a node is chosen, places one pod (see the module comment).
pub fn place<S: Scheduler>(
    engine: &mut S,
    pod: &api::Pod,
    candidates: &[String],
    now: i64,
) -> Result<Placement, PlaceError> {
    let admitted = match engine.admit(pod).map_err(fault)? {
        Err(e) => Admitted::Error(e),
        Ok(a) if !a.allowed => Admitted::Denied(a.message),
        Ok(a) => Admitted::Allowed {
            pod: hamr_guest::admission::apply(pod, &a.mutations),
            managed: a.managed,
        },
    };
    let filter = match &admitted {
        Admitted::Allowed { pod: mutated, .. } => {
            Some(engine.filter(mutated, candidates, now).map_err(fault)?)
        }
        _ => None,
    };
    if let (Admitted::Allowed { pod: mutated, .. }, Some(Ok(outcome))) = (&admitted, &filter)
        && let Some(decision) = &outcome.decision
    {
        let placed = k8s::placed(mutated, decision);
        let object = placed.object();
        let errors = engine
            .apply(&[api::Delta::PodUpsert(placed)])
            .map_err(fault)?;
        if let Some(e) = errors.into_iter().next() {
            return Err(PlaceError::Delta {
                object,
                error: Box::new(e.error),
            });
        }
    }
    let verdicts = match &filter {
        Some(Ok(outcome)) => outcome.node_verdicts(candidates),
        _ => Vec::new(),
    };
    Ok(Placement {
        pod: pod.clone(),
        admitted,
        filter,
        verdicts,
    })
}
