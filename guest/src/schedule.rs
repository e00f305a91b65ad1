//! Filter, score, reserve and explain over the ledger (spec §6.1–6.3, §6.8–6.9, §10.2).

use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::HashMap;

use crate::api::{
    CandidateOutcome, CandidateVerdict, CardCheck, CardUsage, Code, Decision, DeviceGrant, Error,
    FilterOutcome, NodeExplanation, NodeFailure, NodeScore, NodeUsage, NodeVerdict, Pod,
    Reservation,
};
use crate::device::{self, Card, ContainerDevice, PodDevices};
use crate::ledger::{Ledger, NameHash, NodeEntry, PodEntry, VGPU_NODE};
use crate::policy::{self, GpuPolicy, NodePolicy, Weights};
use crate::reason;
use crate::summary::NodeSummary;
use crate::vendor::{self, Fit, FitContext, Request, Slot, VENDORS};

pub const VGPU_TIME: &str = "hami.io/vgpu-time";

/// A pod's requests: per container position (init containers first), per vendor.
pub type PodRequests = Vec<Vec<Request>>;

/// Derives every container's requests; an error names the container and field.
/// Only the vendors whose resource names the container lists are asked
/// ([`vendor::VendorsByName::resources`]).
pub fn requests(ledger: &Ledger, pod: &Pod) -> Result<PodRequests, Error> {
    let owners = ledger.resource_owners();
    requests_asking(ledger, pod, |c| owners.of_container(c))
}

/// [`requests`], asking each container's vendors in `asked` (in [`VENDORS`] order).
fn requests_asking(
    ledger: &Ledger,
    pod: &Pod,
    asked: impl Fn(&crate::api::Container) -> vendor::VendorSet,
) -> Result<PodRequests, Error> {
    let object = pod.object();
    let mut out = Vec::new();
    for (init, list) in [(true, &pod.init_containers), (false, &pod.containers)] {
        for (index, c) in list.iter().enumerate() {
            let slot = Slot {
                object: &object,
                init,
                index,
            };
            let asked = asked(c);
            let mut reqs = Vec::new();
            for v in vendor::vendors_in(asked) {
                if let Some(r) = v
                    .request(c, slot, &ledger.config)
                    .map_err(Error::InvalidInput)?
                {
                    reqs.push(r);
                }
            }
            out.push(reqs);
        }
    }
    Ok(out)
}

/// The pod's settings read once per call.
struct PodPlan<'a> {
    pod: &'a Pod,
    requests: PodRequests,
    weights: Weights,
    gpu_policy: GpuPolicy,
    node_policy: NodePolicy,
    /// Namespace quotas that apply to this pod (empty when none does).
    quota: Vec<QuotaView>,
    /// Candidates are tried best first and the first fit ends the walk (see [`filter`]): the
    /// nodes evaluated are then failures but one.
    best_first: bool,
    /// In a best-first walk, the check of a node's summary for the first request evaluated,
    /// when its vendor has one (see [`Quick`]).
    quick: Option<Quick>,
}

/// A node rejected from its summary ([`crate::summary`]) gets the verdict [`evaluate`] would
/// give it: a vendor of the pod's requests not live there (checked first, as `evaluate` does),
/// else the first request's cards all failing on their own, counted.
struct Quick {
    /// Every vendor the pod asks, for liveness.
    vendors: Vec<&'static str>,
    check: vendor::SummaryCheck,
}

impl Quick {
    fn of(plan: &PodPlan<'_>) -> Option<Quick> {
        let first = plan
            .requests
            .iter()
            .find(|reqs| !reqs.is_empty())?
            .first()?;
        let v = vendor::by_key(first.vendor)?;
        let quota_limited = plan.quota.iter().any(|q| q.vendor == v.key());
        let check = v.summary_check(plan.pod, first, &plan.gpu_policy, quota_limited)?;
        let mut vendors: Vec<&'static str> =
            plan.requests.iter().flatten().map(|r| r.vendor).collect();
        vendors.sort_unstable();
        vendors.dedup();
        Some(Quick { vendors, check })
    }

    /// The node's failure, when its summary shows one; `None`: evaluate it in full.
    fn reject(&self, node: NodeSummary<'_>, now: i64) -> Option<NodeFail> {
        // A summarised node has one vendor: any other vendor the pod asks is not registered
        // there (`evaluate` checks every vendor's liveness first).
        let same = |v: &&str| std::ptr::eq(*v, node.vendor) || *v == node.vendor;
        if !self.vendors.iter().all(same) || !node.live.at(now) {
            return Some(NodeFail::Bare(reason::NODE_UNREGISTERED));
        }
        let (counter, total) = (self.check)(node.cards)?;
        Some(NodeFail::Counted { counter, total })
    }
}

impl<'a> PodPlan<'a> {
    fn new(ledger: &Ledger, pod: &'a Pod) -> Result<Option<PodPlan<'a>>, Error> {
        let requests = requests(ledger, pod)?;
        if requests.iter().all(Vec::is_empty) {
            return Ok(None);
        }
        let best_first = ledger.config.filter_verdicts == "tried"
            && requests
                .iter()
                .flatten()
                .all(|r| vendor::by_key(r.vendor).is_some_and(|v| v.rank_is_use_only()));
        let mut plan = PodPlan {
            pod,
            best_first,
            requests,
            weights: Weights::from_pod(pod).map_err(Error::InvalidInput)?,
            gpu_policy: GpuPolicy::for_pod(pod, &ledger.config.gpu_scheduler_policy),
            node_policy: NodePolicy::for_pod(pod, &ledger.config.node_scheduler_policy),
            quota: QuotaView::for_pod(ledger, pod),
            quick: None,
        };
        if plan.best_first {
            plan.quick = Quick::of(&plan);
        }
        Ok(Some(plan))
    }
}

/// A node that fits: its score and the devices per container position.
struct NodeFit {
    raw_score: f64,
    /// The vendors' own node score (0..=100, higher is better), when every vendor the pod
    /// asks has one (Volcano's deviceshare score); HAMi's node policy otherwise.
    own_score: Option<u32>,
    devices: Vec<Vec<ContainerDevice>>,
}

/// A node that does not fit, unformatted: `filter` rejects thousands of nodes per call, most
/// of them alike, and formats each distinct failure once ([`Failures`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum NodeFail {
    /// The node can never fit (`unschedulable-and-unresolvable`), for this reason.
    Bare(&'static str),
    /// The cards failed as counted, out of `total` cards of the vendor (`unschedulable`).
    Counted {
        counter: reason::Counter,
        total: u32,
    },
}

impl NodeFail {
    fn failure(&self) -> NodeFailure {
        match self {
            NodeFail::Bare(reason) => NodeFailure {
                code: Code::UnschedulableAndUnresolvable,
                reason: (*reason).to_string(),
                counts: Vec::new(),
            },
            NodeFail::Counted { counter, total } => {
                let counts = counter.counts(*total);
                NodeFailure {
                    code: Code::Unschedulable,
                    reason: reason::join(&counts),
                    counts,
                }
            }
        }
    }

    fn verdict(&self, node: &str) -> NodeVerdict {
        let f = self.failure();
        NodeVerdict {
            node: node.to_string(),
            code: f.code,
            reason: f.reason,
            counts: f.counts,
            score: 0,
        }
    }
}

/// Up to this many distinct failures, [`Failures::index`] finds one by comparing, not hashing.
const FEW_FAILURES: usize = 8;

/// The failures of one `filter` call, each distinct one formatted and listed once; verdicts
/// refer to them by position.
#[derive(Default)]
struct Failures {
    listed: Vec<NodeFailure>,
    /// Each failure listed, unformatted, by position.
    keys: Vec<NodeFail>,
    /// `keys` by value, once there are more than [`FEW_FAILURES`].
    index: HashMap<NodeFail, u32, NameHash>,
    /// The last position found: neighbours in the walk mostly fail alike.
    last: u32,
}

impl Failures {
    /// The position of `fail` in the list, added when new. By reference: a counter is over a
    /// hundred bytes, and moving one several times per node (a `memcpy` call each) showed as
    /// a quarter of a fits-nowhere `filter`.
    fn index(&mut self, fail: &NodeFail) -> u32 {
        if self.keys.get(self.last as usize) == Some(fail) {
            return self.last;
        }
        // A call mostly meets a handful of distinct failures: those are compared in turn (an
        // address compare per reason), and hashed only past that.
        let found = if self.keys.len() <= FEW_FAILURES {
            self.keys.iter().position(|k| k == fail).map(|i| i as u32)
        } else {
            self.index.get(fail).copied()
        };
        let i = match found {
            Some(i) => i,
            None => {
                let i = self.listed.len() as u32;
                self.listed.push(fail.failure());
                self.keys.push(fail.clone());
                if self.keys.len() > FEW_FAILURES {
                    if self.index.is_empty() {
                        for (k, key) in self.keys.iter().enumerate() {
                            self.index.insert(key.clone(), k as u32);
                        }
                    } else {
                        self.index.insert(fail.clone(), i);
                    }
                }
                i
            }
        };
        self.last = i;
        i
    }
}

/// Evaluates the pod on one node (spec §6.2): init containers each on a fresh copy, the node
/// score on existing use, then app containers cumulatively on one copy.
#[allow(clippy::result_large_err)] // failure is the common result: a boxed counter would allocate per node
fn evaluate(
    ledger: &Ledger,
    plan: &PodPlan<'_>,
    entry: &NodeEntry,
    now: i64,
    explain: Option<&RefCell<Vec<CardCheck>>>,
) -> Result<NodeFit, NodeFail> {
    for reqs in &plan.requests {
        for r in reqs {
            let live = vendor::by_key(r.vendor).is_some_and(|v| ledger.vendor_live(entry, v, now));
            if !live {
                return Err(NodeFail::Bare(reason::NODE_UNREGISTERED));
            }
        }
    }
    let init_count = plan.pod.init_containers.len();
    // Nothing is allocated before a container fits: most nodes `filter` evaluates fail.
    let mut devices: Vec<Vec<ContainerDevice>> = Vec::new();
    let keep = |devices: &mut Vec<Vec<ContainerDevice>>, position: usize, chosen| {
        if devices.is_empty() {
            devices.resize(plan.requests.len(), Vec::new());
        }
        devices[position] = chosen;
    };
    let mut so_far: Vec<(usize, ContainerDevice)> = Vec::new();
    // Init containers run one after another: each sees the node as it is, never the others.
    for (position, reqs) in plan.requests.iter().enumerate().take(init_count) {
        if reqs.is_empty() {
            continue;
        }
        let chosen = fit_container(
            ledger,
            plan,
            entry,
            &entry.cards,
            position,
            reqs,
            &so_far,
            explain,
        )?;
        so_far.extend(chosen.iter().cloned().map(|d| (position, d)));
        keep(&mut devices, position, chosen);
    }
    // App containers run together: each sees the cards booked by the ones before it. The
    // node's cards are copied only when a later container needs that view.
    let asks = |p: &usize| !plan.requests[*p].is_empty();
    let last_app = (init_count..plan.requests.len()).rev().find(asks);
    let mut booked: Option<Vec<Card>> = None;
    for position in (init_count..plan.requests.len()).filter(asks) {
        let reqs = &plan.requests[position];
        let view = booked.as_deref().unwrap_or(&entry.cards);
        let chosen = fit_container(ledger, plan, entry, view, position, reqs, &so_far, explain)?;
        if Some(position) != last_app {
            let cards = booked.get_or_insert_with(|| entry.cards.clone());
            for d in &chosen {
                if let Some(v) = vendor::by_key(&d.vendor)
                    && let Some(c) = cards
                        .iter_mut()
                        .find(|c| c.vendor == v.key() && c.info.id == d.uuid)
                {
                    v.book(c, d, plan.pod);
                }
            }
        }
        so_far.extend(chosen.iter().cloned().map(|d| (position, d)));
        keep(&mut devices, position, chosen);
    }
    if devices.is_empty() {
        devices.resize(plan.requests.len(), Vec::new());
    }
    // On the node's use before the pod (`entry.cards`; `booked` is a copy).
    let raw_score =
        policy::node_score(entry.cards.iter()) + vendor_terms(ledger, plan, entry, &devices);
    let own_score = own_score(ledger, plan, entry, &devices);
    Ok(NodeFit {
        raw_score,
        own_score,
        devices,
    })
}

/// The vendors' own node score: the mean of each requested vendor's score, `None` as soon as
/// one vendor has none.
fn own_score(
    ledger: &Ledger,
    plan: &PodPlan<'_>,
    entry: &NodeEntry,
    devices: &[Vec<ContainerDevice>],
) -> Option<u32> {
    let mut keys: Vec<&str> = plan.requests.iter().flatten().map(|r| r.vendor).collect();
    keys.sort_unstable();
    keys.dedup();
    let mut total = 0u32;
    for key in &keys {
        let v = vendor::by_key(key)?;
        let chosen: Vec<&ContainerDevice> = devices
            .iter()
            .flatten()
            .filter(|d| d.vendor == *key)
            .collect();
        total += v.node_score(&entry.cards, &chosen, &ledger.config)?;
    }
    u32::try_from(keys.len())
        .ok()
        .filter(|n| *n > 0)
        .map(|n| total / n)
}

impl NodeFit {
    /// The score reported through the contract: 0..=100, higher is better.
    fn score(&self, policy: NodePolicy) -> u32 {
        self.own_score
            .unwrap_or_else(|| policy.normalise(self.raw_score))
    }

    fn rank(&self) -> NodeRank {
        NodeRank {
            own: self.own_score,
            raw: self.raw_score,
        }
    }
}

/// What `filter` orders fitting nodes by, unscaled: the contract's 0..=100 score can tie (or
/// saturate, with the vendors' node-score terms) where this does not. Hosts that choose the
/// node themselves from per-node scores (kube-scheduler-wasm-extension) use it to make the
/// same choice.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NodeRank {
    /// The vendors' own score, when every vendor the pod asks has one.
    own: Option<u32>,
    /// HAMi's node score plus the vendors' terms.
    raw: f64,
}

impl NodeRank {
    /// Orders two fitting nodes, the better first: the vendors' own score where both have one
    /// (higher wins), else the raw score under the node policy; ties go to the name that sorts
    /// first.
    pub fn order(policy: NodePolicy, a: (&str, NodeRank), b: (&str, NodeRank)) -> Ordering {
        match (a.1.own, b.1.own) {
            (Some(x), Some(y)) => y.cmp(&x).then_with(|| a.0.cmp(b.0)),
            _ => policy.better((a.0, a.1.raw), (b.0, b.1.raw)),
        }
    }
}

/// The vendors' node score terms for the pod's devices (HAMi's `ScoreNode`, spec vendors §1.5),
/// each requested vendor's devices gathered once:
/// - the topology term, "higher is better": added under binpack, subtracted under spread, so
///   that better topology wins under both (DEVIATIONS.md A5);
/// - the vendor's own term, weighted by the vendor itself.
fn vendor_terms(
    ledger: &Ledger,
    plan: &PodPlan<'_>,
    entry: &NodeEntry,
    devices: &[Vec<ContainerDevice>],
) -> f64 {
    let mut topology = 0.0;
    let mut own = 0.0;
    for v in VENDORS {
        if !plan.requests.iter().flatten().any(|r| r.vendor == v.key()) {
            continue;
        }
        let pd: PodDevices = devices
            .iter()
            .map(|c| c.iter().filter(|d| d.vendor == v.key()).cloned().collect())
            .collect();
        topology += v.topology_score(&entry.node, &pd, &entry.cards);
        own += v.score_node(&vendor::ScoreContext {
            pod: plan.pod,
            node: &entry.node,
            config: &ledger.config,
            previous: &entry.cards,
            devices: &pd,
            policy: plan.node_policy,
        });
    }
    let topology = match plan.node_policy {
        NodePolicy::Binpack => topology,
        NodePolicy::Spread => -topology,
    };
    topology + own
}

/// Fits one container's requests (spec §6.3) on `cards`; the caller books the result.
#[allow(clippy::too_many_arguments)] // the per-call context of one container; bundling it adds a type for one caller
#[allow(clippy::result_large_err)] // see `evaluate`
fn fit_container(
    ledger: &Ledger,
    plan: &PodPlan<'_>,
    entry: &NodeEntry,
    cards: &[Card],
    position: usize,
    reqs: &[Request],
    so_far: &[(usize, ContainerDevice)],
    explain: Option<&RefCell<Vec<CardCheck>>>,
) -> Result<Vec<ContainerDevice>, NodeFail> {
    // The cards' scores order them; they are computed once, when a request needs the order.
    let mut scores: Option<Vec<f32>> = None;
    let mut chosen = Vec::new();
    for r in reqs {
        let Some(v) = vendor::by_key(r.vendor) else {
            return Err(NodeFail::Bare("Device type not found"));
        };
        // A card belongs to the vendor whose registration listed it: a node may register the
        // same model under two protocols (HAMi's and Volcano's).
        let mine = |c: &Card| c.vendor == v.key() && c.owned;
        let total = cards.iter().filter(|c| mine(c)).count();
        if r.nums > total as i64 {
            let candidates: Vec<&Card> = cards.iter().filter(|c| mine(c)).collect();
            if !v.multi_slice(plan.pod, r, &candidates) {
                return Err(NodeFail::Bare(reason::NODE_INSUFFICIENT_DEVICE));
            }
        }
        let quota = |tmp: &[ContainerDevice], uuid: &str, mem: i64, cores: i64| {
            quota_fits(
                plan,
                v.key(),
                so_far,
                position,
                &chosen,
                tmp,
                (uuid, mem, cores),
            )
        };
        let ctx = FitContext {
            pod: plan.pod,
            config: &ledger.config,
            node: &entry.node,
            policy: &plan.gpu_policy,
            quota: &quota,
            explain,
            position: position as u32,
            earlier: so_far,
        };
        let total = total as u32;
        // A node where no card passes on its own fails in any order: its cards are not
        // collected nor ordered. Asked only in a best-first walk, where all nodes evaluated but
        // the last fail (elsewhere a fitting node would be fitted twice); when explaining, the
        // cards are checked once, in order.
        if plan.best_first
            && explain.is_none()
            && let Some(counter) = v.fails_on_every_card(cards, r, &ctx)
        {
            return Err(NodeFail::Counted { counter, total });
        }
        let mut order: Vec<usize> = (0..cards.len()).filter(|&i| mine(&cards[i])).collect();
        let scores = scores.get_or_insert_with(|| {
            cards
                .iter()
                .map(|c| {
                    let r = reqs
                        .iter()
                        .find(|r| policy::contains_ignore_case(&c.info.model, r.vendor));
                    policy::device_score(c, r, plan.weights)
                })
                .collect()
        });
        order.sort_by(|&a, &b| {
            plan.gpu_policy
                .compare((&cards[a], scores[a]), (&cards[b], scores[b]))
        });
        let candidates: Vec<&Card> = order.iter().map(|&i| &cards[i]).collect();
        match v.fit(&candidates, r, &ctx) {
            Fit::Fits(devs) => chosen.extend(devs),
            Fit::NoFit(counter) => return Err(NodeFail::Counted { counter, total }),
        }
    }
    Ok(chosen)
}

/// A vendor's namespace quota for the pod being placed, read once per call.
#[derive(Clone, Debug)]
pub(crate) struct QuotaView {
    pub(crate) vendor: &'static str,
    mem_limit: Option<i64>,
    core_limit: Option<i64>,
    used_mem: i64,
    used_cores: i64,
}

impl QuotaView {
    pub(crate) fn for_pod(ledger: &Ledger, pod: &Pod) -> Vec<QuotaView> {
        // No vendor's resource names are copied then.
        if ledger.quotas.limit_nothing() {
            return Vec::new();
        }
        VENDORS
            .iter()
            .filter_map(|v| {
                let res = v.quota_resources(&ledger.config)?;
                let q = &ledger.quotas;
                let factor = res.memory_factor.max(1);
                let mem_limit = q.limit(&pod.namespace, res.memory).map(|l| l * factor);
                let core_limit = q.limit(&pod.namespace, res.cores);
                if mem_limit.is_none() && core_limit.is_none() {
                    return None;
                }
                Some(QuotaView {
                    vendor: v.key(),
                    mem_limit,
                    core_limit,
                    used_mem: q.used(&pod.namespace, res.memory),
                    used_cores: q.used(&pod.namespace, res.cores),
                })
            })
            .collect()
    }

    /// Whether `mem` more MiB and `cores` more cores stay within the namespace's limits.
    pub(crate) fn fits(&self, mem: i64, cores: i64) -> bool {
        self.mem_limit.is_none_or(|l| self.used_mem + mem <= l)
            && self.core_limit.is_none_or(|l| self.used_cores + cores <= l)
    }
}

/// Spec §10.2: would the pod, with the devices of its earlier containers, those chosen so far
/// for this container and the candidate, stay within its namespace quota? The pod's use is
/// collapsed with init-container peak semantics by container position (HAMi's quirk Q4 fixed).
/// Namespaces without a quota return at once.
fn quota_fits(
    plan: &PodPlan<'_>,
    vendor: &str,
    so_far: &[(usize, ContainerDevice)],
    position: usize,
    chosen: &[ContainerDevice],
    tmp: &[ContainerDevice],
    candidate: (&str, i64, i64),
) -> bool {
    let Some(q) = plan.quota.iter().find(|q| q.vendor == vendor) else {
        return true;
    };
    let init_count = plan.pod.init_containers.len();
    let mut positions: PodDevices = vec![Vec::new(); position + 1];
    for (p, d) in so_far.iter().filter(|(_, d)| d.vendor == vendor) {
        if *p < positions.len() {
            positions[*p].push(d.clone());
        }
    }
    positions[position].extend(
        chosen
            .iter()
            .chain(tmp)
            .filter(|d| d.vendor == vendor)
            .cloned(),
    );
    let (uuid, mem, cores) = candidate;
    positions[position].push(ContainerDevice {
        uuid: uuid.to_string(),
        vendor: vendor.to_string(),
        mem,
        cores,
        index: 0,
        mig: None,
    });
    let usage = device::collapse(&positions, init_count, false);
    let mem: i64 = usage.iter().map(|u| u.mem).sum();
    let cores: i64 = usage.iter().map(|u| u.cores).sum();
    q.fits(mem, cores)
}

/// Evaluates every candidate; unknown names are `node unregistered`.
fn evaluate_all<'c, N: AsRef<str>>(
    ledger: &Ledger,
    plan: &PodPlan<'_>,
    candidates: &'c [N],
    now: i64,
) -> Vec<(&'c str, Result<NodeFit, NodeFail>)> {
    candidates
        .iter()
        .map(|name| {
            let name = name.as_ref();
            let result = match ledger.nodes.get(name) {
                Some(entry) => evaluate(ledger, plan, entry, now, None),
                None => Err(NodeFail::Bare(reason::NODE_UNREGISTERED)),
            };
            (name, result)
        })
        .collect()
}

/// `filter`: the chosen node with its allocation assumed, and the verdicts of the candidates
/// evaluated, in candidate order.
///
/// When the pod's rank on a node is the node's score on existing use alone (every vendor it
/// asks says [`vendor::Vendor::rank_is_use_only`]) and the configuration's `filterVerdicts` is
/// `tried`, the candidates are evaluated best first and the first that fits is the choice:
/// the nodes ranked below it are not evaluated and have no verdict. Otherwise every candidate
/// is evaluated. Either way the choice is the best fitting node under [`NodeRank::order`], and
/// a pod that fits nowhere has a verdict on every candidate.
pub fn filter<N: AsRef<str>>(
    ledger: &mut Ledger,
    pod: &Pod,
    candidates: &[N],
    now: i64,
) -> Result<FilterOutcome, Error> {
    filter_names(ledger, pod, Names::List(candidates), now)
}

/// [`filter`] on WIT's `node-names` text (one name per line). While kube-scheduler sends the
/// same names (`nodeCacheCapable`: every call), the text is compared once and not split.
pub fn filter_text(
    ledger: &mut Ledger,
    pod: &Pod,
    candidates: &str,
    now: i64,
) -> Result<FilterOutcome, Error> {
    filter_names(ledger, pod, Names::<&str>::Text(candidates), now)
}

/// [`filter`] on the candidates of the ledger's previous `filter` (WIT's `as-before`):
/// `not-found` when there was none since the ledger was made or cleared.
pub fn filter_as_before(ledger: &mut Ledger, pod: &Pod, now: i64) -> Result<FilterOutcome, Error> {
    filter_names(ledger, pod, Names::<&str>::AsBefore, now)
}

/// Candidates as a list, as WIT's text, or as the previous call's.
enum Names<'a, N> {
    List(&'a [N]),
    Text(&'a str),
    AsBefore,
}

fn filter_names<N: AsRef<str>>(
    ledger: &mut Ledger,
    pod: &Pod,
    candidates: Names<'_, N>,
    now: i64,
) -> Result<FilterOutcome, Error> {
    // The candidates are resolved to the ledger's nodes (once while they stay the same) and
    // kept for the next call's `as-before`, whatever the pod.
    ledger.rank_names();
    match candidates {
        Names::List(list) => ledger.resolve_candidates(list),
        Names::Text(text) => ledger.resolve_candidates_text(text),
        Names::AsBefore => {
            if !ledger.resolve_candidates_as_before() {
                return Err(Error::NotFound(
                    "candidates as before: this instance has filtered no candidates yet".into(),
                ));
            }
        }
    }
    let Some(plan) = PodPlan::new(ledger, pod)? else {
        let mut outcome = FilterOutcome::new(false, None);
        for i in 0..ledger.candidates().len() {
            outcome.push_fit(i, 0);
        }
        return Ok(outcome);
    };
    // A re-filter (e.g. after a failed bind) first gives back what the pod held.
    ledger.remove_pod(&pod.uid);
    let mut outcome = FilterOutcome::new(true, None);
    let best = if plan.best_first {
        try_best_first(ledger, &plan, now, &mut outcome)
    } else {
        let listed = ledger.candidates();
        let names: Vec<&str> = (0..listed.len()).map(|i| listed.name(i)).collect();
        evaluate_every(ledger, &plan, &names, now, &mut outcome)
    };
    outcome.decision = best.map(|(name, devices)| assume(ledger, &plan, &name, devices, now));
    Ok(outcome)
}

/// The chosen node's name and its devices per container position.
type Choice = (String, Vec<Vec<ContainerDevice>>);

/// Every candidate evaluated; the best fitting one chosen under [`NodeRank::order`].
fn evaluate_every<N: AsRef<str>>(
    ledger: &Ledger,
    plan: &PodPlan<'_>,
    candidates: &[N],
    now: i64,
    outcome: &mut FilterOutcome,
) -> Option<Choice> {
    let results = evaluate_all(ledger, plan, candidates, now);
    let best = results
        .iter()
        .enumerate()
        .filter_map(|(i, (n, r))| r.as_ref().ok().map(|f| (i, *n, f.rank())))
        .min_by(|a, b| NodeRank::order(plan.node_policy, (a.1, a.2), (b.1, b.2)))
        .map(|(i, _, _)| i);
    let mut choice = None;
    let mut failures = Failures::default();
    outcome.verdicts.reserve(results.len());
    for (i, (name, result)) in results.into_iter().enumerate() {
        let verdict = match result {
            Ok(fit) => {
                let score = fit.score(plan.node_policy);
                if best == Some(i) {
                    choice = Some((name.to_string(), fit.devices));
                }
                CandidateOutcome::Fits(score)
            }
            Err(fail) => CandidateOutcome::Fails(failures.index(&fail)),
        };
        outcome.verdicts.push(CandidateVerdict {
            candidate: i as u32,
            outcome: verdict,
        });
    }
    outcome.failures = failures.listed;
    choice
}

/// Candidates evaluated best first (see [`filter`]); the first that fits is the choice.
/// The nodes are walked in the ledger's order ([`Ledger::best_first`]: the node policy's order
/// of the score on existing use, then the name, exactly [`NodePolicy::better`], which
/// [`NodeRank::order`] applies when no vendor adds a term), and those among the candidates
/// ([`Ledger::candidates`], resolved by the caller, which also holds their names) are
/// evaluated. Unknown names are `node unregistered` whatever happens; a name listed twice gets
/// its node's verdict twice.
fn try_best_first(
    ledger: &Ledger,
    plan: &PodPlan<'_>,
    now: i64,
    outcome: &mut FilterOutcome,
) -> Option<Choice> {
    let listed = ledger.candidates();
    let mut failures = Failures::default();
    let verdicts = &mut outcome.verdicts;
    let verdict = |candidate: u32, outcome| CandidateVerdict { candidate, outcome };
    if !listed.unknown().is_empty() {
        let unknown =
            CandidateOutcome::Fails(failures.index(&NodeFail::Bare(reason::NODE_UNREGISTERED)));
        verdicts.extend(listed.unknown().iter().map(|&p| verdict(p, unknown)));
    }
    let mut choice = None;
    for rank in ledger.best_first(plan.node_policy) {
        let Some(position) = listed.position(rank) else {
            continue;
        };
        let name = listed.name(position);
        let mut failed = |fail: &NodeFail| {
            let failed = CandidateOutcome::Fails(failures.index(fail));
            verdicts.extend(listed.repeats(rank).iter().map(|&p| verdict(p, failed)));
            verdicts.push(verdict(position as u32, failed));
        };
        // Failures are looked at in place, never moved: see `Failures::index`.
        if let Some(fail) = plan
            .quick
            .as_ref()
            .and_then(|q| q.reject(ledger.summary(rank)?, now))
        {
            failed(&fail);
            continue;
        }
        let Some(entry) = ledger.nodes.get(name) else {
            continue;
        };
        match evaluate(ledger, plan, entry, now, None) {
            Ok(fit) => {
                verdicts.push(verdict(
                    position as u32,
                    CandidateOutcome::Fits(fit.score(plan.node_policy)),
                ));
                choice = Some((name.to_string(), fit.devices));
                break;
            }
            Err(fail) => failed(&fail),
        }
    }
    in_candidate_order(verdicts, listed.len());
    outcome.failures = failures.listed;
    choice
}

/// Sorts verdicts by candidate position: by placing them in a table of `candidates` slots when
/// most candidates have one (a pod that fits nowhere), else by sorting.
fn in_candidate_order(verdicts: &mut Vec<CandidateVerdict>, candidates: usize) {
    if verdicts.len().saturating_mul(8) < candidates {
        verdicts.sort_unstable_by_key(|v| v.candidate);
        return;
    }
    let mut slots: Vec<Option<CandidateOutcome>> = vec![None; candidates];
    let mut extra = Vec::new();
    for v in verdicts.drain(..) {
        match slots.get_mut(v.candidate as usize) {
            Some(slot @ None) => *slot = Some(v.outcome),
            _ => extra.push(v),
        }
    }
    verdicts.extend(slots.into_iter().enumerate().filter_map(|(i, o)| {
        o.map(|outcome| CandidateVerdict {
            candidate: i as u32,
            outcome,
        })
    }));
    if !extra.is_empty() {
        verdicts.extend(extra);
        verdicts.sort_by_key(|v| v.candidate);
    }
}

fn success(node: &str, score: u32) -> NodeVerdict {
    NodeVerdict {
        node: node.to_string(),
        code: Code::Success,
        reason: String::new(),
        counts: Vec::new(),
        score,
    }
}

/// Builds the decision annotations (spec §6.9) and books the pod as assumed.
fn assume(
    ledger: &mut Ledger,
    plan: &PodPlan<'_>,
    node: &str,
    devices: Vec<Vec<ContainerDevice>>,
    now: i64,
) -> Decision {
    let pod = plan.pod;
    // HAMi's node and time keys (and the node label) unless only other protocols are used.
    let hami = VENDORS
        .iter()
        .any(|v| v.hami_keys() && plan.requests.iter().flatten().any(|r| r.vendor == v.key()));
    let mut annotations = Vec::new();
    if hami {
        annotations.push((VGPU_NODE.to_string(), node.to_string()));
        annotations.push((VGPU_TIME.to_string(), now.to_string()));
    }
    let mut per_vendor = Vec::new();
    let mut grants = Vec::new();
    let cards: &[Card] = ledger.nodes.get(node).map_or(&[], |e| e.cards.as_slice());
    // A node has a handful of cards and a pod a few devices: a scan beats a hash map.
    let model = |uuid: &str| {
        cards
            .iter()
            .find(|c| c.info.id == uuid)
            .map(|c| c.info.model.clone())
            .unwrap_or_default()
    };
    for v in VENDORS {
        if !plan.requests.iter().flatten().any(|r| r.vendor == v.key()) {
            continue;
        }
        let pd: PodDevices = devices
            .iter()
            .map(|c| c.iter().filter(|d| d.vendor == v.key()).cloned().collect())
            .collect();
        for (position, c) in pd.iter().enumerate() {
            for d in c {
                grants.push(DeviceGrant {
                    container: position as u32,
                    vendor: v.key().to_string(),
                    uuid: d.uuid.clone(),
                    index: d.index,
                    model: model(&d.uuid),
                    memory_mib: d.mem.max(0) as u64,
                    cores: d.cores.clamp(0, i64::from(u32::MAX)) as u32,
                });
            }
        }
        let ctx = vendor::DecisionContext {
            pod,
            node,
            now,
            config: &ledger.config,
            cards,
        };
        annotations.extend(v.decision_annotations(&pd, &ctx));
        // The ledger keeps what the annotations say (they do not carry the card index), so
        // that the placed pod, when the watch shows it, decodes to this same entry.
        let mut pd = pd;
        pd.iter_mut().flatten().for_each(|d| d.index = 0);
        per_vendor.push((v.key(), pd));
    }
    let init_count = pod.init_containers.len();
    let usage = per_vendor
        .iter()
        .map(|(v, d)| (*v, device::collapse(d, init_count, false)))
        .collect();
    let tags = crate::ledger::card_tags(pod, &per_vendor);
    ledger.insert_pod(
        pod.uid.clone(),
        PodEntry {
            tags,
            namespace: pod.namespace.clone(),
            name: pod.name.clone(),
            node: node.to_string(),
            devices: per_vendor,
            usage,
            stray_slices: Vec::new(),
            assumed: true,
        },
    );
    Decision {
        node: node.to_string(),
        annotations,
        labels: if hami {
            vec![(VGPU_NODE.to_string(), node.to_string())]
        } else {
            Vec::new()
        },
        grants,
    }
}

/// The verdict on each node, as `filter` gives it, without choosing or assuming anything (the
/// per-node `filter` of kube-scheduler-wasm-extension). A pod that asks for no managed device
/// succeeds everywhere; with no nodes, it only checks that the pod's requests are valid.
pub fn verdicts<N: AsRef<str>>(
    ledger: &Ledger,
    pod: &Pod,
    nodes: &[N],
    now: i64,
) -> Result<Vec<NodeVerdict>, Error> {
    let Some(plan) = PodPlan::new(ledger, pod)? else {
        return Ok(nodes.iter().map(|n| success(n.as_ref(), 0)).collect());
    };
    Ok(evaluate_all(ledger, &plan, nodes, now)
        .into_iter()
        .map(|(name, r)| match r {
            Ok(fit) => success(name, plan.node_policy.normalise(fit.raw_score)),
            Err(fail) => fail.verdict(name),
        })
        .collect())
}

/// `score`: 0..=100 per node under the pod's node policy; 0 where it does not fit.
pub fn score<N: AsRef<str>>(
    ledger: &Ledger,
    pod: &Pod,
    nodes: &[N],
    now: i64,
) -> Result<Vec<NodeScore>, Error> {
    Ok(ranked_scores(ledger, pod, nodes, now)?
        .into_iter()
        .map(|(s, _)| s)
        .collect())
}

/// [`score`], with each fitting node's [`NodeRank`] (`None` where it does not fit, or for a
/// pod that asks for no managed device).
pub fn ranked_scores<N: AsRef<str>>(
    ledger: &Ledger,
    pod: &Pod,
    nodes: &[N],
    now: i64,
) -> Result<Vec<(NodeScore, Option<NodeRank>)>, Error> {
    let Some(plan) = PodPlan::new(ledger, pod)? else {
        return Ok(nodes
            .iter()
            .map(|n| {
                let s = NodeScore {
                    node: n.as_ref().to_string(),
                    score: 0,
                };
                (s, None)
            })
            .collect());
    };
    Ok(evaluate_all(ledger, &plan, nodes, now)
        .into_iter()
        .map(|(node, r)| match r {
            Ok(f) => {
                let score = f.score(plan.node_policy);
                (
                    NodeScore {
                        node: node.to_string(),
                        score,
                    },
                    Some(f.rank()),
                )
            }
            Err(_) => (
                NodeScore {
                    node: node.to_string(),
                    score: 0,
                },
                None,
            ),
        })
        .collect())
}

/// `reserve`: fit on one node and assume.
pub fn reserve(ledger: &mut Ledger, pod: &Pod, node: &str, now: i64) -> Result<Reservation, Error> {
    if !ledger.nodes.contains_key(node) {
        return Err(Error::NotFound(format!("node/{node}")));
    }
    let Some(plan) = PodPlan::new(ledger, pod)? else {
        return Ok(Reservation::Reserved(Decision {
            node: node.to_string(),
            annotations: Vec::new(),
            labels: Vec::new(),
            grants: Vec::new(),
        }));
    };
    let previous = ledger.remove_pod(&pod.uid);
    let entry = ledger
        .nodes
        .get(node)
        .expect("checked above: the node is in the ledger");
    match evaluate(ledger, &plan, entry, now, None) {
        Ok(fit) => Ok(Reservation::Reserved(assume(
            ledger,
            &plan,
            node,
            fit.devices,
            now,
        ))),
        Err(fail) => {
            // A rejected reservation leaves the pod's earlier allocation as it was.
            if let Some(prev) = previous {
                ledger.insert_pod(pod.uid.clone(), prev);
            }
            Ok(Reservation::Rejected(fail.verdict(node)))
        }
    }
}

/// `unreserve`: release an assumed allocation; placed pods stay counted.
pub fn unreserve(ledger: &mut Ledger, uid: &str) {
    if ledger.pods.get(uid).is_some_and(|e| e.assumed) {
        ledger.remove_pod(uid);
    }
}

/// `explain`: card by card, why the pod fits each node or not.
pub fn explain(
    ledger: &Ledger,
    pod: &Pod,
    nodes: &[String],
    now: i64,
) -> Result<Vec<NodeExplanation>, Error> {
    let names: Vec<String> = if nodes.is_empty() {
        let mut all: Vec<String> = ledger.nodes.keys().cloned().collect();
        all.sort_unstable();
        all
    } else {
        nodes.to_vec()
    };
    let Some(plan) = PodPlan::new(ledger, pod)? else {
        return Ok(names
            .iter()
            .map(|n| NodeExplanation {
                node: n.clone(),
                verdict: success(n, 0),
                cards: Vec::new(),
            })
            .collect());
    };
    Ok(names
        .iter()
        .map(|name| {
            let cell = RefCell::new(Vec::new());
            let verdict = match ledger.nodes.get(name) {
                Some(entry) => match evaluate(ledger, &plan, entry, now, Some(&cell)) {
                    Ok(fit) => success(name, fit.score(plan.node_policy)),
                    Err(fail) => fail.verdict(name),
                },
                None => NodeFail::Bare(reason::NODE_UNREGISTERED).verdict(name),
            };
            NodeExplanation {
                node: name.clone(),
                verdict,
                cards: cell.into_inner(),
            }
        })
        .collect())
}

/// `usage`: each node's cards and their use.
pub fn usage(ledger: &Ledger, nodes: &[String], now: i64) -> Vec<NodeUsage> {
    let names: Vec<&String> = if nodes.is_empty() {
        let mut all: Vec<&String> = ledger.nodes.keys().collect();
        all.sort_unstable();
        all
    } else {
        nodes.iter().collect()
    };
    names
        .into_iter()
        .filter_map(|name| ledger.nodes.get(name).map(|e| (name, e)))
        .map(|(name, e)| NodeUsage {
            node: name.clone(),
            live: VENDORS.iter().any(|v| ledger.vendor_live(e, *v, now)),
            cards: e
                .cards
                .iter()
                .map(|c| CardUsage {
                    vendor: c.vendor.to_string(),
                    uuid: c.info.id.clone(),
                    index: c.info.index,
                    model: c.info.model.clone(),
                    healthy: c.healthy() && !c.cordoned,
                    cordoned: c.cordoned,
                    numa: c.info.numa.max(0) as u32,
                    used_slots: c.used.max(0) as u32,
                    total_slots: c.info.count.max(0) as u32,
                    used_memory_mib: c.used_mem.max(0) as u64,
                    total_memory_mib: c.info.devmem.max(0) as u64,
                    used_cores: c.used_cores.max(0) as u32,
                    total_cores: c.info.devcore.max(0) as u32,
                })
                .collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Container, Delta, Node};
    use crate::vendor::nvidia::register::REGISTER;

    fn node(name: &str, cards: &[(i64, bool)]) -> Node {
        let cards: Vec<String> = cards
            .iter()
            .enumerate()
            .map(|(i, (mem, health))| {
                format!(
                    r#"{{"id":"GPU-{name}-{i}","index":{i},"count":10,"devmem":{mem},"devcore":100,"type":"NVIDIA A100","numa":0,"mode":"hami-core","health":{health}}}"#
                )
            })
            .collect();
        Node {
            name: name.to_string(),
            annotations: vec![(REGISTER.to_string(), format!("[{}]", cards.join(",")))],
            ..Node::default()
        }
    }

    fn pod(mem: i64) -> Pod {
        Pod {
            uid: format!("uid-{mem}"),
            namespace: "default".into(),
            name: format!("p-{mem}"),
            containers: vec![Container {
                name: "c".into(),
                limits: vec![
                    ("nvidia.com/gpu".into(), "1".into()),
                    ("nvidia.com/gpumem".into(), mem.to_string()),
                ],
                ..Container::default()
            }],
            ..Pod::default()
        }
    }

    fn engine(filter_verdicts: &str) -> crate::Engine {
        let mut e = crate::Engine::new();
        e.configure(&format!(r#"{{"filterVerdicts":"{filter_verdicts}"}}"#))
            .expect("valid config");
        let nodes = [
            node("n0", &[(40960, true), (40960, true)]),
            node("n1", &[(40960, false), (40960, true)]),
            node("n2", &[(40960, true)]),
            node("n3", &[(40960, true), (40960, true)]),
            node("n4", &[(81920, true), (40960, false)]),
        ];
        let deltas: Vec<Delta> = nodes.into_iter().map(Delta::NodeUpsert).collect();
        assert_eq!(e.apply(&deltas), vec![]);
        e
    }

    const CANDIDATES: [&str; 8] = ["n3", "ghost", "n0", "n1", "n3", "n2", "other", "n4"];

    /// Every verdict of `outcome` is the node's own verdict, evaluated alone; each failure
    /// is listed once; verdicts are in candidate order.
    fn check(e: &crate::Engine, p: &Pod, outcome: &FilterOutcome) {
        let alone = verdicts(e.ledger(), p, &CANDIDATES, 0).expect("evaluates");
        let named = outcome.node_verdicts(&CANDIDATES);
        assert_eq!(
            named.len(),
            outcome.verdicts.len(),
            "every verdict names a candidate"
        );
        for (v, c) in named.iter().zip(&outcome.verdicts) {
            let own = &alone[c.candidate as usize];
            if v.code == Code::Success {
                assert_eq!((&v.node, v.code), (&own.node, own.code));
            } else {
                assert_eq!(v, own);
            }
        }
        let positions: Vec<u32> = outcome.verdicts.iter().map(|v| v.candidate).collect();
        let mut sorted = positions.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(positions, sorted, "in candidate order, each once");
        for (i, f) in outcome.failures.iter().enumerate() {
            assert!(!outcome.failures[..i].contains(f), "{f:?} listed twice");
            assert!(
                outcome
                    .verdicts
                    .iter()
                    .any(|v| v.outcome == CandidateOutcome::Fails(i as u32)),
                "{f:?} is some verdict's"
            );
        }
    }

    #[test]
    fn filter_names_candidates_by_position_and_lists_each_failure_once() {
        for mode in ["tried", "all"] {
            let mut e = engine(mode);
            // Fits nowhere: a verdict on every candidate, the repeated name twice.
            let huge = pod(100_000);
            let outcome = e.filter(&huge, &CANDIDATES, 0).expect("evaluates");
            assert_eq!(outcome.decision, None);
            assert_eq!(outcome.verdicts.len(), CANDIDATES.len(), "{mode}");
            check(&e, &huge, &outcome);
            let named = outcome.node_verdicts(&CANDIDATES);
            assert_eq!(named[0], named[4], "n3 twice, alike");
            assert_eq!(named[1].reason, reason::NODE_UNREGISTERED);
            // HAMi's reason text per node, worked out from the cards: n0 and n3 (listed
            // twice) 2/2 short of memory, n2 1/1; n1 and n4 one card short and one unhealthy
            // each; the two unknown names unregistered. Alike failures are listed once.
            let mut reasons: Vec<&str> =
                outcome.failures.iter().map(|f| f.reason.as_str()).collect();
            reasons.sort_unstable();
            assert_eq!(
                reasons,
                [
                    "1/1 CardInsufficientMemory",
                    "1/2 CardInsufficientMemory, 1/2 CardNotHealth",
                    "2/2 CardInsufficientMemory",
                    "node unregistered",
                ],
                "{mode}"
            );
            // Fits n4 only.
            let big = pod(60_000);
            let outcome = e.filter(&big, &CANDIDATES, 0).expect("evaluates");
            assert_eq!(
                outcome.decision.as_ref().map(|d| d.node.as_str()),
                Some("n4")
            );
            e.unreserve(&big.uid);
            check(&e, &big, &outcome);
            assert!(outcome.verdicts.contains(&CandidateVerdict {
                candidate: 7,
                outcome: CandidateOutcome::Fits(
                    outcome.named(&CANDIDATES).last().map_or(0, |v| v.score)
                ),
            }));
        }
    }

    #[test]
    fn candidates_as_before_are_the_previous_calls_resolved_again_when_nodes_change() {
        let mut e = engine("tried");
        let huge = pod(100_000);
        let missing = e.filter_as_before(&huge, 0);
        assert!(matches!(missing, Err(Error::NotFound(_))), "{missing:?}");
        let text = CANDIDATES.join("\n");
        let first = e.filter_lines(&huge, &text, 0).expect("evaluates");
        assert_eq!(e.filter_as_before(&huge, 0).expect("evaluates"), first);
        // "ghost" arrives, with a card big enough: the list is resolved again.
        let ghost = node("ghost", &[(200_000, true)]);
        assert_eq!(e.apply(&[Delta::NodeUpsert(ghost)]), vec![]);
        let again = e.filter_as_before(&huge, 0).expect("evaluates");
        assert_eq!(
            again.decision.as_ref().map(|d| d.node.as_str()),
            Some("ghost")
        );
        e.unreserve(&huge.uid);
        assert_eq!(again, e.filter_lines(&huge, &text, 0).expect("evaluates"));
        e.unreserve(&huge.uid);
        // A pod that asks for no device, or one that cannot be evaluated, keeps the list too.
        let plain = Pod {
            containers: vec![Container::default()],
            ..pod(1)
        };
        let unmanaged = e.filter_lines(&plain, "n0\nn1", 0).expect("evaluates");
        assert_eq!(unmanaged.verdicts.len(), 2);
        assert_eq!(e.filter_as_before(&plain, 0).expect("evaluates"), unmanaged);
        e.clear();
        assert!(matches!(
            e.filter_as_before(&huge, 0),
            Err(Error::NotFound(_))
        ));
    }

    #[test]
    fn failures_are_listed_once_whether_compared_or_hashed() {
        const REASONS: [&str; 12] = [
            "r0", "r1", "r2", "r3", "r4", "r5", "r6", "r7", "r8", "r9", "r10", "r11",
        ];
        let mut counted = reason::Counter::default();
        counted.add_n(reason::NODE_UNREGISTERED, 2);
        let mut all: Vec<NodeFail> = REASONS.iter().map(|r| NodeFail::Bare(r)).collect();
        all.push(NodeFail::Counted {
            counter: counted,
            total: 8,
        });
        let mut f = Failures::default();
        // Each failure met three times, in a different order each round, past FEW_FAILURES.
        for round in 0..3 {
            for k in 0..all.len() {
                let at = (k * (round + 1) * 5) % all.len();
                assert_eq!(f.index(&all[at]) as usize, position(&f, &all[at]));
            }
        }
        for k in &all {
            assert_eq!(
                f.keys.iter().filter(|x| *x == k).count(),
                1,
                "{k:?} listed once"
            );
        }
        assert_eq!(f.listed.len(), all.len(), "each listed once");
        assert_eq!(f.keys.len(), all.len());
        for (p, k) in f.keys.iter().enumerate() {
            assert_eq!(f.listed[p], k.failure(), "listed where it is keyed");
        }

        fn position(f: &Failures, fail: &NodeFail) -> usize {
            f.keys.iter().position(|k| k == fail).expect("listed")
        }
    }

    #[test]
    fn verdicts_come_back_in_candidate_order_by_table_or_by_sort() {
        let fits = CandidateOutcome::Fits(1);
        // Few verdicts among many candidates (sorted), most candidates (a table), and a
        // position out of range or twice (kept, sorted after the table).
        for (count, positions) in [
            (1000, vec![900, 3, 512]),
            (6, vec![5, 0, 2, 1, 4, 3]),
            (4, vec![3, 9, 1, 1, 0]),
        ] {
            let mut verdicts: Vec<CandidateVerdict> = positions
                .iter()
                .map(|&candidate| CandidateVerdict {
                    candidate,
                    outcome: fits,
                })
                .collect();
            in_candidate_order(&mut verdicts, count);
            let mut expected = positions.clone();
            expected.sort_unstable();
            let got: Vec<u32> = verdicts.iter().map(|v| v.candidate).collect();
            assert_eq!(got, expected, "{count} candidates");
        }
    }

    /// A configuration that renames most vendors' resources, so that the owners table is
    /// read from the configuration and not from the defaults.
    fn renamed() -> crate::config::Config {
        crate::config::Config::from_json(
            r#"{"nvidia":{"resourceCountName":"example.com/gpu","resourceMemoryName":"example.com/gpumem","resourceCoreName":"example.com/gpucores"},
                "volcano":{"resourceCountName":"example.com/vgpu-number"},
                "cambricon":{"resourceCountName":"example.com/mlu"},
                "hygon":{"resourceMemoryName":"example.com/dcumem"},
                "amd":{"resourceCountName":"example.com/amdgpu"}}"#,
        )
        .expect("valid")
    }

    /// Names no vendor declares, which a vendor must not read either.
    const FOREIGN: [&str; 4] = ["cpu", "memory", "ephemeral-storage", "example.com/other"];

    #[test]
    fn a_vendor_reads_only_the_resource_names_it_declares() {
        for config in [crate::config::Config::default(), renamed()] {
            let every: std::collections::BTreeSet<String> = VENDORS
                .iter()
                .flat_map(|v| v.managed_resources(&config))
                .chain(FOREIGN.map(String::from))
                .collect();
            for v in VENDORS {
                let own: std::collections::BTreeSet<String> =
                    v.managed_resources(&config).into_iter().collect();
                assert!(!own.is_empty(), "{} declares no resource", v.key());
                // Valid counts, and a value every vendor rejects if it reads it.
                for value in ["1", "4", "not-a-number"] {
                    let others: crate::api::Pairs = every
                        .difference(&own)
                        .map(|n| (n.clone(), value.to_string()))
                        .collect();
                    let c = Container {
                        name: "c".into(),
                        limits: others.clone(),
                        requests: others,
                        ..Container::default()
                    };
                    let slot = Slot {
                        object: "pod/default/p",
                        init: false,
                        index: 0,
                    };
                    assert_eq!(
                        v.request(&c, slot, &config),
                        Ok(None),
                        "{} read another vendor's name (value {value})",
                        v.key()
                    );
                }
            }
        }
    }

    #[test]
    fn asking_the_vendors_a_container_names_equals_asking_every_vendor() {
        const VALUES: [&str; 12] = [
            "0", "1", "2", "4", "8", "50", "100", "1024", "20000", "-1", "1.5", "x",
        ];
        let mut rng = crate::testing::XorShift(0x9e37_79b9_7f4a_7c15_u64);
        let mut next = |n: usize| rng.below(n as u64) as usize;
        // One ledger whose configuration changes: the owners table must follow it.
        let mut ledger = Ledger::default();
        let (mut found, mut failed) = (0, 0);
        for config in [
            crate::config::Config::default(),
            renamed(),
            crate::config::Config::default(),
        ] {
            ledger.configure(config);
            let names: Vec<String> = VENDORS
                .iter()
                .flat_map(|v| v.managed_resources(&ledger.config))
                .chain(FOREIGN.map(String::from))
                .collect();
            for i in 0..3000 {
                let (inits, mains) = (next(2), 1 + next(2));
                let mut container = |k: usize| {
                    let mut pairs = || -> crate::api::Pairs {
                        (0..next(4))
                            .map(|_| {
                                let name = names[next(names.len())].clone();
                                (name, VALUES[next(VALUES.len())].to_string())
                            })
                            .collect()
                    };
                    Container {
                        name: format!("c{k}"),
                        limits: pairs(),
                        requests: pairs(),
                        ..Container::default()
                    }
                };
                let init_containers = (0..inits).map(&mut container).collect();
                let containers = (0..mains).map(&mut container).collect();
                let pod = Pod {
                    uid: format!("uid-{i}"),
                    namespace: "default".into(),
                    name: format!("p-{i}"),
                    init_containers,
                    containers,
                    ..Pod::default()
                };
                // The old derivation: every vendor asked about every container.
                let expected = requests_asking(&ledger, &pod, |_| vendor::VendorSet::MAX);
                match &expected {
                    Ok(r) if r.iter().any(|c| !c.is_empty()) => found += 1,
                    Err(_) => failed += 1,
                    Ok(_) => {}
                }
                assert_eq!(requests(&ledger, &pod), expected, "{pod:?}");
            }
        }
        // Both outcomes are well represented, so the comparison means something.
        assert!(
            found > 1000 && failed > 1000,
            "{found} found, {failed} failed"
        );
    }

    #[test]
    fn a_pod_update_that_books_the_same_keeps_the_booking() {
        type State = (Vec<Card>, f64, Vec<crate::api::QuotaUsage>, Option<bool>);
        let state = |e: &crate::Engine| -> State {
            let l = e.ledger();
            (
                l.nodes["n1"].cards.clone(),
                l.nodes["n1"].use_score,
                l.quotas.report(),
                l.pods.get("uid-10000").map(|p| p.assumed),
            )
        };
        let fed = |pod: &Pod| {
            let mut e = crate::Engine::new();
            let errors = e.apply(&[
                Delta::NodeUpsert(node("n1", &[(40960, true), (40960, true)])),
                Delta::PodUpsert(pod.clone()),
            ]);
            assert!(errors.is_empty(), "{errors:?}");
            e
        };
        let mut e = crate::Engine::new();
        assert!(
            e.apply(&[Delta::NodeUpsert(node(
                "n1",
                &[(40960, true), (40960, true)]
            ))])
            .is_empty()
        );
        let p = pod(10000);
        let decision = e
            .filter(&p, &["n1"], 0)
            .expect("evaluates")
            .decision
            .expect("fits");
        let assumed = state(&e);
        assert_eq!(assumed.3, Some(true));
        let entry = e.ledger().pods["uid-10000"].clone();
        assert!(assumed.0.iter().any(|c| c.used_mem == 10000));
        let mut placed = p.clone();
        placed.annotations.extend(decision.annotations);
        // Confirmed by the watch, then echoed back unchanged: the same booking, no longer
        // assumed, and what a ledger fed the placed pod from the start holds.
        for _ in 0..2 {
            assert!(e.apply(&[Delta::PodUpsert(placed.clone())]).is_empty());
            let now = state(&e);
            assert_eq!((&now.0, now.1, &now.2), (&assumed.0, assumed.1, &assumed.2));
            assert_eq!(now.3, Some(false));
            assert_eq!(now, state(&fed(&placed)));
            // The assumption's entry is what the placed pod decodes to: it is kept as it was.
            assert_eq!(
                e.ledger().pods["uid-10000"],
                crate::ledger::PodEntry {
                    assumed: false,
                    ..entry.clone()
                }
            );
        }
        // Moved to the other card: booked anew.
        let (from, to) = if assumed.0[0].used_mem > 0 {
            ("GPU-n1-0", "GPU-n1-1")
        } else {
            ("GPU-n1-1", "GPU-n1-0")
        };
        let mut moved = placed.clone();
        for (_, v) in &mut moved.annotations {
            *v = v.replace(from, to);
        }
        assert!(e.apply(&[Delta::PodUpsert(moved.clone())]).is_empty());
        assert_ne!(state(&e).0, assumed.0);
        assert_eq!(state(&e), state(&fed(&moved)));
    }
}
