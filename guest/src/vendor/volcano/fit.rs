//! Volcano's per-card fit (spec interfaces.md §3.5, §3.7): cards in the deviceshare policy's
//! order, one card at most once per container, and MIG slices on `mig` cards.

use std::cmp::Ordering;

use crate::api::CardCheck;
use crate::device::{Card, ContainerDevice};
use crate::policy::contains_ignore_case;
use crate::reason::{self, Counter};
use crate::vendor::nvidia::fit::list;
use crate::vendor::{Fit, FitContext, Request};

use super::{
    MODE_MIG, NOUSE_GPU_TYPE, NOUSE_GPU_UUID, USE_GPU_TYPE, USE_GPU_UUID, VENDOR, VGPU_MODE,
    device_on, memreq, mig, podgroup,
};

/// The order cards are tried in under `deviceshare.SchedulePolicy`: `binpack` takes the card
/// with the most memory in use first, `spread` the card with the fewest tasks; the lower
/// index breaks ties, and is the whole order without a policy.
pub fn try_order(policy: &str, a: &Card, b: &Card) -> Ordering {
    let by_policy = match policy {
        "binpack" => b.used_mem.cmp(&a.used_mem),
        "spread" => a.used.cmp(&b.used),
        _ => Ordering::Equal,
    };
    by_policy.then_with(|| a.info.index.cmp(&b.info.index))
}

/// Volcano's node score for the devices chosen, as the mean per device of its device score
/// after the pod is added: binpack `100 × UsedMem / Memory`, spread 100 for a card whose
/// only task is this one, 0 without a policy. Volcano sums the device scores; the mean keeps
/// the result in 0..=100 and orders nodes the same for one pod.
///
/// Worked example (binpack): two 40960 MiB cards, one holding 10240 MiB; a pod taking 10240
/// MiB on that card scores 100 × 20480 / 40960 = 50, on the idle card 25.
pub fn node_score(policy: &str, cards: &[Card], chosen: &[&ContainerDevice]) -> u32 {
    if chosen.is_empty() {
        return 0;
    }
    let mut added: Vec<(&str, i64, i64)> = Vec::new(); // (uuid, tasks, MiB) added so far
    let mut total = 0.0f64;
    for d in chosen {
        let Some(card) = cards
            .iter()
            .find(|c| c.vendor == VENDOR && c.info.id == d.uuid)
        else {
            continue;
        };
        let slot = match added.iter().position(|(u, _, _)| *u == d.uuid) {
            Some(i) => i,
            None => {
                added.push((d.uuid.as_str(), 0, 0));
                added.len() - 1
            }
        };
        added[slot].1 += 1;
        added[slot].2 += d.mem;
        let (tasks, mem) = (card.used + added[slot].1, card.used_mem + added[slot].2);
        total += match policy {
            "binpack" if card.info.devmem > 0 => 100.0 * mem as f64 / card.info.devmem as f64,
            "spread" if tasks == 1 => 100.0,
            _ => 0.0,
        };
    }
    (total / chosen.len() as f64).round().clamp(0.0, 100.0) as u32
}

/// Fits `request` on the node's Volcano cards. Checks per card, the first failure counts:
/// health (`CardNotHealth`); the pod's `volcano.sh/vgpu-mode` and `nvidia.com/(no)use-gputype`
/// (`CardTypeMismatch`); `volcano.sh/vgpu-(no)use-gpuuuid` (`CardUuidMismatch`); a free slot
/// (`CardTimeSlicingExhausted`); under `volcano.sh/vgpu-podgroup-policy: spread`, no other pod of
/// the pod's PodGroup on the card (`CardPodGroupConflict`); memory (`CardInsufficientMemory`);
/// cores ≤ 100 in all (`CardInsufficientCore`); a 100-core request on a used card
/// (`ExclusiveDeviceAllocateConflict`); a 0-core request on a card whose cores are all booked
/// (`CardComputeUnitsExhausted`); on a `mig` card a slice that fits
/// (`CardMigTopologyInfeasible`).
pub fn fit(cards: &[&Card], request: &Request, ctx: &FitContext<'_>) -> Fit {
    let pod = ctx.pod;
    let cfg = &ctx.config.volcano;
    let mode = pod.annotation(VGPU_MODE);
    let use_type = list(pod, USE_GPU_TYPE);
    let nouse_type = list(pod, NOUSE_GPU_TYPE);
    let use_uuid = list(pod, USE_GPU_UUID);
    let nouse_uuid = list(pod, NOUSE_GPU_UUID);
    let spread = podgroup::spread_key(pod);
    let mut order: Vec<&Card> = cards.to_vec();
    order.sort_by(|a, b| try_order(&cfg.schedule_policy, a, b));

    let mut counter = Counter::default();
    let mut chosen = Vec::new();
    let mut left = request.nums;
    let note = |card: &Card, reason: &str, detail: String| {
        if let Some(cell) = ctx.explain {
            cell.borrow_mut().push(CardCheck {
                container: ctx.position,
                vendor: VENDOR.to_string(),
                uuid: card.info.id.clone(),
                index: card.info.index,
                reason: reason.to_string(),
                detail,
            });
        }
    };
    for card in order {
        let d = &card.info;
        let mem = memreq(request, d.devmem);
        let cores = request.coresreq;
        let failure: Option<(&'static str, String)> = if !card.healthy() {
            Some((reason::CARD_NOT_HEALTH, "card is unhealthy".into()))
        } else if mode.is_some_and(|m| m != d.mode)
            || use_type
                .as_ref()
                .is_some_and(|l| !l.iter().any(|t| contains_ignore_case(&d.model, t)))
            || nouse_type
                .as_ref()
                .is_some_and(|l| l.iter().any(|t| contains_ignore_case(&d.model, t)))
        {
            Some((
                reason::CARD_TYPE_MISMATCH,
                format!(
                    "type {:?}, mode {:?} excluded by the pod's mode or type selectors",
                    d.model, d.mode
                ),
            ))
        } else if use_uuid
            .as_ref()
            .is_some_and(|l| !l.contains(&d.id.as_str()))
            || nouse_uuid
                .as_ref()
                .is_some_and(|l| l.contains(&d.id.as_str()))
        {
            Some((
                reason::CARD_UUID_MISMATCH,
                "excluded by vgpu-use-gpuuuid / vgpu-nouse-gpuuuid".into(),
            ))
        } else if d.count <= card.used {
            Some((
                reason::CARD_TIME_SLICING_EXHAUSTED,
                format!("all {} slots in use", d.count),
            ))
        } else if let Some(key) = spread.as_deref()
            && podgroup::conflict(card, key, &pod.uid)
        {
            Some((
                reason::CARD_POD_GROUP_CONFLICT,
                format!("holds a pod of PodGroup {key} (vgpu-podgroup-policy: spread)"),
            ))
        } else if d.devmem - card.used_mem < mem {
            Some((
                reason::CARD_INSUFFICIENT_MEMORY,
                format!(
                    "asked {mem} MiB, free {} of {} MiB",
                    d.devmem - card.used_mem,
                    d.devmem
                ),
            ))
        } else if card.used_cores + cores > 100 {
            Some((
                reason::CARD_INSUFFICIENT_CORE,
                format!("asked {cores}% cores, {}% booked", card.used_cores),
            ))
        } else if cores == 100 && card.used > 0 {
            Some((
                reason::EXCLUSIVE_DEVICE_ALLOCATE_CONFLICT,
                format!("whole-card request, {} tasks on the card", card.used),
            ))
        } else if card.used_cores >= 100 && cores == 0 {
            Some((
                reason::CARD_COMPUTE_UNITS_EXHAUSTED,
                "0-core request, all cores booked".into(),
            ))
        } else {
            None
        };
        if let Some((r, detail)) = failure {
            counter.add(r);
            note(card, r, detail);
            continue;
        }
        let mut device = device_on(card, mem, cores);
        if d.mode == MODE_MIG {
            let factor = cfg.gpu_memory_factor.max(1);
            let slice = cfg
                .geometries_for(&d.model)
                .and_then(|groups| mig::choose(card, groups, mem.saturating_mul(factor)));
            let Some((slice, slice_mem)) = slice else {
                let r = reason::CARD_MIG_TOPOLOGY_INFEASIBLE;
                counter.add(r);
                note(
                    card,
                    r,
                    format!("no free slice of at least {mem} MiB × {factor}"),
                );
                continue;
            };
            device.mem = slice_mem / factor;
            device.mig = Some(slice);
        }
        note(
            card,
            "",
            format!("fits: {} MiB and {cores}% cores", device.mem),
        );
        chosen.push(device);
        left -= 1;
        if left <= 0 {
            return Fit::Fits(chosen);
        }
    }
    if !chosen.is_empty() {
        counter.set(
            reason::ALLOCATED_CARDS_INSUFFICIENT_REQUEST,
            chosen.len() as u32,
        );
    }
    Fit::NoFit(counter)
}
