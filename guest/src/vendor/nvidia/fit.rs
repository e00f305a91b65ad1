//! NVIDIA `Fit` (spec §6.6): the per-card checks in HAMi's exact order, NUMA binding,
//! topology-aware selection and MIG placement.

use crate::api::{CardCheck, Pod};
use crate::device::{Card, ContainerDevice, MigInUse};
use crate::policy::contains_ignore_case;
use crate::reason::{self, Counter};
use crate::vendor::{Fit, FitContext, Request};

use super::{NOUSE_GPU_TYPE, NOUSE_GPU_UUID, USE_GPU_TYPE, USE_GPU_UUID, VENDOR, VGPU_MODE, mig};

pub const DEVICE_CORDON: &str = "hami.io/device-cordon";

/// A comma list annotation: trimmed, empty items dropped; `None` when absent or blank.
/// Shared with Volcano's selectors, which read their lists the same way.
pub(crate) fn list<'a>(pod: &'a Pod, key: &str) -> Option<Vec<&'a str>> {
    let v = pod.annotation(key)?;
    if v.trim().is_empty() {
        return None;
    }
    Some(
        v.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect(),
    )
}

/// The pod's card selectors, read once per fit.
struct Selectors<'a> {
    use_type: Option<Vec<&'a str>>,
    nouse_type: Option<Vec<&'a str>>,
    mode: Option<&'a str>,
    use_uuid: Option<Vec<&'a str>>,
    nouse_uuid: Option<Vec<&'a str>>,
}

impl Selectors<'_> {
    fn type_mismatch(&self, card: &Card) -> bool {
        let model = &card.info.model;
        if let Some(items) = &self.use_type
            && !items.iter().any(|t| contains_ignore_case(model, t))
        {
            return true;
        }
        if let Some(items) = &self.nouse_type
            && items.iter().any(|t| contains_ignore_case(model, t))
        {
            return true;
        }
        if let Some(mode) = self.mode
            && !mode.contains(card.info.mode.as_str())
        {
            return true;
        }
        false
    }

    fn uuid_mismatch(&self, card: &Card) -> bool {
        let id = card.info.id.as_str();
        self.use_uuid.as_ref().is_some_and(|l| !l.contains(&id))
            || self.nouse_uuid.as_ref().is_some_and(|l| l.contains(&id))
    }
}

/// Fits `request` on `cards` (policy order; tried from the last).
pub fn fit(cards: &[&Card], request: &Request, ctx: &FitContext<'_>) -> Fit {
    let pod = ctx.pod;
    let sel = Selectors {
        use_type: list(pod, USE_GPU_TYPE),
        nouse_type: list(pod, NOUSE_GPU_TYPE),
        mode: pod.annotation(VGPU_MODE),
        use_uuid: list(pod, USE_GPU_UUID),
        nouse_uuid: list(pod, NOUSE_GPU_UUID),
    };
    let need_topology = ctx.policy.need_topology;
    let numa_bind = ctx.policy.numa_bind;
    let mut k = request.clone();
    let origin = k.nums;
    let mut tmp: Vec<ContainerDevice> = Vec::new();
    let mut tmp_cards: Vec<&Card> = Vec::new();
    let mut counter = Counter::default();
    let mut prev_numa: i64 = -1;
    // `detail` is only formatted when explaining: this closure runs for every card.
    let note = |card: &Card, reason: &str, detail: &dyn Fn() -> String| {
        if let Some(cell) = ctx.explain {
            cell.borrow_mut().push(CardCheck {
                container: ctx.position,
                vendor: VENDOR.to_string(),
                uuid: card.info.id.clone(),
                index: card.info.index,
                reason: reason.to_string(),
                detail: detail(),
            });
        }
    };

    let mut i = cards.len();
    while i > 0 {
        let card = cards[i - 1];
        let d = &card.info;
        let fail = |counter: &mut Counter, r: &'static str, detail: &dyn Fn() -> String| {
            counter.add(r);
            note(card, r, detail);
        };
        // 1. Health.
        if !card.healthy() {
            fail(&mut counter, reason::CARD_NOT_HEALTH, &|| {
                "card is unhealthy".into()
            });
            i -= 1;
            continue;
        }
        // 2. Cordon.
        if card.cordoned {
            fail(&mut counter, reason::CARD_CORDONED, &|| {
                format!("listed in {DEVICE_CORDON}")
            });
            i -= 1;
            continue;
        }
        // 3. Type and mode selectors.
        if sel.type_mismatch(card) || request.vendor != VENDOR {
            fail(&mut counter, reason::CARD_TYPE_MISMATCH, &|| {
                format!(
                    "model {:?}, mode {:?} excluded by the pod's type or mode selectors",
                    d.model, d.mode
                )
            });
            i -= 1;
            continue;
        }
        // 4. NUMA binding: a change of NUMA node discards what was collected.
        if numa_bind && d.numa != prev_numa {
            if !tmp.is_empty() {
                counter.add_n(reason::NUMA_NOT_FIT, tmp.len() as u32);
            }
            k.nums = origin;
            tmp.clear();
            tmp_cards.clear();
            prev_numa = d.numa;
        }
        // 5. UUID selectors.
        if sel.uuid_mismatch(card) {
            fail(&mut counter, reason::CARD_UUID_MISMATCH, &|| {
                "excluded by use-gpuuuid / nouse-gpuuuid".into()
            });
            i -= 1;
            continue;
        }
        // 6. Slots.
        if d.count <= card.used {
            fail(&mut counter, reason::CARD_TIME_SLICING_EXHAUSTED, &|| {
                format!("all {} slots in use", d.count)
            });
            i -= 1;
            continue;
        }
        // 7. Mutex policy wants an idle card.
        if ctx.policy.is_mutex && card.used > 0 {
            fail(
                &mut counter,
                reason::EXCLUSIVE_DEVICE_ALLOCATE_CONFLICT,
                &|| format!("mutex policy, {} tasks on the card", card.used),
            );
            i -= 1;
            continue;
        }
        // 8. Cores above one card are clamped (and stay clamped for later cards).
        if k.coresreq > 100 {
            k.coresreq = 100;
        }
        // 9. Memory asked of this card.
        let memreq = if k.memreq > 0 {
            k.memreq
        } else if k.mem_pct != super::request::PCT_UNSET {
            d.devmem * k.mem_pct / 100
        } else {
            0
        };
        // 10. Namespace quota.
        if !(ctx.quota)(&tmp, &d.id, memreq, k.coresreq) {
            fail(&mut counter, reason::RESOURCE_QUOTA_NOT_FIT, &|| {
                format!(
                    "{memreq} MiB / {} cores would exceed the namespace quota",
                    k.coresreq
                )
            });
            i -= 1;
            continue;
        }
        // 11. Memory.
        let free_mem = d.devmem - card.used_mem;
        if free_mem < memreq {
            fail(&mut counter, reason::CARD_INSUFFICIENT_MEMORY, &|| {
                format!("asked {memreq} MiB, free {free_mem} of {} MiB", d.devmem)
            });
            i -= 1;
            continue;
        }
        // 12. Cores.
        let free_cores = d.devcore - card.used_cores;
        if free_cores < k.coresreq {
            fail(&mut counter, reason::CARD_INSUFFICIENT_CORE, &|| {
                format!(
                    "asked {}% cores, free {free_cores} of {}",
                    k.coresreq, d.devcore
                )
            });
            i -= 1;
            continue;
        }
        // 13. A whole-card request cannot share.
        if d.devcore == 100 && k.coresreq == 100 && card.used > 0 {
            fail(
                &mut counter,
                reason::EXCLUSIVE_DEVICE_ALLOCATE_CONFLICT,
                &|| format!("whole-card request, {} tasks on the card", card.used),
            );
            i -= 1;
            continue;
        }
        // 14. A 0-core task cannot join a card whose cores are all booked.
        if d.devcore != 0 && card.used_cores == d.devcore && k.coresreq == 0 {
            fail(&mut counter, reason::CARD_COMPUTE_UNITS_EXHAUSTED, &|| {
                format!("0-core request, all {} cores booked", d.devcore)
            });
            i -= 1;
            continue;
        }
        let mut candidate = ContainerDevice {
            uuid: d.id.clone(),
            vendor: VENDOR.to_string(),
            mem: memreq,
            cores: k.coresreq,
            index: d.index,
            mig: None,
        };
        // 15. MIG placement.
        if d.mode == "mig" {
            match mig::choose(card, memreq, &tmp) {
                Some((profile, placement)) => {
                    candidate.mem = profile.memory_mb;
                    candidate.cores = profile.core;
                    candidate.mig = Some(MigInUse {
                        profile: profile.name,
                        placement,
                    });
                }
                None => {
                    fail(&mut counter, reason::CARD_MIG_TOPOLOGY_INFEASIBLE, &|| {
                        format!("no MIG profile of at least {memreq} MiB has a free placement")
                    });
                    i -= 1;
                    continue;
                }
            }
        }
        // 16. Accept.
        note(card, "", &|| {
            format!(
                "fits: asked {memreq} MiB and {}% cores, free {free_mem} MiB and {free_cores} cores",
                k.coresreq
            )
        });
        if k.nums > 0 {
            tmp.push(candidate);
            tmp_cards.push(card);
            if !need_topology {
                k.nums -= 1;
            }
        }
        // 17. Done.
        if k.nums == 0 && !need_topology {
            return Fit::Fits(tmp);
        }
        // 18. A MIG card may host several slices of one container: look at it again.
        if d.mode != "mig" {
            i -= 1;
        }
    }

    let origin_len = usize::try_from(origin).unwrap_or(0);
    if need_topology && tmp.len() == origin_len {
        return Fit::Fits(tmp);
    }
    if need_topology && tmp.len() > origin_len {
        return Fit::Fits(topology_pick(&tmp, &tmp_cards, origin_len));
    }
    if !tmp.is_empty() {
        counter.set(
            reason::ALLOCATED_CARDS_INSUFFICIENT_REQUEST,
            tmp.len() as u32,
        );
    }
    Fit::NoFit(counter)
}

/// [`fit`] when it accepts no card at all. A card's checks depend on the cards accepted
/// before it (NUMA binding, MIG placements, quota over the collected ones) and on nothing else
/// that changes along the walk (clamping the cores is the same for every card): while none is
/// accepted, each card fails for the same reason in any order. A fit that accepted one counts
/// `AllocatedCardsInsufficientRequest` or `NumaNotFit`, or fits.
pub fn fails_on_every_card(
    cards: &[&Card],
    request: &Request,
    ctx: &FitContext<'_>,
) -> Option<Counter> {
    match fit(cards, request, ctx) {
        Fit::NoFit(counter)
            if counter.get(reason::ALLOCATED_CARDS_INSUFFICIENT_REQUEST) == 0
                && counter.get(reason::NUMA_NOT_FIT) == 0 =>
        {
            Some(counter)
        }
        _ => None,
    }
}

/// Topology-aware choice among the collected cards: for one card, the one with the smallest
/// sum of pair scores to the others (least damage to good groups); for n cards, the first
/// combination (lexicographic in collection order) with the strictly highest sum of pair scores.
fn topology_pick(tmp: &[ContainerDevice], cards: &[&Card], n: usize) -> Vec<ContainerDevice> {
    let score = |a: usize, b: usize| -> i64 {
        cards[a]
            .info
            .pair_scores
            .get(&cards[b].info.id)
            .copied()
            .unwrap_or(0)
    };
    if n == 1 {
        let mut best = 0;
        let mut best_total = i64::MAX;
        for a in 0..tmp.len() {
            let total: i64 = (0..tmp.len())
                .filter(|&b| b != a)
                .map(|b| score(a, b))
                .sum();
            if total < best_total {
                best_total = total;
                best = a;
            }
        }
        return vec![tmp[best].clone()];
    }
    let mut combo: Vec<usize> = (0..n).collect();
    let mut best: Vec<usize> = combo.clone();
    let mut best_total = i64::MIN;
    loop {
        let mut total = 0;
        for x in 0..n {
            for y in x + 1..n {
                total += score(combo[x], combo[y]);
            }
        }
        if total > best_total {
            best_total = total;
            best = combo.clone();
        }
        // Next combination in lexicographic order.
        let mut pos = n;
        while pos > 0 && combo[pos - 1] == tmp.len() - n + pos - 1 {
            pos -= 1;
        }
        if pos == 0 {
            break;
        }
        combo[pos - 1] += 1;
        for q in pos..n {
            combo[q] = combo[q - 1] + 1;
        }
    }
    best.into_iter().map(|x| tmp[x].clone()).collect()
}
