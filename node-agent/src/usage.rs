//! `hamr.io/node-device-usage`: the use of this node's cards by the pods bound to it, for
//! schedulers that see nodes but not pods (the kube-scheduler-wasm-extension module).
//!
//! The value is computed by the guest library, natively: a guest [`Ledger`] holding this node
//! (with the registration annotations the agent writes) and its pods, read out with
//! [`usage_annotation::from_ledger`] and encoded with [`NodeDeviceUsage::encode`]. The format is
//! the guest's; the agent only feeds it.
//!
//! [`UsagePublisher`] follows the node's pods with a watch (field selector
//! `spec.nodeName=<node>`) and the registrar's values, and patches the annotation only when its
//! value changed.

use std::collections::BTreeMap;
use std::pin::pin;
use std::time::Duration;

use hamr_guest::api;
use hamr_guest::ledger::Ledger;
use hamr_guest::usage_annotation::{self, NODE_DEVICE_USAGE, NodeDeviceUsage};
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tokio::sync::watch;
use tokio_stream::StreamExt;

use crate::annotate::NodeAnnotations;

/// The use of `node`'s cards by `pods`, as the guest ledger books it. `registration` holds the
/// node's registration annotations (HAMi's and/or Volcano's). A pod whose decision annotations
/// do not parse is left out (the scheduler's ledger refuses it the same way) and reported in
/// the second value as `namespace/name: error`.
///
/// Worked example: two pods on card `GPU-a`, one with `GPU-a,NVIDIA,1000,30:;` and one with
/// two devices `GPU-a,NVIDIA,2000,20:GPU-a,NVIDIA,500,0:;`, give
/// `{"pods":[...],"cards":[{"vendor":"NVIDIA","uuid":"GPU-a","slots":3,"memoryMiB":3500,"cores":50}]}`.
pub fn usage(
    node: &str,
    registration: &BTreeMap<String, String>,
    pods: &[api::Pod],
) -> (NodeDeviceUsage, Vec<String>) {
    let mut ledger = Ledger::default();
    let mut skipped = Vec::new();
    let record = api::Node {
        name: node.to_string(),
        annotations: registration
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        ..api::Node::default()
    };
    if let Err(error) = ledger.upsert_node(record) {
        skipped.push(format!("node/{node}: {error}"));
    }
    for pod in pods {
        if let Err(error) = ledger.upsert_pod(pod) {
            skipped.push(format!("{}/{}: {error}", pod.namespace, pod.name));
        }
    }
    (usage_annotation::from_ledger(&ledger, node), skipped)
}

/// The pods bound to the node, as the watch reports them.
#[derive(Default)]
pub struct NodePods {
    pods: BTreeMap<String, api::Pod>,
    /// While a (re)list is in progress: the pods listed so far.
    listing: Option<BTreeMap<String, api::Pod>>,
}

impl NodePods {
    /// Applies one watch event. Returns whether the set of pods is complete and may have
    /// changed (false while a relist is in progress).
    pub fn apply(&mut self, event: Event<Pod>) -> bool {
        match event {
            Event::Apply(p) => {
                let p = hamr_k8s_convert::pod(&p);
                self.pods.insert(p.uid.clone(), p);
                true
            }
            Event::Delete(p) => {
                self.pods.remove(&hamr_k8s_convert::pod(&p).uid);
                true
            }
            Event::Init => {
                self.listing = Some(BTreeMap::new());
                false
            }
            Event::InitApply(p) => {
                let p = hamr_k8s_convert::pod(&p);
                self.listing
                    .get_or_insert_with(BTreeMap::new)
                    .insert(p.uid.clone(), p);
                false
            }
            Event::InitDone => {
                self.pods = self.listing.take().unwrap_or_default();
                true
            }
        }
    }

    pub fn pods(&self) -> Vec<api::Pod> {
        self.pods.values().cloned().collect()
    }
}

/// Publishes `hamr.io/node-device-usage` on one node.
pub struct UsagePublisher {
    client: kube::Client,
    node: NodeAnnotations,
    registration: watch::Receiver<BTreeMap<String, String>>,
}

impl UsagePublisher {
    pub fn new(
        client: kube::Client,
        node: impl Into<String>,
        registration: watch::Receiver<BTreeMap<String, String>>,
    ) -> UsagePublisher {
        UsagePublisher {
            node: NodeAnnotations::new(client.clone(), node),
            client,
            registration,
        }
    }

    /// Watches the node's pods and keeps the annotation current until the registrar is gone.
    /// A failed patch is retried after 5 s; watch errors are retried by the watcher's backoff.
    pub async fn run(mut self) {
        let node = self.node.node().to_string();
        let api: Api<Pod> = Api::all(self.client.clone());
        let config = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
        let mut events = pin!(watcher::watcher(api, config).default_backoff());
        let mut pods = NodePods::default();
        let mut listed = false;
        let mut retry = false;
        loop {
            tokio::select! {
                event = events.next() => match event {
                    Some(Ok(event)) => {
                        if pods.apply(event) {
                            listed = true;
                        } else {
                            continue;
                        }
                    }
                    Some(Err(error)) => {
                        tracing::warn!(%error, "watching the node's pods");
                        continue;
                    }
                    None => return,
                },
                changed = self.registration.changed() => if changed.is_err() { return },
                () = tokio::time::sleep(Duration::from_secs(5)), if retry => {}
            }
            if !listed {
                continue;
            }
            let registration = self.registration.borrow_and_update().clone();
            if registration.is_empty() {
                // The registrar has not computed its first value yet.
                continue;
            }
            let (value, skipped) = usage(&node, &registration, &pods.pods());
            for s in skipped {
                tracing::warn!(pod = %s, "not counted in the usage annotation");
            }
            let values = BTreeMap::from([(NODE_DEVICE_USAGE.to_string(), value.encode())]);
            match self.node.sync(&values).await {
                Ok(sent) => {
                    retry = false;
                    if sent {
                        tracing::info!(%node, pods = value.pods.len(), "device usage published");
                    }
                }
                Err(error) => {
                    retry = true;
                    tracing::warn!(%error, "publishing device usage failed");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
