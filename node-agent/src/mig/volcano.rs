//! Volcano's MIG slices on the cards (interfaces.md §3.7): the scheduler writes a slice as
//! `UUID[<group>-<position>]`, a position in one of the card model's geometry groups
//! (`knownMigGeometries`), not a placement. Here each group is laid out on the card once: every
//! position gets a profile and a placement such that all the group's slices fit together, so
//! that any subset of them can be created in any order. A slice then becomes an ordinary
//! [`Reservation`] (profile + placement) that the [`MigManager`](super::MigManager) realises.
//!
//! Volcano's own device plugin cuts the whole group at once when the first slice is served.
//! Creating only the slices in use leaves the rest of the card free for the group's later
//! slices, at the same placements (`conformance/DEVIATIONS.md`).

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use hamr_guest::config::{MigGroup, VolcanoConfig};
use hamr_guest::device::{ContainerDevice, Placement};
use hamr_guest::vendor::nvidia::mig::Reservation;

use super::{GiProfile, MigControl, MigError, profile_id, slices_of};
use crate::register::volcano::volcano_type;

/// One position of a geometry group on a card: the profile name (`2g.10gb`) and where it sits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slot {
    pub profile: String,
    pub placement: Placement,
}

impl Slot {
    /// The slot as the reservation of device `device` of container `container` on card `gpu`
    /// (not realised yet: no runtime ids).
    pub fn reservation(self, container: usize, device: usize, gpu: &str) -> Reservation {
        Reservation {
            container_index: i64::try_from(container).unwrap_or(i64::MAX),
            device_index: i64::try_from(device).unwrap_or(i64::MAX),
            gpu_uuid: gpu.to_string(),
            profile: self.profile,
            placement: self.placement,
            mig_uuid: None,
            gpu_instance_id: None,
            compute_instance_id: None,
        }
    }
}

/// The geometry groups of the node's cards, and the layouts worked out so far.
#[derive(Default)]
pub struct Geometries {
    volcano: VolcanoConfig,
    /// Card UUID → the type Volcano registers (`NVIDIA-<model>`), which selects the groups.
    types: BTreeMap<String, String>,
    /// (card, group) → the group's slots by position. A card's profiles do not change.
    layouts: Mutex<Layouts>,
}

/// (card UUID, group name) → the group's slots by position.
type Layouts = BTreeMap<(String, String), Arc<[Slot]>>;

impl Geometries {
    /// `volcano` holds `knownMigGeometries`; `cards` are (UUID, model) of the node's NVIDIA
    /// cards.
    pub fn new<'a>(
        volcano: VolcanoConfig,
        cards: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Geometries {
        Geometries {
            volcano,
            types: cards
                .into_iter()
                .map(|(uuid, model)| (uuid.to_string(), volcano_type(model)))
                .collect(),
            layouts: Mutex::new(BTreeMap::new()),
        }
    }

    /// The reservations of one container's slices (container `container`, devices in order).
    /// Every device must be a slice: Volcano cuts every card of a `mig` node.
    pub fn reservations(
        &self,
        control: &dyn MigControl,
        container: usize,
        devices: &[ContainerDevice],
    ) -> Result<Vec<Reservation>, MigError> {
        devices
            .iter()
            .enumerate()
            .map(|(k, d)| {
                let Some(slice) = &d.mig else {
                    return Err(MigError::Geometry {
                        gpu: d.uuid.clone(),
                        group: String::new(),
                        reason: format!(
                            "container {container} device {k} is the whole card, not a slice"
                        ),
                    });
                };
                let slot = self.slot(control, &d.uuid, &slice.profile, slice.placement.start)?;
                Ok(slot.reservation(container, k, &d.uuid))
            })
            .collect()
    }

    /// Where position `position` of group `group` sits on card `gpu`.
    pub fn slot(
        &self,
        control: &dyn MigControl,
        gpu: &str,
        group: &str,
        position: u32,
    ) -> Result<Slot, MigError> {
        let layout = self.layout(control, gpu, group)?;
        usize::try_from(position)
            .ok()
            .and_then(|p| layout.get(p))
            .cloned()
            .ok_or_else(|| MigError::Geometry {
                gpu: gpu.to_string(),
                group: group.to_string(),
                reason: format!(
                    "position {position} is past the group's {} slice(s)",
                    layout.len()
                ),
            })
    }

    fn layout(
        &self,
        control: &dyn MigControl,
        gpu: &str,
        group: &str,
    ) -> Result<Arc<[Slot]>, MigError> {
        let key = (gpu.to_string(), group.to_string());
        if let Some(found) = self.lock().get(&key) {
            return Ok(found.clone());
        }
        let geometry = |reason: String| MigError::Geometry {
            gpu: gpu.to_string(),
            group: group.to_string(),
            reason,
        };
        let card_type = self.types.get(gpu).ok_or_else(|| MigError::UnknownCard {
            gpu: gpu.to_string(),
        })?;
        let groups = self.volcano.geometries_for(card_type).ok_or_else(|| {
            geometry(format!(
                "no volcano.knownMigGeometries entry names a model in {card_type:?}"
            ))
        })?;
        let found = groups
            .iter()
            .find(|g| g.group == group)
            .ok_or_else(|| geometry(format!("not a geometry group of {card_type:?}")))?;
        let slots: Arc<[Slot]> = lay_out(gpu, found, &control.profiles(gpu)?)?.into();
        self.lock().insert(key, slots.clone());
        Ok(slots)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Layouts> {
        // A poisoned lock means a panic elsewhere; the cache itself is still consistent.
        self.layouts.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Lays `group` out on a card with `profiles`: one slot per position (the group's instance
/// types in order, `count` each), every slot at one of its profile's legal placements, no two
/// overlapping. Larger profiles are placed first (they have fewer placements), each at the
/// first placement that lets the rest fit; slots of one profile take placements in position
/// order. The same group on the same card always gets the same layout.
pub fn lay_out(gpu: &str, group: &MigGroup, profiles: &[GiProfile]) -> Result<Vec<Slot>, MigError> {
    let geometry = |reason: String| MigError::Geometry {
        gpu: gpu.to_string(),
        group: group.group.clone(),
        reason,
    };
    let mut slots: Vec<(&str, &GiProfile)> = Vec::new();
    for instance in &group.geometries {
        let profile = slices_of(&instance.name)
            .and_then(profile_id)
            .and_then(|id| profiles.iter().find(|p| p.id == id))
            .ok_or_else(|| MigError::UnknownProfile {
                gpu: gpu.to_string(),
                profile: instance.name.clone(),
            })?;
        let count = usize::try_from(instance.count).unwrap_or(0);
        let same = slots.iter().filter(|(_, p)| p.id == profile.id).count();
        if same + count > usize::try_from(profile.instance_count).unwrap_or(0) {
            return Err(geometry(format!(
                "{} instance(s) of {} but the card holds {}",
                same + count,
                instance.name,
                profile.instance_count
            )));
        }
        slots.extend(std::iter::repeat_n(
            (instance.name.as_str(), profile),
            count,
        ));
    }
    let mut order: Vec<usize> = (0..slots.len()).collect();
    order.sort_by_key(|&i| (Reverse(slots[i].1.slice_count), slots[i].1.id, i));
    let mut chosen: Vec<Option<(usize, Placement)>> = vec![None; slots.len()];
    if !place(&slots, &order, 0, &mut chosen) {
        return Err(geometry(
            "its slices do not fit on the card together".to_string(),
        ));
    }
    Ok(slots
        .iter()
        .zip(chosen)
        .map(|((name, _), at)| Slot {
            profile: name.to_string(),
            // `place` returned true: every slot has a placement.
            placement: at.map(|(_, p)| p).unwrap_or_default(),
        })
        .collect())
}

/// Depth-first from `order[k]` on: the slot takes each legal placement not overlapping those
/// chosen, after the placement of the previous slot of its profile (equal slots are adjacent
/// in `order`, and are not tried in every order). `chosen` keeps (placement index, placement)
/// per slot.
fn place(
    slots: &[(&str, &GiProfile)],
    order: &[usize],
    k: usize,
    chosen: &mut [Option<(usize, Placement)>],
) -> bool {
    let Some(&slot) = order.get(k) else {
        return true;
    };
    let profile = slots[slot].1;
    let after = k
        .checked_sub(1)
        .map(|j| order[j])
        .filter(|&prev| slots[prev].1.id == profile.id)
        .and_then(|prev| chosen[prev])
        .map_or(0, |(n, _)| n + 1);
    for (n, placement) in profile.placements.iter().enumerate().skip(after) {
        if chosen.iter().flatten().any(|(_, c)| c.overlaps(placement)) {
            continue;
        }
        chosen[slot] = Some((n, *placement));
        if place(slots, order, k + 1, chosen) {
            return true;
        }
        chosen[slot] = None;
    }
    false
}

#[cfg(test)]
mod tests;
