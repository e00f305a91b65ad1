//! Allocate for containers whose decision reserves MIG slices (node-side.md §6.5): HAMi's
//! reservations are matched to the container's devices, Volcano's slices
//! `UUID[<group>-<position>]` placed by their group's layout ([`crate::mig::volcano`]); the
//! instances are created through the [`MigManager`](crate::mig::MigManager), and for HAMi the
//! runtime ids kept for the write-back.

use std::sync::Arc;

use hamr_guest::device::ContainerDevice;
use hamr_guest::vendor::nvidia::mig::{MIG_ALLOCATIONS, Reservation, decode_reservations};

use super::{AllocateError, Allocator, Candidate, Protocol, response};
use crate::mig::MigManager;
use crate::pods::PodSource;

/// A container's MIG reservations and the manager that realises them.
pub(super) type MigWork = (Arc<MigManager>, Vec<Reservation>);

impl<P: PodSource> Allocator<P> {
    /// The MIG reservations of container entry `position`, in device order, checked against
    /// its devices (node-side.md §6.5), with the manager that realises them: `None` when the
    /// entry reserves no slice.
    pub(super) fn mig_reservations(
        &self,
        candidate: &Candidate,
        position: usize,
        devices: &[ContainerDevice],
    ) -> Result<Option<MigWork>, AllocateError> {
        let pod = candidate.key();
        if candidate.protocol == Protocol::Volcano {
            let Some(what) = volcano_slice(candidate, devices) else {
                return Ok(None);
            };
            let Some(manager) = self.mig.clone() else {
                return Err(AllocateError::MigNotSupported {
                    pod,
                    what,
                    why: "operatingMode is not mig",
                });
            };
            let reservations = manager
                .volcano_reservations(position, devices)
                .map_err(|source| AllocateError::Mig { pod, source })?;
            return Ok(Some((manager, reservations)));
        }
        let Some(text) = candidate.pod.annotation(MIG_ALLOCATIONS) else {
            return Ok(None);
        };
        let bad = |reason: String| AllocateError::MigReservation {
            pod: pod.clone(),
            reason,
        };
        let all = decode_reservations(text).map_err(bad)?;
        let mut mine: Vec<Reservation> = all
            .into_iter()
            .filter(|r| usize::try_from(r.container_index).ok() == Some(position))
            .collect();
        if mine.is_empty() {
            return Ok(None);
        }
        mine.sort_by_key(|r| r.device_index);
        if mine.len() != devices.len() {
            return Err(bad(format!(
                "container {position} has {} reservation(s) for {} device(s)",
                mine.len(),
                devices.len()
            )));
        }
        for (k, (r, d)) in mine.iter().zip(devices).enumerate() {
            if usize::try_from(r.device_index).ok() != Some(k) || r.gpu_uuid != d.uuid {
                return Err(bad(format!(
                    "container {position} device {k} is {} but its reservation is device {} on {}",
                    d.uuid, r.device_index, r.gpu_uuid
                )));
            }
        }
        let Some(manager) = self.mig.clone() else {
            return Err(AllocateError::MigNotSupported {
                pod,
                what: MIG_ALLOCATIONS.to_string(),
                why: "operatingMode is not mig",
            });
        };
        Ok(Some((manager, mine)))
    }

    /// Reconciles once, creates the container's instances and records their runtime ids for
    /// the write-back (HAMi's; Volcano has no place for them); the response names the MIG
    /// devices (no HAMi-core environment or mounts: the isolation is the hardware's).
    pub(super) async fn serve_mig(
        &self,
        candidate: &mut Candidate,
        manager: Arc<MigManager>,
        reservations: &[Reservation],
    ) -> Result<crate::api::ContainerAllocateResponse, AllocateError> {
        let pod = candidate.key();
        let read_at = std::time::Instant::now();
        let pods = self.pods.pods_on(&self.node).await?;
        let wanted = reservations.to_vec();
        let owner = candidate.pod.uid.clone();
        let worker = manager.clone();
        let realised = tokio::task::spawn_blocking(move || {
            for error in worker.reconcile_pods(&pods, read_at) {
                tracing::warn!(%error, "MIG instance kept");
            }
            worker.realise(&owner, &wanted)
        })
        .await
        .map_err(|e| AllocateError::MigReservation {
            pod: pod.clone(),
            reason: format!("the MIG worker stopped: {e}"),
        })?
        .map_err(|source| AllocateError::Mig {
            pod: pod.clone(),
            source,
        })?;
        if candidate.protocol == Protocol::Hami {
            self.record_mig(candidate, reservations, &realised)?;
        }
        Ok(response::mig_response(&realised))
    }

    /// Records the runtime ids of `realised` in the candidate's `hami.io/vgpu-mig-allocations`
    /// for the write-back.
    fn record_mig(
        &self,
        candidate: &mut Candidate,
        reservations: &[Reservation],
        realised: &[crate::mig::Instance],
    ) -> Result<(), AllocateError> {
        let pod = candidate.key();
        let text = candidate
            .mig_written
            .as_deref()
            .or(candidate.pod.annotation(MIG_ALLOCATIONS))
            .unwrap_or_default();
        let mut all =
            decode_reservations(text).map_err(|reason| AllocateError::MigReservation {
                pod: pod.clone(),
                reason,
            })?;
        for (r, instance) in reservations.iter().zip(realised) {
            if let Some(entry) = all.iter_mut().find(|e| {
                e.container_index == r.container_index && e.device_index == r.device_index
            }) {
                entry.mig_uuid = Some(instance.uuid.clone());
                entry.gpu_instance_id = Some(instance.gi);
                entry.compute_instance_id = Some(instance.ci);
            }
        }
        let written = serde_json::to_string(&all).map_err(|e| AllocateError::MigReservation {
            pod: pod.clone(),
            reason: e.to_string(),
        })?;
        candidate.mig_written = Some(written);
        Ok(())
    }
}

/// Volcano's `UUID[group-position]` slice among the devices, if any.
fn volcano_slice(candidate: &Candidate, devices: &[ContainerDevice]) -> Option<String> {
    devices.iter().find_map(|d| {
        d.mig.as_ref().map(|m| {
            format!(
                "{}[{}-{}] in {}",
                d.uuid,
                m.profile,
                m.placement.start,
                candidate.protocol.to_allocate()
            )
        })
    })
}
