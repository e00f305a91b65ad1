//! Kubernetes objects (k8s-openapi types) to the contract's plain records ([`hamr_guest::api`]),
//! and a pod record back to a Kubernetes pod. The host converts what its watches and files hold;
//! the node agent converts the pods bound to its node, to build a guest ledger natively. Both use
//! this one mapping.
//!
//! The conversion is total: every object converts, and what the guest reads is copied verbatim
//! (quantities stay strings; the guest parses them and names the field when one is malformed).
//! Defaults follow the WIT: namespace `default`, phase `pending`, empty strings become `None`.
//!
//! ```
//! # use k8s_openapi::api::core::v1::Pod;
//! let pod = Pod {
//!     metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
//!         name: Some("p1".into()),
//!         ..Default::default()
//!     },
//!     ..Default::default()
//! };
//! let record = hamr_k8s_convert::pod(&pod);
//! assert_eq!((record.namespace.as_str(), record.uid.as_str()), ("default", "default/p1"));
//! ```

use std::collections::BTreeMap;

use hamr_guest::api;
use k8s_openapi::api::core::v1::{Container, Node, Pod, ResourceQuota};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// The namespace of an object that names none.
pub const DEFAULT_NAMESPACE: &str = "default";

fn pairs(map: Option<&BTreeMap<String, String>>) -> api::Pairs {
    map.into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn quantities(map: Option<&BTreeMap<String, Quantity>>) -> api::Pairs {
    map.into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect()
}

/// `Some(s)` unless `s` is absent or empty.
fn non_empty(s: Option<&String>) -> Option<String> {
    s.filter(|s| !s.is_empty()).cloned()
}

fn namespace(ns: Option<&String>) -> String {
    non_empty(ns).unwrap_or_else(|| DEFAULT_NAMESPACE.to_string())
}

/// A node: name, labels, annotations, `status.allocatable` and `status.capacity`.
pub fn node(n: &Node) -> api::Node {
    let status = n.status.as_ref();
    api::Node {
        name: n.metadata.name.clone().unwrap_or_default(),
        labels: pairs(n.metadata.labels.as_ref()),
        annotations: pairs(n.metadata.annotations.as_ref()),
        allocatable: quantities(status.and_then(|s| s.allocatable.as_ref())),
        capacity: quantities(status.and_then(|s| s.capacity.as_ref())),
    }
}

fn container(c: &Container) -> api::Container {
    let resources = c.resources.as_ref();
    api::Container {
        name: c.name.clone(),
        limits: quantities(resources.and_then(|r| r.limits.as_ref())),
        requests: quantities(resources.and_then(|r| r.requests.as_ref())),
        privileged: c
            .security_context
            .as_ref()
            .and_then(|s| s.privileged)
            .unwrap_or(false),
        env_names: c.env.iter().flatten().map(|e| e.name.clone()).collect(),
    }
}

fn phase(p: Option<&str>) -> api::PodPhase {
    match p {
        None | Some("") | Some("Pending") => api::PodPhase::Pending,
        Some("Running") => api::PodPhase::Running,
        Some("Succeeded") => api::PodPhase::Succeeded,
        Some("Failed") => api::PodPhase::Failed,
        Some(_) => api::PodPhase::Unknown,
    }
}

/// A pod. The uid is `<namespace>/<name>` when the object has none (hand-written files), so
/// that every pod has an identity in the ledger.
pub fn pod(p: &Pod) -> api::Pod {
    let meta = &p.metadata;
    let namespace = namespace(meta.namespace.as_ref());
    let name = meta.name.clone().unwrap_or_default();
    let uid = non_empty(meta.uid.as_ref()).unwrap_or_else(|| format!("{namespace}/{name}"));
    let spec = p.spec.as_ref();
    let status = p.status.as_ref();
    api::Pod {
        uid,
        namespace,
        name,
        labels: pairs(meta.labels.as_ref()),
        annotations: pairs(meta.annotations.as_ref()),
        scheduler_name: non_empty(spec.and_then(|s| s.scheduler_name.as_ref())),
        node_name: non_empty(spec.and_then(|s| s.node_name.as_ref())),
        runtime_class_name: non_empty(spec.and_then(|s| s.runtime_class_name.as_ref())),
        phase: phase(status.and_then(|s| s.phase.as_deref())),
        deleting: meta.deletion_timestamp.is_some(),
        init_containers: spec
            .and_then(|s| s.init_containers.as_ref())
            .into_iter()
            .flatten()
            .map(container)
            .collect(),
        containers: spec
            .map(|s| s.containers.iter().map(container).collect())
            .unwrap_or_default(),
        init_container_statuses: status
            .and_then(|s| s.init_container_statuses.as_ref())
            .into_iter()
            .flatten()
            .map(|s| api::ContainerStatus {
                name: s.name.clone(),
                terminated_exit_code: s
                    .state
                    .as_ref()
                    .and_then(|st| st.terminated.as_ref())
                    .map(|t| t.exit_code),
            })
            .collect(),
    }
}

/// A ResourceQuota: namespace, name and `spec.hard`.
pub fn quota(q: &ResourceQuota) -> api::Quota {
    api::Quota {
        namespace: namespace(q.metadata.namespace.as_ref()),
        name: q.metadata.name.clone().unwrap_or_default(),
        hard: quantities(q.spec.as_ref().and_then(|s| s.hard.as_ref())),
    }
}

/// The pod as the cluster sees it once placed: the decision's annotations and labels merged
/// in (a key already present is replaced), `spec.nodeName` set and phase `running`.
pub fn placed(pod: &api::Pod, decision: &api::Decision) -> api::Pod {
    let mut out = pod.clone();
    merge(
        &mut out.annotations,
        decision.annotations.iter().map(|(k, v)| (k, v)),
    );
    merge(&mut out.labels, decision.labels.iter().map(|(k, v)| (k, v)));
    out.node_name = Some(decision.node.clone());
    out.phase = api::PodPhase::Running;
    out
}

/// Sets each key of `from` in `into`, replacing a present one (a merge patch of a string map).
pub fn merge<K: AsRef<str>, V: AsRef<str>>(
    into: &mut api::Pairs,
    from: impl IntoIterator<Item = (K, V)>,
) {
    for (k, v) in from {
        let (k, v) = (k.as_ref(), v.as_ref());
        match into.iter_mut().find(|(key, _)| key == k) {
            Some(slot) => slot.1 = v.to_string(),
            None => into.push((k.to_string(), v.to_string())),
        }
    }
}

/// The Kubernetes pod for a contract record: the inverse of [`pod`] on every field the
/// record carries (the HTTP conformance engine sends scenario pods over the wire with it).
pub fn to_pod(p: &api::Pod) -> Pod {
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateTerminated, ContainerStatus, EnvVar, PodSpec, PodStatus,
        ResourceRequirements, SecurityContext,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
    let map = |pairs: &api::Pairs| -> Option<BTreeMap<String, String>> {
        (!pairs.is_empty()).then(|| pairs.iter().cloned().collect())
    };
    let qmap = |pairs: &api::Pairs| -> Option<BTreeMap<String, Quantity>> {
        (!pairs.is_empty()).then(|| {
            pairs
                .iter()
                .map(|(k, v)| (k.clone(), Quantity(v.clone())))
                .collect()
        })
    };
    let container = |c: &api::Container| Container {
        name: c.name.clone(),
        resources: (!c.limits.is_empty() || !c.requests.is_empty()).then(|| ResourceRequirements {
            limits: qmap(&c.limits),
            requests: qmap(&c.requests),
            ..Default::default()
        }),
        security_context: c.privileged.then(|| SecurityContext {
            privileged: Some(true),
            ..Default::default()
        }),
        env: (!c.env_names.is_empty()).then(|| {
            c.env_names
                .iter()
                .map(|n| EnvVar {
                    name: n.clone(),
                    ..Default::default()
                })
                .collect()
        }),
        ..Default::default()
    };
    let phase = match p.phase {
        api::PodPhase::Pending => "Pending",
        api::PodPhase::Running => "Running",
        api::PodPhase::Succeeded => "Succeeded",
        api::PodPhase::Failed => "Failed",
        api::PodPhase::Unknown => "Unknown",
    };
    Pod {
        metadata: ObjectMeta {
            name: Some(p.name.clone()),
            namespace: Some(p.namespace.clone()),
            uid: Some(p.uid.clone()),
            labels: map(&p.labels),
            annotations: map(&p.annotations),
            deletion_timestamp: p
                .deleting
                .then_some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)),
            ..Default::default()
        },
        spec: Some(PodSpec {
            scheduler_name: p.scheduler_name.clone(),
            node_name: p.node_name.clone(),
            runtime_class_name: p.runtime_class_name.clone(),
            init_containers: (!p.init_containers.is_empty())
                .then(|| p.init_containers.iter().map(container).collect()),
            containers: p.containers.iter().map(container).collect(),
            ..Default::default()
        }),
        status: Some(PodStatus {
            phase: Some(phase.to_string()),
            init_container_statuses: (!p.init_container_statuses.is_empty()).then(|| {
                p.init_container_statuses
                    .iter()
                    .map(|s| ContainerStatus {
                        name: s.name.clone(),
                        state: s.terminated_exit_code.map(|code| ContainerState {
                            terminated: Some(ContainerStateTerminated {
                                exit_code: code,
                                ..Default::default()
                            }),
                            ..Default::default()
                        }),
                        ..Default::default()
                    })
                    .collect()
            }),
            ..Default::default()
        }),
    }
}

#[cfg(test)]
mod tests;

/// What a core/v1 Event about a pod says and who writes it ([`pod_event`]).
#[derive(Clone, Copy, Debug)]
pub struct PodEventText<'a> {
    pub namespace: &'a str,
    pub pod: &'a str,
    /// The pod's UID; empty when unknown.
    pub uid: &'a str,
    /// `Normal` or `Warning`.
    pub kind: &'a str,
    pub reason: &'a str,
    pub message: &'a str,
    /// What was being done: `Scheduling`, `Binding`, `Allocate`.
    pub action: &'a str,
    /// `source.component` and `reportingComponent`.
    pub component: &'a str,
    /// `source.host` (a node agent's node), if any.
    pub host: Option<&'a str>,
    /// `reportingInstance`, if any.
    pub instance: Option<&'a str>,
}

/// The core/v1 Event about a pod at `now`, as client-go's recorder writes one (the scheduler's
/// and the node agent's events alike).
pub fn pod_event(
    e: &PodEventText<'_>,
    now: k8s_openapi::jiff::Timestamp,
) -> k8s_openapi::api::core::v1::Event {
    use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
    let some = |s: &str| Some(s.to_string());
    Event {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}.", e.pod)),
            namespace: some(e.namespace),
            ..ObjectMeta::default()
        },
        involved_object: ObjectReference {
            api_version: some("v1"),
            kind: some("Pod"),
            name: some(e.pod),
            namespace: some(e.namespace),
            uid: some(e.uid).filter(|u| !u.is_empty()),
            ..ObjectReference::default()
        },
        reason: some(e.reason),
        message: some(e.message),
        type_: some(e.kind),
        source: Some(EventSource {
            component: some(e.component),
            host: e.host.map(str::to_string),
        }),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        event_time: Some(MicroTime(now)),
        count: Some(1),
        action: some(e.action),
        reporting_component: some(e.component),
        reporting_instance: e.instance.map(str::to_string),
        ..Event::default()
    }
}
