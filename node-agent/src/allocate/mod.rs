//! Allocate without guessing (node-side.md §3): kubelet names only replica ids, so the pod comes
//! from the scheduler's decision annotations, and the devices from the pod's
//! `hami.io/vgpu-devices-to-allocate`, never from kubelet's choice of replicas.
//!
//! A pod is a candidate when it is `Pending` on this node, its `hami.io/vgpu-node` is this node,
//! its `hami.io/bind-phase` is `allocating` (or `success`, for a later container of the same
//! pod), and the first container entry of its to-allocate list that still has devices holds as
//! many devices as kubelet asked for. Among several candidates, the one whose devices are the
//! physical cards of kubelet's replica ids wins, then the oldest `hami.io/bind-time`, then
//! namespace/name, so the choice is the same on every run.

mod mig;
pub mod response;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hamr_guest::device::{self, ContainerDevice, PodDevices};
use hamr_guest::ledger::VGPU_NODE;
use hamr_guest::vendor::nvidia::DEVICES_TO_ALLOCATE;
use hamr_guest::vendor::nvidia::mig::MIG_ALLOCATIONS;
use hamr_guest::vendor::volcano;
use tokio::sync::Mutex;

use crate::api::{AllocateRequest, AllocateResponse};
use crate::complete::Completer;
use crate::config::Config;
use crate::lock::{self, Backoff, HeldLock, Holder, NodeLockState, Released};
use crate::mig::MigManager;
use crate::plugin::is_replica_of;
use crate::pods::{PodInfo, PodSource, PodSourceError};
use response::{Target, container_response, prepare_dirs};

/// Written by the scheduler's bind (`allocating`), by us when done (`success` / `failed`).
pub const BIND_PHASE: &str = "hami.io/bind-phase";
/// Unix seconds of the scheduler's bind.
pub const BIND_TIME: &str = "hami.io/bind-time";

/// Whose protocol a pod's decision is written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// HAMi's `hami.io/*` keys; device lists cover init containers, then regular ones.
    Hami,
    /// Volcano's `volcano.sh/*` keys; device lists cover regular containers only.
    Volcano,
}

impl Protocol {
    pub fn to_allocate(self) -> &'static str {
        match self {
            Protocol::Hami => DEVICES_TO_ALLOCATE,
            Protocol::Volcano => volcano::DEVICES_TO_ALLOCATE,
        }
    }

    pub fn bind_phase(self) -> &'static str {
        match self {
            Protocol::Hami => BIND_PHASE,
            Protocol::Volcano => volcano::BIND_PHASE,
        }
    }

    pub fn bind_time(self) -> &'static str {
        match self {
            Protocol::Hami => BIND_TIME,
            Protocol::Volcano => volcano::BIND_TIME,
        }
    }

    pub fn node_key(self) -> &'static str {
        match self {
            Protocol::Hami => VGPU_NODE,
            Protocol::Volcano => volcano::VGPU_NODE,
        }
    }

    fn decode(self, text: &str) -> Result<PodDevices, String> {
        match self {
            Protocol::Hami => device::decode(text).map_err(|e| e.to_string()),
            Protocol::Volcano => volcano::decode(text),
        }
    }

    fn encode(self, devices: &PodDevices) -> String {
        match self {
            Protocol::Hami => device::encode(devices),
            Protocol::Volcano => volcano::encode(devices),
        }
    }

    /// The container (init, then regular) that list position `position` is for.
    fn container(self, pod: &PodInfo, position: usize) -> usize {
        match self {
            Protocol::Hami => position,
            Protocol::Volcano => pod.init_containers + position,
        }
    }
}

/// Why Allocate failed; kubelet fails the container's start with this message.
#[derive(Debug, thiserror::Error)]
pub enum AllocateError {
    /// No pod on this node carries a decision for this request. Usually the scheduler that
    /// placed the pod is not hamr/HAMi, or the pod was bound without the extender.
    #[error(
        "no pod to allocate {count} {resource} device(s) on node {node}: looked for a Pending \
         pod with {VGPU_NODE}={node}, {BIND_PHASE}=allocating and a next container entry of \
         {count} device(s) in {DEVICES_TO_ALLOCATE} (or Volcano's {vgpu_node}, {bind_phase} and \
         {to_allocate})",
        vgpu_node = volcano::VGPU_NODE,
        bind_phase = volcano::BIND_PHASE,
        to_allocate = volcano::DEVICES_TO_ALLOCATE,
    )]
    NoPod {
        node: String,
        resource: String,
        count: usize,
    },
    /// The pods could not be read or written.
    #[error(transparent)]
    Pods(#[from] PodSourceError),
    /// The chosen entry is for a container position the pod does not have.
    #[error(
        "pod {pod}: {DEVICES_TO_ALLOCATE} has an entry for container {position}, the pod has {containers}"
    )]
    NoContainer {
        pod: String,
        position: usize,
        containers: usize,
    },
    /// The decision reserves MIG slices this agent does not create: the node's
    /// `operatingMode` is not `mig`. The container would otherwise get the whole card.
    #[error(
        "pod {pod}: its decision reserves MIG slices ({what}), which this node agent does not \
         create ({why}); refusing rather than handing out the whole card"
    )]
    MigNotSupported {
        pod: String,
        what: String,
        why: &'static str,
    },
    /// `hami.io/vgpu-mig-allocations` does not decode, or does not match the container's
    /// devices (one reservation per device, on the same card, in device order).
    #[error("pod {pod}: {MIG_ALLOCATIONS}: {reason}")]
    MigReservation { pod: String, reason: String },
    /// Creating the reserved MIG instances failed; none of this container's is left behind.
    #[error("pod {pod}: {source}")]
    Mig {
        pod: String,
        source: crate::mig::MigError,
    },
    /// The per-container directory could not be prepared on the host.
    #[error("pod {pod}: preparing the isolation directories: {source}")]
    Prepare { pod: String, source: std::io::Error },
}

/// A pod's pending decision: its to-allocate list, decoded.
#[derive(Clone)]
struct Candidate {
    pod: PodInfo,
    protocol: Protocol,
    devices: PodDevices,
    /// `hami.io/vgpu-mig-allocations` with the runtime ids of the instances created for it, to
    /// write back.
    mig_written: Option<String>,
    /// The node lock names this pod: it is served first whenever its next entry fits.
    locked: bool,
}

impl Candidate {
    fn key(&self) -> String {
        format!("{}/{}", self.pod.namespace, self.pod.name)
    }

    /// The position and devices of the next container to serve (the first entry with devices).
    fn next(&self) -> Option<(usize, &[ContainerDevice])> {
        self.devices
            .iter()
            .enumerate()
            .find(|(_, c)| !c.is_empty())
            .map(|(i, c)| (i, c.as_slice()))
    }
}

/// Serves Allocate from the pods of one node. Calls are serialised (kubelet may call
/// concurrently; two calls must not consume the same entry).
pub struct Allocator<P> {
    node: String,
    config: Config,
    pods: P,
    serial: Mutex<()>,
    /// How a node lock release that meets a conflict is retried.
    backoff: Backoff,
    /// Completes decisions the scheduler could not write, when Allocate finds no pod.
    completer: Option<Arc<Completer<P>>>,
    /// Creates the MIG instances of reserved slices (`operatingMode: mig`).
    mig: Option<Arc<MigManager>>,
}

impl<P: PodSource> Allocator<P> {
    pub fn new(node: impl Into<String>, config: Config, pods: P) -> Allocator<P> {
        Allocator {
            node: node.into(),
            config,
            pods,
            serial: Mutex::new(()),
            backoff: Backoff::DEFAULT_RETRY,
            completer: None,
            mig: None,
        }
    }

    /// Realises the MIG slices of `hami.io/vgpu-mig-allocations` and Volcano's
    /// `UUID[<group>-<position>]` with `manager`: the container gets the MIG devices instead
    /// of the cards.
    pub fn with_mig(mut self, manager: Arc<MigManager>) -> Allocator<P> {
        self.mig = Some(manager);
        self
    }

    /// Lets Allocate complete a pod bound here without a decision ([`crate::complete`]) when
    /// no decided pod matches a request, trying for up to the completer's wait.
    pub fn with_completer(mut self, completer: Arc<Completer<P>>) -> Allocator<P> {
        self.completer = Some(completer);
        self
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Answers one kubelet Allocate call: consumes one container entry per container request,
    /// writes back the shortened to-allocate list and, when nothing is left, `bind-phase:
    /// success`. A failure after a pod was chosen marks it `bind-phase: failed`. Either way a
    /// node lock held for the finished pod is released ([`crate::lock`]).
    ///
    /// The pod named by the node lock, when it has a decision to serve here, is tried first
    /// (node-side.md §3.2): when it serves the whole request, the node's pods are not listed.
    pub async fn allocate(
        &self,
        request: &AllocateRequest,
    ) -> Result<AllocateResponse, AllocateError> {
        let _serial = self.serial.lock().await;
        let lock = self.read_lock().await;
        let locked = self.locked(lock.as_ref()).await;
        let mut candidates = match &locked {
            Some(c) if serves_alone(c, request) => vec![c.clone()],
            _ => self.candidates(locked.as_ref()).await?,
        };
        if let Some(completer) = &self.completer
            && !self.serves_all(&candidates, request)
        {
            let deadline = tokio::time::Instant::now() + completer.wait();
            loop {
                candidates = self
                    .completed(completer, locked.as_ref(), "Allocate")
                    .await?;
                if self.serves_all(&candidates, request) || tokio::time::Instant::now() >= deadline
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        let mut touched: Vec<usize> = Vec::new();
        let mut responses = Vec::with_capacity(request.container_requests.len());
        for container in &request.container_requests {
            let ids = &container.devices_ids;
            let chosen = match self.choose(&candidates, ids.len(), ids) {
                Some(i) => i,
                None => {
                    return Err(AllocateError::NoPod {
                        node: self.node.clone(),
                        resource: self.config.resource_name.clone(),
                        count: ids.len(),
                    });
                }
            };
            match self.serve(&mut candidates[chosen]).await {
                Ok(response) => responses.push(response),
                Err(error) => {
                    self.mark_failed(&candidates[chosen]).await;
                    self.unlock(lock.as_ref(), &candidates[chosen]).await;
                    return Err(error);
                }
            }
            if !touched.contains(&chosen) {
                touched.push(chosen);
            }
        }
        for i in touched {
            let c = &candidates[i];
            let mut annotations = BTreeMap::new();
            annotations.insert(
                c.protocol.to_allocate().to_string(),
                c.protocol.encode(&c.devices),
            );
            if let Some(text) = &c.mig_written {
                annotations.insert(MIG_ALLOCATIONS.to_string(), text.clone());
            }
            let done = c.next().is_none();
            if done {
                annotations.insert(c.protocol.bind_phase().to_string(), "success".to_string());
            }
            self.pods
                .annotate(&c.pod.namespace, &c.pod.name, annotations)
                .await?;
            if done {
                self.unlock(lock.as_ref(), c).await;
            }
        }
        Ok(AllocateResponse {
            container_responses: responses,
        })
    }

    /// The devices the next container of the matching pod will get, as preferred replica ids:
    /// per annotated card, the first available replica of it (must-include ids first). `None`
    /// when no pod matches; kubelet then uses its own choice.
    pub async fn preferred(
        &self,
        available: &[String],
        must_include: &[String],
        size: usize,
    ) -> Result<Option<Vec<String>>, AllocateError> {
        let lock = self.read_lock().await;
        let locked = self.locked(lock.as_ref()).await;
        let mut candidates = match &locked {
            Some(c)
                if self
                    .choose(std::slice::from_ref(c), size, available)
                    .is_some() =>
            {
                vec![c.clone()]
            }
            _ => self.candidates(locked.as_ref()).await?,
        };
        if let Some(completer) = &self.completer
            && self.choose(&candidates, size, available).is_none()
        {
            // Once, without waiting: GetPreferredAllocation is only a hint.
            candidates = self
                .completed(completer, locked.as_ref(), "GetPreferredAllocation")
                .await?;
        }
        let Some(chosen) = self.choose(&candidates, size, available) else {
            return Ok(None);
        };
        let Some((_, devices)) = candidates[chosen].next() else {
            return Ok(None);
        };
        let mut out: Vec<String> = must_include.to_vec();
        for d in devices {
            let has = |id: &String| is_replica_of(id, &d.uuid);
            if out.iter().any(has) {
                continue;
            }
            if let Some(id) = available.iter().find(|id| has(id) && !out.contains(id)) {
                out.push(id.clone());
            }
        }
        Ok(Some(out))
    }

    /// Whether some candidate matches each container request (as a first check: serving one
    /// request consumes an entry).
    fn serves_all(&self, candidates: &[Candidate], request: &AllocateRequest) -> bool {
        request.container_requests.iter().all(|c| {
            self.choose(candidates, c.devices_ids.len(), &c.devices_ids)
                .is_some()
        })
    }

    /// The node lock, when the Node carries one that parses. A lock that does not parse, or a
    /// Node that cannot be read, is logged and Allocate finds the pod by its bind phase.
    async fn read_lock(&self) -> Option<HeldLock> {
        match self.pods.node_lock(&self.node).await {
            Ok(NodeLockState {
                value: Some(value), ..
            }) => match lock::parse(&value) {
                Ok(holder) => Some(HeldLock { value, holder }),
                Err(error) => {
                    tracing::warn!(node = %self.node, %error,
                        "malformed node lock ignored; finding the pod by its bind phase");
                    None
                }
            },
            Ok(_) => None,
            Err(error) => {
                tracing::warn!(%error,
                    "could not read the node lock; finding the pod by its bind phase");
                None
            }
        }
    }

    /// The pod the node lock names, when it has a decision to serve on this node.
    async fn locked(&self, lock: Option<&HeldLock>) -> Option<Candidate> {
        let Holder::Pod { namespace, name } = &lock?.holder else {
            return None;
        };
        let pod = match self.pods.pod(namespace, name).await {
            Ok(Some(pod)) => pod,
            Ok(None) => {
                tracing::info!(pod = %format!("{namespace}/{name}"),
                    "the pod named by the node lock is gone; finding the pod by its bind phase");
                return None;
            }
            Err(error) => {
                tracing::warn!(%error,
                    "could not read the pod named by the node lock; finding the pod by its bind phase");
                return None;
            }
        };
        let found = self.candidate(pod).map(|c| Candidate { locked: true, ..c });
        if found.is_none() {
            tracing::info!(pod = %format!("{namespace}/{name}"),
                "the pod named by the node lock has no decision to serve here; finding the pod by its bind phase");
        }
        found
    }

    /// Releases the node lock read at the start of the call if it was taken for `c`'s pod
    /// (or for no named pod). A failure is logged: the lock expires 5 minutes after it was
    /// taken, and the container is served either way.
    async fn unlock(&self, lock: Option<&HeldLock>, c: &Candidate) {
        let Some(held) = lock else { return };
        if !held.is_for(&c.pod.namespace, &c.pod.name) {
            return;
        }
        let pod = c.key();
        match lock::release(&self.pods, &self.node, held, self.backoff).await {
            Ok(Released::Removed) => {
                tracing::info!(%pod, node = %self.node, "node lock released");
            }
            Ok(Released::Gone) => {}
            Ok(Released::NotOurs(value)) => {
                tracing::info!(%pod, node = %self.node, %value,
                    "node lock taken for another pod since; left in place");
            }
            Err(error) => {
                tracing::warn!(%pod, %error,
                    "could not release the node lock; it expires 5 minutes after it was taken");
            }
        }
    }

    /// The candidates among the node's pods, the locked one first.
    async fn candidates(
        &self,
        locked: Option<&Candidate>,
    ) -> Result<Vec<Candidate>, AllocateError> {
        Ok(self.rank(locked, self.pods.pods_on(&self.node).await?))
    }

    /// Runs the completer, then the candidates among the pods it listed (one list of the
    /// node's pods per try); lists them itself only when the completer did not.
    async fn completed(
        &self,
        completer: &Completer<P>,
        locked: Option<&Candidate>,
        call: &'static str,
    ) -> Result<Vec<Candidate>, AllocateError> {
        let listed = match completer.complete_listing().await {
            Ok(done) => done.pods,
            Err(error) => {
                tracing::warn!(%error, call, "completing a device decision");
                None
            }
        };
        match listed {
            Some(pods) => Ok(self.rank(locked, pods)),
            None => self.candidates(locked).await,
        }
    }

    /// The pod's pending decision, when it is `Pending` here with a bind phase of
    /// `allocating` or `success` and a to-allocate list that decodes.
    fn candidate(&self, pod: PodInfo) -> Option<Candidate> {
        if pod.phase != "Pending" {
            return None;
        }
        let protocol = [Protocol::Hami, Protocol::Volcano].into_iter().find(|p| {
            pod.annotation(p.node_key()) == Some(self.node.as_str())
                && matches!(
                    pod.annotation(p.bind_phase()),
                    Some("allocating" | "success")
                )
        })?;
        // A list that does not decode cannot be served; it is skipped, not guessed at.
        let devices = protocol
            .decode(pod.annotation(protocol.to_allocate())?)
            .ok()?;
        Some(Candidate {
            pod,
            protocol,
            devices,
            mig_written: None,
            locked: false,
        })
    }

    /// The pods among `pods` with a decision to serve here, oldest bind first; `locked` (the
    /// pod the node lock names) before all of them.
    fn rank(&self, locked: Option<&Candidate>, pods: Vec<PodInfo>) -> Vec<Candidate> {
        let mut out: Vec<Candidate> = pods
            .into_iter()
            .filter_map(|pod| self.candidate(pod))
            .filter(|c| locked.is_none_or(|l| l.key() != c.key()))
            .collect();
        out.sort_by(|a, b| {
            let time = |c: &Candidate| {
                c.pod
                    .annotation(c.protocol.bind_time())
                    .and_then(|t| t.trim().parse::<i64>().ok())
                    .unwrap_or(i64::MAX)
            };
            time(a).cmp(&time(b)).then_with(|| a.key().cmp(&b.key()))
        });
        if let Some(l) = locked {
            out.insert(0, l.clone());
        }
        out
    }

    /// The candidate to serve a request of `count` devices: the locked pod when it fits, then
    /// one whose cards all appear among the replica `ids`, then any that fits.
    fn choose(&self, candidates: &[Candidate], count: usize, ids: &[String]) -> Option<usize> {
        let fits = |c: &Candidate| c.next().is_some_and(|(_, d)| d.len() == count);
        if let Some(i) = candidates.iter().position(|c| c.locked && fits(c)) {
            return Some(i);
        }
        let same_cards = |c: &Candidate| {
            c.next().is_some_and(|(_, d)| {
                d.iter()
                    .all(|d| ids.iter().any(|id| is_replica_of(id, &d.uuid)))
            })
        };
        candidates
            .iter()
            .position(|c| fits(c) && same_cards(c))
            .or_else(|| candidates.iter().position(fits))
    }

    /// Consumes the candidate's next entry and builds its response.
    async fn serve(
        &self,
        candidate: &mut Candidate,
    ) -> Result<crate::api::ContainerAllocateResponse, AllocateError> {
        let pod = candidate.key();
        let (position, devices) =
            candidate
                .next()
                .map(|(p, d)| (p, d.to_vec()))
                .ok_or_else(|| AllocateError::NoPod {
                    node: self.node.clone(),
                    resource: self.config.resource_name.clone(),
                    count: 0,
                })?;
        let index = candidate.protocol.container(&candidate.pod, position);
        if let Some((manager, reservations)) =
            self.mig_reservations(candidate, position, &devices)?
        {
            let response = self.serve_mig(candidate, manager, &reservations).await?;
            tracing::info!(%pod, container = index, slices = reservations.len(), "allocated MIG devices");
            candidate.devices[position].clear();
            return Ok(response);
        }
        let container = candidate
            .pod
            .containers
            .get(index)
            .ok_or(AllocateError::NoContainer {
                pod: pod.clone(),
                position: index,
                containers: candidate.pod.containers.len(),
            })?;
        let target = Target {
            pod_uid: &candidate.pod.uid,
            container: &container.name,
            disable_control: container.disable_control,
        };
        prepare_dirs(&self.config, &target)
            .await
            .map_err(|source| AllocateError::Prepare {
                pod: pod.clone(),
                source,
            })?;
        let response = container_response(&self.config, &target, &devices);
        tracing::info!(%pod, container = %container.name, devices = devices.len(), "allocated");
        candidate.devices[position].clear();
        Ok(response)
    }

    async fn mark_failed(&self, candidate: &Candidate) {
        let pod = &candidate.pod;
        let annotations = BTreeMap::from([(
            candidate.protocol.bind_phase().to_string(),
            "failed".to_string(),
        )]);
        if let Err(error) = self
            .pods
            .annotate(&pod.namespace, &pod.name, annotations)
            .await
        {
            tracing::warn!(%error, "could not mark the pod failed");
        }
    }
}

/// Whether `candidate` alone serves every container request of `request`, in turn: its
/// entries with devices, in order, have the requested counts.
fn serves_alone(candidate: &Candidate, request: &AllocateRequest) -> bool {
    let mut entries = candidate.devices.iter().filter(|d| !d.is_empty());
    request.container_requests.iter().all(|r| {
        entries
            .next()
            .is_some_and(|d| d.len() == r.devices_ids.len())
    })
}

#[cfg(test)]
mod mig_tests;
#[cfg(test)]
pub(crate) mod tests;
