//! Kubernetes pods and nodes (k8s-openapi) to the guest's plain records ([`hamr_guest::api`]),
//! so that the agent can build a guest [`Ledger`](hamr_guest::ledger::Ledger) natively from the
//! pods bound to its node.
//!
//! The conversion copies what the ledger reads (annotations, phase, containers with their
//! limits, init container exit codes) and follows the WIT's defaults: namespace `default`, phase
//! `Pending`, and a uid of `<namespace>/<name>` for objects without one. The host has the same
//! mapping for its watches (`host/src/k8s.rs`); the agent keeps its own so that it does not
//! link the host's wasm runtime.

use std::collections::BTreeMap;

use hamr_guest::api;
use k8s_openapi::api::core::v1::{Container, Node, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

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

fn non_empty(s: Option<&String>) -> Option<String> {
    s.filter(|s| !s.is_empty()).cloned()
}

/// A node: name, labels, annotations, allocatable and capacity.
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

/// A pod as the guest reads it.
///
/// ```
/// # use k8s_openapi::api::core::v1::Pod;
/// let pod: Pod = serde_json::from_str(r#"{"metadata":{"name":"p1"}}"#).unwrap();
/// let record = hamr_node_agent::k8s::pod(&pod);
/// assert_eq!((record.namespace.as_str(), record.uid.as_str()), ("default", "default/p1"));
/// ```
pub fn pod(p: &Pod) -> api::Pod {
    let meta = &p.metadata;
    let namespace = non_empty(meta.namespace.as_ref()).unwrap_or_else(|| "default".to_string());
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
