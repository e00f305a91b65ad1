//! Running one scenario on one engine, what it observes, and the checks against `expect`.

use std::collections::BTreeMap;

use hamr_guest::api::{self, Scheduler};

use super::scenario::{AdmissionExpectation, Expectation, MutatedExpectation, Scenario};
use crate::place::{self, Admitted, Cluster, PlaceError};

/// Never compared across engines, nor against `expect` unless listed there.
pub const VGPU_TIME: &str = "hami.io/vgpu-time";

/// What one engine did with one scheduled pod; equal across engines for a conforming pair
/// (once [`Observation::comparable`] has dropped the time stamp).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observation {
    /// `namespace/name`.
    pub pod: String,
    /// `None` when admitted; the webhook's message (or the guest's error) when denied.
    pub denied: Option<String>,
    /// The pod as admission left it (`None` when it was not admitted).
    pub admitted: Option<api::Pod>,
    /// The chosen node.
    pub node: Option<String>,
    /// The decision's annotations.
    pub annotations: BTreeMap<String, String>,
    /// The filter's verdicts: node -> (code, reason). When a node fits, an engine may leave
    /// out the candidates it did not evaluate (`filterVerdicts: tried`), while one whose host
    /// filters node by node (wasm-extension) has them all; [`difference`] compares the nodes
    /// both report.
    pub verdicts: BTreeMap<String, (api::Code, String)>,
    /// The error `filter` returned, if any.
    pub error: Option<String>,
}

impl Observation {
    fn new(p: &place::Placement) -> Observation {
        let (denied, admitted) = match &p.admitted {
            Admitted::Allowed { pod, .. } => (None, Some(pod.clone())),
            Admitted::Denied(message) => (Some(message.clone()), None),
            Admitted::Error(e) => (Some(e.to_string()), None),
        };
        let (verdicts, error) = match &p.filter {
            Some(Ok(_)) => (
                p.verdicts
                    .iter()
                    .map(|v| (v.node.clone(), (v.code, v.reason.clone())))
                    .collect(),
                None,
            ),
            Some(Err(e)) => (BTreeMap::new(), Some(e.to_string())),
            None => (BTreeMap::new(), None),
        };
        let decision = p.decision();
        Observation {
            pod: p.id(),
            denied,
            admitted,
            node: decision.map(|d| d.node.clone()),
            annotations: decision
                .map(|d| d.annotations.iter().cloned().collect())
                .unwrap_or_default(),
            verdicts,
            error,
        }
    }

    /// The observation without what may differ between engines (`hami.io/vgpu-time`).
    pub fn comparable(&self) -> Observation {
        let mut o = self.clone();
        o.annotations.remove(VGPU_TIME);
        o
    }

    /// Why the pod has no node, in a few words (for failure messages).
    fn why_unplaced(&self) -> String {
        if let Some(m) = &self.denied {
            return format!("denied at admission: {m}");
        }
        if let Some(e) = &self.error {
            return format!("filter error: {e}");
        }
        let reasons: Vec<String> = self
            .verdicts
            .iter()
            .map(|(node, (_, reason))| format!("{node}: {reason}"))
            .collect();
        if reasons.is_empty() {
            "no device request".to_string()
        } else {
            reasons.join(", ")
        }
    }
}

/// What one engine did with a scenario.
#[derive(Clone, Debug, PartialEq)]
pub struct Run {
    /// Cluster objects the guest refused (`object: error`), e.g. a malformed registration or
    /// allocation annotation: HAMi ignores such objects, and so does the run, but the engines
    /// must agree on them.
    pub rejected: Vec<String>,
    /// One observation per scheduled pod, in order.
    pub observations: Vec<Observation>,
}

/// Runs a scenario on a fresh engine: configure, load the cluster, place the schedule in order.
pub fn run<S: Scheduler>(engine: &mut S, s: &Scenario) -> Result<Run, PlaceError> {
    let cluster = Cluster {
        nodes: &s.nodes,
        pods: &s.pods,
        quotas: &s.quotas,
    };
    let rejected = place::load(engine, &s.config, cluster)?
        .into_iter()
        .map(|(object, error)| format!("{object}: {error}"))
        .collect();
    let candidates = cluster.node_names();
    let mut out = Vec::with_capacity(s.schedule.len());
    for pod in &s.schedule {
        let placement = place::place(engine, pod, &candidates, s.now)?;
        out.push(Observation::new(&placement));
    }
    Ok(Run {
        rejected,
        observations: out,
    })
}

fn shown(value: Option<&str>) -> String {
    match value {
        Some(v) => format!("{v:?}"),
        None => "null".to_string(),
    }
}

/// Every way the observations differ from the scenario's expectations, one message each
/// (`pod p1: node: expected "n2", got "n1"`). Empty when the scenario passes.
pub fn check(expect: &[Expectation], observed: &[Observation]) -> Vec<String> {
    let mut out = Vec::new();
    for e in expect {
        let Some(o) = observed.iter().find(|o| o.pod == e.pod_id()) else {
            out.push(format!("pod {}: not in schedule", e.pod));
            continue;
        };
        let mut fail = |what: String| out.push(format!("pod {}: {what}", e.pod));
        if let Some(node) = &e.node
            && node != &o.node
        {
            let mut what = format!(
                "node: expected {}, got {}",
                shown(node.as_deref()),
                shown(o.node.as_deref())
            );
            if o.node.is_none() {
                what.push_str(&format!(" ({})", o.why_unplaced()));
            }
            fail(what);
        }
        for (key, want) in &e.annotations {
            let got = o.annotations.get(key).map(String::as_str);
            if got != Some(want.as_str()) {
                fail(format!(
                    "annotation {key}: expected {want:?}, got {}",
                    shown(got)
                ));
            }
        }
        for (node, want) in &e.reasons {
            match o.verdicts.get(node) {
                Some((_, got)) if got == want => {}
                Some((_, got)) => fail(format!("reason on {node}: expected {want:?}, got {got:?}")),
                None => fail(format!(
                    "reason on {node}: expected {want:?}, got no verdict ({})",
                    o.why_unplaced()
                )),
            }
        }
        if let Some(want) = &e.mutated {
            match &o.admitted {
                None => fail("mutated: the pod was not admitted".to_string()),
                Some(pod) => check_mutated(want, pod, &mut fail),
            }
        }
        if let Some(want) = e.admission {
            match (want, &o.denied) {
                (AdmissionExpectation::Allowed, Some(m)) => {
                    fail(format!("admission: expected allowed, got denied ({m})"))
                }
                (AdmissionExpectation::Denied, None) => {
                    fail("admission: expected denied, got allowed".to_string())
                }
                _ => {}
            }
        }
    }
    out
}

/// Checks the admitted pod against `want`, one message per difference.
fn check_mutated(want: &MutatedExpectation, pod: &api::Pod, fail: &mut impl FnMut(String)) {
    for (key, value) in &want.annotations {
        let got = pod.annotation(key);
        if got != Some(value.as_str()) {
            fail(format!(
                "mutated annotation {key}: expected {value:?}, got {}",
                shown(got)
            ));
        }
    }
    if let Some(class) = &want.runtime_class_name
        && class != &pod.runtime_class_name
    {
        fail(format!(
            "mutated runtimeClassName: expected {}, got {}",
            shown(class.as_deref()),
            shown(pod.runtime_class_name.as_deref())
        ));
    }
    for (side, wanted) in [("limits", &want.limits), ("requests", &want.requests)] {
        for (container, resources) in wanted {
            let Some(c) = pod.all_containers().find(|c| &c.name == container) else {
                fail(format!("mutated {side}: no container {container:?}"));
                continue;
            };
            let pairs = if side == "limits" {
                &c.limits
            } else {
                &c.requests
            };
            for (name, value) in resources {
                let got = api::lookup(pairs, name);
                if got != Some(value.as_str()) {
                    fail(format!(
                        "mutated {side} of {container} {name}: expected {value:?}, got {}",
                        shown(got)
                    ));
                }
            }
        }
    }
}

/// The first difference between two engines' observations, or `None` when they agree. Verdicts
/// are compared on the nodes both engines report (see [`Observation::verdicts`]).
pub fn difference(a: &[Observation], b: &[Observation]) -> Option<String> {
    for (x, y) in a.iter().zip(b) {
        let (mut x, mut y) = (x.comparable(), y.comparable());
        x.verdicts.retain(|node, _| y.verdicts.contains_key(node));
        y.verdicts.retain(|node, _| x.verdicts.contains_key(node));
        if x == y {
            continue;
        }
        let what = if x.denied != y.denied {
            format!(
                "admission {} vs {}",
                shown(x.denied.as_deref()),
                shown(y.denied.as_deref())
            )
        } else if x.admitted != y.admitted {
            format!("admitted pod {:?} vs {:?}", x.admitted, y.admitted)
        } else if x.node != y.node {
            format!(
                "node {} vs {}",
                shown(x.node.as_deref()),
                shown(y.node.as_deref())
            )
        } else if x.annotations != y.annotations {
            format!("annotations {:?} vs {:?}", x.annotations, y.annotations)
        } else if x.verdicts != y.verdicts {
            format!("verdicts {:?} vs {:?}", x.verdicts, y.verdicts)
        } else {
            format!(
                "filter error {} vs {}",
                shown(x.error.as_deref()),
                shown(y.error.as_deref())
            )
        };
        return Some(format!("pod {}: {what}", x.pod));
    }
    if a.len() != b.len() {
        return Some(format!("{} vs {} pods observed", a.len(), b.len()));
    }
    None
}
