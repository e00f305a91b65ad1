//! Where Allocate reads the scheduler's decisions: the pods bound to this node, with their
//! annotations. [`PodSource`] has an in-memory implementation for tests and demos and one over
//! the API server.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use hamr_guest::api;
use k8s_openapi::api::core::v1::{Container, Event, Node, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde::Serialize;

use crate::lock::{NODE_LOCK, NodeLockState};

/// What Allocate needs to know about a pod.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodInfo {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// `status.phase` (`Pending` while kubelet admits it).
    pub phase: String,
    /// The pod has a deletion timestamp (its MIG instances are no longer its own).
    pub deleting: bool,
    pub annotations: BTreeMap<String, String>,
    /// Init containers, then regular containers: the order of HAMi's device-list annotation.
    pub containers: Vec<ContainerInfo>,
    /// How many of `containers` are init containers (Volcano's lists skip them).
    pub init_containers: usize,
    /// The pod as the guest library reads it (scheduler, node, requests), for completing a
    /// decision the scheduler could not write ([`crate::complete`]). Its annotations are those
    /// of `annotations`.
    pub record: api::Pod,
}

/// One container, in annotation order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerInfo {
    pub name: String,
    /// The container sets `CUDA_DISABLE_CONTROL` to a true value: no `/etc/ld.so.preload` mount.
    pub disable_control: bool,
}

impl PodInfo {
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.get(key).map(String::as_str)
    }

    /// The pod as the API server holds it once `patch` is merged into its metadata.
    pub fn apply(&mut self, patch: &MetaPatch) {
        self.annotations.extend(patch.annotations.clone());
        hamr_k8s_convert::merge(&mut self.record.annotations, &patch.annotations);
        hamr_k8s_convert::merge(&mut self.record.labels, &patch.labels);
    }
}

/// Why pods could not be read or updated.
#[derive(Debug, thiserror::Error)]
pub enum PodSourceError {
    /// Listing the node's pods failed.
    #[error("listing pods on node {node}: {source}")]
    List { node: String, source: kube::Error },
    /// Patching a pod's annotations failed.
    #[error("patching pod {namespace}/{name}: {source}")]
    Patch {
        namespace: String,
        name: String,
        source: kube::Error,
    },
    /// The pod to update is not there (in-memory source).
    #[error("pod {namespace}/{name} not found")]
    NotFound { namespace: String, name: String },
    /// Reading one pod failed (other than its absence).
    #[error("reading pod {namespace}/{name}: {source}")]
    Get {
        namespace: String,
        name: String,
        source: kube::Error,
    },
    /// Reading or patching our Node failed.
    #[error("node {node}: {source}")]
    Node { node: String, source: kube::Error },
    /// The Node changed since it was read (HTTP 409 on a patch with its `resourceVersion`);
    /// read it again and retry.
    #[error("node {node} changed since it was read (resourceVersion {resource_version})")]
    Conflict {
        node: String,
        resource_version: String,
    },
}

/// One merge patch of a pod's metadata: annotations and labels to set. It serialises as the
/// patch's `metadata`, each map left out when empty.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MetaPatch {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl MetaPatch {
    /// The JSON merge patch body: `{"metadata":{"annotations":{..},"labels":{..}}}`.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({ "metadata": self })
    }
}

/// A Warning event about a pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodWarning {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// CamelCase, e.g. `HamrDeviceDecisionFailed`.
    pub reason: String,
    pub message: String,
}

/// The pods Allocate chooses from, and the write-back of its progress.
pub trait PodSource: Send + Sync + 'static {
    /// Pods whose `spec.nodeName` is `node`.
    fn pods_on(
        &self,
        node: &str,
    ) -> impl Future<Output = Result<Vec<PodInfo>, PodSourceError>> + Send;

    /// Merges `annotations` into the pod's annotations.
    fn annotate(
        &self,
        namespace: &str,
        name: &str,
        annotations: BTreeMap<String, String>,
    ) -> impl Future<Output = Result<(), PodSourceError>> + Send {
        let patch = MetaPatch {
            annotations,
            labels: BTreeMap::new(),
        };
        self.patch(namespace, name, patch)
    }

    /// Merges annotations and labels into the pod's metadata with one merge patch.
    fn patch(
        &self,
        namespace: &str,
        name: &str,
        patch: MetaPatch,
    ) -> impl Future<Output = Result<(), PodSourceError>> + Send;

    /// Emits a Warning event about a pod; a failure is logged, never returned.
    fn warn(&self, warning: PodWarning) -> impl Future<Output = ()> + Send;

    /// One pod; `None` when it does not exist.
    fn pod(
        &self,
        namespace: &str,
        name: &str,
    ) -> impl Future<Output = Result<Option<PodInfo>, PodSourceError>> + Send;

    /// The node's lock annotation `hami.io/mutex.lock` and the Node's `resourceVersion`
    /// ([`crate::lock`]).
    fn node_lock(
        &self,
        node: &str,
    ) -> impl Future<Output = Result<NodeLockState, PodSourceError>> + Send;

    /// Removes the node's lock annotation, provided the Node is still at `resource_version`
    /// ([`PodSourceError::Conflict`] otherwise).
    fn remove_node_lock(
        &self,
        node: &str,
        resource_version: &str,
    ) -> impl Future<Output = Result<(), PodSourceError>> + Send;
}

/// Pods held in memory (tests, `--fake` demos). Clones share the same pods, node locks, and
/// the patches and warnings written, in order.
#[derive(Clone, Default)]
pub struct MemoryPods {
    pods: Arc<Mutex<Vec<(String, PodInfo)>>>,
    log: Arc<Mutex<Written>>,
    locks: Arc<Mutex<BTreeMap<String, MemoryNode>>>,
}

/// A node's lock annotation and a resourceVersion bumped on every change.
#[derive(Clone, Default)]
struct MemoryNode {
    lock: Option<String>,
    version: u64,
}

#[derive(Default)]
struct Written {
    patches: Vec<(String, MetaPatch)>,
    warnings: Vec<PodWarning>,
    /// Calls of `pods_on`.
    lists: usize,
}

impl MemoryPods {
    /// Adds a pod bound to `node`.
    pub fn insert(&self, node: &str, pod: PodInfo) {
        self.lock().push((node.to_string(), pod));
    }

    /// The pod as it is now (to observe the write-back).
    pub fn get(&self, namespace: &str, name: &str) -> Option<PodInfo> {
        self.lock()
            .iter()
            .find(|(_, p)| p.namespace == namespace && p.name == name)
            .map(|(_, p)| p.clone())
    }

    /// The patches written so far, as `(namespace/name, patch)`.
    pub fn patches(&self) -> Vec<(String, MetaPatch)> {
        self.written().patches.clone()
    }

    /// The warnings emitted so far.
    pub fn warnings(&self) -> Vec<PodWarning> {
        self.written().warnings.clone()
    }

    /// How many times the node's pods were listed.
    pub fn lists(&self) -> usize {
        self.written().lists
    }

    /// Sets (or, with `None`, removes) the node's lock annotation, as a scheduler would.
    pub fn set_node_lock(&self, node: &str, value: Option<&str>) {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        let entry = locks.entry(node.to_string()).or_default();
        entry.lock = value.map(str::to_string);
        entry.version += 1;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(String, PodInfo)>> {
        // A poisoned lock only means a test thread panicked; the data is still usable.
        self.pods.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn written(&self) -> std::sync::MutexGuard<'_, Written> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl PodSource for MemoryPods {
    async fn pods_on(&self, node: &str) -> Result<Vec<PodInfo>, PodSourceError> {
        self.written().lists += 1;
        Ok(self
            .lock()
            .iter()
            .filter(|(n, _)| n == node)
            .map(|(_, p)| p.clone())
            .collect())
    }

    async fn patch(
        &self,
        namespace: &str,
        name: &str,
        patch: MetaPatch,
    ) -> Result<(), PodSourceError> {
        let mut pods = self.lock();
        let (_, pod) = pods
            .iter_mut()
            .find(|(_, p)| p.namespace == namespace && p.name == name)
            .ok_or_else(|| PodSourceError::NotFound {
                namespace: namespace.to_string(),
                name: name.to_string(),
            })?;
        pod.apply(&patch);
        self.written()
            .patches
            .push((format!("{namespace}/{name}"), patch));
        Ok(())
    }

    async fn warn(&self, warning: PodWarning) {
        self.written().warnings.push(warning);
    }

    async fn pod(&self, namespace: &str, name: &str) -> Result<Option<PodInfo>, PodSourceError> {
        Ok(self.get(namespace, name))
    }

    async fn node_lock(&self, node: &str) -> Result<NodeLockState, PodSourceError> {
        let locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        let found = locks.get(node).cloned().unwrap_or_default();
        Ok(NodeLockState {
            value: found.lock,
            resource_version: found.version.to_string(),
        })
    }

    async fn remove_node_lock(
        &self,
        node: &str,
        resource_version: &str,
    ) -> Result<(), PodSourceError> {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        let entry = locks.entry(node.to_string()).or_default();
        if entry.version.to_string() != resource_version {
            return Err(PodSourceError::Conflict {
                node: node.to_string(),
                resource_version: resource_version.to_string(),
            });
        }
        entry.lock = None;
        entry.version += 1;
        Ok(())
    }
}

/// Pods from the API server: a list with field selector `spec.nodeName=<node>` per Allocate
/// (kubelet calls Allocate once per container, rarely), merge patches of their metadata, and
/// core/v1 Events.
#[derive(Clone)]
pub struct KubePods {
    client: kube::Client,
    /// `source.component` and `reportingComponent` of our events.
    component: String,
    /// `source.host` and `reportingInstance`: the node.
    host: String,
}

impl KubePods {
    pub fn new(client: kube::Client) -> KubePods {
        KubePods {
            client,
            component: "hamr-node-agent".to_string(),
            host: String::new(),
        }
    }

    /// Names the node in the events this source emits.
    pub fn on_node(mut self, node: impl Into<String>) -> KubePods {
        self.host = node.into();
        self
    }

    /// The core/v1 Event for `warning`, as client-go's recorder writes one, at `now`.
    pub fn event(&self, warning: &PodWarning, now: k8s_openapi::jiff::Timestamp) -> Event {
        let host = Some(self.host.as_str()).filter(|h| !h.is_empty());
        hamr_k8s_convert::pod_event(
            &hamr_k8s_convert::PodEventText {
                namespace: &warning.namespace,
                pod: &warning.name,
                uid: &warning.uid,
                kind: "Warning",
                reason: &warning.reason,
                message: &warning.message,
                action: "Allocate",
                component: &self.component,
                host,
                instance: host,
            },
            now,
        )
    }
}

impl PodSource for KubePods {
    async fn pods_on(&self, node: &str) -> Result<Vec<PodInfo>, PodSourceError> {
        let api: Api<Pod> = Api::all(self.client.clone());
        let params = ListParams::default().fields(&format!("spec.nodeName={node}"));
        let list = api
            .list(&params)
            .await
            .map_err(|source| PodSourceError::List {
                node: node.to_string(),
                source,
            })?;
        Ok(list.items.iter().map(pod_info).collect())
    }

    async fn patch(
        &self,
        namespace: &str,
        name: &str,
        patch: MetaPatch,
    ) -> Result<(), PodSourceError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch.body()))
            .await
            .map_err(|source| PodSourceError::Patch {
                namespace: namespace.to_string(),
                name: name.to_string(),
                source,
            })?;
        Ok(())
    }

    async fn pod(&self, namespace: &str, name: &str) -> Result<Option<PodInfo>, PodSourceError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let pod = api
            .get_opt(name)
            .await
            .map_err(|source| PodSourceError::Get {
                namespace: namespace.to_string(),
                name: name.to_string(),
                source,
            })?;
        Ok(pod.as_ref().map(pod_info))
    }

    async fn node_lock(&self, node: &str) -> Result<NodeLockState, PodSourceError> {
        let api: Api<Node> = Api::all(self.client.clone());
        let found = api.get(node).await.map_err(|source| PodSourceError::Node {
            node: node.to_string(),
            source,
        })?;
        Ok(NodeLockState {
            value: found
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(NODE_LOCK))
                .cloned(),
            resource_version: found.metadata.resource_version.unwrap_or_default(),
        })
    }

    async fn remove_node_lock(
        &self,
        node: &str,
        resource_version: &str,
    ) -> Result<(), PodSourceError> {
        let api: Api<Node> = Api::all(self.client.clone());
        // A merge patch with metadata.resourceVersion is refused with 409 if the Node changed.
        let patch = serde_json::json!({"metadata": {
            "annotations": { NODE_LOCK: null },
            "resourceVersion": resource_version,
        }});
        match api
            .patch(node, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 409 => Err(PodSourceError::Conflict {
                node: node.to_string(),
                resource_version: resource_version.to_string(),
            }),
            Err(source) => Err(PodSourceError::Node {
                node: node.to_string(),
                source,
            }),
        }
    }

    async fn warn(&self, warning: PodWarning) {
        let events: Api<Event> = Api::namespaced(self.client.clone(), &warning.namespace);
        let body = self.event(&warning, k8s_openapi::jiff::Timestamp::now());
        if let Err(error) = events.create(&PostParams::default(), &body).await {
            tracing::warn!(pod = %format!("{}/{}", warning.namespace, warning.name),
                reason = %warning.reason, %error, "could not emit event");
        }
    }
}

/// The fields Allocate reads from a Kubernetes pod.
pub fn pod_info(pod: &Pod) -> PodInfo {
    let spec = pod.spec.as_ref();
    let init = spec
        .and_then(|s| s.init_containers.as_deref())
        .unwrap_or_default();
    let regular = spec.map(|s| s.containers.as_slice()).unwrap_or_default();
    PodInfo {
        namespace: pod.metadata.namespace.clone().unwrap_or_default(),
        name: pod.metadata.name.clone().unwrap_or_default(),
        uid: pod.metadata.uid.clone().unwrap_or_default(),
        phase: pod
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default(),
        deleting: pod.metadata.deletion_timestamp.is_some(),
        annotations: pod.metadata.annotations.clone().unwrap_or_default(),
        containers: init.iter().chain(regular).map(container_info).collect(),
        init_containers: init.len(),
        record: hamr_k8s_convert::pod(pod),
    }
}

fn container_info(c: &Container) -> ContainerInfo {
    let disable_control = c.env.as_deref().unwrap_or_default().iter().any(|e| {
        e.name == "CUDA_DISABLE_CONTROL"
            && e.value.as_deref().is_some_and(|v| {
                matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "t" | "true")
            })
    });
    ContainerInfo {
        name: c.name.clone(),
        disable_control,
    }
}
