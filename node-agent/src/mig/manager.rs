//! The MIG policy over a [`MigControl`] backend (node-side.md §6.5–6.6): realise reservations,
//! reconcile against the node's pods, reset idle cards and adopt recorded instances at start.
//!
//! Never repartition under a running process: an instance is destroyed only when no process
//! runs in it, a card's mode is switched or reset only when nothing runs on it, and an instance
//! is created only when no process runs on the whole card (in MIG mode processes run inside
//! instances; creating one in free slices does not disturb them).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hamr_guest::device::ContainerDevice;
use hamr_guest::vendor::nvidia::mig::{MIG_ALLOCATIONS, Reservation, decode_reservations};
use hamr_guest::vendor::volcano;

use super::volcano::Geometries;
use super::{Instance, MigControl, MigError, profile_id, slices_of};
use crate::pods::{PodInfo, PodSource};

/// What identifies a reserved slice: card, profile name and placement (HAMi keys by card index;
/// the UUID is the same card).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    pub gpu: String,
    pub profile: String,
    pub start: u32,
    pub size: u32,
}

impl Key {
    pub fn of(r: &Reservation) -> Key {
        Key {
            gpu: r.gpu_uuid.clone(),
            profile: r.profile.clone(),
            start: r.placement.start,
            size: r.placement.size,
        }
    }
}

/// Creates, tracks and destroys the instances of reserved slices. Only instances it created or
/// adopted are ever destroyed by reconciliation.
pub struct MigManager {
    control: Arc<dyn MigControl>,
    tracked: Mutex<BTreeMap<Key, Tracked>>,
    /// Where Volcano's slices go on the cards.
    volcano: Geometries,
}

/// A tracked instance, the UID of the pod it was created for or adopted from, and when: a pod
/// list read before then may not show its pod yet, so it cannot condemn the instance.
#[derive(Clone, Debug)]
struct Tracked {
    instance: Instance,
    owner: String,
    since: Instant,
}

impl Tracked {
    fn now(instance: Instance, owner: &str) -> Tracked {
        Tracked {
            instance,
            owner: owner.to_string(),
            since: Instant::now(),
        }
    }
}

/// Whether a pod still holds its reservations: not being deleted, not finished.
pub fn is_active(pod: &PodInfo) -> bool {
    !pod.deleting && pod.phase != "Succeeded" && pod.phase != "Failed"
}

/// How the instance of an active reservation that nothing tracks is recognised on the card.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recognise {
    /// HAMi's reservation: by the runtime ids written back at Allocate (none before).
    RuntimeIds,
    /// Volcano's slice, of a pod served already (`volcano.sh/bind-phase: success`): nothing is
    /// written back, so by profile and placement (the scheduler gives a slice to one active
    /// pod only).
    Placement,
    /// Volcano's slice of a pod not served yet: its instance is created (or taken over, when
    /// idle) at Allocate.
    NotYet,
}

/// One reservation of an active pod.
#[derive(Clone, Debug)]
pub struct Active {
    /// The pod's UID.
    pub owner: String,
    pub reservation: Reservation,
    pub recognise: Recognise,
}

/// The node's active pods as reconciliation sees them.
#[derive(Debug, Default)]
pub struct ActivePods {
    /// The reservations that could be read: HAMi's, and Volcano's slices placed by their
    /// group's layout.
    pub reservations: Vec<Active>,
    /// The cards the active pods' slices are on, whether or not they could be read further.
    pub cards: BTreeSet<String>,
    /// Some pod's slices could not be read at all (an annotation that does not decode): the
    /// cards it uses are unknown.
    pub cards_unknown: bool,
    /// The UIDs of the pods whose slices could not be read: their instances are kept.
    pub protected: BTreeSet<String>,
    /// Why each of those could not be read (pod, annotation, reason).
    pub undecodable: Vec<String>,
}

impl ActivePods {
    fn protect(&mut self, pod: &PodInfo, key: &str, reason: &str) {
        self.protected.insert(pod.uid.clone());
        self.undecodable.push(format!(
            "pod {}/{}: {key}: {reason}",
            pod.namespace, pod.name
        ));
    }
}

impl MigManager {
    pub fn new(control: Arc<dyn MigControl>) -> MigManager {
        MigManager {
            control,
            tracked: Mutex::new(BTreeMap::new()),
            volcano: Geometries::default(),
        }
    }

    /// Realises Volcano's slices `UUID[<group>-<position>]` by `geometries` (without, every
    /// card is unknown to them).
    pub fn with_volcano(mut self, geometries: Geometries) -> MigManager {
        self.volcano = geometries;
        self
    }

    /// The reservations of one container's Volcano slices (container `container`, devices in
    /// order), placed by their group's layout on the card.
    pub fn volcano_reservations(
        &self,
        container: usize,
        devices: &[ContainerDevice],
    ) -> Result<Vec<Reservation>, MigError> {
        self.volcano
            .reservations(self.control.as_ref(), container, devices)
    }

    /// The reservations of the node's active pods: HAMi's `hami.io/vgpu-mig-allocations` and
    /// the slices of Volcano's `volcano.sh/vgpu-ids-new`.
    pub fn active(&self, pods: &[PodInfo]) -> ActivePods {
        let mut out = ActivePods::default();
        for pod in pods.iter().filter(|p| is_active(p)) {
            if let Some(text) = pod.annotation(MIG_ALLOCATIONS) {
                match decode_reservations(text) {
                    Ok(list) => {
                        out.cards.extend(list.iter().map(|r| r.gpu_uuid.clone()));
                        out.reservations
                            .extend(list.into_iter().map(|reservation| Active {
                                owner: pod.uid.clone(),
                                reservation,
                                recognise: Recognise::RuntimeIds,
                            }));
                    }
                    Err(e) => {
                        out.cards_unknown = true;
                        out.protect(pod, MIG_ALLOCATIONS, &e);
                    }
                }
            }
            if let Some(text) = pod.annotation(volcano::VGPU_IDS_NEW) {
                self.read_volcano(pod, text, &mut out);
            }
        }
        out
    }

    /// The slices of a Volcano allocation string into `out`.
    fn read_volcano(&self, pod: &PodInfo, text: &str, out: &mut ActivePods) {
        let devices = match volcano::decode(text) {
            Ok(devices) => devices,
            Err(e) => {
                out.cards_unknown = true;
                out.protect(pod, volcano::VGPU_IDS_NEW, &e);
                return;
            }
        };
        let recognise = if pod.annotation(volcano::BIND_PHASE) == Some("success") {
            Recognise::Placement
        } else {
            Recognise::NotYet
        };
        for (c, container) in devices.iter().enumerate() {
            for (k, d) in container.iter().enumerate() {
                let Some(slice) = &d.mig else { continue };
                out.cards.insert(d.uuid.clone());
                let slot = match self.volcano.slot(
                    self.control.as_ref(),
                    &d.uuid,
                    &slice.profile,
                    slice.placement.start,
                ) {
                    Ok(slot) => slot,
                    Err(e) => {
                        out.protect(pod, volcano::VGPU_IDS_NEW, &e.to_string());
                        continue;
                    }
                };
                out.reservations.push(Active {
                    owner: pod.uid.clone(),
                    reservation: slot.reservation(c, k, &d.uuid),
                    recognise,
                });
            }
        }
    }

    /// The instances tracked now, by key.
    pub fn tracked(&self) -> BTreeMap<Key, Instance> {
        self.lock()
            .iter()
            .map(|(k, t)| (k.clone(), t.instance.clone()))
            .collect()
    }

    /// Realises one container's reservations for the pod with UID `owner`, in order
    /// (node-side.md §6.5): an instance already tracked for a reservation is reused (one
    /// tracked for another pod only when no process runs in it and the card still has it: the
    /// scheduler may give the slices of a deleted pod whose process still runs to a new pod);
    /// otherwise the card is put in MIG mode if it
    /// is idle, the reserved placement is checked against the profile's legal ones (never
    /// another tried), and a GPU instance with its compute instance is created. If one fails,
    /// the instances created by this call are destroyed, last first.
    pub fn realise(
        &self,
        owner: &str,
        reservations: &[Reservation],
    ) -> Result<Vec<Instance>, MigError> {
        let mut tracked = self.lock();
        let mut created: Vec<Key> = Vec::new();
        let mut out = Vec::with_capacity(reservations.len());
        for r in reservations {
            let key = Key::of(r);
            let handed = match tracked.get(&key) {
                Some(entry) if entry.owner == owner => {
                    out.push(entry.instance.clone());
                    continue;
                }
                Some(entry) => self.hand_over(entry),
                None => Ok(None),
            };
            match handed {
                Ok(Some(instance)) => {
                    tracing::info!(card = %r.gpu_uuid, gi = instance.gi, uuid = %instance.uuid,
                        owner, "MIG instance of a gone pod handed over");
                    tracked.insert(key, Tracked::now(instance.clone(), owner));
                    out.push(instance);
                    continue;
                }
                Ok(None) => {
                    tracked.remove(&key);
                }
                Err(error) => {
                    self.roll_back(&mut tracked, &created);
                    return Err(error);
                }
            }
            match self.create(r) {
                Ok(instance) => {
                    tracing::info!(card = %r.gpu_uuid, profile = %r.profile,
                        start = r.placement.start, gi = instance.gi, uuid = %instance.uuid,
                        "MIG instance created");
                    tracked.insert(key.clone(), Tracked::now(instance.clone(), owner));
                    created.push(key);
                    out.push(instance);
                }
                Err(error) => {
                    self.roll_back(&mut tracked, &created);
                    return Err(error);
                }
            }
        }
        Ok(out)
    }

    /// Destroys the instances of `created`, last first, and stops tracking them.
    fn roll_back(&self, tracked: &mut BTreeMap<Key, Tracked>, created: &[Key]) {
        for key in created.iter().rev() {
            if let Some(entry) = tracked.remove(key)
                && let Err(e) = self.control.destroy(&entry.instance.gpu, entry.instance.gi)
            {
                tracing::warn!(error = %e, "rolling back a MIG instance");
            }
        }
    }

    /// The instance tracked for another pod, if it may pass to a new one: refused
    /// ([`MigError::HeldBy`]) while a process runs in it; `None` when the card no longer has it
    /// (it is then created anew).
    fn hand_over(&self, entry: &Tracked) -> Result<Option<Instance>, MigError> {
        let instance = &entry.instance;
        let gi = instance.gi;
        if let Err(busy) = self.refuse_if_busy(&instance.gpu, |p| p.gi == Some(gi)) {
            return Err(match busy {
                MigError::Busy { gpu, pids } => MigError::HeldBy {
                    gpu,
                    gi,
                    owner: entry.owner.clone(),
                    pids,
                },
                other => other,
            });
        }
        let on_card = self.control.instances(&instance.gpu)?;
        Ok(on_card.into_iter().find(|i| i == instance))
    }

    fn create(&self, r: &Reservation) -> Result<Instance, MigError> {
        let gpu = r.gpu_uuid.as_str();
        let unknown = || MigError::UnknownProfile {
            gpu: gpu.to_string(),
            profile: r.profile.clone(),
        };
        let id = slices_of(&r.profile)
            .and_then(profile_id)
            .ok_or_else(unknown)?;
        self.refuse_if_busy(gpu, |p| p.gi.is_none())?;
        self.mig_mode_on(gpu)?;
        let profiles = self.control.profiles(gpu)?;
        let profile = profiles.iter().find(|p| p.id == id).ok_or_else(unknown)?;
        if !profile.placements.contains(&r.placement) {
            return Err(MigError::BadPlacement {
                gpu: gpu.to_string(),
                profile: r.profile.clone(),
                start: r.placement.start,
                size: r.placement.size,
            });
        }
        let existing = self.control.instances(gpu)?;
        // An instance of exactly the reserved profile and placement that nobody tracks is left
        // over from this reservation (the agent stopped between creating it and writing its ids
        // back): the scheduler gives a placement to one active reservation only. It is reused
        // when it has a compute instance and no process runs in it.
        if let Some(leftover) = existing
            .iter()
            .find(|i| i.profile_id == id && i.placement == r.placement && !i.uuid.is_empty())
        {
            let gi = leftover.gi;
            self.refuse_if_busy(gpu, |p| p.gi == Some(gi))?;
            tracing::info!(card = %gpu, gi, uuid = %leftover.uuid, "MIG instance left over: reused");
            return Ok(leftover.clone());
        }
        if let Some(other) = existing
            .into_iter()
            .find(|i| i.placement.overlaps(&r.placement))
        {
            return Err(MigError::Occupied {
                gpu: gpu.to_string(),
                start: other.placement.start,
                end: other.placement.start + other.placement.size,
                gi: other.gi,
            });
        }
        self.control.create(gpu, id, r.placement)
    }

    /// Fails with [`MigError::Busy`] when a process matching `counts` runs on the card; a
    /// process list that cannot be read counts as busy.
    fn refuse_if_busy(
        &self,
        gpu: &str,
        counts: impl Fn(&super::Process) -> bool,
    ) -> Result<(), MigError> {
        let pids: Vec<u32> = self
            .control
            .processes(gpu)?
            .iter()
            .filter(|p| counts(p))
            .map(|p| p.pid)
            .collect();
        if pids.is_empty() {
            Ok(())
        } else {
            Err(MigError::Busy {
                gpu: gpu.to_string(),
                pids,
            })
        }
    }

    /// Destroys every tracked instance whose key is not `active`, unless a process still runs
    /// in it (it is kept, and retried next time), its owner's UID is `protected` (that pod's
    /// reservations could not be read), or it was tracked at or after `read_at`, when the pods
    /// behind `active` were read (its pod may be missing from that list only because the list
    /// is older). Returns what could not be destroyed.
    pub fn reconcile(
        &self,
        active: &BTreeSet<Key>,
        protected: &BTreeSet<String>,
        read_at: Instant,
    ) -> Vec<MigError> {
        let mut tracked = self.lock();
        let stale: Vec<Key> = tracked
            .iter()
            .filter(|(k, t)| {
                !active.contains(*k) && !protected.contains(&t.owner) && t.since < read_at
            })
            .map(|(k, _)| k.clone())
            .collect();
        let mut errors = Vec::new();
        for key in stale {
            let Some(instance) = tracked.get(&key).map(|t| t.instance.clone()) else {
                continue;
            };
            let gi = instance.gi;
            let result = self
                .refuse_if_busy(&instance.gpu, |p| p.gi.is_none_or(|g| g == gi))
                .and_then(|()| self.control.destroy(&instance.gpu, gi));
            match result {
                Ok(()) => {
                    tracing::info!(card = %instance.gpu, gi, uuid = %instance.uuid,
                        "MIG instance destroyed: its pod is gone");
                    tracked.remove(&key);
                }
                Err(e) => errors.push(e),
            }
        }
        errors
    }

    /// Reconciles against the node's pods now (node-side.md §6.6): destroys the tracked
    /// instances of gone pods, then adopts every active reservation that recorded runtime ids
    /// but is not tracked (after an agent restart, or when start-up could not adopt it), once
    /// the card confirms the instance. `read_at` is when `pods` was read (taken before the
    /// request). A pod whose reservation list does not decode keeps the instances it owns
    /// (fail-closed for that pod only; logged every cycle); the others are reconciled.
    pub fn reconcile_pods(&self, pods: &[PodInfo], read_at: Instant) -> Vec<MigError> {
        let pods = self.active(pods);
        for reason in &pods.undecodable {
            tracing::warn!(%reason, "MIG instances of this pod kept: reservations unreadable");
        }
        let active: BTreeSet<Key> = pods
            .reservations
            .iter()
            .map(|a| Key::of(&a.reservation))
            .collect();
        let mut errors = self.reconcile(&active, &pods.protected, read_at);
        errors.extend(self.adopt_all(&pods.reservations));
        errors
    }

    /// Adopts every reservation of `reservations` that is realised and not tracked; returns
    /// those the cards do not confirm.
    fn adopt_all(&self, reservations: &[Active]) -> Vec<MigError> {
        reservations
            .iter()
            .filter_map(|a| self.adopt(a).err())
            .collect()
    }

    /// Start-up (node-side.md §6.6): with `reset`, every MIG card that no active reservation
    /// names and no process runs on is put in MIG mode and emptied; then (whatever `reset`) the
    /// recorded instances of active pods are verified on the cards and tracked. `pods` is
    /// `None` when they could not be read: every card then counts as in use, and adoption is
    /// left to reconciliation. Returns what failed (start-up goes on).
    pub fn start(&self, pods: Option<&[PodInfo]>, reset: bool) -> Vec<MigError> {
        let mut errors = Vec::new();
        let cards = match self.control.cards() {
            Ok(cards) => cards,
            Err(e) => return vec![e],
        };
        let active = pods.map(|pods| self.active(pods));
        for reason in active.iter().flat_map(|a| &a.undecodable) {
            tracing::warn!(%reason, "MIG start-up: the pod's slices are unreadable");
        }
        let in_use: BTreeSet<&str> = match &active {
            Some(a) if !a.cards_unknown => a.cards.iter().map(String::as_str).collect(),
            _ => {
                tracing::warn!("MIG start-up: every card counts as in use");
                cards.iter().map(String::as_str).collect()
            }
        };
        for gpu in cards
            .iter()
            .filter(|g| reset && !in_use.contains(g.as_str()))
        {
            if let Err(e) = self.reset(gpu) {
                errors.push(e);
            }
        }
        if let Some(active) = &active {
            errors.extend(self.adopt_all(&active.reservations));
        }
        errors
    }

    /// Puts the card in MIG mode unless it is: refused while a mode change is pending, or
    /// while anything runs on the card (switching would cut it).
    fn mig_mode_on(&self, gpu: &str) -> Result<(), MigError> {
        let mode = self.control.mode(gpu)?;
        if mode.current != mode.pending {
            return Err(MigError::PendingModeChange {
                gpu: gpu.to_string(),
                current: mode.current,
                pending: mode.pending,
            });
        }
        if !mode.current {
            self.refuse_if_busy(gpu, |_| true)?;
            self.control.enable(gpu)?;
        }
        Ok(())
    }

    /// Puts an idle card in MIG mode and destroys every instance on it.
    fn reset(&self, gpu: &str) -> Result<(), MigError> {
        self.refuse_if_busy(gpu, |_| true)?;
        self.mig_mode_on(gpu)?;
        for instance in self.control.instances(gpu)? {
            self.control.destroy(gpu, instance.gi)?;
        }
        tracing::info!(card = %gpu, "idle MIG card reset");
        Ok(())
    }

    /// Tracks an active reservation's instance for its pod once the card confirms it: for
    /// HAMi's, the recorded runtime ids (same profile, placement, ids and MIG UUID; a
    /// reservation without them is not realised yet); for a served Volcano pod's slice, an
    /// instance of the profile at the placement. One already tracked is left as it is.
    fn adopt(&self, active: &Active) -> Result<(), MigError> {
        let r = &active.reservation;
        if active.recognise == Recognise::NotYet || self.lock().contains_key(&Key::of(r)) {
            return Ok(());
        }
        let recorded = (&r.mig_uuid, r.gpu_instance_id, r.compute_instance_id);
        let ids = match recorded {
            (Some(uuid), Some(gi), Some(ci)) => Some((uuid, gi, ci)),
            _ if active.recognise == Recognise::RuntimeIds => return Ok(()),
            _ => None,
        };
        let gpu = r.gpu_uuid.as_str();
        let id = slices_of(&r.profile).and_then(profile_id);
        let found = self.control.instances(gpu)?.into_iter().find(|i| {
            Some(i.profile_id) == id
                && i.placement == r.placement
                && match ids {
                    Some((uuid, gi, ci)) => i.gi == gi && i.ci == ci && &i.uuid == uuid,
                    None => !i.uuid.is_empty(),
                }
        });
        match found {
            Some(instance) => {
                self.lock()
                    .insert(Key::of(r), Tracked::now(instance, &active.owner));
                Ok(())
            }
            None => Err(MigError::Mismatch {
                gpu: gpu.to_string(),
                what: match ids {
                    Some((uuid, gi, ci)) => format!(
                        "{} at {} (GPU instance {gi}, compute instance {ci}, {uuid})",
                        r.profile, r.placement.start
                    ),
                    None => format!(
                        "{} at {} (a served Volcano slice)",
                        r.profile, r.placement.start
                    ),
                },
            }),
        }
    }

    /// Reconciles every `interval` against the pods of `node`, until the task is dropped.
    pub async fn run<P: PodSource>(self: Arc<Self>, pods: P, node: String, interval: Duration) {
        loop {
            tokio::time::sleep(interval).await;
            let read_at = Instant::now();
            let list = match pods.pods_on(&node).await {
                Ok(list) => list,
                Err(error) => {
                    tracing::warn!(%error, "MIG reconciliation skipped: pods unreadable");
                    continue;
                }
            };
            let me = self.clone();
            match tokio::task::spawn_blocking(move || me.reconcile_pods(&list, read_at)).await {
                Ok(errors) => {
                    for error in errors {
                        tracing::warn!(%error, "MIG instance kept");
                    }
                }
                Err(error) => tracing::warn!(%error, "MIG reconciliation failed"),
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Key, Tracked>> {
        // A poisoned lock means a panic elsewhere; the map itself is still consistent.
        self.tracked.lock().unwrap_or_else(|e| e.into_inner())
    }
}
