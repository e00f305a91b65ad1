//! `hamr serve`: the guest behind HTTP, in the cluster.
//!
//! One [`Server`] holds one engine (the component, or the native library) fed by caches:
//! kube-rs watchers of Nodes, Pods and ResourceQuotas ([`kube`]), or a cluster file
//! (`--snapshot`, [`backend::MemoryBackend`]). It answers kube-scheduler's extender verbs
//! (`/filter`, `/prioritize`, `/bind`, `/preempt`, wire types in [`wire`]), the mutating
//! admission webhook (`/webhook`, [`webhook`]), `/healthz`, `/readyz` and `/metrics`
//! ([`metrics`]); [`http`] is the router.
//!
//! Filter follows HAMi: the guest chooses the node and the cards and assumes the allocation in
//! its ledger; the server writes the decision onto the pod in one merge patch and returns that
//! one node. Bind stamps the bind phase and creates the Binding. An allocation assumed at
//! filter and not bound within `bind_timeout`, or whose bind fails, is released: the guest
//! forgets it and the decision is taken off the pod; a pod deleted before binding releases it
//! too. Each release is an event and a metric. There is no node lock: the guest's ledger is
//! the only book, filters are serialised on it, and the decision is on the pod before bind.
//!
//! The leader also writes the scheduler's side of HAMi's node handshake: the guest says which
//! nodes want a `Requesting_<time>` stamp in a vendor's handshake annotation
//! ([`Server::handshake`]); the server patches each such node at most once per
//! `handshake_interval` and exports the registrations the guest treats as stale.
//!
//! Only the replica holding the Lease ([`leader`]) decides; it labels its pod
//! `hamr.io/scheduler-role=leader` and the Service selects that label. The others keep warm
//! caches (ready, and `/readyz` says they follow) and answer `/filter` and `/bind` with an
//! `Error` should a request reach them.

pub mod backend;
pub mod engine;
pub mod http;
pub mod kube;
pub mod leader;
pub mod metrics;
pub mod volcano;
pub mod webhook;
pub mod wire;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hamr_guest::api::{self, Scheduler};

use crate::engine::Engine;
use crate::k8s;
use backend::{Backend, Changes, EventType, PodEvent};
use wire::{BindingArgs, BindingResult, ExtenderArgs, FilterResult, HostPriority, NodeList};

/// `hami.io/bind-phase`: HAMi's bind protocol, read by the device plugin (ours or HAMi's).
pub const BIND_PHASE: &str = "hami.io/bind-phase";
/// `hami.io/bind-time`: unix seconds of the bind.
pub const BIND_TIME: &str = "hami.io/bind-time";

/// Tunables of one server.
#[derive(Clone, Debug)]
pub struct Settings {
    /// An assumed allocation not bound within this long is released.
    pub bind_timeout: Duration,
    /// How long `/filter` waits for the caches' first sync before answering with an error.
    pub sync_wait: Duration,
    /// Largest request body accepted; a larger one is answered with 400.
    pub max_body_bytes: usize,
    /// The scheduler's name, the source of events.
    pub component: String,
    /// A node's handshake annotations are patched at most once per this long (the pass runs
    /// twice as often); zero turns the handshake writer off.
    pub handshake_interval: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            bind_timeout: Duration::from_secs(300),
            sync_wait: Duration::from_secs(25),
            max_body_bytes: 8 << 20,
            component: "hamr-scheduler".into(),
            handshake_interval: Duration::from_secs(30),
        }
    }
}

/// The server's notion of now: the wall clock, or a time set by the caller (the conformance
/// engine replays scenarios at their own `now`).
#[derive(Debug, Default)]
pub struct Clock {
    fixed: AtomicI64,
    is_fixed: AtomicBool,
}

impl Clock {
    pub fn now(&self) -> i64 {
        if self.is_fixed.load(Ordering::Acquire) {
            self.fixed.load(Ordering::Acquire)
        } else {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64)
        }
    }

    pub fn set(&self, now: i64) {
        self.fixed.store(now, Ordering::Release);
        self.is_fixed.store(true, Ordering::Release);
    }
}

/// An allocation assumed at filter that has not been bound yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    pub namespace: String,
    pub name: String,
    pub node: String,
    /// When it was assumed (server clock, unix seconds).
    pub since: Instant,
    /// The annotation and label keys written at filter, taken off again on release.
    pub annotations: Vec<String>,
    pub labels: Vec<String>,
}

/// Why an assumed allocation was given back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Release {
    Timeout,
    Deleted,
    BindFailed,
}

impl Release {
    fn label(self) -> &'static str {
        match self {
            Release::Timeout => "timeout",
            Release::Deleted => "deleted",
            Release::BindFailed => "bind_failed",
        }
    }
}

/// One running server.
pub struct Server {
    engine: Mutex<Engine>,
    pub backend: Backend,
    pub metrics: metrics::Metrics,
    pub settings: Settings,
    pub clock: Clock,
    synced: AtomicBool,
    leader: AtomicBool,
    synced_notify: tokio::sync::Notify,
    pub(crate) pending: Mutex<HashMap<String, Pending>>,
    /// Node -> server-clock second of its last handshake patch (written or refused).
    handshake_written: Mutex<HashMap<String, i64>>,
    /// Node -> the vendors last reported stale there, to log each change once.
    stale: Mutex<BTreeMap<String, Vec<String>>>,
}

/// What a failed engine call becomes on the wire.
pub(crate) fn fault(e: impl std::fmt::Display) -> String {
    format!("scheduler engine fault: {e}")
}

impl Server {
    /// A server around a configured engine. `leader` starts true when there is no election.
    pub fn new(engine: Engine, backend: Backend, settings: Settings, leader: bool) -> Server {
        let s = Server {
            engine: Mutex::new(engine),
            backend,
            metrics: metrics::Metrics::new(),
            settings,
            clock: Clock::default(),
            synced: AtomicBool::new(false),
            leader: AtomicBool::new(leader),
            synced_notify: tokio::sync::Notify::new(),
            pending: Mutex::new(HashMap::new()),
            handshake_written: Mutex::new(HashMap::new()),
            stale: Mutex::new(BTreeMap::new()),
        };
        s.metrics.leader.set(i64::from(leader));
        s
    }

    /// Runs `f` on the engine, on a blocking thread (a guest call may take milliseconds).
    pub async fn with_engine<R: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut Engine) -> R + Send + 'static,
    ) -> R {
        let me = self.clone();
        match tokio::task::spawn_blocking(move || me.with_engine_now(f)).await {
            Ok(r) => r,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }

    /// Runs `f` on the engine on this thread.
    pub fn with_engine_now<R>(&self, f: impl FnOnce(&mut Engine) -> R) -> R {
        let mut engine = self.engine.lock().unwrap_or_else(|e| e.into_inner());
        let r = f(&mut engine);
        if let Engine::Component(c) = &*engine {
            let stats = c.stats();
            self.metrics.guest_totals(stats.traps, stats.rebuilds);
        }
        r
    }

    pub fn synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    /// Marks the caches synced (the first full lists reached the guest).
    pub fn set_synced(&self) {
        if !self.synced.swap(true, Ordering::AcqRel) {
            tracing::info!("caches synced; answering /filter");
        }
        self.metrics.synced.set(1);
        self.synced_notify.notify_waiters();
    }

    pub fn leader(&self) -> bool {
        self.leader.load(Ordering::Acquire)
    }

    pub fn set_leader(&self, leader: bool) {
        if self.leader.swap(leader, Ordering::AcqRel) != leader {
            tracing::info!(leader, "leadership changed");
        }
        self.metrics.leader.set(i64::from(leader));
    }

    /// Waits up to `sync_wait` for the first sync.
    pub(crate) async fn wait_synced(&self) -> bool {
        if self.synced() {
            return true;
        }
        let deadline = tokio::time::Instant::now() + self.settings.sync_wait;
        loop {
            let notified = self.synced_notify.notified();
            if self.synced() {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.synced();
            }
        }
    }

    /// Applies object changes to the guest, logging each one it refuses (the guest keeps
    /// what it knew before a malformed object; nothing else is lost).
    pub fn apply_now(&self, deltas: &[api::Delta]) {
        if deltas.is_empty() {
            return;
        }
        self.metrics.deltas.inc_by(deltas.len() as u64);
        match self.with_engine_now(|e| e.apply(deltas)) {
            Ok(errors) => {
                for e in errors {
                    self.metrics.delta_errors.inc();
                    let object = deltas.get(e.index as usize).map(delta_object);
                    tracing::warn!(object = object.as_deref().unwrap_or("?"), error = %e.error,
                        "the scheduler refused an object change");
                }
            }
            Err(e) => tracing::error!(error = %e, "applying object changes"),
        }
    }

    /// A pod changed on the cluster (watch or in-memory write): feeds the guest and settles
    /// the pod's pending reservation if it is now bound or gone.
    pub async fn pod_changed(self: &Arc<Self>, pod: api::Pod, deleted: bool) {
        let uid = pod.uid.clone();
        let bound = pod.node_name.as_deref().is_some_and(|n| !n.is_empty());
        let delta = if deleted {
            api::Delta::PodRemove(uid.clone())
        } else {
            api::Delta::PodUpsert(pod.clone())
        };
        let me = self.clone();
        let _ = tokio::task::spawn_blocking(move || me.apply_now(&[delta])).await;
        if deleted {
            if let Some(p) = self.take_pending(&uid) {
                self.released(&uid, &p, Release::Deleted).await;
            }
        } else if bound {
            self.take_pending(&uid);
        }
    }

    fn take_pending(&self, uid: &str) -> Option<Pending> {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let p = pending.remove(uid);
        self.metrics.reservations_pending.set(pending.len() as i64);
        p
    }

    /// The reservations assumed and not yet bound, by pod UID.
    pub fn pending(&self) -> BTreeMap<String, Pending> {
        let pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Feeds back a pod the in-memory cluster changed, as a watch would.
    pub(crate) async fn echo(self: &Arc<Self>, pod: Option<api::Pod>) {
        if let Some(pod) = pod {
            self.pod_changed(pod, false).await;
        }
    }

    /// `/filter`.
    pub async fn filter(self: &Arc<Self>, args: ExtenderArgs) -> FilterResult {
        let started = Instant::now();
        let result = self.filter_inner(args).await;
        let ok = if result.error.is_empty() {
            "ok"
        } else {
            "error"
        };
        self.metrics
            .filter_seconds
            .get_or_create(&metrics::ResultLabels { result: ok })
            .observe(started.elapsed().as_secs_f64());
        result
    }

    async fn filter_inner(self: &Arc<Self>, args: ExtenderArgs) -> FilterResult {
        if !self.leader() {
            return FilterResult::error("this hamr replica is not the leader; it does not decide");
        }
        if !self.wait_synced().await {
            return FilterResult::error(
                "hamr's caches have not synced yet (initial lists of nodes, pods and quotas)",
            );
        }
        let pod = k8s::pod(&args.pod);
        if pod.name.is_empty() {
            return FilterResult::error("Pod.metadata.name is missing");
        }
        if let Backend::Memory(m) = &self.backend {
            m.observe(&pod);
        }
        let now = self.clock.now();
        if let Err(e) = args.node_names.check() {
            return FilterResult::error(e.to_string());
        }
        // Shared with the engine's thread, not copied: thousands of names per request, as
        // one text.
        let names = Arc::new(args.node_names);
        let p = pod.clone();
        let candidates = Arc::clone(&names);
        let outcome = self
            .with_engine(move |e| e.filter_lines(&p, candidates.text(), now))
            .await;
        let outcome = match outcome {
            Err(e) => {
                self.decision_metric("error", String::new());
                return FilterResult::error(fault(e));
            }
            Ok(Err(e)) => {
                self.decision_metric("error", String::new());
                tracing::info!(pod = %pod.object(), error = %e, "filter: the pod cannot be evaluated");
                return FilterResult::error(e.to_string());
            }
            Ok(Ok(o)) => o,
        };
        let mut result = FilterResult::default();
        // Verdicts name candidates by position: the names are split only when one failed.
        let listed: Vec<&str> = if outcome.failed() > 0 || tracing::enabled!(tracing::Level::DEBUG)
        {
            names.iter().collect()
        } else {
            Vec::new()
        };
        let verdicts: Vec<api::VerdictView<'_>> = outcome.named(&listed).collect();
        for v in &verdicts {
            match v.code {
                api::Code::Success => {}
                api::Code::Unschedulable => {
                    result
                        .failed_nodes
                        .insert(v.node.to_string(), v.reason.to_string());
                }
                api::Code::UnschedulableAndUnresolvable => {
                    result
                        .failed_and_unresolvable_nodes
                        .insert(v.node.to_string(), v.reason.to_string());
                }
            }
        }
        let chosen: Vec<String> = match &outcome.decision {
            Some(d) => {
                if let Err(message) = self.write_decision(&pod, d).await {
                    return FilterResult::error(message);
                }
                self.decision_metric("placed", String::new());
                if tracing::enabled!(tracing::Level::DEBUG) {
                    let fits: Vec<String> = verdicts
                        .iter()
                        .filter(|v| v.code == api::Code::Success)
                        .map(|v| format!("{}:{}", v.node, v.score))
                        .collect();
                    tracing::debug!(pod = %pod.object(), node = %d.node, fits = ?fits,
                        failed = verdicts.len() - fits.len(), "filter: chose a node");
                }
                vec![d.node.clone()]
            }
            None if outcome.managed => {
                let message = failure_message(&verdicts);
                let reasons = failure_reasons(&outcome);
                self.filtering_failed(&pod, message, reasons).await;
                Vec::new()
            }
            // Not a device pod: every candidate passes.
            None => names.to_vec(),
        };
        match args.full_nodes {
            Some(items) => {
                let keep: Vec<serde_json::Value> = items
                    .into_iter()
                    .filter(|n| {
                        n.pointer("/metadata/name")
                            .and_then(|v| v.as_str())
                            .is_some_and(|name| chosen.iter().any(|c| c == name))
                    })
                    .collect();
                result.nodes = Some(NodeList::new(keep));
            }
            None => result.node_names = Some(chosen),
        }
        result
    }

    fn decision_metric(&self, result: &'static str, reason: String) {
        self.metrics
            .decisions
            .get_or_create(&metrics::DecisionLabels { result, reason })
            .inc();
    }

    /// Writes the decision onto the pod (one merge patch) and records the reservation; on a
    /// failed write the guest forgets the allocation it assumed.
    pub(crate) async fn write_decision(
        self: &Arc<Self>,
        pod: &api::Pod,
        d: &api::Decision,
    ) -> Result<(), String> {
        let annotations: Changes = d
            .annotations
            .iter()
            .map(|(k, v)| (k.clone(), Some(v.clone())))
            .collect();
        let labels: Changes = d
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), Some(v.clone())))
            .collect();
        // Recorded first, so that the echo of the patch (a watch event) finds it.
        {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            pending.insert(
                pod.uid.clone(),
                Pending {
                    namespace: pod.namespace.clone(),
                    name: pod.name.clone(),
                    node: d.node.clone(),
                    since: Instant::now(),
                    annotations: d.annotations.iter().map(|(k, _)| k.clone()).collect(),
                    labels: d.labels.iter().map(|(k, _)| k.clone()).collect(),
                },
            );
            self.metrics.reservations_pending.set(pending.len() as i64);
        }
        match self
            .backend
            .patch_pod(&pod.namespace, &pod.name, &annotations, &labels)
            .await
        {
            Ok(echo) => {
                self.echo(echo).await;
                Ok(())
            }
            Err(e) => {
                self.take_pending(&pod.uid);
                let uid = pod.uid.clone();
                let _ = self.with_engine(move |en| en.unreserve(&uid)).await;
                self.decision_metric("error", String::new());
                tracing::warn!(pod = %pod.object(), error = %e, "filter: could not write the decision");
                self.backend
                    .event(PodEvent {
                        namespace: pod.namespace.clone(),
                        pod: pod.name.clone(),
                        uid: pod.uid.clone(),
                        kind: EventType::Warning,
                        reason: "FilteringFailed",
                        message: format!("writing the decision on the pod failed: {e}"),
                    })
                    .await;
                Err(format!("writing the decision on the pod failed: {e}"))
            }
        }
    }

    /// One `FilteringFailed` Warning for the attempt, with HAMi's aggregation: per reason,
    /// `<k> nodes <Reason>(<nodes>)`; bare reasons (`node unregistered`, ...) by their text.
    async fn filtering_failed(
        self: &Arc<Self>,
        pod: &api::Pod,
        message: String,
        reasons: Vec<String>,
    ) {
        for r in reasons {
            self.decision_metric("unschedulable", r);
        }
        tracing::info!(pod = %pod.object(), %message, "filter: no node fits");
        self.backend
            .event(PodEvent {
                namespace: pod.namespace.clone(),
                pod: pod.name.clone(),
                uid: pod.uid.clone(),
                kind: EventType::Warning,
                reason: "FilteringFailed",
                message,
            })
            .await;
    }

    /// `/prioritize`: the guest's 0..=100 scores scaled to the extender's 0..=10.
    pub async fn prioritize(
        self: &Arc<Self>,
        args: ExtenderArgs,
    ) -> Result<Vec<HostPriority>, String> {
        if !self.wait_synced().await {
            return Err("hamr's caches have not synced yet".into());
        }
        let pod = k8s::pod(&args.pod);
        let now = self.clock.now();
        args.node_names.check().map_err(|e| e.to_string())?;
        let names = args.node_names.to_vec();
        let scores = self
            .with_engine(move |e| e.score(&pod, &names, now))
            .await
            .map_err(fault)?
            .map_err(|e| e.to_string())?;
        Ok(scores
            .into_iter()
            .map(|s| HostPriority {
                host: s.node,
                score: (i64::from(s.score.min(100)) * wire::MAX_EXTENDER_PRIORITY + 50) / 100,
            })
            .collect())
    }

    /// `/bind`: `bind-phase=allocating` and `bind-time`, then the Binding.
    pub async fn bind(self: &Arc<Self>, args: BindingArgs) -> BindingResult {
        let started = Instant::now();
        let result = self.bind_inner(args).await;
        let ok = if result.error.is_empty() {
            "ok"
        } else {
            "error"
        };
        self.metrics
            .bind_seconds
            .get_or_create(&metrics::ResultLabels { result: ok })
            .observe(started.elapsed().as_secs_f64());
        result
    }

    async fn bind_inner(self: &Arc<Self>, args: BindingArgs) -> BindingResult {
        if !self.leader() {
            return BindingResult {
                error: "this hamr replica is not the leader; it does not bind".into(),
            };
        }
        let now = self.clock.now();
        let stamp: Changes = vec![
            (BIND_PHASE.to_string(), Some("allocating".to_string())),
            (BIND_TIME.to_string(), Some(now.to_string())),
        ];
        let written = match self
            .backend
            .patch_pod(&args.pod_namespace, &args.pod_name, &stamp, &Vec::new())
            .await
        {
            Ok(echo) => {
                self.echo(echo).await;
                self.backend
                    .bind(
                        &args.pod_namespace,
                        &args.pod_name,
                        &args.pod_uid,
                        &args.node,
                    )
                    .await
            }
            Err(e) => Err(e),
        };
        match written {
            Ok(echo) => {
                self.take_pending(&args.pod_uid);
                self.echo(echo).await;
                self.backend
                    .event(PodEvent {
                        namespace: args.pod_namespace.clone(),
                        pod: args.pod_name.clone(),
                        uid: args.pod_uid.clone(),
                        kind: EventType::Normal,
                        reason: "BindingSucceed",
                        message: format!(
                            "Successfully binding node [{}] to {}/{}",
                            args.node, args.pod_namespace, args.pod_name
                        ),
                    })
                    .await;
                BindingResult::default()
            }
            Err(e) => {
                tracing::warn!(pod = %format!("{}/{}", args.pod_namespace, args.pod_name),
                    node = %args.node, error = %e, "bind failed");
                self.backend
                    .event(PodEvent {
                        namespace: args.pod_namespace.clone(),
                        pod: args.pod_name.clone(),
                        uid: args.pod_uid.clone(),
                        kind: EventType::Warning,
                        reason: "BindingFailed",
                        message: e.to_string(),
                    })
                    .await;
                let pending = self.take_pending(&args.pod_uid).unwrap_or(Pending {
                    namespace: args.pod_namespace.clone(),
                    name: args.pod_name.clone(),
                    node: args.node.clone(),
                    since: Instant::now(),
                    annotations: Vec::new(),
                    labels: Vec::new(),
                });
                self.release(&args.pod_uid, pending, Release::BindFailed)
                    .await;
                BindingResult {
                    error: e.to_string(),
                }
            }
        }
    }

    /// Gives an assumed allocation back: the guest forgets it and the decision is taken off
    /// the pod (so the next watch event does not book it again).
    async fn release(self: &Arc<Self>, uid: &str, p: Pending, why: Release) {
        let u = uid.to_string();
        let _ = self.with_engine(move |e| e.unreserve(&u)).await;
        let extra: Changes = if why == Release::BindFailed {
            vec![
                (BIND_PHASE.to_string(), None),
                (BIND_TIME.to_string(), None),
            ]
        } else {
            Vec::new()
        };
        if let Err(e) = self.take_off(&p, extra).await {
            tracing::warn!(pod = %format!("{}/{}", p.namespace, p.name), error = %e,
                "could not take the released decision off the pod");
        }
        self.released(uid, &p, why).await;
    }

    /// Removes the decision keys written at filter (and `extra`) from the pod, feeding the
    /// change back as a watch would.
    pub(crate) async fn take_off(
        self: &Arc<Self>,
        p: &Pending,
        mut extra: Changes,
    ) -> Result<(), backend::WriteError> {
        let mut annotations: Changes = p.annotations.iter().map(|k| (k.clone(), None)).collect();
        annotations.append(&mut extra);
        let labels: Changes = p.labels.iter().map(|k| (k.clone(), None)).collect();
        if annotations.is_empty() && labels.is_empty() {
            return Ok(());
        }
        let echo = self
            .backend
            .patch_pod(&p.namespace, &p.name, &annotations, &labels)
            .await?;
        self.echo(echo).await;
        Ok(())
    }

    /// Reports a release: metric, log and event.
    async fn released(self: &Arc<Self>, uid: &str, p: &Pending, why: Release) {
        if why == Release::Deleted {
            let u = uid.to_string();
            let _ = self.with_engine(move |e| e.unreserve(&u)).await;
        }
        self.metrics
            .reservations_released
            .get_or_create(&metrics::ReleaseLabels { cause: why.label() })
            .inc();
        let message = match why {
            Release::Timeout => format!(
                "released the devices assumed on node {}: not bound within {}s",
                p.node,
                self.settings.bind_timeout.as_secs()
            ),
            Release::Deleted => format!(
                "released the devices assumed on node {}: the pod was deleted before binding",
                p.node
            ),
            Release::BindFailed => format!(
                "released the devices assumed on node {}: the bind failed",
                p.node
            ),
        };
        tracing::info!(pod = %format!("{}/{}", p.namespace, p.name), cause = why.label(), %message, "reservation released");
        self.backend
            .event(PodEvent {
                namespace: p.namespace.clone(),
                pod: p.name.clone(),
                uid: uid.to_string(),
                kind: EventType::Warning,
                reason: "ReservationReleased",
                message,
            })
            .await;
    }

    /// Releases every reservation older than `bind_timeout`; returns how many.
    pub async fn expire(self: &Arc<Self>) -> usize {
        let timeout = self.settings.bind_timeout;
        let expired: Vec<(String, Pending)> = {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            let uids: Vec<String> = pending
                .iter()
                .filter(|(_, p)| p.since.elapsed() >= timeout)
                .map(|(k, _)| k.clone())
                .collect();
            let out = uids
                .into_iter()
                .filter_map(|u| pending.remove(&u).map(|p| (u, p)))
                .collect();
            self.metrics.reservations_pending.set(pending.len() as i64);
            out
        };
        let n = expired.len();
        for (uid, p) in expired {
            self.release(&uid, p, Release::Timeout).await;
        }
        n
    }

    /// Runs [`Server::expire`] forever, a few times per timeout.
    pub async fn expire_loop(self: Arc<Self>) {
        let period = (self.settings.bind_timeout / 4)
            .clamp(Duration::from_millis(200), Duration::from_secs(5));
        let mut tick = tokio::time::interval(period);
        loop {
            tick.tick().await;
            self.expire().await;
        }
    }

    /// `/webhook`.
    pub async fn admit(self: &Arc<Self>, review: webhook::Review) -> webhook::ReviewResponse {
        use webhook::ReviewResponse;
        let Some(mut k8s_pod) = review.pod else {
            return ReviewResponse::allow(&review.api_version, &review.uid, &[]);
        };
        if k8s_pod
            .metadata
            .namespace
            .as_deref()
            .is_none_or(str::is_empty)
        {
            k8s_pod.metadata.namespace = review.namespace.clone();
        }
        let pod = k8s::pod(&k8s_pod);
        let object = pod.object();
        let admission = self.with_engine(move |e| e.admit(&pod)).await;
        match admission {
            Err(e) => ReviewResponse::deny(&review.api_version, &review.uid, 500, fault(e)),
            Ok(Err(e)) => {
                tracing::info!(pod = %object, error = %e, "admission: invalid pod");
                ReviewResponse::deny(&review.api_version, &review.uid, 400, e.to_string())
            }
            Ok(Ok(a)) if !a.allowed => {
                tracing::info!(pod = %object, message = %a.message, "admission: denied");
                ReviewResponse::deny(&review.api_version, &review.uid, 403, a.message)
            }
            Ok(Ok(a)) => {
                let patch = webhook::json_patch(&k8s_pod, &a.mutations);
                ReviewResponse::allow(&review.api_version, &review.uid, &patch)
            }
        }
    }

    /// Refreshes the per-card and quota gauges and returns the metrics text.
    pub async fn metrics_text(self: &Arc<Self>) -> String {
        let now = self.clock.now();
        let (usage, quotas) = self
            .with_engine(move |e| (e.usage(&[], now), e.quotas()))
            .await;
        if let Ok(usage) = usage {
            self.metrics.cards(&usage);
        }
        if let Ok(quotas) = quotas {
            self.metrics.quotas(&quotas);
        }
        self.metrics.encode()
    }

    /// One pass of the scheduler's side of the node handshake (spec hami-core-nvidia.md §2.3):
    /// asks the guest which nodes want a `Requesting_<time>` stamp and patches each of them,
    /// none more than once per `handshake_interval` (the stamp shows up in the guest only when
    /// the watch echoes the node); updates the stale-registration gauges and logs each change.
    /// Only the leader writes. Returns the number of nodes patched.
    pub async fn handshake(self: &Arc<Self>) -> usize {
        let interval = self.settings.handshake_interval.as_secs() as i64;
        if interval == 0 || !self.leader() || !self.synced() {
            return 0;
        }
        let now = self.clock.now();
        let answer = match self.with_engine(move |e| e.handshakes(now)).await {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(error = %e, "handshake: asking the scheduler engine");
                return 0;
            }
        };
        self.metrics.stale(&answer);
        self.log_stale(&answer);
        let due: Vec<&api::NodeHandshake> = {
            let mut written = self
                .handshake_written
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            written.retain(|_, at| now - *at < interval);
            let mut due = Vec::new();
            for h in answer.iter().filter(|h| !h.annotations.is_empty()) {
                if !written.contains_key(&h.node) {
                    written.insert(h.node.clone(), now);
                    due.push(h);
                }
            }
            due
        };
        let mut patched = 0;
        for h in due {
            let changes: Changes = h
                .annotations
                .iter()
                .map(|(k, v)| (k.clone(), Some(v.clone())))
                .collect();
            match self.backend.patch_node(&h.node, &changes).await {
                Ok(echo) => {
                    patched += 1;
                    self.metrics
                        .handshake_writes
                        .get_or_create(&metrics::ResultLabels { result: "ok" })
                        .inc();
                    tracing::debug!(node = %h.node, annotations = ?h.annotations, "handshake: stamped");
                    if let Some(node) = echo {
                        let me = self.clone();
                        let _ = tokio::task::spawn_blocking(move || {
                            me.apply_now(&[api::Delta::NodeUpsert(node)])
                        })
                        .await;
                    }
                }
                Err(e) => {
                    self.metrics
                        .handshake_writes
                        .get_or_create(&metrics::ResultLabels { result: "error" })
                        .inc();
                    tracing::warn!(node = %h.node, error = %e, "handshake: could not stamp the node");
                }
            }
        }
        patched
    }

    /// Logs the registrations that went stale or came back since the last pass.
    fn log_stale(&self, answer: &[api::NodeHandshake]) {
        let now: BTreeMap<String, Vec<String>> = answer
            .iter()
            .filter(|h| !h.stale.is_empty())
            .map(|h| (h.node.clone(), h.stale.clone()))
            .collect();
        let mut seen = self.stale.lock().unwrap_or_else(|e| e.into_inner());
        for (node, vendors) in &now {
            if seen.get(node) != Some(vendors) {
                tracing::warn!(%node, ?vendors, "handshake: registrations not live; their devices are left out");
            }
        }
        for node in seen.keys() {
            if !now.contains_key(node) {
                tracing::info!(%node, "handshake: every registration is live again");
            }
        }
        *seen = now;
    }

    /// Runs [`Server::handshake`] forever, twice per `handshake_interval` (HAMi's registration
    /// loop ticks every 15 s).
    pub async fn handshake_loop(self: Arc<Self>) {
        if self.settings.handshake_interval.is_zero() {
            return;
        }
        let mut tick = tokio::time::interval(self.settings.handshake_interval / 2);
        loop {
            tick.tick().await;
            self.handshake().await;
        }
    }
}

/// `namespace/name` style name of a delta's object, for logs.
pub fn delta_object(d: &api::Delta) -> String {
    match d {
        api::Delta::NodeUpsert(n) => format!("node/{}", n.name),
        api::Delta::NodeRemove(n) => format!("node/{n}"),
        api::Delta::PodUpsert(p) => p.object(),
        api::Delta::PodRemove(uid) => format!("pod uid {uid}"),
        api::Delta::QuotaUpsert(q) => format!("quota/{}/{}", q.namespace, q.name),
        api::Delta::QuotaRemove((ns, name)) => format!("quota/{ns}/{name}"),
    }
}

/// The distinct reasons of a filter's failures, sorted: each counted reason, or the bare
/// reason of a failure without counts (`node unregistered`), for the decision metric.
fn failure_reasons(outcome: &api::FilterOutcome) -> Vec<String> {
    let mut reasons: Vec<String> = outcome
        .failures
        .iter()
        .flat_map(|f| {
            if f.counts.is_empty() {
                vec![f.reason.clone()]
            } else {
                f.counts.iter().map(|c| c.reason.clone()).collect()
            }
        })
        .collect();
    reasons.sort();
    reasons.dedup();
    reasons
}

/// HAMi's `FilteringFailed` text: `no available node, <N> nodes do not meet`, then per reason
/// `<k> nodes <Reason>(<node>,...)` (nodes sorted), joined with `; `.
pub fn failure_message(verdicts: &[api::VerdictView<'_>]) -> String {
    let failed: Vec<&api::VerdictView<'_>> = verdicts
        .iter()
        .filter(|v| v.code != api::Code::Success)
        .collect();
    let mut by_reason: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for v in &failed {
        if v.counts.is_empty() {
            by_reason.entry(v.reason).or_default().push(v.node);
        } else {
            for c in v.counts {
                by_reason.entry(&c.reason).or_default().push(v.node);
            }
        }
    }
    let mut parts = vec![format!(
        "no available node, {} nodes do not meet",
        failed.len()
    )];
    for (reason, mut nodes) in by_reason {
        nodes.sort_unstable();
        nodes.dedup();
        parts.push(format!(
            "{} nodes {reason}({})",
            nodes.len(),
            nodes.join(",")
        ));
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(code: api::Code, reason: &str, counts: &[(&str, u32)]) -> api::NodeFailure {
        api::NodeFailure {
            code,
            reason: reason.into(),
            counts: counts
                .iter()
                .map(|(r, c)| api::ReasonCount {
                    reason: (*r).into(),
                    count: *c,
                    total: 4,
                })
                .collect(),
        }
    }

    #[test]
    fn failure_message_aggregates_like_hami() {
        let names = ["n2", "n1", "n3", "n4", "n5"];
        let memory = failure(
            api::Code::Unschedulable,
            "4/4 CardInsufficientMemory",
            &[("CardInsufficientMemory", 4)],
        );
        let mut outcome = api::FilterOutcome::new(true, None);
        outcome.push_failure(0, memory.clone());
        outcome.push_failure(
            1,
            failure(
                api::Code::Unschedulable,
                "1/4 CardInsufficientMemory, 3/4 CardNotHealth",
                &[("CardInsufficientMemory", 1), ("CardNotHealth", 3)],
            ),
        );
        outcome.push_failure(
            2,
            failure(
                api::Code::UnschedulableAndUnresolvable,
                "node unregistered",
                &[],
            ),
        );
        outcome.push_fit(3, 7);
        outcome.push_failure(4, memory);
        assert_eq!(outcome.failures.len(), 3, "equal failures are listed once");
        let v: Vec<api::VerdictView<'_>> = outcome.named(&names).collect();
        assert_eq!(
            (v[3].node, v[3].code, v[3].score),
            ("n4", api::Code::Success, 7)
        );
        assert_eq!(
            (v[4].node, v[4].reason),
            ("n5", "4/4 CardInsufficientMemory")
        );
        assert_eq!(
            failure_message(&v),
            "no available node, 4 nodes do not meet; 3 nodes CardInsufficientMemory(n1,n2,n5); \
             1 nodes CardNotHealth(n1); 1 nodes node unregistered(n3)"
        );
        assert_eq!(
            failure_reasons(&outcome),
            [
                "CardInsufficientMemory",
                "CardNotHealth",
                "node unregistered"
            ]
        );
    }
}

/// How to start `hamr serve`.
#[derive(Clone, Debug)]
pub struct Options {
    pub listen: std::net::SocketAddr,
    /// A second listener for `/metrics`, `/healthz` and `/readyz` only (plain HTTP).
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// A plain-HTTP listener with every route, for Volcano's extender plugin (which has no TLS
    /// settings) or a kube-scheduler on loopback.
    pub plain_listen: Option<std::net::SocketAddr>,
    /// TLS certificate chain and key (PEM) for `listen`.
    pub tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// The scheduler configuration, as JSON text.
    pub config: String,
    pub engine: crate::engine::EngineKind,
    /// A cluster file instead of an API server.
    pub snapshot: Option<std::path::PathBuf>,
    pub settings: Settings,
    /// Leader election: (namespace, lease name, identity); `None` = always the leader.
    pub election: Option<(String, String, String)>,
}

/// Starts the engine, the caches and the listeners; runs until interrupted.
pub async fn run(options: Options) -> anyhow::Result<()> {
    use anyhow::Context;
    let kind = options.engine.clone();
    let config = options.config.clone();
    let engine = tokio::task::spawn_blocking(move || -> anyhow::Result<Engine> {
        let mut engine = kind.start()?;
        engine
            .configure(&config)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .map_err(|e| anyhow::anyhow!("scheduler configuration: {e}"))?;
        Ok(engine)
    })
    .await??;
    let tls = match &options.tls {
        Some((cert, key)) => Some(http::tls_config(cert, key)?),
        None => None,
    };
    let server = match &options.snapshot {
        Some(path) => {
            let objects = crate::input::read_objects(path, None)
                .with_context(|| format!("reading the snapshot {}", path.display()))?;
            let memory = backend::MemoryBackend::default();
            for p in &objects.pods {
                memory.observe(p);
            }
            for n in &objects.nodes {
                memory.put_node(n);
            }
            let server = Arc::new(Server::new(
                engine,
                Backend::Memory(memory),
                options.settings.clone(),
                true,
            ));
            let mut deltas = Vec::new();
            deltas.extend(objects.nodes.iter().cloned().map(api::Delta::NodeUpsert));
            deltas.extend(objects.pods.iter().cloned().map(api::Delta::PodUpsert));
            deltas.extend(objects.quotas.iter().cloned().map(api::Delta::QuotaUpsert));
            server.apply_now(&deltas);
            server.set_synced();
            tracing::info!(nodes = objects.nodes.len(), pods = objects.pods.len(),
                quotas = objects.quotas.len(), snapshot = %path.display(),
                "serving from a snapshot; writes go to memory");
            server
        }
        None => {
            let client = ::kube::Client::try_default()
                .await
                .context("connecting to the Kubernetes API (in-cluster or kubeconfig)")?;
            let instance = options
                .election
                .as_ref()
                .map(|e| e.2.clone())
                .unwrap_or_else(|| options.settings.component.clone());
            let server = Arc::new(Server::new(
                engine,
                Backend::Kube(backend::KubeBackend {
                    client: client.clone(),
                    component: options.settings.component.clone(),
                    instance,
                }),
                options.settings.clone(),
                options.election.is_none(),
            ));
            kube::start(server.clone(), client.clone());
            if let Some((namespace, name, identity)) = options.election.clone() {
                let election = leader::Election {
                    leases: ::kube::Api::namespaced(client, &namespace),
                    name,
                    identity,
                    lease_duration: Duration::from_secs(15),
                    renew_every: Duration::from_secs(5),
                    pod: std::env::var("POD_NAME")
                        .ok()
                        .filter(|_| std::env::var("POD_NAMESPACE").is_ok())
                        .map(|name| (std::env::var("POD_NAMESPACE").unwrap_or_default(), name)),
                };
                let e = election.clone();
                let s = server.clone();
                tokio::spawn(async move { e.run(s).await });
                let s = server.clone();
                tokio::spawn(async move {
                    if tokio::signal::ctrl_c().await.is_ok() {
                        s.set_leader(false);
                        if let Err(e) = election.release().await {
                            tracing::warn!(error = %e, "releasing the lease");
                        }
                        std::process::exit(0);
                    }
                });
            }
            server
        }
    };
    tokio::spawn(server.clone().expire_loop());
    tokio::spawn(server.clone().handshake_loop());
    if let Some(addr) = options.metrics_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening on {addr}"))?;
        let router = http::probe_router(server.clone());
        tracing::info!(%addr, "metrics listening");
        tokio::spawn(async move {
            if let Err(e) = http::serve(listener, router, None).await {
                tracing::error!(error = %e, "metrics listener");
            }
        });
    }
    if let Some(addr) = options.plain_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening on {addr}"))?;
        let router = http::router(server.clone());
        tracing::info!(%addr, "plain HTTP listening");
        tokio::spawn(async move {
            if let Err(e) = http::serve(listener, router, None).await {
                tracing::error!(error = %e, "plain listener");
            }
        });
    }
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .with_context(|| format!("listening on {}", options.listen))?;
    tracing::info!(addr = %options.listen, tls = tls.is_some(), "hamr serve listening");
    http::serve(listener, http::router(server), tls).await
}
