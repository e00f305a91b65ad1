//! Writing annotations on our own Node, only when they changed.
//!
//! Each writer (the registrar, the usage publisher) keeps its own [`NodeAnnotations`]: it
//! remembers the values it last wrote, and a sync sends one JSON merge patch holding only the
//! keys whose value differs. As in HAMi the memory is per process, so a restart patches once.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};

/// Why a node patch failed; the writer retries after 5 s.
#[derive(Debug, thiserror::Error)]
#[error("patching node {node} with {annotations}: {source}")]
pub struct PatchError {
    pub node: String,
    /// The keys the patch carried, comma-separated.
    pub annotations: String,
    pub source: kube::Error,
}

/// The annotations one writer owns on one Node.
pub struct NodeAnnotations {
    nodes: Api<Node>,
    node: String,
    written: BTreeMap<String, String>,
}

impl NodeAnnotations {
    pub fn new(client: kube::Client, node: impl Into<String>) -> NodeAnnotations {
        NodeAnnotations {
            nodes: Api::all(client),
            node: node.into(),
            written: BTreeMap::new(),
        }
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// Patches the keys of `values` whose value differs from the last one written. Returns
    /// whether a patch was sent.
    pub async fn sync(&mut self, values: &BTreeMap<String, String>) -> Result<bool, PatchError> {
        let changed: BTreeMap<&String, &String> = values
            .iter()
            .filter(|(k, v)| self.written.get(*k) != Some(*v))
            .collect();
        if changed.is_empty() {
            return Ok(false);
        }
        let patch = serde_json::json!({ "metadata": { "annotations": changed } });
        self.nodes
            .patch(&self.node, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|source| PatchError {
                node: self.node.clone(),
                annotations: changed
                    .keys()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
                source,
            })?;
        for (k, v) in changed {
            self.written.insert(k.clone(), v.clone());
        }
        Ok(true)
    }
}
