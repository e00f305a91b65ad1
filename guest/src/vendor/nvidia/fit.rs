//! NVIDIA `Fit` (spec §6.6): the per-card checks in HAMi's exact order, NUMA binding,
//! topology-aware selection and MIG placement.

use crate::api::{CardCheck, Pod};
use crate::device::{Card, ContainerDevice, MigInUse};
use crate::policy::GpuPolicy;
use crate::policy::contains_ignore_case;
use crate::reason::{self, Counter};
use crate::summary::CardRow;
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

/// Why a card fails a request on its own: HAMi's per-card checks, in their order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Why {
    Unhealthy,
    Cordoned,
    TypeMismatch,
    UuidMismatch,
    SlotsExhausted,
    MutexBusy,
    Quota,
    Memory,
    Cores,
    WholeCardBusy,
    ComputeUnits,
    MigInfeasible,
}

/// How many [`Why`]s there are (counted per node without a map).
const WHYS: usize = 12;

/// Every [`Why`], by its discriminant.
const ALL: [Why; WHYS] = [
    Why::Unhealthy,
    Why::Cordoned,
    Why::TypeMismatch,
    Why::UuidMismatch,
    Why::SlotsExhausted,
    Why::MutexBusy,
    Why::Quota,
    Why::Memory,
    Why::Cores,
    Why::WholeCardBusy,
    Why::ComputeUnits,
    Why::MigInfeasible,
];

impl Why {
    fn reason(self) -> &'static str {
        match self {
            Why::Unhealthy => reason::CARD_NOT_HEALTH,
            Why::Cordoned => reason::CARD_CORDONED,
            Why::TypeMismatch => reason::CARD_TYPE_MISMATCH,
            Why::UuidMismatch => reason::CARD_UUID_MISMATCH,
            Why::SlotsExhausted => reason::CARD_TIME_SLICING_EXHAUSTED,
            Why::MutexBusy | Why::WholeCardBusy => reason::EXCLUSIVE_DEVICE_ALLOCATE_CONFLICT,
            Why::Quota => reason::RESOURCE_QUOTA_NOT_FIT,
            Why::Memory => reason::CARD_INSUFFICIENT_MEMORY,
            Why::Cores => reason::CARD_INSUFFICIENT_CORE,
            Why::ComputeUnits => reason::CARD_COMPUTE_UNITS_EXHAUSTED,
            Why::MigInfeasible => reason::CARD_MIG_TOPOLOGY_INFEASIBLE,
        }
    }

    /// The `explain` detail (formatted only when explaining).
    fn detail(self, card: &Card, k: &Request) -> String {
        let d = &card.info;
        let memreq = memreq(d.devmem, k);
        match self {
            Why::Unhealthy => "card is unhealthy".into(),
            Why::Cordoned => format!("listed in {DEVICE_CORDON}"),
            Why::TypeMismatch => format!(
                "model {:?}, mode {:?} excluded by the pod's type or mode selectors",
                d.model, d.mode
            ),
            Why::UuidMismatch => "excluded by use-gpuuuid / nouse-gpuuuid".into(),
            Why::SlotsExhausted => format!("all {} slots in use", d.count),
            Why::MutexBusy => format!("mutex policy, {} tasks on the card", card.used),
            Why::Quota => format!(
                "{memreq} MiB / {} cores would exceed the namespace quota",
                k.coresreq
            ),
            Why::Memory => format!(
                "asked {memreq} MiB, free {} of {} MiB",
                d.devmem - card.used_mem,
                d.devmem
            ),
            Why::Cores => format!(
                "asked {}% cores, free {} of {}",
                k.coresreq,
                d.devcore - card.used_cores,
                d.devcore
            ),
            Why::WholeCardBusy => format!("whole-card request, {} tasks on the card", card.used),
            Why::ComputeUnits => format!("0-core request, all {} cores booked", d.devcore),
            Why::MigInfeasible => {
                format!("no MIG profile of at least {memreq} MiB has a free placement")
            }
        }
    }
}

/// Memory asked of a card of `devmem` MiB (check 9): MiB, else the percentage of the card,
/// else 0.
fn memreq(devmem: i64, k: &Request) -> i64 {
    if k.memreq > 0 {
        k.memreq
    } else if k.mem_pct != super::request::PCT_UNSET {
        devmem * k.mem_pct / 100
    } else {
        0
    }
}

/// What checks 1-2 and 6-14 read of a card: the card itself ([`Card`]) or its row in the
/// node's summary ([`CardRow`]), so that both are checked by the same code, in one order.
trait CardUse {
    fn healthy(&self) -> bool;
    fn cordoned(&self) -> bool;
    /// `count <= used`.
    fn exhausted(&self) -> bool;
    /// `used > 0`.
    fn busy(&self) -> bool;
    fn devmem(&self) -> i64;
    fn free_mem(&self) -> i64;
    fn free_cores(&self) -> i64;
    /// `devcore == 100`.
    fn whole(&self) -> bool;
    /// `devcore != 0 && used_cores == devcore`.
    fn cores_booked(&self) -> bool;
}

impl CardUse for Card {
    fn healthy(&self) -> bool {
        Card::healthy(self)
    }
    fn cordoned(&self) -> bool {
        self.cordoned
    }
    fn exhausted(&self) -> bool {
        self.info.count <= self.used
    }
    fn busy(&self) -> bool {
        self.used > 0
    }
    fn devmem(&self) -> i64 {
        self.info.devmem
    }
    fn free_mem(&self) -> i64 {
        self.info.devmem - self.used_mem
    }
    fn free_cores(&self) -> i64 {
        self.info.devcore - self.used_cores
    }
    fn whole(&self) -> bool {
        self.info.devcore == 100
    }
    fn cores_booked(&self) -> bool {
        self.info.devcore != 0 && self.used_cores == self.info.devcore
    }
}

impl CardUse for CardRow {
    fn healthy(&self) -> bool {
        CardRow::healthy(self)
    }
    fn cordoned(&self) -> bool {
        CardRow::cordoned(self)
    }
    fn exhausted(&self) -> bool {
        CardRow::exhausted(self)
    }
    fn busy(&self) -> bool {
        CardRow::busy(self)
    }
    fn devmem(&self) -> i64 {
        i64::from(self.devmem)
    }
    fn free_mem(&self) -> i64 {
        i64::from(self.free_mem)
    }
    fn free_cores(&self) -> i64 {
        i64::from(self.free_cores)
    }
    fn whole(&self) -> bool {
        CardRow::whole(self)
    }
    fn cores_booked(&self) -> bool {
        CardRow::cores_booked(self)
    }
}

/// Checks 1-2: health and cordon.
fn check_state(card: &impl CardUse) -> Result<(), Why> {
    if !card.healthy() {
        return Err(Why::Unhealthy);
    }
    if card.cordoned() {
        return Err(Why::Cordoned);
    }
    Ok(())
}

/// Checks 6-14 for `k` (cores already clamped to one card): the memory asked of the card, or
/// why it fails. `mutex`: the policy wants an idle card; `quota`: whether that memory and
/// `k`'s cores stay within the namespace quota.
fn check_numbers(
    card: &impl CardUse,
    k: &Request,
    mutex: bool,
    quota: impl FnOnce(i64) -> bool,
) -> Result<i64, Why> {
    // 6. Slots.
    if card.exhausted() {
        return Err(Why::SlotsExhausted);
    }
    // 7. Mutex policy wants an idle card.
    if mutex && card.busy() {
        return Err(Why::MutexBusy);
    }
    // 9. Memory asked of this card.
    let memreq = memreq(card.devmem(), k);
    // 10. Namespace quota.
    if !quota(memreq) {
        return Err(Why::Quota);
    }
    // 11. Memory.
    if card.free_mem() < memreq {
        return Err(Why::Memory);
    }
    // 12. Cores.
    if card.free_cores() < k.coresreq {
        return Err(Why::Cores);
    }
    // 13. A whole-card request cannot share.
    if card.whole() && k.coresreq == 100 && card.busy() {
        return Err(Why::WholeCardBusy);
    }
    // 14. A 0-core task cannot join a card whose cores are all booked.
    if card.cores_booked() && k.coresreq == 0 {
        return Err(Why::ComputeUnits);
    }
    Ok(memreq)
}

/// Checks 1-3: health, cordon, type and mode selectors.
fn check_kind(card: &Card, sel: &Selectors<'_>, request: &Request) -> Result<(), Why> {
    check_state(card)?;
    if sel.type_mismatch(card) || request.vendor != VENDOR {
        return Err(Why::TypeMismatch);
    }
    Ok(())
}

/// Checks 5-15 for `k` (cores already clamped to one card) with `tmp` collected so far: the
/// device the card would give, or why not.
fn check_use(
    card: &Card,
    sel: &Selectors<'_>,
    k: &Request,
    ctx: &FitContext<'_>,
    tmp: &[ContainerDevice],
) -> Result<ContainerDevice, Why> {
    let d = &card.info;
    // 5. UUID selectors.
    if sel.uuid_mismatch(card) {
        return Err(Why::UuidMismatch);
    }
    // 6-14.
    let memreq = check_numbers(card, k, ctx.policy.is_mutex, |memreq| {
        (ctx.quota)(tmp, &d.id, memreq, k.coresreq)
    })?;
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
        let (profile, placement) = mig::choose(card, memreq, tmp).ok_or(Why::MigInfeasible)?;
        candidate.mem = profile.memory_mb;
        candidate.cores = profile.core;
        candidate.mig = Some(MigInUse {
            profile: profile.name,
            placement,
        });
    }
    Ok(candidate)
}

impl<'a> Selectors<'a> {
    fn of(pod: &'a Pod) -> Selectors<'a> {
        Selectors {
            use_type: list(pod, USE_GPU_TYPE),
            nouse_type: list(pod, NOUSE_GPU_TYPE),
            mode: pod.annotation(VGPU_MODE),
            use_uuid: list(pod, USE_GPU_UUID),
            nouse_uuid: list(pod, NOUSE_GPU_UUID),
        }
    }
}

/// `request` with its cores clamped to one card (check 8; HAMi clamps at the first card that
/// reaches the check, and the cards that fail before it do not read the cores).
fn clamped(request: &Request) -> Request {
    let mut k = request.clone();
    k.coresreq = k.coresreq.min(100);
    k
}

/// Fits `request` on `cards` (policy order; tried from the last).
pub fn fit(cards: &[&Card], request: &Request, ctx: &FitContext<'_>) -> Fit {
    let sel = Selectors::of(ctx.pod);
    let need_topology = ctx.policy.need_topology;
    let numa_bind = ctx.policy.numa_bind;
    let mut k = clamped(request);
    let origin = k.nums;
    let mut tmp: Vec<ContainerDevice> = Vec::new();
    let mut tmp_cards: Vec<&Card> = Vec::new();
    let mut counter = Counter::default();
    let mut prev_numa: i64 = -1;
    let fail = |counter: &mut Counter, card: &Card, why: Why, k: &Request| {
        counter.add(why.reason());
        if let Some(cell) = ctx.explain {
            cell.borrow_mut().push(CardCheck {
                container: ctx.position,
                vendor: VENDOR.to_string(),
                uuid: card.info.id.clone(),
                index: card.info.index,
                reason: why.reason().to_string(),
                detail: why.detail(card, k),
            });
        }
    };

    let mut i = cards.len();
    while i > 0 {
        let card = cards[i - 1];
        let d = &card.info;
        // 1-3. Health, cordon, type and mode.
        if let Err(why) = check_kind(card, &sel, request) {
            fail(&mut counter, card, why, &k);
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
        // 5-15.
        let candidate = match check_use(card, &sel, &k, ctx, &tmp) {
            Ok(candidate) => candidate,
            Err(why) => {
                fail(&mut counter, card, why, &k);
                i -= 1;
                continue;
            }
        };
        // 16. Accept.
        if let Some(cell) = ctx.explain {
            cell.borrow_mut().push(CardCheck {
                container: ctx.position,
                vendor: VENDOR.to_string(),
                uuid: d.id.clone(),
                index: d.index,
                reason: String::new(),
                detail: format!(
                    "fits: asked {} MiB and {}% cores, free {} MiB and {} cores",
                    memreq(d.devmem, &k),
                    k.coresreq,
                    d.devmem - card.used_mem,
                    d.devcore - card.used_cores
                ),
            });
        }
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

/// [`fit`] when it accepts no card at all, over the node's cards of this vendor (`owned`). A
/// card's checks depend on the cards accepted before it (NUMA binding, MIG placements, quota
/// over the collected ones) and on nothing else that changes along the walk (clamping the
/// cores is the same for every card): while none is accepted, each card fails for the same
/// reason in any order, so the cards are checked once each, in any order, and counted without
/// a map. `None` as soon as one card passes: [`fit`] then decides.
pub fn fails_on_every_card(
    cards: &[Card],
    request: &Request,
    ctx: &FitContext<'_>,
) -> Option<Counter> {
    let sel = Selectors::of(ctx.pod);
    let k = clamped(request);
    let mut counts = [0u32; WHYS];
    for card in cards.iter().filter(|c| c.vendor == VENDOR && c.owned) {
        let why = match check_kind(card, &sel, request) {
            Err(why) => why,
            Ok(()) => check_use(card, &sel, &k, ctx, &[]).err()?,
        };
        counts[why as usize] += 1;
    }
    let mut counter = Counter::default();
    for (n, why) in counts.iter().zip(ALL) {
        counter.add_n(why.reason(), *n);
    }
    Some(counter)
}

/// [`fails_on_every_card`] on a node's summary ([`crate::vendor::Vendor::summary_check`]), for
/// a pod without card selectors (type, mode, UUID), under a policy that is not `mutex` and in
/// a namespace without an NVIDIA quota: checks 3, 5, 7 and 10 then pass on every card, and
/// the others read only the summary's numbers. Undecided (`None`) as soon as a card passes or
/// is in MIG mode (its placements need the card), and when the request asks more cards than
/// the node has (`filter` then says `NodeInsufficientDevice`, or fits MIG slices).
pub fn summary_check(
    pod: &Pod,
    request: &Request,
    policy: &GpuPolicy,
    quota_limited: bool,
) -> Option<crate::vendor::SummaryCheck> {
    let sel = Selectors::of(pod);
    let plain = sel.use_type.is_none()
        && sel.nouse_type.is_none()
        && sel.mode.is_none()
        && sel.use_uuid.is_none()
        && sel.nouse_uuid.is_none();
    if !plain || policy.is_mutex || quota_limited || request.vendor != VENDOR {
        return None;
    }
    let k = clamped(request);
    // The reasons in the order a counter keeps them, so that each node's is built without a
    // search; sorted once per process, not per call.
    static BY_TEXT: std::sync::OnceLock<[Why; WHYS]> = std::sync::OnceLock::new();
    let by_text = BY_TEXT.get_or_init(|| {
        let mut by_text = ALL;
        by_text.sort_unstable_by_key(|w| w.reason());
        by_text
    });
    Some(Box::new(move |cards: &[CardRow]| {
        let mut counts = [0u32; WHYS];
        let mut total = 0u32;
        for c in cards.iter().filter(|c| c.owned()) {
            total += 1;
            counts[summary_failure(c, &k)? as usize] += 1;
        }
        if k.nums > i64::from(total) {
            return None;
        }
        let mut counter = Counter::default();
        for &why in by_text {
            let n = counts[why as usize];
            if n > 0 {
                counter.push_sorted(why.reason(), n);
            }
        }
        Some((counter, total))
    }))
}

/// Why the summarised card fails `k` (cores clamped) when the pod has no selectors, the
/// policy is not `mutex` and no quota applies: the checks [`check_kind`] and [`check_use`]
/// make then (3, 5, 7 and 10 pass). `None` when it passes, or check 15 (MIG placement) needs
/// the card.
fn summary_failure(c: &CardRow, k: &Request) -> Option<Why> {
    check_state(c)
        .and_then(|()| check_numbers(c, k, false, |_| true))
        .err()
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
