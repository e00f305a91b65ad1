//! Where Allocate reads the scheduler's decisions: the pods bound to this node, with their
//! annotations. [`PodSource`] has an in-memory implementation for tests and demos and one over
//! the API server.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Container, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams};

/// What Allocate needs to know about a pod.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodInfo {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// `status.phase` (`Pending` while kubelet admits it).
    pub phase: String,
    pub annotations: BTreeMap<String, String>,
    /// Init containers, then regular containers: the order of HAMi's device-list annotation.
    pub containers: Vec<ContainerInfo>,
    /// How many of `containers` are init containers (Volcano's lists skip them).
    pub init_containers: usize,
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
    ) -> impl Future<Output = Result<(), PodSourceError>> + Send;
}

/// Pods held in memory (tests, `--fake` demos). Clones share the same pods.
#[derive(Clone, Default)]
pub struct MemoryPods {
    pods: Arc<Mutex<Vec<(String, PodInfo)>>>,
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

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(String, PodInfo)>> {
        // A poisoned lock only means a test thread panicked; the data is still usable.
        self.pods.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl PodSource for MemoryPods {
    async fn pods_on(&self, node: &str) -> Result<Vec<PodInfo>, PodSourceError> {
        Ok(self
            .lock()
            .iter()
            .filter(|(n, _)| n == node)
            .map(|(_, p)| p.clone())
            .collect())
    }

    async fn annotate(
        &self,
        namespace: &str,
        name: &str,
        annotations: BTreeMap<String, String>,
    ) -> Result<(), PodSourceError> {
        let mut pods = self.lock();
        let pod = pods
            .iter_mut()
            .find(|(_, p)| p.namespace == namespace && p.name == name)
            .ok_or_else(|| PodSourceError::NotFound {
                namespace: namespace.to_string(),
                name: name.to_string(),
            })?;
        pod.1.annotations.extend(annotations);
        Ok(())
    }
}

/// Pods from the API server: a list with field selector `spec.nodeName=<node>` per Allocate
/// (kubelet calls Allocate once per container, rarely), and merge patches of annotations.
#[derive(Clone)]
pub struct KubePods {
    client: kube::Client,
}

impl KubePods {
    pub fn new(client: kube::Client) -> KubePods {
        KubePods { client }
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

    async fn annotate(
        &self,
        namespace: &str,
        name: &str,
        annotations: BTreeMap<String, String>,
    ) -> Result<(), PodSourceError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let patch = serde_json::json!({ "metadata": { "annotations": annotations } });
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|source| PodSourceError::Patch {
                namespace: namespace.to_string(),
                name: name.to_string(),
                source,
            })?;
        Ok(())
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
        annotations: pod.metadata.annotations.clone().unwrap_or_default(),
        containers: init.iter().chain(regular).map(container_info).collect(),
        init_containers: init.len(),
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
