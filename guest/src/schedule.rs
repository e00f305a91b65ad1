//! Filter, score, reserve and explain over the ledger (spec §6.1–6.3, §6.8–6.9, §10.2).

use std::cell::RefCell;
use std::cmp::Ordering;

use crate::api::{
    CardCheck, CardUsage, Code, Decision, DeviceGrant, Error, FilterOutcome, NodeExplanation,
    NodeScore, NodeUsage, NodeVerdict, Pod, Reservation,
};
use crate::device::{self, Card, ContainerDevice, PodDevices};
use crate::ledger::{Ledger, NodeEntry, PodEntry, VGPU_NODE};
use crate::policy::{self, GpuPolicy, NodePolicy, Weights};
use crate::reason;
use crate::summary::NodeSummary;
use crate::vendor::{self, Fit, FitContext, Request, Slot, VENDORS};

pub const VGPU_TIME: &str = "hami.io/vgpu-time";

/// A pod's requests: per container position (init containers first), per vendor.
pub type PodRequests = Vec<Vec<Request>>;

/// Derives every container's requests; an error names the container and field.
pub fn requests(ledger: &Ledger, pod: &Pod) -> Result<PodRequests, Error> {
    let object = pod.object();
    let mut out = Vec::new();
    for (init, list) in [(true, &pod.init_containers), (false, &pod.containers)] {
        for (index, c) in list.iter().enumerate() {
            let slot = Slot {
                object: &object,
                init,
                index,
            };
            let mut reqs = Vec::new();
            for v in VENDORS {
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
    /// The reasons written so far in this call: nodes alike fail alike, and a counter's text
    /// is formatted once.
    reasons: RefCell<Vec<Written>>,
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
    fn reject(&self, plan: &PodPlan<'_>, node: NodeSummary<'_>, now: i64) -> Option<NodeFail> {
        // A summarised node has one vendor: any other vendor the pod asks is not registered
        // there (`evaluate` checks every vendor's liveness first).
        if self.vendors.iter().any(|v| *v != node.vendor) || !node.live.at(now) {
            return Some(NodeFail::bare(reason::NODE_UNREGISTERED));
        }
        let (counter, total) = (self.check)(node.cards)?;
        Some(plan.fail(counter, total))
    }
}

/// A counter of card failures against `total` cards, as written in a verdict.
struct Written {
    counter: reason::Counter,
    total: u32,
    text: String,
    counts: Vec<crate::api::ReasonCount>,
}

/// How many distinct counters [`PodPlan::fail`] keeps written (a few in practice; past this
/// many they are formatted each time).
const WRITTEN_KEPT: usize = 32;

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
            reasons: RefCell::new(Vec::new()),
            quick: None,
        };
        if plan.best_first {
            plan.quick = Quick::of(&plan);
        }
        Ok(Some(plan))
    }

    /// The verdict of a node whose cards failed as `counter` counts, out of `total`.
    fn fail(&self, counter: reason::Counter, total: u32) -> NodeFail {
        let mut written = self.reasons.borrow_mut();
        let known = written
            .iter()
            .find(|w| w.total == total && w.counter == counter);
        let (reason, counts) = match known {
            Some(w) => (w.text.clone(), w.counts.clone()),
            None => {
                let counts = counter.counts(total);
                let text = reason::join(&counts);
                if written.len() < WRITTEN_KEPT {
                    written.push(Written {
                        counter,
                        total,
                        text: text.clone(),
                        counts: counts.clone(),
                    });
                }
                (text, counts)
            }
        };
        NodeFail {
            code: Code::Unschedulable,
            reason,
            counts,
        }
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

/// A node that does not fit.
struct NodeFail {
    code: Code,
    reason: String,
    counts: Vec<crate::api::ReasonCount>,
}

impl NodeFail {
    fn bare(reason: &str) -> NodeFail {
        NodeFail {
            code: Code::UnschedulableAndUnresolvable,
            reason: reason.to_string(),
            counts: Vec::new(),
        }
    }

    fn verdict(self, node: &str) -> NodeVerdict {
        NodeVerdict {
            node: node.to_string(),
            code: self.code,
            reason: self.reason,
            counts: self.counts,
            score: 0,
        }
    }
}

/// Evaluates the pod on one node (spec §6.2): init containers each on a fresh copy, the node
/// score on existing use, then app containers cumulatively on one copy.
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
                return Err(NodeFail::bare(reason::NODE_UNREGISTERED));
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
            return Err(NodeFail::bare("Device type not found"));
        };
        // A card belongs to the vendor whose registration listed it: a node may register the
        // same model under two protocols (HAMi's and Volcano's).
        let mine = |c: &Card| c.vendor == v.key() && c.owned;
        let total = cards.iter().filter(|c| mine(c)).count();
        if r.nums > total as i64 {
            let candidates: Vec<&Card> = cards.iter().filter(|c| mine(c)).collect();
            if !v.multi_slice(plan.pod, r, &candidates) {
                return Err(NodeFail::bare(reason::NODE_INSUFFICIENT_DEVICE));
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
            return Err(plan.fail(counter, total));
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
            Fit::NoFit(counter) => return Err(plan.fail(counter, total)),
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
        VENDORS
            .iter()
            .filter_map(|v| {
                let res = v.quota_resources(&ledger.config)?;
                let q = &ledger.quotas;
                let factor = res.memory_factor.max(1);
                let view = QuotaView {
                    vendor: v.key(),
                    mem_limit: q.limit(&pod.namespace, &res.memory).map(|l| l * factor),
                    core_limit: q.limit(&pod.namespace, &res.cores),
                    used_mem: q.used(&pod.namespace, &res.memory),
                    used_cores: q.used(&pod.namespace, &res.cores),
                };
                (view.mem_limit.is_some() || view.core_limit.is_some()).then_some(view)
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
fn evaluate_all<N: AsRef<str>>(
    ledger: &Ledger,
    plan: &PodPlan<'_>,
    candidates: &[N],
    now: i64,
) -> Vec<(String, Result<NodeFit, NodeFail>)> {
    candidates
        .iter()
        .map(|name| {
            let name = name.as_ref();
            let result = match ledger.nodes.get(name) {
                Some(entry) => evaluate(ledger, plan, entry, now, None),
                None => Err(NodeFail::bare(reason::NODE_UNREGISTERED)),
            };
            (name.to_string(), result)
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

/// Candidates as a list or as WIT's text.
enum Names<'a, N> {
    List(&'a [N]),
    Text(&'a str),
}

impl<N: AsRef<str>> Names<'_, N> {
    /// Every name, in order (the text split).
    fn all(&self) -> Vec<&str> {
        match self {
            Names::List(list) => list.iter().map(AsRef::as_ref).collect(),
            Names::Text(text) => crate::node_names(text),
        }
    }
}

fn filter_names<N: AsRef<str>>(
    ledger: &mut Ledger,
    pod: &Pod,
    candidates: Names<'_, N>,
    now: i64,
) -> Result<FilterOutcome, Error> {
    let Some(plan) = PodPlan::new(ledger, pod)? else {
        return Ok(FilterOutcome {
            managed: false,
            verdicts: candidates
                .all()
                .into_iter()
                .map(|n| success(n, 0))
                .collect(),
            decision: None,
        });
    };
    // A re-filter (e.g. after a failed bind) first gives back what the pod held.
    ledger.remove_pod(&pod.uid);
    let (verdicts, best) = if plan.best_first {
        ledger.rank_names();
        match candidates {
            Names::List(list) => ledger.resolve_candidates(list),
            Names::Text(text) => ledger.resolve_candidates_text(text),
        }
        try_best_first(ledger, &plan, now)
    } else {
        evaluate_every(ledger, &plan, &candidates.all(), now)
    };
    let decision = best.map(|(name, devices)| assume(ledger, &plan, &name, devices, now));
    Ok(FilterOutcome {
        managed: true,
        verdicts,
        decision,
    })
}

/// The chosen node's name and its devices per container position.
type Choice = (String, Vec<Vec<ContainerDevice>>);

/// Every candidate evaluated; the best fitting one chosen under [`NodeRank::order`].
fn evaluate_every<N: AsRef<str>>(
    ledger: &Ledger,
    plan: &PodPlan<'_>,
    candidates: &[N],
    now: i64,
) -> (Vec<NodeVerdict>, Option<Choice>) {
    let results = evaluate_all(ledger, plan, candidates, now);
    let best = results
        .iter()
        .enumerate()
        .filter_map(|(i, (n, r))| r.as_ref().ok().map(|f| (i, n.as_str(), f.rank())))
        .min_by(|a, b| NodeRank::order(plan.node_policy, (a.1, a.2), (b.1, b.2)))
        .map(|(i, _, _)| i);
    let mut choice = None;
    let mut verdicts = Vec::with_capacity(results.len());
    for (i, (name, result)) in results.into_iter().enumerate() {
        match result {
            Ok(fit) => {
                verdicts.push(success(&name, fit.score(plan.node_policy)));
                if best == Some(i) {
                    choice = Some((name, fit.devices));
                }
            }
            Err(fail) => verdicts.push(fail.verdict(&name)),
        }
    }
    (verdicts, choice)
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
) -> (Vec<NodeVerdict>, Option<Choice>) {
    let listed = ledger.candidates();
    let name_at = |position: usize| listed.name(position);
    let mut verdicts: Vec<(usize, NodeVerdict)> = listed
        .unknown()
        .iter()
        .map(|&p| {
            let p = p as usize;
            (
                p,
                NodeFail::bare(reason::NODE_UNREGISTERED).verdict(name_at(p)),
            )
        })
        .collect();
    let mut choice = None;
    for rank in ledger.best_first(plan.node_policy) {
        let Some(position) = listed.position(rank) else {
            continue;
        };
        let name = name_at(position);
        let quick = plan
            .quick
            .as_ref()
            .and_then(|q| q.reject(plan, ledger.summary(rank)?, now));
        let result = match quick {
            Some(fail) => Err(fail),
            None => {
                let Some(entry) = ledger.nodes.get(name) else {
                    continue;
                };
                evaluate(ledger, plan, entry, now, None)
            }
        };
        match result {
            Ok(fit) => {
                verdicts.push((position, success(name, fit.score(plan.node_policy))));
                choice = Some((name.to_string(), fit.devices));
                break;
            }
            Err(fail) => {
                let verdict = fail.verdict(name);
                for &again in listed.repeats(rank) {
                    verdicts.push((again as usize, verdict.clone()));
                }
                verdicts.push((position, verdict));
            }
        }
    }
    verdicts.sort_unstable_by_key(|(position, _)| *position);
    (verdicts.into_iter().map(|(_, v)| v).collect(), choice)
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
    let models: std::collections::HashMap<&str, &str> = cards
        .iter()
        .map(|c| (c.info.id.as_str(), c.info.model.as_str()))
        .collect();
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
                    model: models
                        .get(d.uuid.as_str())
                        .map(|m| m.to_string())
                        .unwrap_or_default(),
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
            Ok(fit) => success(&name, plan.node_policy.normalise(fit.raw_score)),
            Err(fail) => fail.verdict(&name),
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
                (NodeScore { node, score }, Some(f.rank()))
            }
            Err(_) => (NodeScore { node, score: 0 }, None),
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
                None => NodeFail::bare(reason::NODE_UNREGISTERED).verdict(name),
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
