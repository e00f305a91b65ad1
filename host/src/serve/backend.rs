//! Where the server's writes go: the API server (kube-rs), or an in-memory cluster
//! (`hamr serve --snapshot`, the HTTP conformance engine and the tests). Both take the same
//! four writes: a merge patch of a pod's annotations and labels, a merge patch of a node's
//! annotations (the handshake), a Binding, and an Event.

use std::collections::HashMap;
use std::sync::Mutex;

use hamr_guest::api;
use k8s_openapi::api::core::v1::{Binding, Event, Node, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Map, Value, json};

/// A write the cluster refused, with the object it was for.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{what}: {message}")]
pub struct WriteError {
    pub what: String,
    pub message: String,
}

/// `Normal` or `Warning`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// One Kubernetes Event about a pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodEvent {
    pub namespace: String,
    pub pod: String,
    pub uid: String,
    pub kind: EventType,
    pub reason: &'static str,
    pub message: String,
}

/// Annotations or labels to set (`Some`) or remove (`None`).
pub type Changes = Vec<(String, Option<String>)>;

/// The merge patch body that sets and removes annotations and labels.
pub fn metadata_patch(annotations: &Changes, labels: &Changes) -> Value {
    let map = |changes: &Changes| -> Value {
        Value::Object(
            changes
                .iter()
                .map(|(k, v)| (k.clone(), v.clone().map_or(Value::Null, Value::String)))
                .collect::<Map<_, _>>(),
        )
    };
    let mut metadata = Map::new();
    if !annotations.is_empty() {
        metadata.insert("annotations".into(), map(annotations));
    }
    if !labels.is_empty() {
        metadata.insert("labels".into(), map(labels));
    }
    json!({ "metadata": metadata })
}

/// Writes through the API server.
#[derive(Clone)]
pub struct KubeBackend {
    pub client: kube::Client,
    /// `source.component` and `reportingComponent` of events.
    pub component: String,
    /// `reportingInstance` of events (the pod name).
    pub instance: String,
}

/// Writes into an in-memory cluster: pods by `namespace/name`, nodes by name, and the events
/// emitted.
#[derive(Default)]
pub struct MemoryBackend {
    pods: Mutex<HashMap<String, api::Pod>>,
    nodes: Mutex<HashMap<String, api::Node>>,
    events: Mutex<Vec<PodEvent>>,
    patches: Mutex<Vec<Patched>>,
    node_patches: Mutex<Vec<NodePatched>>,
}

/// One patch written: namespace, name, and the annotations and labels it set.
pub type Patched = (String, String, api::Pairs, api::Pairs);

/// One node patch written: the node and the annotations it set.
pub type NodePatched = (String, api::Pairs);

fn key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

fn set(into: &mut api::Pairs, changes: &Changes) {
    for (k, v) in changes {
        into.retain(|(key, _)| key != k);
        if let Some(v) = v {
            into.push((k.clone(), v.clone()));
        }
    }
}

impl MemoryBackend {
    /// Records a pod as the API server would hold it (the snapshot's pods, or a pod sent to
    /// `/filter` that the snapshot did not have).
    pub fn observe(&self, pod: &api::Pod) {
        let mut pods = self.pods.lock().unwrap_or_else(|e| e.into_inner());
        pods.entry(key(&pod.namespace, &pod.name))
            .or_insert_with(|| pod.clone());
    }

    /// Stores a pod as given (replacing the one of that name).
    pub fn put(&self, pod: &api::Pod) {
        let mut pods = self.pods.lock().unwrap_or_else(|e| e.into_inner());
        pods.insert(key(&pod.namespace, &pod.name), pod.clone());
    }

    /// Forgets the pod with this UID (a scan: pods are kept by name).
    pub fn remove(&self, uid: &str) {
        let mut pods = self.pods.lock().unwrap_or_else(|e| e.into_inner());
        pods.retain(|_, p| p.uid != uid);
    }

    /// Forgets the pod of that namespace and name, at once.
    pub fn remove_named(&self, namespace: &str, name: &str) {
        let mut pods = self.pods.lock().unwrap_or_else(|e| e.into_inner());
        pods.remove(&key(namespace, name));
    }

    /// Stores a node as given (replacing the one of that name).
    pub fn put_node(&self, node: &api::Node) {
        let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        nodes.insert(node.name.clone(), node.clone());
    }

    /// Forgets the node of that name.
    pub fn remove_node(&self, name: &str) {
        let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        nodes.remove(name);
    }

    pub fn node(&self, name: &str) -> Option<api::Node> {
        let nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        nodes.get(name).cloned()
    }

    /// Every node patch written so far, oldest first.
    pub fn node_patches(&self) -> Vec<NodePatched> {
        self.node_patches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Forgets every pod, node, event and patch.
    pub fn clear(&self) {
        self.pods.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.nodes.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.node_patches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.patches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Every patch written so far, oldest first.
    pub fn patches(&self) -> Vec<Patched> {
        self.patches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn pod(&self, namespace: &str, name: &str) -> Option<api::Pod> {
        let pods = self.pods.lock().unwrap_or_else(|e| e.into_inner());
        pods.get(&key(namespace, name)).cloned()
    }

    /// The events emitted so far, oldest first.
    pub fn events(&self) -> Vec<PodEvent> {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn patch(
        &self,
        namespace: &str,
        name: &str,
        annotations: &Changes,
        labels: &Changes,
    ) -> Result<api::Pod, WriteError> {
        let mut pods = self.pods.lock().unwrap_or_else(|e| e.into_inner());
        let pod = pods.get_mut(&key(namespace, name)).ok_or(WriteError {
            what: format!("patch pod {namespace}/{name}"),
            message: "pods not found".into(),
        })?;
        set(&mut pod.annotations, annotations);
        set(&mut pod.labels, labels);
        let only_set = |c: &Changes| -> api::Pairs {
            c.iter()
                .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
                .collect()
        };
        self.patches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((
                namespace.to_string(),
                name.to_string(),
                only_set(annotations),
                only_set(labels),
            ));
        tracing::info!(pod = %key(namespace, name), patch = %metadata_patch(annotations, labels), "patched pod (in memory)");
        Ok(pod.clone())
    }

    fn patch_node(&self, name: &str, annotations: &Changes) -> Result<api::Node, WriteError> {
        let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        let node = nodes.get_mut(name).ok_or(WriteError {
            what: format!("patch node {name}"),
            message: "nodes not found".into(),
        })?;
        set(&mut node.annotations, annotations);
        let written: api::Pairs = annotations
            .iter()
            .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
            .collect();
        self.node_patches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((name.to_string(), written));
        tracing::info!(node = name, patch = %metadata_patch(annotations, &Vec::new()), "patched node (in memory)");
        Ok(node.clone())
    }

    fn bind(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
        node: &str,
    ) -> Result<api::Pod, WriteError> {
        let mut pods = self.pods.lock().unwrap_or_else(|e| e.into_inner());
        let what = format!("bind pod {namespace}/{name} to {node}");
        let pod = pods.get_mut(&key(namespace, name)).ok_or(WriteError {
            what: what.clone(),
            message: "pods not found".into(),
        })?;
        if pod.uid != uid {
            return Err(WriteError {
                what,
                message: format!("uid {uid} does not match the pod's uid {}", pod.uid),
            });
        }
        if let Some(bound) = pod.node_name.as_deref().filter(|n| !n.is_empty()) {
            return Err(WriteError {
                what,
                message: format!("pod is already assigned to node {bound:?}"),
            });
        }
        pod.node_name = Some(node.to_string());
        tracing::info!(pod = %key(namespace, name), node, "bound pod (in memory)");
        Ok(pod.clone())
    }
}

/// The server's writer.
pub enum Backend {
    Kube(KubeBackend),
    Memory(MemoryBackend),
}

impl Backend {
    /// Sets and removes a pod's annotations and labels in one merge patch. The in-memory
    /// cluster returns the pod as changed, for the server to feed back as a watch would.
    pub async fn patch_pod(
        &self,
        namespace: &str,
        name: &str,
        annotations: &Changes,
        labels: &Changes,
    ) -> Result<Option<api::Pod>, WriteError> {
        match self {
            Backend::Memory(m) => m.patch(namespace, name, annotations, labels).map(Some),
            Backend::Kube(k) => {
                let pods: Api<Pod> = Api::namespaced(k.client.clone(), namespace);
                pods.patch(
                    name,
                    &PatchParams::default(),
                    &Patch::Merge(metadata_patch(annotations, labels)),
                )
                .await
                .map(|_| None)
                .map_err(|e| WriteError {
                    what: format!("patch pod {namespace}/{name}"),
                    message: e.to_string(),
                })
            }
        }
    }

    /// Sets and removes a node's annotations in one merge patch (the handshake). The in-memory
    /// cluster returns the node as changed, for the server to feed back as a watch would.
    pub async fn patch_node(
        &self,
        name: &str,
        annotations: &Changes,
    ) -> Result<Option<api::Node>, WriteError> {
        match self {
            Backend::Memory(m) => m.patch_node(name, annotations).map(Some),
            Backend::Kube(k) => {
                let nodes: Api<Node> = Api::all(k.client.clone());
                nodes
                    .patch(
                        name,
                        &PatchParams::default(),
                        &Patch::Merge(metadata_patch(annotations, &Vec::new())),
                    )
                    .await
                    .map(|_| None)
                    .map_err(|e| WriteError {
                        what: format!("patch node {name}"),
                        message: e.to_string(),
                    })
            }
        }
    }

    /// Creates the pod's Binding to `node`.
    pub async fn bind(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
        node: &str,
    ) -> Result<Option<api::Pod>, WriteError> {
        match self {
            Backend::Memory(m) => m.bind(namespace, name, uid, node).map(Some),
            Backend::Kube(k) => {
                let pods: Api<Pod> = Api::namespaced(k.client.clone(), namespace);
                let binding = Binding {
                    metadata: ObjectMeta {
                        name: Some(name.to_string()),
                        namespace: Some(namespace.to_string()),
                        uid: Some(uid.to_string()),
                        ..ObjectMeta::default()
                    },
                    target: ObjectReference {
                        api_version: Some("v1".into()),
                        kind: Some("Node".into()),
                        name: Some(node.to_string()),
                        ..ObjectReference::default()
                    },
                };
                pods.create_subresource::<Binding, Value>(
                    "binding",
                    name,
                    &PostParams::default(),
                    &binding,
                )
                .await
                .map(|_| None)
                .map_err(|e| WriteError {
                    what: format!("bind pod {namespace}/{name} to {node}"),
                    message: e.to_string(),
                })
            }
        }
    }

    /// Emits a core/v1 Event about a pod; a failure is logged, never fatal.
    pub async fn event(&self, event: PodEvent) {
        match self {
            Backend::Memory(m) => {
                tracing::info!(pod = %key(&event.namespace, &event.pod), reason = event.reason,
                    kind = event.kind.as_str(), message = %event.message, "event");
                m.events
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(event);
            }
            Backend::Kube(k) => {
                let events: Api<Event> = Api::namespaced(k.client.clone(), &event.namespace);
                let body = kube_event(k, &event, chrono_now());
                if let Err(e) = events.create(&PostParams::default(), &body).await {
                    tracing::warn!(pod = %key(&event.namespace, &event.pod), reason = event.reason,
                        error = %e, "could not emit event");
                }
            }
        }
    }
}

/// The current time as Kubernetes writes it.
fn chrono_now() -> k8s_openapi::jiff::Timestamp {
    k8s_openapi::jiff::Timestamp::now()
}

/// The core/v1 Event for `event`, as client-go's recorder would write it.
pub fn kube_event(k: &KubeBackend, event: &PodEvent, now: k8s_openapi::jiff::Timestamp) -> Event {
    let action = match event.reason {
        r if r.starts_with("Binding") => "Binding",
        _ => "Scheduling",
    };
    crate::k8s::pod_event(
        &crate::k8s::PodEventText {
            namespace: &event.namespace,
            pod: &event.pod,
            uid: &event.uid,
            kind: event.kind.as_str(),
            reason: event.reason,
            message: &event.message,
            action,
            component: &k.component,
            host: None,
            instance: Some(&k.instance),
        },
        now,
    )
}
