//! Device vendors. Each vendor is one module behind the small pure [`Vendor`] trait: parse a
//! node's cards, derive a container's request, admit a container, fit a request on a node's
//! cards, and encode the decision annotations. A new vendor is one module and one line in
//! [`VENDORS`].

pub mod amd;
pub mod ascend;
pub mod awsneuron;
pub mod biren;
pub mod cambricon;
pub mod common;
pub mod enflame;
pub mod hygon;
pub mod iluvatar;
pub mod kit;
pub mod kunlun;
pub mod metax;
pub mod mthreads;
pub mod nvidia;
pub mod vastai;
pub mod volcano;

use std::sync::Arc;

use crate::api::{CardCheck, Container, ContainerRef, Invalid, Mutation, Node, Pairs, Pod};
use crate::config::Config;
use crate::device::{Card, ContainerDevice, DeviceInfo, Placed, PodDevices};
use crate::ledger::{Ledger, VGPU_NODE};
use crate::policy::{GpuPolicy, NodePolicy};
use crate::reason::Counter;

/// Every vendor the guest knows, in vendor-key order.
pub static VENDORS: &[&dyn Vendor] = &[
    &nvidia::Nvidia,
    &ascend::ASCEND_910A,
    &ascend::ASCEND_910B2,
    &ascend::ASCEND_910B3,
    &ascend::ASCEND_910B4_1,
    &ascend::ASCEND_910B4,
    &ascend::ASCEND_310P,
    &ascend::ASCEND_910C,
    &cambricon::Cambricon,
    &hygon::Hygon,
    &iluvatar::MR_V100,
    &iluvatar::MR_V50,
    &iluvatar::BI_V150,
    &iluvatar::BI_V100,
    &mthreads::Mthreads,
    &biren::Biren,
    &amd::Amd,
    &vastai::Vastai,
    &volcano::Volcano,
    &metax::MetaxGpu,
    &metax::MetaxSgpu,
    &kunlun::KunlunWhole,
    &kunlun::KunlunVxpu,
    &enflame::EnflameGcu,
    &enflame::EnflameShared,
    &awsneuron::AwsNeuron,
];

/// A set of [`VENDORS`], bit `i` for `VENDORS[i]`.
pub type VendorSet = u64;

// Every vendor has a bit.
const _: () = assert!(VENDORS.len() <= VendorSet::BITS as usize);

/// The vendors of `set`, in [`VENDORS`] order.
pub fn vendors_in(set: VendorSet) -> impl Iterator<Item = &'static dyn Vendor> {
    VENDORS
        .iter()
        .enumerate()
        .filter(move |(i, _)| set & (1 << i) != 0)
        .map(|(_, v)| *v)
}

/// Which vendors each name belongs to: the resource names a vendor's [`Vendor::request`]
/// reads ([`VendorsByName::resources`]), or the annotation its devices are kept in
/// ([`VendorsByName::allocations`]).
///
/// Both let a call ask only the vendors a pod names instead of all 26, each looking its names
/// up in the pod. It gives what asking every vendor gives, because a vendor reads nothing it
/// does not declare (the tests in `schedule` and `ledger` check that for every vendor):
/// - `filter` derives every container's requests on every call. A vendor reads only the names
///   in [`Vendor::managed_resources`], the names the extender declares to kube-scheduler, so a
///   container that lists none of them asks nothing of it, and no error of it can be missed.
/// - Every pod delta is decoded. A vendor finds no devices without its
///   [`Vendor::allocated_key`], and most pods carry one vendor's key or none (CPU pods).
#[derive(Clone, Debug, Default)]
pub struct VendorsByName(std::collections::HashMap<String, VendorSet, crate::ledger::NameHash>);

impl VendorsByName {
    fn of(names: impl Fn(&dyn Vendor) -> Vec<String>) -> VendorsByName {
        let mut by_name = std::collections::HashMap::default();
        for (i, v) in VENDORS.iter().enumerate() {
            for name in names(*v) {
                *by_name.entry(name).or_insert(0) |= 1 << i;
            }
        }
        VendorsByName(by_name)
    }

    /// The resource names each vendor reads under `config` (the ledger keeps one per
    /// configuration).
    pub fn resources(config: &Config) -> VendorsByName {
        VendorsByName::of(|v| v.managed_resources(config))
    }

    /// The annotation each vendor keeps a placed pod's devices in (no vendor's depends on the
    /// configuration).
    pub fn allocations() -> &'static VendorsByName {
        static KEYS: std::sync::OnceLock<VendorsByName> = std::sync::OnceLock::new();
        KEYS.get_or_init(|| VendorsByName::of(|v| vec![v.allocated_key().to_string()]))
    }

    /// The vendors any of `names` belongs to.
    pub fn of_names<'n>(&self, names: impl IntoIterator<Item = &'n str>) -> VendorSet {
        names
            .into_iter()
            .filter_map(|name| self.0.get(name))
            .fold(0, |set, v| set | v)
    }

    /// The vendors whose resource names the container lists under limits or requests.
    pub fn of_container(&self, c: &Container) -> VendorSet {
        self.of_names(c.limits.iter().chain(&c.requests).map(|(k, _)| k.as_str()))
    }

    /// The vendors whose annotations the pod carries.
    pub fn of_pod(&self, pod: &Pod) -> VendorSet {
        self.of_names(pod.annotations.iter().map(|(k, _)| k.as_str()))
    }
}

/// Looks a vendor up by key.
pub fn by_key(key: &str) -> Option<&'static dyn Vendor> {
    VENDORS.iter().copied().find(|v| v.key() == key)
}

/// A container's request for one vendor: HAMi's `ContainerDeviceRequest`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The vendor key (`NVIDIA`).
    pub vendor: &'static str,
    /// Number of cards.
    pub nums: i64,
    /// Memory per card, MiB (0 = use the percentage).
    pub memreq: i64,
    /// Percent of each card's memory; 101 = unset.
    pub mem_pct: i64,
    /// Cores per card, percent.
    pub coresreq: i64,
}

/// See [`Vendor::summary_check`].
pub type SummaryCheck = Box<dyn Fn(&[crate::summary::CardRow]) -> Option<(Counter, u32)>>;

/// Whether a node's registration of one vendor is live, read from the node once per update:
/// a handshake's grace period is a deadline, so the answer at any later time needs no
/// second read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liveness {
    Live,
    Dead,
    /// Live strictly before this Unix time.
    Until(i64),
}

impl Liveness {
    pub fn at(self, now: i64) -> bool {
        match self {
            Liveness::Live => true,
            Liveness::Dead => false,
            Liveness::Until(t) => now < t,
        }
    }
}

/// Names a container in errors: `pod/ns/name` and `initContainers[0]` / `containers[1]`.
#[derive(Clone, Copy, Debug)]
pub struct Slot<'a> {
    pub object: &'a str,
    pub init: bool,
    pub index: usize,
}

impl Slot<'_> {
    pub fn field(&self, rest: &str) -> String {
        let list = if self.init {
            "initContainers"
        } else {
            "containers"
        };
        format!("{list}[{}].{rest}", self.index)
    }
}

/// `quota(tmp, uuid, memory MiB, cores)`: does the pod stay within its namespace quota with
/// the devices chosen so far for this container and the candidate card?
pub type QuotaCheck<'a> = dyn Fn(&[ContainerDevice], &str, i64, i64) -> bool + 'a;

/// What a vendor's fit may ask about the pod being placed.
pub struct FitContext<'a> {
    pub pod: &'a Pod,
    /// The scheduler configuration (Volcano's MIG geometries, Ascend's hami-core, ...).
    pub config: &'a Config,
    pub node: &'a Node,
    pub policy: &'a GpuPolicy,
    /// Would the pod still fit its namespace quota with `tmp` plus the candidate card (uuid,
    /// memory MiB, cores)?
    pub quota: &'a QuotaCheck<'a>,
    /// Collects card-by-card checks for `explain`.
    pub explain: Option<&'a std::cell::RefCell<Vec<CardCheck>>>,
    /// Container position, for `explain`.
    pub position: u32,
    /// Devices (of every vendor) already given to the pod's earlier containers, with their
    /// container position (MetaX-GPU and Mthreads keep a pod on one card).
    pub earlier: &'a [(usize, ContainerDevice)],
}

/// What a vendor's node score term may read (spec vendors §1.5 `ScoreNode`).
pub struct ScoreContext<'a> {
    pub pod: &'a Pod,
    pub node: &'a Node,
    pub config: &'a Config,
    /// Every card of the node (all vendors) with its use before this pod was placed.
    pub previous: &'a [Card],
    /// This vendor's devices chosen for the pod, per container position.
    pub devices: &'a PodDevices,
    pub policy: NodePolicy,
}

/// What a vendor's decision annotations may depend on besides the devices.
pub struct DecisionContext<'a> {
    pub pod: &'a Pod,
    /// The chosen node's name.
    pub node: &'a str,
    /// Unix seconds, as given to `filter` / `reserve`.
    pub now: i64,
    pub config: &'a Config,
    /// The chosen node's cards (every vendor).
    pub cards: &'a [Card],
}

/// The resources of a vendor that the extended ResourceQuota tracks (spec §10).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuotaResources<'a> {
    pub memory: &'a str,
    pub cores: &'a str,
    pub memory_factor: i64,
}

/// The result of fitting one request on one node's cards.
pub enum Fit {
    /// The chosen cards, in the order they were accepted.
    Fits(Vec<ContainerDevice>),
    /// Per-card reasons; the denominator is the number of candidate cards.
    NoFit(Counter),
}

/// One accelerator vendor.
pub trait Vendor: Sync {
    /// The vendor key written in annotations and requests, e.g. `NVIDIA`.
    fn key(&self) -> &'static str;

    /// Resource names the scheduler extender must manage for this vendor.
    fn managed_resources(&self, config: &Config) -> Vec<String>;

    /// Parses the node's cards; `Ok(None)` when the node has none of this vendor.
    fn parse_node(&self, node: &Node) -> Result<Option<Vec<DeviceInfo>>, Invalid>;

    /// Parses the node's cards under a configuration (the ledger calls this one, and again
    /// when the configuration changes). Default: [`Vendor::parse_node`].
    fn parse_node_configured(
        &self,
        node: &Node,
        _config: &Config,
    ) -> Result<Option<Vec<DeviceInfo>>, Invalid> {
        self.parse_node(node)
    }

    /// [`Vendor::parse_node_configured`] of a new version of a node whose previous version
    /// `previous` was parsed without error into `cards` (every vendor's, each card marked with
    /// its vendor). A vendor may reuse what did not change; the answer must be the one
    /// `parse_node_configured` gives. Default: parse.
    fn parse_node_again(
        &self,
        node: &Node,
        config: &Config,
        _previous: &Node,
        _cards: &[Card],
    ) -> Result<Option<Vec<DeviceInfo>>, Invalid> {
        self.parse_node_configured(node, config)
    }

    /// Whether the node's registration is live, and until when (handshake rules). The
    /// ledger reads it once per node update, not once per evaluation.
    fn liveness(&self, node: &Node, config: &Config) -> Liveness;

    /// Whether the node's registration is live at `now`.
    fn node_live(&self, node: &Node, config: &Config, now: i64) -> bool {
        self.liveness(node, config).at(now)
    }

    /// The node annotation of HAMi's handshake that [`Vendor::node_live`] reads
    /// (`hami.io/node-handshake`, `hami.io/node-handshake-dcu`, ...), which the scheduler stamps
    /// `Requesting_<time>` ([`crate::handshake`]); `None` for vendors without a handshake.
    fn handshake_key(&self) -> Option<&'static str> {
        None
    }

    /// Derives one container's request, `None` when it asks for nothing of this vendor.
    fn request(
        &self,
        container: &Container,
        slot: Slot<'_>,
        config: &Config,
    ) -> Result<Option<Request>, Invalid>;

    /// Admission for one container of `pod`: whether it uses this vendor, and the mutations.
    /// Vendors whose webhook reads pod annotations (Ascend's `vnpu-mode`) or what the nodes
    /// registered (Enflame v2.7's slices per card) override this; the default reads neither.
    fn admit_pod_container(
        &self,
        _pod: &Pod,
        container: &Container,
        slot: Slot<'_>,
        cref: ContainerRef,
        ledger: &Ledger,
    ) -> Result<(bool, Vec<Mutation>), Invalid> {
        self.admit_container(container, slot, cref, &ledger.config)
    }

    /// The runtime class admission sets on a pod that uses this vendor and has none; `None`
    /// when none is configured. The first one found wins (containers in order, init containers
    /// first, then [`VENDORS`] in order).
    fn runtime_class_name<'a>(&self, _config: &'a Config) -> Option<&'a str> {
        None
    }

    /// Admission for one container: whether it uses this vendor, and the mutations.
    fn admit_container(
        &self,
        container: &Container,
        slot: Slot<'_>,
        cref: ContainerRef,
        config: &Config,
    ) -> Result<(bool, Vec<Mutation>), Invalid>;

    /// Whether this card belongs to the request's vendor (candidate selection).
    fn owns(&self, card: &Card) -> bool;

    /// Whether one card may host several of this container's slices (MIG), in which case the
    /// node-level "more cards asked than the node has" check is skipped.
    fn multi_slice(&self, _pod: &Pod, _request: &Request, _cards: &[&Card]) -> bool {
        false
    }

    /// The (memory, cores) resource names a namespace quota limits as `limits.<name>`, and
    /// the memory factor applied to the memory limit.
    fn quota_resources<'a>(&self, _config: &'a Config) -> Option<QuotaResources<'a>> {
        None
    }

    /// Fits one request on the node's candidate cards, given in policy order (tried from the end).
    fn fit(&self, cards: &[&Card], request: &Request, ctx: &FitContext<'_>) -> Fit;

    /// A check of a node's [`crate::summary`] for `request`, the first request a pod's
    /// evaluation fits, prepared once per `filter` call. The check answers `Some((counter,
    /// total))` exactly when [`Vendor::fails_on_every_card`] would answer `Some(counter)` on
    /// the node's cards, `total` being the cards the vendor owns there; `None` when a card may
    /// pass, or the summary cannot tell. `quota_limited`: the pod's namespace has a quota on
    /// this vendor's resources. The default (no check) evaluates every node in full.
    fn summary_check(
        &self,
        _pod: &Pod,
        _request: &Request,
        _policy: &GpuPolicy,
        _quota_limited: bool,
    ) -> Option<SummaryCheck> {
        None
    }

    /// `Some(counter)` when no card of this vendor among `cards` (the node's, every vendor's,
    /// in registration order; those the vendor owns count) passes its per-card checks on its
    /// own, so that no order of the cards fits `request` and `counter` is exactly what
    /// [`Vendor::fit`] returns in every order. `filter` asks this first and collects, scores
    /// and sorts the cards only on `None` (a node that fits nowhere is then rejected without
    /// ordering its cards). The default `None` always orders them.
    fn fails_on_every_card(
        &self,
        _cards: &[Card],
        _request: &Request,
        _ctx: &FitContext<'_>,
    ) -> Option<Counter> {
        None
    }

    /// Books a chosen device on the node copy (spec §5 `AddResourceUsage`).
    fn add_usage(&self, card: &mut Card, device: &ContainerDevice) {
        card.used += 1;
        card.used_mem += device.mem;
        card.used_cores += device.cores;
        if let Some(m) = &device.mig {
            card.mig_in_use.push(m.clone());
        }
    }

    /// The decision annotations for this vendor's devices (one entry per container position).
    fn annotations(&self, devices: &PodDevices) -> Pairs;

    /// Whether a decision for this vendor carries HAMi's common keys (`hami.io/vgpu-node`,
    /// `hami.io/vgpu-time` and the node label). Vendors speaking another protocol (Volcano)
    /// write their own node and time keys in [`Vendor::decision_annotations`].
    fn hami_keys(&self) -> bool {
        true
    }

    /// This vendor's own score of a fitting node (0..=100, higher is better), given the node's
    /// cards before the pod and the devices chosen for it. `None` (the default) leaves the
    /// node to HAMi's node score and node policy.
    fn node_score(
        &self,
        _cards: &[Card],
        _chosen: &[&ContainerDevice],
        _config: &Config,
    ) -> Option<u32> {
        None
    }

    /// Whether a fitting node's rank for this vendor's request is HAMi's node score on the
    /// node's existing use and nothing else: the vendor has no [`Vendor::node_score`], no
    /// [`Vendor::topology_score`] and no [`Vendor::score_node`] term. Then `filter` may try the
    /// candidates best first and stop at the first that fits. A vendor that overrides any of
    /// those three must return false (the default true is for the many that add nothing);
    /// `conformance_filter_verdicts_modes_agree` in `host/tests` checks every scenario both ways.
    fn rank_is_use_only(&self) -> bool {
        true
    }

    /// The node a placed pod holds this vendor's devices on. Default: `hami.io/vgpu-node`.
    fn placed_node(&self, pod: &Pod) -> Option<String> {
        pod.annotation(VGPU_NODE).map(str::to_string)
    }

    /// The decision annotations with what else a vendor may need (time stamps, the node, the
    /// cards' models). Defaults to [`Vendor::annotations`].
    fn decision_annotations(&self, devices: &PodDevices, _ctx: &DecisionContext<'_>) -> Pairs {
        self.annotations(devices)
    }

    /// The vendor's topology term of the node score (HAMi's `ScoreNode`), "higher is better":
    /// `devices` are the pod's devices of this vendor per container, `previous` the node's
    /// cards before the pod. The scheduler adds it under `binpack` and subtracts it under
    /// `spread`, so better topology always wins (DEVIATIONS.md A5). Defaults to 0.
    fn topology_score(&self, _node: &Node, _devices: &PodDevices, _previous: &[Card]) -> f64 {
        0.0
    }

    /// Pod-level admission rules, run once per pod after every container's
    /// [`Vendor::admit_container`]: whether the pod uses this vendor, and the mutations. An
    /// error denies the pod.
    fn admit_pod(&self, _pod: &Pod, _config: &Config) -> Result<(bool, Vec<Mutation>), Invalid> {
        Ok((false, Vec::new()))
    }

    /// A tag the pod leaves on a card it holds through `device` (see [`Card::tags`]).
    fn card_tag(&self, _pod: &Pod, _device: &ContainerDevice) -> Option<Arc<str>> {
        None
    }

    /// Books a device chosen for an earlier container of `pod` in the same pass: by default
    /// [`Vendor::add_usage`] plus the pod's [`Vendor::card_tag`].
    fn book(&self, card: &mut Card, device: &ContainerDevice, pod: &Pod) {
        self.add_usage(card, device);
        if let Some(tag) = self.card_tag(pod, device) {
            card.tags.push(tag);
        }
    }

    /// This vendor's term of the node score (HAMi `ScoreNode`), added to the default score;
    /// policy weighting is the vendor's own business. 0 by default.
    fn score_node(&self, _ctx: &ScoreContext<'_>) -> f64 {
        0.0
    }

    /// The annotation a placed pod carries this vendor's devices in: without it,
    /// [`Vendor::decode_pod`] finds none ([`VendorsByName::allocations`] asks only the vendors
    /// whose key a pod carries).
    fn allocated_key(&self) -> &'static str;

    /// Decodes a placed pod's devices of this vendor from its annotations, `None` if absent.
    fn decode_pod(&self, pod: &Pod) -> Result<Option<Placed>, Invalid>;
}
