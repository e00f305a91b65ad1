//! Completing decisions that a scheduler made but could not write.
//!
//! Under kube-scheduler-wasm-extension, hamr's guest chooses the node and the cards, but the
//! framework only binds the pod (`spec.nodeName`): the decision annotations never reach it, so
//! Allocate would find no pod. The agent holds its node's true ledger, so it completes such a
//! pod itself: for a `Pending` pod bound here by one of `completeDecisions.schedulerNames`,
//! without `hami.io/bind-phase`, that the guest says needs a decision
//! ([`hamr_guest::completion::need`]), it runs the guest's `reserve(pod, node, now)` on a ledger
//! of this node (its registration and every pod bound to it) and writes the decision's
//! annotations and labels with `hami.io/bind-phase: allocating` and `hami.io/bind-time: <now>`
//! in one merge patch, as HAMi's bind does. A pod that does not fit (the scheduler's view was
//! stale) gets `hami.io/bind-phase: failed` and a Warning event with the guest's reason: the
//! agent never hands out a share the ledger holds for another pod.
//!
//! Every completion runs under one lock, on a fresh list of the node's pods, so two pods never
//! get the same share. A pod is completed at most once: the completer remembers the pods it
//! completed (and books their decisions itself while a list still shows them without one), and
//! once the patch is seen the pod is decided. Both the pod watch ([`Completer::run`]) and
//! Allocate (when it finds no pod) call [`Completer::complete`].

use std::collections::{BTreeMap, HashMap};
use std::pin::pin;
use std::time::Duration;

use hamr_guest::Engine;
use hamr_guest::api::{self, Decision, Delta, Reservation};
use hamr_guest::completion::{self, Need};
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher;
use tokio::sync::{Mutex, watch};
use tokio_stream::StreamExt;

use crate::allocate::{BIND_PHASE, BIND_TIME};
use crate::pods::{MetaPatch, PodInfo, PodSource, PodSourceError, PodWarning};

/// The reason of the Warning event on a pod that cannot be completed here.
pub const FAILED_REASON: &str = "HamrDeviceDecisionFailed";

/// Why a completer could not be built or could not run.
#[derive(Debug, thiserror::Error)]
pub enum CompleteError {
    /// `completeDecisions.guestConfig` is refused by the guest.
    #[error("completeDecisions.guestConfig: {0}")]
    GuestConfig(api::Error),
    /// The node's pods could not be listed, or a pod could not be patched.
    #[error(transparent)]
    Pods(#[from] PodSourceError),
}

/// What happened to one pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Its decision was written: `namespace/name` and the decision.
    Completed(String, Decision),
    /// It does not fit this node (or its request is malformed): `namespace/name` and why. It
    /// was marked `bind-phase: failed`.
    Failed(String, String),
}

/// What one completion did, and the pods it worked on.
#[derive(Debug, Default)]
pub struct Completion {
    pub outcomes: Vec<Outcome>,
    /// The node's pods as listed, with the completion's patches merged; `None` when nothing
    /// was listed (the registration is not known yet).
    pub pods: Option<Vec<PodInfo>>,
}

/// What the completer remembers of a pod it handled.
enum Handled {
    /// Its decision was written; this is the pod with the decision merged, booked in place of
    /// a listed copy that does not show the decision yet.
    Completed(Box<api::Pod>),
    /// It was marked failed.
    Failed,
}

/// Completes the decisions of pods bound to one node. Share it (`Arc`) between the pod watch
/// and the allocator.
pub struct Completer<P> {
    node: String,
    schedulers: Vec<String>,
    /// A configured engine with nothing in it; each completion clones it.
    template: Engine,
    registration: watch::Receiver<BTreeMap<String, String>>,
    pods: P,
    clock: fn() -> i64,
    wait: Duration,
    handled: Mutex<HashMap<String, Handled>>,
}

/// Unix seconds now.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl<P: PodSource> Completer<P> {
    /// A completer for `node` with the agent's `completeDecisions` settings; `registration`
    /// follows the registration annotations the agent writes on its node.
    pub fn new(
        node: impl Into<String>,
        config: &crate::config::CompleteConfig,
        registration: watch::Receiver<BTreeMap<String, String>>,
        pods: P,
    ) -> Result<Completer<P>, CompleteError> {
        let mut template = Engine::new();
        template
            .configure(&config.guest_config)
            .map_err(CompleteError::GuestConfig)?;
        Ok(Completer {
            node: node.into(),
            schedulers: config.scheduler_names.clone(),
            template,
            registration,
            pods,
            clock: unix_now,
            wait: Duration::from_secs(config.wait_seconds),
            handled: Mutex::new(HashMap::new()),
        })
    }

    /// Replaces the clock (Unix seconds), for tests.
    pub fn with_clock(mut self, clock: fn() -> i64) -> Completer<P> {
        self.clock = clock;
        self
    }

    /// How long Allocate keeps trying to complete a pod.
    pub fn wait(&self) -> Duration {
        self.wait
    }

    /// Whether the pod may be one to complete: named scheduler, bound here, `Pending` (kubelet
    /// has not started it), no bind phase, not handled already, and neither finished, decided nor asking for no device. Whether the
    /// node registers what it asks is decided in [`Completer::complete`], on the node's ledger.
    pub async fn candidate(&self, pod: &api::Pod) -> bool {
        self.maybe(pod)
            && !matches!(
                completion::need(self.template.ledger(), pod, &self.node),
                Ok(Need::Finished | Need::Decided | Need::Unmanaged)
            )
            && !self.handled.lock().await.contains_key(&pod.uid)
    }

    fn maybe(&self, pod: &api::Pod) -> bool {
        pod.scheduler_name
            .as_ref()
            .is_some_and(|s| self.schedulers.contains(s))
            && pod.node_name.as_deref() == Some(self.node.as_str())
            && pod.phase == api::PodPhase::Pending
            && pod.annotation(BIND_PHASE).is_none()
    }

    /// Completes every pod of the node that needs a decision, on a fresh list of its pods.
    /// Nothing is done before the agent's registration is known.
    pub async fn complete(&self) -> Result<Vec<Outcome>, CompleteError> {
        Ok(self.complete_listing().await?.outcomes)
    }

    /// [`Completer::complete`], also handing back the node's pods it listed, with its own
    /// patches merged, so that Allocate need not list them again.
    pub async fn complete_listing(&self) -> Result<Completion, CompleteError> {
        let mut handled = self.handled.lock().await;
        let registration = self.registration.borrow().clone();
        if registration.is_empty() {
            return Ok(Completion::default());
        }
        let mut listed = self.pods.pods_on(&self.node).await?;
        handled.retain(|uid, _| listed.iter().any(|p| p.uid == *uid));

        // The node's true ledger: its registration and every pod bound to it, our own
        // completions counted even where the list does not show them yet.
        let mut engine = self.template.clone();
        let node = api::Node {
            name: self.node.clone(),
            annotations: registration.into_iter().collect(),
            ..api::Node::default()
        };
        for e in engine.apply(&[Delta::NodeUpsert(node)]) {
            tracing::warn!(error = %e.error, "the node's registration in the completion ledger");
        }
        // Indices into `listed`.
        let mut todo: Vec<usize> = Vec::new();
        for (i, pod) in listed.iter().enumerate() {
            let record = match handled.get(&pod.uid) {
                Some(Handled::Completed(placed))
                    if matches!(
                        completion::need(engine.ledger(), &pod.record, &self.node),
                        Ok(Need::Decision)
                    ) =>
                {
                    placed
                }
                _ => &pod.record,
            };
            for e in engine.apply(&[Delta::PodUpsert(record.clone())]) {
                tracing::warn!(pod = %key(pod), error = %e.error,
                    "not counted in the completion ledger");
            }
            if self.maybe(&pod.record) && !handled.contains_key(&pod.uid) {
                todo.push(i);
            }
        }
        todo.sort_by_key(|&i| key(&listed[i]));

        let mut outcomes = Vec::new();
        let now = (self.clock)();
        for i in todo {
            let pod = &mut listed[i];
            let verdict = match completion::need(engine.ledger(), &pod.record, &self.node) {
                Ok(Need::Decision) => match engine.reserve(&pod.record, &self.node, now) {
                    Ok(Reservation::Reserved(decision)) => Ok(decision),
                    Ok(Reservation::Rejected(v)) => Err(v.reason),
                    Err(e) => Err(e.to_string()),
                },
                Ok(_) => continue,
                Err(e) => Err(e.to_string()),
            };
            match verdict {
                Ok(decision) => {
                    let patch = decision_patch(&decision, now);
                    // Not written: nothing is remembered, the next completion tries again.
                    self.pods
                        .patch(&pod.namespace, &pod.name, patch.clone())
                        .await?;
                    pod.apply(&patch);
                    tracing::info!(pod = %key(pod), node = %self.node,
                        "completed the scheduler's device decision");
                    let placed = hamr_k8s_convert::placed(&pod.record, &decision);
                    handled.insert(pod.uid.clone(), Handled::Completed(Box::new(placed)));
                    outcomes.push(Outcome::Completed(key(pod), decision));
                }
                Err(reason) => {
                    let patch = MetaPatch {
                        annotations: BTreeMap::from([(BIND_PHASE.into(), "failed".into())]),
                        labels: BTreeMap::new(),
                    };
                    self.pods
                        .patch(&pod.namespace, &pod.name, patch.clone())
                        .await?;
                    pod.apply(&patch);
                    let message =
                        format!("node {} cannot hold the pod's devices: {reason}", self.node);
                    tracing::warn!(pod = %key(pod), %message, "device decision failed");
                    self.pods
                        .warn(PodWarning {
                            namespace: pod.namespace.clone(),
                            name: pod.name.clone(),
                            uid: pod.uid.clone(),
                            reason: FAILED_REASON.to_string(),
                            message,
                        })
                        .await;
                    handled.insert(pod.uid.clone(), Handled::Failed);
                    outcomes.push(Outcome::Failed(key(pod), reason));
                }
            }
        }
        Ok(Completion {
            outcomes,
            pods: Some(listed),
        })
    }

    /// Follows the node's pods and completes each candidate as it appears, until the watch
    /// ends. A failed completion is retried after 5 s.
    pub async fn run(&self, client: kube::Client) {
        let api: Api<Pod> = Api::all(client);
        let config = watcher::Config::default().fields(&format!("spec.nodeName={}", self.node));
        let mut pods = pin!(
            watcher::watcher(api, config)
                .default_backoff()
                .applied_objects()
        );
        let mut retry = false;
        loop {
            let due = tokio::select! {
                pod = pods.next() => match pod {
                    Some(Ok(pod)) => retry || self.candidate(&hamr_k8s_convert::pod(&pod)).await,
                    Some(Err(error)) => {
                        tracing::warn!(%error, "watching the node's pods");
                        false
                    }
                    None => return,
                },
                () = tokio::time::sleep(Duration::from_secs(5)), if retry => true,
            };
            if !due {
                continue;
            }
            match self.complete().await {
                Ok(_) => retry = false,
                Err(error) => {
                    retry = true;
                    tracing::warn!(%error, "completing device decisions failed");
                }
            }
        }
    }
}

/// The one merge patch that completes a decision: its annotations and labels, with
/// `hami.io/bind-phase: allocating` and `hami.io/bind-time: <now>` as HAMi's bind writes them.
pub fn decision_patch(decision: &Decision, now: i64) -> MetaPatch {
    let mut annotations: BTreeMap<String, String> = decision.annotations.iter().cloned().collect();
    annotations.insert(BIND_PHASE.to_string(), "allocating".to_string());
    annotations.insert(BIND_TIME.to_string(), now.to_string());
    MetaPatch {
        annotations,
        labels: decision.labels.iter().cloned().collect(),
    }
}

fn key(pod: &PodInfo) -> String {
    format!("{}/{}", pod.namespace, pod.name)
}

#[cfg(test)]
mod tests;
