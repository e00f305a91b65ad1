//! HAMi's dynamic MIG: choosing a profile and placement on a MIG-mode card (spec §9.3) and
//! the reservation annotation `hami.io/vgpu-mig-allocations` (spec §9.4).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::device::{Card, ContainerDevice, MigInUse, MigProfile, Placement, PodDevices};

pub const MIG_ALLOCATIONS: &str = "hami.io/vgpu-mig-allocations";

/// One element of `hami.io/vgpu-mig-allocations`. Field order is the wire order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reservation {
    pub container_index: i64,
    pub device_index: i64,
    #[serde(rename = "gpuUUID")]
    pub gpu_uuid: String,
    pub profile: String,
    pub placement: Placement,
    #[serde(rename = "migUUID", default, skip_serializing_if = "Option::is_none")]
    pub mig_uuid: Option<String>,
    #[serde(
        rename = "gpuInstanceID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub gpu_instance_id: Option<u32>,
    #[serde(
        rename = "computeInstanceID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub compute_instance_id: Option<u32>,
}

/// The MIG slices chosen for a pod, as the annotation value; `None` when there are none.
pub fn encode_reservations(devices: &PodDevices) -> Option<String> {
    let list: Vec<Reservation> = devices
        .iter()
        .enumerate()
        .flat_map(|(ci, container)| {
            container.iter().enumerate().filter_map(move |(di, d)| {
                d.mig.as_ref().map(|m| Reservation {
                    container_index: ci as i64,
                    device_index: di as i64,
                    gpu_uuid: d.uuid.clone(),
                    profile: m.profile.clone(),
                    placement: m.placement,
                    mig_uuid: None,
                    gpu_instance_id: None,
                    compute_instance_id: None,
                })
            })
        })
        .collect();
    if list.is_empty() {
        return None;
    }
    serde_json::to_string(&list).ok()
}

/// Decodes and validates the annotation (spec §9.4's refusals).
pub fn decode_reservations(text: &str) -> Result<Vec<Reservation>, String> {
    let list: Vec<Reservation> =
        serde_json::from_str(text).map_err(|e| format!("not a MIG reservation list: {e}"))?;
    let mut seen = BTreeSet::new();
    for r in &list {
        if r.container_index < 0 || r.device_index < 0 {
            return Err("negative containerIndex or deviceIndex".to_string());
        }
        if r.gpu_uuid.is_empty() || r.profile.is_empty() {
            return Err("empty gpuUUID or profile".to_string());
        }
        if r.placement.size == 0 {
            return Err("placement size 0".to_string());
        }
        let runtime = [
            r.mig_uuid.is_some(),
            r.gpu_instance_id.is_some(),
            r.compute_instance_id.is_some(),
        ];
        let set = runtime.iter().filter(|x| **x).count();
        if set != 0 && set != 3 {
            return Err(
                "partial runtime identity (migUUID, gpuInstanceID, computeInstanceID)".to_string(),
            );
        }
        if !seen.insert((r.container_index, r.device_index)) {
            return Err(format!(
                "duplicate reservation for container {} device {}",
                r.container_index, r.device_index
            ));
        }
    }
    Ok(list)
}

/// Attaches reservations to the decoded devices by (container, device) position, and returns
/// the ones left over (no device at that position on that GPU), as (GPU UUID, slice).
pub fn attach(devices: &mut PodDevices, reservations: &[Reservation]) -> Vec<(String, MigInUse)> {
    let mut stray = Vec::new();
    for r in reservations {
        let d = usize::try_from(r.container_index)
            .ok()
            .and_then(|ci| devices.get_mut(ci))
            .and_then(|c| {
                usize::try_from(r.device_index)
                    .ok()
                    .and_then(|di| c.get_mut(di))
            });
        let slice = MigInUse {
            profile: r.profile.clone(),
            placement: r.placement,
        };
        match d {
            Some(d) if d.uuid == r.gpu_uuid && d.mig.is_none() => d.mig = Some(slice),
            _ => stray.push((r.gpu_uuid.clone(), slice)),
        }
    }
    stray
}

/// The smallest profile of at least `memreq` MiB with a free legal placement on `card`, given
/// the slices already in use and those chosen for this container so far (`tentative`).
///
/// Profiles are tried by memory, then slice count; `1g.`/`3g.` profiles try placements from the
/// highest start, the others from the lowest.
///
/// Worked example (A100-40GB: 1g.5gb ×7, 2g.10gb at 0/2/4, 3g.20gb at 0/4): on an empty card,
/// 3g then 2g then 1g then 1g land at 4, 0, 3, 2.
pub fn choose(
    card: &Card,
    memreq: i64,
    tentative: &[ContainerDevice],
) -> Option<(MigProfile, Placement)> {
    let occupied: Vec<Placement> = card
        .mig_in_use
        .iter()
        .map(|m| m.placement)
        .chain(
            tentative
                .iter()
                .filter(|d| d.uuid == card.info.id)
                .filter_map(|d| d.mig.as_ref().map(|m| m.placement)),
        )
        .collect();
    let mut profiles: Vec<&MigProfile> = card.info.mig_profiles.iter().collect();
    profiles.sort_by_key(|p| (p.memory_mb, p.slice_count));
    for p in profiles.into_iter().filter(|p| p.memory_mb >= memreq) {
        let mut placements = p.placements.clone();
        if p.name.starts_with("1g.") || p.name.starts_with("3g.") {
            placements.sort_by_key(|p| std::cmp::Reverse(p.start));
        } else {
            placements.sort_by_key(|p| p.start);
        }
        if let Some(free) = placements
            .into_iter()
            .find(|pl| occupied.iter().all(|o| !o.overlaps(pl)))
        {
            return Some((p.clone(), free));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::DeviceInfo;

    fn a100() -> Card {
        let p = |name: &str, mem, core, size, starts: &[u32]| MigProfile {
            name: name.into(),
            memory_mb: mem,
            core,
            slice_count: size,
            placements: starts
                .iter()
                .map(|&start| Placement { start, size })
                .collect(),
        };
        Card::new(
            "NVIDIA",
            DeviceInfo {
                id: "GPU-m".into(),
                count: 7,
                devmem: 40960,
                devcore: 100,
                model: "NVIDIA A100-SXM4-40GB".into(),
                mode: "mig".into(),
                health: true,
                mig_profiles: vec![
                    p("3g.20gb", 20480, 42, 4, &[0, 4]),
                    p("1g.5gb", 5120, 14, 1, &[0, 1, 2, 3, 4, 5, 6]),
                    p("2g.10gb", 10240, 28, 2, &[0, 2, 4]),
                ],
                ..DeviceInfo::default()
            },
        )
    }

    fn book(card: &mut Card, memreq: i64) -> Option<(String, u32)> {
        let (p, pl) = choose(card, memreq, &[])?;
        card.mig_in_use.push(MigInUse {
            profile: p.name.clone(),
            placement: pl,
        });
        Some((p.name, pl.start))
    }

    #[test]
    fn m1_smallest_profile_that_fits() {
        let card = a100();
        let (p, pl) = choose(&card, 10000, &[]).expect("fits");
        assert_eq!((p.name.as_str(), pl.start, pl.size), ("2g.10gb", 0, 2));
    }

    #[test]
    fn m5_sequential_picks_land_at_4_0_3_2() {
        let mut card = a100();
        let picks: Vec<_> = [20000, 10000, 5000, 5000]
            .into_iter()
            .map(|m| book(&mut card, m).expect("fits"))
            .collect();
        let starts: Vec<u32> = picks.iter().map(|p| p.1).collect();
        assert_eq!(starts, vec![4, 0, 3, 2]);
    }

    #[test]
    fn m2_three_2g_slices_leave_only_a_1g() {
        let mut card = a100();
        for _ in 0..3 {
            book(&mut card, 10000).expect("fits");
        }
        assert!(choose(&card, 10000, &[]).is_none());
        assert_eq!(book(&mut card, 5000), Some(("1g.5gb".into(), 6)));
    }

    #[test]
    fn reservations_round_trip_and_refuse_partial_identity() {
        let text = r#"[{"containerIndex":0,"deviceIndex":0,"gpuUUID":"GPU-m","profile":"2g.10gb","placement":{"start":0,"size":2}}]"#;
        let r = decode_reservations(text).expect("valid");
        assert_eq!(serde_json::to_string(&r).expect("encodes"), text);
        let partial = r#"[{"containerIndex":0,"deviceIndex":0,"gpuUUID":"GPU-m","profile":"1g","placement":{"start":0,"size":1},"migUUID":"MIG-x"}]"#;
        assert!(decode_reservations(partial).is_err());
    }
}
