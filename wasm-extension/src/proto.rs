//! The protobuf objects of the ABI: a minimal subset of `k8s.io.api.core.v1` (`Pod`, `Node`,
//! `NodeList`) with the field numbers of Kubernetes' `generated.proto`, and their conversion
//! to and from the contract's records ([`hamr_guest::api`]).
//!
//! Only the fields the scheduler reads are declared; every other field of the real message is
//! an unknown field here, which protobuf decoding skips. Encoding (used by hamr's test host)
//! writes the same field numbers, so the bytes are a valid, partial Kubernetes object.
//!
//! | message | fields (number) |
//! | --- | --- |
//! | `Pod` | metadata (1), spec (2), status (3) |
//! | `ObjectMeta` | name (1), namespace (3), uid (5), resourceVersion (6), deletionTimestamp (9), labels (11), annotations (12) |
//! | `PodSpec` | containers (2), nodeName (10), schedulerName (19), initContainers (20), runtimeClassName (29) |
//! | `Container` | name (1), env (7), resources (8), securityContext (15) |
//! | `ResourceRequirements` | limits (1), requests (2), map of `Quantity` (string (1)) |
//! | `PodStatus` | phase (1), initContainerStatuses (10) |
//! | `ContainerStatus` | name (1), state (2) → terminated (3) → exitCode (1) |
//! | `Node` | metadata (1), status (3) → capacity (1), allocatable (2) |
//! | `NodeList` | items (2) |

use std::collections::BTreeMap;

use hamr_guest::api;

/// `k8s.io.apimachinery.pkg.apis.meta.v1.Time`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Time {
    #[prost(int64, optional, tag = "1")]
    pub seconds: Option<i64>,
    #[prost(int32, optional, tag = "2")]
    pub nanos: Option<i32>,
}

/// `k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta` (subset).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ObjectMeta {
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    #[prost(string, optional, tag = "3")]
    pub namespace: Option<String>,
    #[prost(string, optional, tag = "5")]
    pub uid: Option<String>,
    #[prost(string, optional, tag = "6")]
    pub resource_version: Option<String>,
    #[prost(message, optional, tag = "9")]
    pub deletion_timestamp: Option<Time>,
    #[prost(btree_map = "string, string", tag = "11")]
    pub labels: BTreeMap<String, String>,
    #[prost(btree_map = "string, string", tag = "12")]
    pub annotations: BTreeMap<String, String>,
}

/// `k8s.io.apimachinery.pkg.api.resource.Quantity`: the quantity's text.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Quantity {
    #[prost(string, optional, tag = "1")]
    pub string: Option<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ResourceRequirements {
    #[prost(btree_map = "string, message", tag = "1")]
    pub limits: BTreeMap<String, Quantity>,
    #[prost(btree_map = "string, message", tag = "2")]
    pub requests: BTreeMap<String, Quantity>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SecurityContext {
    #[prost(bool, optional, tag = "2")]
    pub privileged: Option<bool>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct EnvVar {
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Container {
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    #[prost(message, repeated, tag = "7")]
    pub env: Vec<EnvVar>,
    #[prost(message, optional, tag = "8")]
    pub resources: Option<ResourceRequirements>,
    #[prost(message, optional, tag = "15")]
    pub security_context: Option<SecurityContext>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSpec {
    #[prost(message, repeated, tag = "2")]
    pub containers: Vec<Container>,
    #[prost(string, optional, tag = "10")]
    pub node_name: Option<String>,
    #[prost(string, optional, tag = "19")]
    pub scheduler_name: Option<String>,
    #[prost(message, repeated, tag = "20")]
    pub init_containers: Vec<Container>,
    #[prost(string, optional, tag = "29")]
    pub runtime_class_name: Option<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerStateTerminated {
    #[prost(int32, optional, tag = "1")]
    pub exit_code: Option<i32>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerState {
    #[prost(message, optional, tag = "3")]
    pub terminated: Option<ContainerStateTerminated>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerStatus {
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    #[prost(message, optional, tag = "2")]
    pub state: Option<ContainerState>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PodStatus {
    #[prost(string, optional, tag = "1")]
    pub phase: Option<String>,
    #[prost(message, repeated, tag = "10")]
    pub init_container_statuses: Vec<ContainerStatus>,
}

/// `k8s.io.api.core.v1.Pod` (subset).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Pod {
    #[prost(message, optional, tag = "1")]
    pub metadata: Option<ObjectMeta>,
    #[prost(message, optional, tag = "2")]
    pub spec: Option<PodSpec>,
    #[prost(message, optional, tag = "3")]
    pub status: Option<PodStatus>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct NodeStatus {
    #[prost(btree_map = "string, message", tag = "1")]
    pub capacity: BTreeMap<String, Quantity>,
    #[prost(btree_map = "string, message", tag = "2")]
    pub allocatable: BTreeMap<String, Quantity>,
}

/// `k8s.io.api.core.v1.Node` (subset).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Node {
    #[prost(message, optional, tag = "1")]
    pub metadata: Option<ObjectMeta>,
    #[prost(message, optional, tag = "3")]
    pub status: Option<NodeStatus>,
}

/// `k8s.io.api.core.v1.NodeList` (items only).
#[derive(Clone, PartialEq, prost::Message)]
pub struct NodeList {
    #[prost(message, repeated, tag = "2")]
    pub items: Vec<Node>,
}

/// The part of a node read to decide whether it changed: name and resourceVersion only, so
/// that an unchanged node costs no decode of its annotations.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NodeHead {
    #[prost(message, optional, tag = "1")]
    pub metadata: Option<MetaHead>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct MetaHead {
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    #[prost(string, optional, tag = "6")]
    pub resource_version: Option<String>,
}

/// The namespace of a pod that names none.
pub const DEFAULT_NAMESPACE: &str = "default";

fn pairs(map: &BTreeMap<String, String>) -> api::Pairs {
    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn quantities(map: &BTreeMap<String, Quantity>) -> api::Pairs {
    map.iter()
        .map(|(k, v)| (k.clone(), v.string.clone().unwrap_or_default()))
        .collect()
}

fn non_empty(s: Option<&String>) -> Option<String> {
    s.filter(|s| !s.is_empty()).cloned()
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

fn container(c: &Container) -> api::Container {
    let empty = ResourceRequirements::default();
    let r = c.resources.as_ref().unwrap_or(&empty);
    api::Container {
        name: c.name.clone().unwrap_or_default(),
        limits: quantities(&r.limits),
        requests: quantities(&r.requests),
        privileged: c
            .security_context
            .as_ref()
            .and_then(|s| s.privileged)
            .unwrap_or(false),
        env_names: c.env.iter().filter_map(|e| e.name.clone()).collect(),
    }
}

impl Pod {
    /// The contract's pod, with the same defaults as hamr's Kubernetes conversion: namespace
    /// `default`, uid `<namespace>/<name>` when absent, empty strings as `None`.
    pub fn to_api(&self) -> api::Pod {
        let empty_meta = ObjectMeta::default();
        let meta = self.metadata.as_ref().unwrap_or(&empty_meta);
        let namespace =
            non_empty(meta.namespace.as_ref()).unwrap_or_else(|| DEFAULT_NAMESPACE.to_string());
        let name = meta.name.clone().unwrap_or_default();
        let uid = non_empty(meta.uid.as_ref()).unwrap_or_else(|| format!("{namespace}/{name}"));
        let spec = self.spec.as_ref();
        let status = self.status.as_ref();
        api::Pod {
            uid,
            namespace,
            name,
            labels: pairs(&meta.labels),
            annotations: pairs(&meta.annotations),
            scheduler_name: non_empty(spec.and_then(|s| s.scheduler_name.as_ref())),
            node_name: non_empty(spec.and_then(|s| s.node_name.as_ref())),
            runtime_class_name: non_empty(spec.and_then(|s| s.runtime_class_name.as_ref())),
            phase: phase(status.and_then(|s| s.phase.as_deref())),
            deleting: meta.deletion_timestamp.is_some(),
            init_containers: spec
                .map(|s| s.init_containers.iter().map(container).collect())
                .unwrap_or_default(),
            containers: spec
                .map(|s| s.containers.iter().map(container).collect())
                .unwrap_or_default(),
            init_container_statuses: status
                .map(|s| {
                    s.init_container_statuses
                        .iter()
                        .map(|c| api::ContainerStatus {
                            name: c.name.clone().unwrap_or_default(),
                            terminated_exit_code: c
                                .state
                                .as_ref()
                                .and_then(|st| st.terminated.as_ref())
                                .and_then(|t| t.exit_code),
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// The protobuf pod of a contract pod (hamr's test host sends these to the guest).
    pub fn from_api(p: &api::Pod) -> Pod {
        let quantities = |pairs: &api::Pairs| -> BTreeMap<String, Quantity> {
            pairs
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        Quantity {
                            string: Some(v.clone()),
                        },
                    )
                })
                .collect()
        };
        let container = |c: &api::Container| Container {
            name: Some(c.name.clone()),
            env: c
                .env_names
                .iter()
                .map(|n| EnvVar {
                    name: Some(n.clone()),
                })
                .collect(),
            resources: Some(ResourceRequirements {
                limits: quantities(&c.limits),
                requests: quantities(&c.requests),
            }),
            security_context: c.privileged.then_some(SecurityContext {
                privileged: Some(true),
            }),
        };
        let phase = match p.phase {
            api::PodPhase::Pending => "Pending",
            api::PodPhase::Running => "Running",
            api::PodPhase::Succeeded => "Succeeded",
            api::PodPhase::Failed => "Failed",
            api::PodPhase::Unknown => "Unknown",
        };
        Pod {
            metadata: Some(ObjectMeta {
                name: Some(p.name.clone()),
                namespace: Some(p.namespace.clone()),
                uid: Some(p.uid.clone()),
                resource_version: None,
                deletion_timestamp: p.deleting.then_some(Time {
                    seconds: Some(0),
                    nanos: None,
                }),
                labels: p.labels.iter().cloned().collect(),
                annotations: p.annotations.iter().cloned().collect(),
            }),
            spec: Some(PodSpec {
                containers: p.containers.iter().map(container).collect(),
                node_name: p.node_name.clone(),
                scheduler_name: p.scheduler_name.clone(),
                init_containers: p.init_containers.iter().map(container).collect(),
                runtime_class_name: p.runtime_class_name.clone(),
            }),
            status: Some(PodStatus {
                phase: Some(phase.to_string()),
                init_container_statuses: p
                    .init_container_statuses
                    .iter()
                    .map(|s| ContainerStatus {
                        name: Some(s.name.clone()),
                        state: s.terminated_exit_code.map(|code| ContainerState {
                            terminated: Some(ContainerStateTerminated {
                                exit_code: Some(code),
                            }),
                        }),
                    })
                    .collect(),
            }),
        }
    }
}

impl Node {
    pub fn to_api(&self) -> api::Node {
        let empty_meta = ObjectMeta::default();
        let meta = self.metadata.as_ref().unwrap_or(&empty_meta);
        let empty_status = NodeStatus::default();
        let status = self.status.as_ref().unwrap_or(&empty_status);
        api::Node {
            name: meta.name.clone().unwrap_or_default(),
            labels: pairs(&meta.labels),
            annotations: pairs(&meta.annotations),
            allocatable: quantities(&status.allocatable),
            capacity: quantities(&status.capacity),
        }
    }

    /// The protobuf node of a contract node, at `resource_version`.
    pub fn from_api(n: &api::Node, resource_version: &str) -> Node {
        let quantities = |pairs: &api::Pairs| -> BTreeMap<String, Quantity> {
            pairs
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        Quantity {
                            string: Some(v.clone()),
                        },
                    )
                })
                .collect()
        };
        Node {
            metadata: Some(ObjectMeta {
                name: Some(n.name.clone()),
                namespace: None,
                uid: None,
                resource_version: Some(resource_version.to_string()),
                deletion_timestamp: None,
                labels: n.labels.iter().cloned().collect(),
                annotations: n.annotations.iter().cloned().collect(),
            }),
            status: Some(NodeStatus {
                capacity: quantities(&n.capacity),
                allocatable: quantities(&n.allocatable),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    /// Bytes written by hand from `generated.proto`'s field numbers (tag = number << 3 | wire
    /// type 2 for strings and messages), as a Kubernetes host would send them, with fields this
    /// subset does not declare (generateName (2), spec.restartPolicy (3), status.hostIP (5)).
    #[test]
    fn decodes_hand_written_kubernetes_bytes_and_skips_unknown_fields() {
        let mut meta = Vec::new();
        meta.extend([0x0a, 0x02, b'p', b'1']); // name (1) = "p1"
        meta.extend([0x12, 0x01, b'g']); // generateName (2), unknown here
        meta.extend([0x1a, 0x02, b'n', b's']); // namespace (3)
        meta.extend([0x2a, 0x01, b'u']); // uid (5)
        // annotations (12): map entry {key (1) = "k", value (2) = "v"}
        meta.extend([0x62, 0x06, 0x0a, 0x01, b'k', 0x12, 0x01, b'v']);
        let mut quantity = vec![0x0a, 0x01, b'2']; // Quantity.string (1) = "2"
        let mut entry = vec![0x0a, 0x0e];
        entry.extend(b"nvidia.com/gpu"); // key (1)
        entry.extend([0x12, quantity.len() as u8]); // value (2)
        entry.append(&mut quantity);
        let mut resources = vec![0x0a, entry.len() as u8]; // limits (1)
        resources.extend(entry);
        let mut ctr = vec![0x0a, 0x01, b'c']; // name (1)
        ctr.extend([0x42, resources.len() as u8]); // resources (8)
        ctr.extend(resources);
        ctr.extend([0x7a, 0x02, 0x10, 0x01]); // securityContext (15) {privileged (2) = true}
        let mut spec = vec![0x12, ctr.len() as u8]; // containers (2)
        spec.extend(ctr);
        spec.extend([0x1a, 0x06]); // restartPolicy (3), unknown here
        spec.extend(b"Always");
        spec.extend([0x9a, 0x01, 0x03]); // schedulerName (19): tag 19<<3|2 = 154 = 0x9a 0x01
        spec.extend(b"hms");
        let mut status = vec![0x0a, 0x07]; // phase (1)
        status.extend(b"Running");
        status.extend([0x2a, 0x01, b'h']); // hostIP (5), unknown here
        let mut pod = vec![0x0a, meta.len() as u8];
        pod.extend(meta);
        pod.extend([0x12, spec.len() as u8]);
        pod.extend(spec);
        pod.extend([0x1a, status.len() as u8]);
        pod.extend(status);

        let p = Pod::decode(pod.as_slice()).expect("valid bytes").to_api();
        assert_eq!(
            (p.name.as_str(), p.namespace.as_str(), p.uid.as_str()),
            ("p1", "ns", "u")
        );
        assert_eq!(p.annotations, vec![("k".to_string(), "v".to_string())]);
        assert_eq!(p.scheduler_name.as_deref(), Some("hms"));
        assert_eq!(p.phase, api::PodPhase::Running);
        assert_eq!(p.containers.len(), 1);
        assert_eq!(p.containers[0].name, "c");
        assert!(p.containers[0].privileged);
        assert_eq!(
            p.containers[0].limits,
            vec![("nvidia.com/gpu".to_string(), "2".to_string())]
        );
    }

    #[test]
    fn pods_and_nodes_round_trip() {
        let pod = api::Pod {
            uid: "u1".into(),
            namespace: "team".into(),
            name: "p".into(),
            labels: vec![("a".into(), "b".into())],
            annotations: vec![("x".into(), "y".into()), ("z".into(), "w".into())],
            scheduler_name: Some("hamr".into()),
            node_name: None,
            runtime_class_name: Some("nvidia".into()),
            phase: api::PodPhase::Running,
            deleting: true,
            init_containers: vec![api::Container {
                name: "init".into(),
                limits: vec![("nvidia.com/gpu".into(), "1".into())],
                ..Default::default()
            }],
            containers: vec![api::Container {
                name: "main".into(),
                limits: vec![("nvidia.com/gpumem".into(), "1000".into())],
                requests: vec![("cpu".into(), "1".into())],
                privileged: true,
                env_names: vec!["A".into()],
            }],
            init_container_statuses: vec![api::ContainerStatus {
                name: "init".into(),
                terminated_exit_code: Some(0),
            }],
        };
        let bytes = Pod::from_api(&pod).encode_to_vec();
        assert_eq!(
            Pod::decode(bytes.as_slice()).expect("decodes").to_api(),
            pod
        );

        let node = api::Node {
            name: "n1".into(),
            labels: vec![("l".into(), "1".into())],
            annotations: vec![("hami.io/node-nvidia-register".into(), "[]".into())],
            allocatable: vec![("nvidia.com/gpu".into(), "4".into())],
            capacity: vec![("nvidia.com/gpu".into(), "8".into())],
        };
        let bytes = Node::from_api(&node, "7").encode_to_vec();
        assert_eq!(
            Node::decode(bytes.as_slice()).expect("decodes").to_api(),
            node
        );
        let head = NodeHead::decode(bytes.as_slice()).expect("decodes");
        let meta = head.metadata.expect("metadata");
        assert_eq!(meta.resource_version.as_deref(), Some("7"));
        assert_eq!(meta.name.as_deref(), Some("n1"));
    }
}
