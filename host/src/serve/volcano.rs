//! Volcano's extender plugin verbs (`/volcano/...`), with Volcano's JSON shapes (interfaces.md
//! §3.3). Volcano calls `predicate` per (task, node), `prioritize` per task with a batch of
//! nodes, and `allocate` / `deallocate` when its session assigns or takes back a task's node;
//! Volcano binds the pod itself.
//!
//! - predicate: the guest's verdict for that node (no allocation is assumed);
//! - prioritize: the guest's 0..=100 scores;
//! - allocate: the guest reserves the task's node (its cards chosen and assumed) and the
//!   decision annotations are patched onto the pod, as Volcano's deviceshare plugin writes them;
//! - deallocate: the reservation is given back and the decision taken off the pod.
//!
//! `TaskInfo` and `NodeInfo` are Volcano's internal structs marshalled without tags; only the
//! fields read here are decoded (`Pod`, `NodeName` of a task; `Name` of a node), any case.

use std::collections::BTreeMap;
use std::sync::Arc;

use hamr_guest::api::{self, Scheduler};
use k8s_openapi::api::core::v1::Pod;
use serde::Serialize;
use serde_json::{Map, Value};

use super::Server;
use super::wire::{WireError, fold, object};
use crate::k8s;

/// Volcano's status codes (same numbering as Kubernetes).
pub const SUCCESS: i32 = 0;
pub const UNSCHEDULABLE: i32 = 2;
pub const UNSCHEDULABLE_AND_UNRESOLVABLE: i32 = 3;

fn lower(map: &Map<String, Value>) -> Map<String, Value> {
    map.iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .collect()
}

fn section<'a>(
    map: &'a Map<String, Value>,
    key: &'static str,
) -> Result<&'a Map<String, Value>, WireError> {
    match map.get(key) {
        Some(Value::Object(m)) => Ok(m),
        Some(_) => Err(WireError::Field {
            field: key.to_string(),
            message: "expected an object".into(),
        }),
        None => Err(WireError::Missing(key)),
    }
}

/// The part of a `TaskInfo` hamr reads.
#[derive(Clone, Debug)]
pub struct Task {
    pub pod: Pod,
    /// `NodeName`: the node Volcano assigned (allocate).
    pub node_name: String,
}

impl Task {
    fn parse(task: &Map<String, Value>) -> Result<Task, WireError> {
        let t = lower(task);
        let pod = match t.get("pod") {
            None | Some(Value::Null) => return Err(WireError::Missing("task.Pod")),
            Some(v) => object::<Pod>(v, "task.Pod")?,
        };
        let node_name = t
            .get("nodename")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        Ok(Task { pod, node_name })
    }
}

fn node_name(node: &Map<String, Value>, field: &str) -> Result<String, WireError> {
    let n = lower(node);
    n.get("name")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .ok_or_else(|| WireError::Field {
            field: format!("{field}.Name"),
            message: "missing".into(),
        })
}

/// `{"task": TaskInfo, "node": NodeInfo}`.
pub fn parse_predicate(body: &[u8]) -> Result<(Task, String), WireError> {
    let map = fold(body)?;
    let task = Task::parse(section(&map, "task")?)?;
    let node = node_name(section(&map, "node")?, "node")?;
    Ok((task, node))
}

/// `{"task": TaskInfo, "nodes": [NodeInfo]}`.
pub fn parse_prioritize(body: &[u8]) -> Result<(Task, Vec<String>), WireError> {
    let map = fold(body)?;
    let task = Task::parse(section(&map, "task")?)?;
    let nodes = match map.get("nodes") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, n)| match n {
                Value::Object(m) => node_name(m, &format!("nodes[{i}]")),
                _ => Err(WireError::Field {
                    field: format!("nodes[{i}]"),
                    message: "expected an object".into(),
                }),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(WireError::Field {
                field: "nodes".into(),
                message: "expected an array".into(),
            });
        }
    };
    Ok((task, nodes))
}

/// `{"task": TaskInfo}`.
pub fn parse_task(body: &[u8]) -> Result<Task, WireError> {
    let map = fold(body)?;
    Task::parse(section(&map, "task")?)
}

/// The predicate answer: `status` carries the message, empty when the node fits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PredicateResponse {
    pub status: String,
    pub code: i32,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PrioritizeResponse {
    #[serde(rename = "nodeScore")]
    pub node_score: BTreeMap<String, f64>,
    #[serde(rename = "errorMessage")]
    pub error_message: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct EventResponse {
    #[serde(rename = "errorMessage")]
    pub error_message: String,
}

impl Server {
    /// `/volcano/predicate`.
    pub async fn volcano_predicate(
        self: &Arc<Self>,
        task: Task,
        node: String,
    ) -> PredicateResponse {
        if !self.wait_synced().await {
            return PredicateResponse {
                status: "hamr's caches have not synced yet".into(),
                code: 1,
            };
        }
        let pod = k8s::pod(&task.pod);
        let now = self.clock.now();
        let n = node.clone();
        let explained = self.with_engine(move |e| e.explain(&pod, &[n], now)).await;
        match explained {
            Err(e) => PredicateResponse {
                status: super::fault(e),
                code: 1,
            },
            Ok(Err(e)) => PredicateResponse {
                status: e.to_string(),
                code: UNSCHEDULABLE_AND_UNRESOLVABLE,
            },
            Ok(Ok(list)) => match list.into_iter().next().map(|x| x.verdict) {
                None => PredicateResponse {
                    status: String::new(),
                    code: SUCCESS,
                },
                Some(v) => match v.code {
                    api::Code::Success => PredicateResponse {
                        status: String::new(),
                        code: SUCCESS,
                    },
                    api::Code::Unschedulable => PredicateResponse {
                        status: v.reason,
                        code: UNSCHEDULABLE,
                    },
                    api::Code::UnschedulableAndUnresolvable => PredicateResponse {
                        status: v.reason,
                        code: UNSCHEDULABLE_AND_UNRESOLVABLE,
                    },
                },
            },
        }
    }

    /// `/volcano/prioritize`.
    pub async fn volcano_prioritize(
        self: &Arc<Self>,
        task: Task,
        nodes: Vec<String>,
    ) -> PrioritizeResponse {
        let pod = k8s::pod(&task.pod);
        let now = self.clock.now();
        match self.with_engine(move |e| e.score(&pod, &nodes, now)).await {
            Err(e) => PrioritizeResponse {
                node_score: BTreeMap::new(),
                error_message: super::fault(e),
            },
            Ok(Err(e)) => PrioritizeResponse {
                node_score: BTreeMap::new(),
                error_message: e.to_string(),
            },
            Ok(Ok(scores)) => PrioritizeResponse {
                node_score: scores
                    .into_iter()
                    .map(|s| (s.node, f64::from(s.score)))
                    .collect(),
                error_message: String::new(),
            },
        }
    }

    /// `/volcano/allocate`: reserve the assigned node's cards and write the decision.
    pub async fn volcano_allocate(self: &Arc<Self>, task: Task) -> EventResponse {
        if !self.leader() {
            return EventResponse {
                error_message: "this hamr replica is not the leader; it does not decide".into(),
            };
        }
        if task.node_name.is_empty() {
            return EventResponse {
                error_message: "task.NodeName is empty: no node to allocate on".into(),
            };
        }
        let pod = k8s::pod(&task.pod);
        if let super::Backend::Memory(m) = &self.backend {
            m.observe(&pod);
        }
        let now = self.clock.now();
        let (p, node) = (pod.clone(), task.node_name.clone());
        let reserved = self.with_engine(move |e| e.reserve(&p, &node, now)).await;
        let decision = match reserved {
            Err(e) => {
                return EventResponse {
                    error_message: super::fault(e),
                };
            }
            Ok(Err(e)) => {
                return EventResponse {
                    error_message: e.to_string(),
                };
            }
            Ok(Ok(api::Reservation::Rejected(v))) => {
                return EventResponse {
                    error_message: format!("node {} does not fit: {}", v.node, v.reason),
                };
            }
            Ok(Ok(api::Reservation::Reserved(d))) => d,
        };
        if decision.annotations.is_empty() && decision.labels.is_empty() {
            // Not a device pod: nothing to write.
            return EventResponse::default();
        }
        match self.write_decision(&pod, &decision).await {
            Ok(()) => EventResponse::default(),
            Err(message) => EventResponse {
                error_message: message,
            },
        }
    }

    /// `/volcano/deallocate`: give the reservation back and take the decision off the pod.
    pub async fn volcano_deallocate(self: &Arc<Self>, task: Task) -> EventResponse {
        let pod = k8s::pod(&task.pod);
        let uid = pod.uid.clone();
        let pending = {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            let p = pending.remove(&uid);
            self.metrics.reservations_pending.set(pending.len() as i64);
            p
        };
        let u = uid.clone();
        let _ = self.with_engine(move |e| e.unreserve(&u)).await;
        if let Some(p) = pending
            && let Err(e) = self.take_off(&p, Vec::new()).await
        {
            return EventResponse {
                error_message: e.to_string(),
            };
        }
        EventResponse::default()
    }
}
