//! The device ledger: every node's cards with their current use, every placed or assumed pod's
//! devices, and namespace quota use. Fed by deltas; read by the scheduler.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, OnceLock};

use crate::api::{
    Delta, DeltaError, Error, Invalid, Node, Pod, PodPhase, Quota, QuotaUsage, lookup,
};
use crate::config::Config;
use crate::device::{self, Card, MigInUse, PodDevices, Usage};
use crate::order::{Candidates, NodeOrder};
use crate::policy::NodePolicy;
use crate::quantity;
use crate::summary::{NodeSummary, Summaries};
use crate::vendor::{Liveness, VENDORS, Vendor, VendorSet, VendorsByName};

pub const VGPU_NODE: &str = "hami.io/vgpu-node";

/// A node and its cards.
#[derive(Clone, Debug)]
pub struct NodeEntry {
    pub node: Node,
    /// Cards of every vendor, registration order within a vendor, with current use.
    pub cards: Vec<Card>,
    /// Vendors with a registration on this node.
    pub vendors: BTreeSet<&'static str>,
    /// Each of `vendors` with its [`Liveness`], read from the node object at each update:
    /// `filter` asks it of every node it evaluates.
    pub liveness: Vec<(&'static str, Liveness)>,
    /// HAMi's node score of `cards` on their current use ([`crate::policy::node_score`]),
    /// kept by [`Ledger::use_changed`] wherever the cards' use changes: `filter`
    /// orders candidates by it without touching their cards.
    pub use_score: f64,
    /// The error the last parse of the registrations gave (the cards then kept are the
    /// previous ones), returned again while the registrations stay the same.
    pub parse_error: Option<Error>,
    /// The name's place among the ledger's node names: a smaller rank sorts first. Ranks of
    /// nodes present together keep their names' order (removals leave gaps); a new name marks
    /// them stale until [`Ledger::rank_names`]. `filter` breaks score ties by rank, an integer
    /// compare where names would cost a byte-wise compare each (slow in WebAssembly).
    pub name_rank: u32,
}

/// Per vendor key, a pod's devices by container position.
pub type VendorDevices = Vec<(&'static str, PodDevices)>;

/// Per vendor key, reserved MIG slices that match no device of the pod, by GPU UUID.
pub type StraySlices = Vec<(&'static str, String, MigInUse)>;

/// A pod that holds cards: placed (its annotations say so) or assumed by a filter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodEntry {
    pub namespace: String,
    pub name: String,
    pub node: String,
    /// Per vendor, devices by container position.
    pub devices: VendorDevices,
    /// Per vendor, the collapsed use per card.
    pub usage: Vec<(&'static str, Vec<Usage>)>,
    /// Per vendor, reserved MIG slices that match no device of the pod, by GPU UUID.
    pub stray_slices: StraySlices,
    /// True while only a filter has placed it (its decision annotations are not seen yet).
    pub assumed: bool,
    /// Per vendor, the tags the pod leaves on its cards: (vendor, card UUID, tag).
    pub tags: Vec<(&'static str, String, Arc<str>)>,
}

impl PodEntry {
    /// Whether both book exactly the same: the same cards, use, slices and tags on the same
    /// node, charged to the same namespace (whether assumed or not).
    fn books_as(&self, other: &PodEntry) -> bool {
        self.node == other.node
            && self.namespace == other.namespace
            && self.devices == other.devices
            && self.usage == other.usage
            && self.stray_slices == other.stray_slices
            && self.tags == other.tags
    }
}

/// A pod's devices and left-over MIG slices per vendor, from its annotations, asking the
/// vendors in `asked` (in [`VENDORS`] order).
fn decode_placed(pod: &Pod, asked: VendorSet) -> Result<(VendorDevices, StraySlices), Error> {
    let mut devices = Vec::new();
    let mut stray_slices = Vec::new();
    for v in crate::vendor::vendors_in(asked) {
        if let Some(placed) = v.decode_pod(pod).map_err(Error::InvalidInput)? {
            devices.push((v.key(), placed.devices));
            stray_slices.extend(
                placed
                    .stray_slices
                    .into_iter()
                    .map(|(uuid, s)| (v.key(), uuid, s)),
            );
        }
    }
    Ok((devices, stray_slices))
}

/// The tags a pod leaves on the cards it holds ([`crate::vendor::Vendor::card_tag`]).
pub fn card_tags(
    pod: &Pod,
    devices: &[(&'static str, PodDevices)],
) -> Vec<(&'static str, String, Arc<str>)> {
    let mut out = Vec::new();
    for (vendor, per_container) in devices {
        let Some(v) = crate::vendor::by_key(vendor) else {
            continue;
        };
        for d in per_container.iter().flatten() {
            if let Some(tag) = v.card_tag(pod, d) {
                out.push((*vendor, d.uuid.clone(), tag));
            }
        }
    }
    out
}

/// Namespace quota: limits per quota object, and use.
#[derive(Clone, Debug, Default)]
pub struct Quotas {
    /// (namespace, resource) -> quota name -> limit. The smallest limit applies.
    pub limits: BTreeMap<(String, String), BTreeMap<String, i64>>,
    /// namespace -> resource -> use by placed and assumed pods. Nested so that charging a
    /// pod, twice per decision, looks its pairs up without copying their names.
    pub used: HashMap<String, HashMap<String, i64>>,
}

impl Quotas {
    /// No quota limits anything (most clusters): callers then build no lookup keys.
    pub fn limit_nothing(&self) -> bool {
        self.limits.is_empty()
    }

    pub fn limit(&self, namespace: &str, resource: &str) -> Option<i64> {
        if self.limit_nothing() {
            return None;
        }
        self.limits
            .get(&(namespace.to_string(), resource.to_string()))
            .and_then(|by_name| by_name.values().min().copied())
    }

    pub fn used(&self, namespace: &str, resource: &str) -> i64 {
        self.used
            .get(namespace)
            .and_then(|by_resource| by_resource.get(resource))
            .copied()
            .unwrap_or(0)
    }

    /// Adds `amount` to a pair's use (never below 0).
    fn charge(&mut self, namespace: &str, resource: &str, amount: i64) {
        let slot = match self
            .used
            .get_mut(namespace)
            .and_then(|by_resource| by_resource.get_mut(resource))
        {
            Some(slot) => slot,
            None => self
                .used
                .entry(namespace.to_string())
                .or_default()
                .entry(resource.to_string())
                .or_insert(0),
        };
        *slot = (*slot + amount).max(0);
    }

    /// Use and limit of every (namespace, resource) a quota limits or a pod uses, sorted.
    /// A pair whose use dropped back to 0 and that no quota limits is left out, so the report
    /// does not depend on which pods came and went.
    pub fn report(&self) -> Vec<QuotaUsage> {
        let mut keys: BTreeSet<(&str, &str)> = self
            .limits
            .keys()
            .map(|(ns, r)| (ns.as_str(), r.as_str()))
            .collect();
        for (ns, by_resource) in &self.used {
            keys.extend(
                by_resource
                    .iter()
                    .filter(|(_, n)| **n > 0)
                    .map(|(r, _)| (ns.as_str(), r.as_str())),
            );
        }
        keys.into_iter()
            .map(|(namespace, resource)| QuotaUsage {
                namespace: namespace.to_string(),
                resource_name: resource.to_string(),
                used: self.used(namespace, resource).max(0) as u64,
                limit: self.limit(namespace, resource).map(|n| n.max(0) as u64),
            })
            .collect()
    }
}

/// The node lock HAMi's scheduler writes on the Node at bind (`<RFC3339>,<namespace>,<name>`);
/// HAMi's device plugin, or hamr's node agent, removes it once the pod is served.
pub const NODE_LOCK: &str = "hami.io/mutex.lock";
/// Cambricon's node lock, written and released the same way by HAMi's Cambricon plugin.
pub const CAMBRICON_NODE_LOCK: &str = "cambricon.com/dsmlu.lock";

/// Node annotations that no registration is read from and that change often: every vendor's
/// handshake (stamped by the scheduler, answered by device plugins) and the node locks HAMi's
/// scheduler writes at each bind. A change to them alone does not re-parse the node.
pub fn volatile_annotation(key: &str) -> bool {
    key == NODE_LOCK
        || key == CAMBRICON_NODE_LOCK
        || (key.starts_with("hami.io/node-handshake")
            && VENDORS.iter().any(|v| v.handshake_key() == Some(key)))
}

/// Whether two versions of a node carry the same registrations: equal but for
/// [`volatile_annotation`]s (compared in order; a reordering only costs a parse).
fn same_registrations(old: &Node, new: &Node) -> bool {
    fn stable(n: &Node) -> impl Iterator<Item = &(String, String)> {
        n.annotations
            .iter()
            .filter(|(k, _)| !volatile_annotation(k))
    }
    old.labels == new.labels
        && old.allocatable == new.allocatable
        && old.capacity == new.capacity
        && stable(old).eq(stable(new))
}

/// The node table's hasher: 64-bit FNV-1a, a multiply per byte, then a finaliser, which beats the standard
/// SipHash on node names (10–40 bytes) most of all in WebAssembly, where `filter` hashes every
/// candidate of every decision. It does not resist chosen collisions; node names are the
/// cluster's own.
#[derive(Clone, Copy, Debug, Default)]
pub struct NameHash;

impl std::hash::BuildHasher for NameHash {
    type Hasher = Fnv1a;

    fn build_hasher(&self) -> Fnv1a {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }
}

/// See [`NameHash`].
#[derive(Clone, Copy, Debug)]
pub struct Fnv1a(u64);

impl std::hash::Hasher for Fnv1a {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    /// MurmurHash3's finaliser: FNV's top bits barely see the last bytes, and the table takes
    /// its 7-bit tags from there; without it, names that differ at the end share tags and
    /// each lookup compares several keys.
    fn finish(&self) -> u64 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

/// The whole state.
#[derive(Clone, Debug, Default)]
pub struct Ledger {
    /// Changed only by [`Ledger::configure`], which re-derives what depends on it; read from
    /// outside the crate through [`Ledger::config`].
    pub(crate) config: Config,
    /// By name. A hash map: `filter` looks every candidate up (thousands per decision), and
    /// callers that list nodes sort the names themselves.
    pub nodes: HashMap<String, NodeEntry, NameHash>,
    pub pods: HashMap<String, PodEntry, NameHash>,
    /// Node name -> uids of pods holding cards there (the node may not be known yet).
    pub pods_by_node: HashMap<String, BTreeSet<String>, NameHash>,
    pub quotas: Quotas,
    /// A node name arrived since the ranks were given ([`NodeEntry::name_rank`]).
    names_unranked: bool,
    /// Every node by (use score, rank) in each policy's best-first order; kept while the
    /// ranks are fresh, rebuilt by [`Ledger::rank_names`].
    order: NodeOrder,
    /// Bumped when a node arrives or leaves or the ranks are given anew: the resolved
    /// candidates are then stale.
    generation: u64,
    /// The last candidate list `filter` resolved ([`Ledger::resolve_candidates`]).
    candidates: Candidates,
    /// Each node's [`crate::summary`] by rank; kept while the ranks are fresh, rebuilt by
    /// [`Ledger::rank_names`].
    summaries: Summaries,
    /// Quota objects as given, so a new configuration can re-read them.
    quota_objects: BTreeMap<(String, String), Quota>,
    /// Who reads which resource name under `config`; built on first use after
    /// [`Ledger::configure`] (so `config` changes only through it).
    owners: OnceLock<VendorsByName>,
}

impl Ledger {
    pub fn new(config: Config) -> Ledger {
        Ledger {
            config,
            ..Ledger::default()
        }
    }

    /// Replaces the configuration and re-derives what depends on it.
    pub fn configure(&mut self, config: Config) {
        self.config = config;
        self.owners = OnceLock::new();
        let quotas: Vec<Quota> = self.quota_objects.values().cloned().collect();
        self.quotas = Quotas::default();
        self.quota_objects.clear();
        for q in quotas {
            // A quota that was valid stays valid: its values do not depend on the config.
            let _ = self.upsert_quota(q);
        }
        let uids: Vec<String> = self.pods.keys().cloned().collect();
        for uid in uids {
            if let Some(entry) = self.pods.get(&uid).cloned() {
                self.charge_quota(&entry, 1);
            }
        }
        // Registrations may read the configuration (Volcano's MIG geometries, resource
        // names): parse again.
        let nodes: Vec<Node> = self.nodes.values().map(|e| e.node.clone()).collect();
        for node in nodes {
            // A registration that was valid stays valid, and an invalid one keeps its cards.
            let _ = self.parse_node(node);
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Which vendors read each resource name under the configuration.
    pub fn resource_owners(&self) -> &VendorsByName {
        self.owners
            .get_or_init(|| VendorsByName::resources(&self.config))
    }

    pub fn clear(&mut self) {
        *self = Ledger::new(self.config.clone());
    }

    pub fn apply(&mut self, deltas: &[Delta]) -> Vec<DeltaError> {
        let mut errors = Vec::new();
        for (index, delta) in deltas.iter().enumerate() {
            let result = match delta {
                Delta::NodeUpsert(n) => self.upsert_node(n.clone()),
                Delta::NodeRemove(name) => {
                    self.remove_node(name);
                    Ok(())
                }
                Delta::PodUpsert(p) => self.upsert_pod(p),
                Delta::PodRemove(uid) => {
                    self.remove_pod(uid);
                    Ok(())
                }
                Delta::QuotaUpsert(q) => self.upsert_quota(q.clone()),
                Delta::QuotaRemove((ns, name)) => {
                    self.remove_quota(ns, name);
                    Ok(())
                }
            };
            if let Err(error) = result {
                errors.push(DeltaError {
                    index: index as u32,
                    error,
                });
            }
        }
        errors
    }

    /// Parses every vendor's registration. A malformed registration is reported and the
    /// previously known cards stay (HAMi keeps its cache); the rest of the node is updated.
    ///
    /// Most node updates change nothing a registration is read from: handshakes, node locks,
    /// other controllers' status. When only [`volatile_annotation`]s changed, the parsed cards
    /// are kept and the new object replaces the old one (issue #6: a parse costs tens of µs).
    pub fn upsert_node(&mut self, node: Node) -> Result<(), Error> {
        if let Some(entry) = self.nodes.get_mut(&node.name)
            && same_registrations(&entry.node, &node)
        {
            let fresh = liveness(&node, &entry.vendors, &self.config);
            if fresh != entry.liveness && !self.names_unranked {
                self.summaries.set(entry.name_rank, &entry.cards, &fresh);
            }
            entry.liveness = fresh;
            entry.node = node;
            return entry.parse_error.clone().map_or(Ok(()), Err);
        }
        self.parse_node(node)
    }

    /// Forgets a node (its pods stay booked to its name until they go).
    pub fn remove_node(&mut self, name: &str) {
        if let Some(entry) = self.nodes.remove(name) {
            if !self.names_unranked {
                self.order.remove(entry.name_rank, entry.use_score);
                self.summaries.remove(entry.name_rank);
            }
            self.generation += 1;
        }
    }

    /// [`Ledger::upsert_node`] without the shortcut: parses every registration.
    fn parse_node(&mut self, node: Node) -> Result<(), Error> {
        let mut previous = self.nodes.remove(&node.name);
        let mut cards = Vec::new();
        let mut vendors = BTreeSet::new();
        let mut first_error = None;
        for v in VENDORS {
            // A node parsed without error before: the vendor may reuse what did not change.
            let parsed = match &previous {
                Some(prev) if prev.parse_error.is_none() && prev.vendors.contains(v.key()) => {
                    v.parse_node_again(&node, &self.config, &prev.node, &prev.cards)
                }
                _ => v.parse_node_configured(&node, &self.config),
            };
            match parsed {
                Ok(Some(infos)) => {
                    vendors.insert(v.key());
                    cards.extend(infos.into_iter().map(|i| Card::new(v.key(), i)));
                }
                Ok(None) => {}
                Err(e) => {
                    if let Some(prev) = &previous
                        && prev.vendors.contains(v.key())
                    {
                        vendors.insert(v.key());
                        cards.extend(prev.cards.iter().filter(|c| c.vendor == v.key()).cloned());
                    }
                    first_error.get_or_insert(Error::InvalidInput(e));
                }
            }
        }
        let cordon: BTreeSet<&str> = node
            .annotation(crate::vendor::nvidia::fit::DEVICE_CORDON)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        for c in &mut cards {
            c.cordoned = cordon.contains(c.info.id.as_str());
        }
        let name = node.name.clone();
        if previous.is_none() {
            self.names_unranked = true;
            self.generation += 1;
        }
        // The same cards (vendor, id and mode, in order), as when a card's health or memory
        // changes: the pods there are the same, so their use is the previous cards' use.
        let kept_use = previous
            .as_mut()
            .is_some_and(|prev| keep_use(&mut prev.cards, &mut cards));
        // A known node keeps its rank and, until `rebuild_node` moves it, its place in the
        // order.
        self.nodes.insert(
            name.clone(),
            NodeEntry {
                liveness: liveness(&node, &vendors, &self.config),
                node,
                cards,
                vendors,
                use_score: previous.as_ref().map_or(0.0, |p| p.use_score),
                name_rank: previous.as_ref().map_or(0, |p| p.name_rank),
                parse_error: first_error.clone(),
            },
        );
        if kept_use {
            self.use_changed(&name);
        } else {
            self.rebuild_node(&name);
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Gives every node its [`NodeEntry::name_rank`] if a name arrived since the last time.
    pub fn rank_names(&mut self) {
        if !self.names_unranked {
            return;
        }
        let mut entries: Vec<(&String, &mut NodeEntry)> = self.nodes.iter_mut().collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
        for (rank, (_, entry)) in entries.into_iter().enumerate() {
            entry.name_rank = rank as u32;
        }
        self.order = NodeOrder::of(self.nodes.values().map(|e| (e.name_rank, e.use_score)));
        self.summarise_all();
        self.names_unranked = false;
        self.generation += 1;
    }

    /// The summary of the node of rank `rank` (fresh after [`Ledger::rank_names`]).
    pub fn summary(&self, rank: u32) -> Option<NodeSummary<'_>> {
        self.summaries.get(rank)
    }

    /// The ranks of every node, the best first under `policy` (fresh after
    /// [`Ledger::rank_names`]).
    pub fn best_first(&self, policy: NodePolicy) -> Box<dyn Iterator<Item = u32> + '_> {
        self.order.best_first(policy)
    }

    /// Resolves `names` to ranks unless they are the list resolved last and no node arrived
    /// or left since ([`Ledger::candidates`]). Call [`Ledger::rank_names`] first.
    pub fn resolve_candidates<N: AsRef<str>>(&mut self, names: &[N]) {
        if !self.candidates.same(names, self.generation) {
            self.resolve_again(names);
        }
    }

    /// [`Ledger::resolve_candidates`] on WIT's `node-names` text: a text equal to the last one
    /// is recognised by one compare, without splitting it.
    pub fn resolve_candidates_text(&mut self, text: &str) {
        if !self.candidates.same_text(text, self.generation) {
            self.resolve_again(&crate::node_names(text));
        }
    }

    /// The list resolved last, resolved again when nodes arrived or left since; `false` when
    /// no list was resolved since the ledger was made or cleared.
    pub fn resolve_candidates_as_before(&mut self) -> bool {
        if !self.candidates.resolved() {
            return false;
        }
        if !self.candidates.current(self.generation) {
            let text = self.candidates.text().to_string();
            self.resolve_again(&crate::node_names(&text));
        }
        true
    }

    fn resolve_again<N: AsRef<str>>(&mut self, names: &[N]) {
        let ranks = self
            .nodes
            .values()
            .map(|e| e.name_rank as usize + 1)
            .max()
            .unwrap_or(0);
        let nodes = &self.nodes;
        self.candidates = Candidates::resolve(names, self.generation, ranks, |name| {
            nodes.get(name).map(|e| e.name_rank)
        });
    }

    /// The candidates [`Ledger::resolve_candidates`] resolved last.
    pub fn candidates(&self) -> &Candidates {
        &self.candidates
    }

    /// Recomputes the use of a node's cards from the pods placed there (spec §8.3), and the
    /// node's [`NodeEntry::use_score`].
    pub fn rebuild_node(&mut self, name: &str) {
        self.rebuild_cards(name);
        self.use_changed(name);
    }

    /// Adds (`sign` 1) or takes back (`sign` -1) one pod's use on its node's cards, in place;
    /// `false` when the node must be recomputed instead ([`Ledger::rebuild_node`], once the
    /// pod is in or out of [`Ledger::pods`]).
    ///
    /// Recomputing the node reads every pod placed there (a string compare per device and
    /// card), twice per decision (the assumption, then its release) and once per pod while a
    /// cache is replayed. For a pod that holds plain shares, what the recomputation would
    /// change is exactly its own use added or taken away. A pod with MIG slices, card tags or
    /// left-over slices, or one of whose devices sits on a card in MIG mode (which the
    /// recomputation marks unhealthy), is not charged in place.
    fn charge_in_place(&mut self, pod: &PodEntry, sign: i64) -> bool {
        let Some(entry) = self.nodes.get_mut(&pod.node) else {
            // No cards to charge: the node's arrival computes them from its pods.
            return true;
        };
        let plain = pod.tags.is_empty()
            && pod.stray_slices.is_empty()
            && pod.devices.iter().all(|(vendor, devices)| {
                devices.iter().flatten().all(|d| {
                    d.mig.is_none()
                        && card_mut(&mut entry.cards, vendor, &d.uuid)
                            .is_none_or(|c| c.info.mode != "mig")
                })
            });
        if !plain {
            return false;
        }
        charge_usage(&mut entry.cards, pod, sign);
        self.use_changed(&pod.node);
        true
    }

    /// The node's [`NodeEntry::use_score`], its place in the order and its summary, after its
    /// cards' use changed.
    fn use_changed(&mut self, name: &str) {
        if let Some(entry) = self.nodes.get_mut(name) {
            let before = entry.use_score;
            entry.use_score = crate::policy::node_score(entry.cards.iter());
            if !self.names_unranked {
                self.order
                    .reposition(entry.name_rank, before, entry.use_score);
                self.summaries
                    .set(entry.name_rank, &entry.cards, &entry.liveness);
                if self.summaries.wasteful() {
                    self.summarise_all();
                }
            }
        }
    }

    /// Every node's summary anew (ranks fresh).
    fn summarise_all(&mut self) {
        self.summaries.clear();
        for e in self.nodes.values() {
            self.summaries.set(e.name_rank, &e.cards, &e.liveness);
        }
    }

    fn rebuild_cards(&mut self, name: &str) {
        let Some(entry) = self.nodes.get_mut(name) else {
            return;
        };
        for c in &mut entry.cards {
            c.used = 0;
            c.used_mem = 0;
            c.used_cores = 0;
            c.forced_unhealthy = false;
            c.mig_in_use.clear();
            c.tags.clear();
        }
        let Some(uids) = self.pods_by_node.get(name) else {
            return;
        };
        for uid in uids {
            let Some(pod) = self.pods.get(uid) else {
                continue;
            };
            charge_usage(&mut entry.cards, pod, 1);
            for (vendor, uuid, tag) in &pod.tags {
                if let Some(c) = card_mut(&mut entry.cards, vendor, uuid) {
                    c.tags.push(tag.clone());
                }
            }
            // MIG slices, fail-closed: a slice on a card not in MIG mode, or a device on a
            // MIG card without a slice, makes the card unusable until it is consistent again.
            for (vendor, devices) in &pod.devices {
                for d in devices.iter().flatten() {
                    let Some(c) = card_mut(&mut entry.cards, vendor, &d.uuid) else {
                        continue;
                    };
                    match (&d.mig, c.info.mode == "mig") {
                        (Some(m), true) => c.mig_in_use.push(m.clone()),
                        (Some(_), false) | (None, true) => c.forced_unhealthy = true,
                        (None, false) => {}
                    }
                }
            }
            // Left-over slices: booked on their card when it is in MIG mode; a card not in
            // MIG mode, or a GPU the node does not have, makes the MIG cards unusable.
            for (vendor, uuid, slice) in &pod.stray_slices {
                match card_mut(&mut entry.cards, vendor, uuid) {
                    Some(c) if c.info.mode == "mig" => c.mig_in_use.push(slice.clone()),
                    Some(c) => c.forced_unhealthy = true,
                    None => entry
                        .cards
                        .iter_mut()
                        .filter(|c| c.vendor == *vendor && c.info.mode == "mig")
                        .for_each(|c| c.forced_unhealthy = true),
                }
            }
        }
    }

    /// Decodes a pod's placement and books it (spec §8.1). Pods without a placement are not
    /// tracked; finished pods release their cards.
    pub fn upsert_pod(&mut self, pod: &Pod) -> Result<(), Error> {
        if matches!(pod.phase, PodPhase::Succeeded | PodPhase::Failed) {
            self.remove_pod(&pod.uid);
            return Ok(());
        }
        let (devices, stray_slices) = decode_placed(pod, VendorsByName::allocations().of_pod(pod))?;
        let node = VENDORS
            .iter()
            .filter(|v| devices.iter().any(|(k, _)| *k == v.key()))
            .find_map(|v| v.placed_node(pod));
        let (Some(node), false) = (node, devices.is_empty()) else {
            // Not placed (yet). An assumed placement stays until its annotations arrive or it
            // is released; anything else this pod held is gone.
            if self.pods.get(&pod.uid).is_some_and(|e| !e.assumed) {
                self.remove_pod(&pod.uid);
            }
            return Ok(());
        };
        let init_count = pod.init_containers.len();
        let app_only = init_count > 0 && init_done(pod);
        let usage = devices
            .iter()
            .map(|(v, d)| (*v, device::collapse(d, init_count, app_only)))
            .collect();
        let tags = card_tags(pod, &devices);
        let entry = PodEntry {
            tags,
            namespace: pod.namespace.clone(),
            name: pod.name.clone(),
            node,
            devices,
            usage,
            stray_slices,
            assumed: false,
        };
        // Most pod updates book what the pod already holds: an assumption confirmed by the
        // watch, the bind's own writes echoed back, other controllers' changes, a relist.
        // Releasing and booking it again would end where it started.
        if let Some(held) = self.pods.get_mut(&pod.uid)
            && held.books_as(&entry)
        {
            held.assumed = false;
            held.name = entry.name;
            return Ok(());
        }
        self.insert_pod(pod.uid.clone(), entry);
        Ok(())
    }

    /// Books a pod's cards, replacing what it held before.
    pub fn insert_pod(&mut self, uid: String, entry: PodEntry) {
        self.remove_pod(&uid);
        self.charge_quota(&entry, 1);
        self.pods_by_node
            .entry(entry.node.clone())
            .or_default()
            .insert(uid.clone());
        if self.charge_in_place(&entry, 1) {
            self.pods.insert(uid, entry);
        } else {
            let node = entry.node.clone();
            self.pods.insert(uid, entry);
            self.rebuild_node(&node);
        }
    }

    /// Releases whatever the pod holds.
    pub fn remove_pod(&mut self, uid: &str) -> Option<PodEntry> {
        let entry = self.pods.remove(uid)?;
        self.charge_quota(&entry, -1);
        if let Some(set) = self.pods_by_node.get_mut(&entry.node) {
            set.remove(uid);
            if set.is_empty() {
                self.pods_by_node.remove(&entry.node);
            }
        }
        if !self.charge_in_place(&entry, -1) {
            self.rebuild_node(&entry.node);
        }
        Some(entry)
    }

    fn charge_quota(&mut self, entry: &PodEntry, sign: i64) {
        for (vendor, usage) in &entry.usage {
            let Some(res) =
                crate::vendor::by_key(vendor).and_then(|v| v.quota_resources(&self.config))
            else {
                continue;
            };
            let mem: i64 = usage.iter().map(|u| u.mem).sum();
            let cores: i64 = usage.iter().map(|u| u.cores).sum();
            for (resource, amount) in [(res.memory, mem), (res.cores, cores)] {
                if resource.is_empty() {
                    continue;
                }
                self.quotas
                    .charge(&entry.namespace, resource, sign * amount);
            }
        }
    }

    /// Reads the `limits.<resource>` entries of every vendor's memory and core resources.
    pub fn upsert_quota(&mut self, quota: Quota) -> Result<(), Error> {
        let tracked: Vec<(String, i64)> = VENDORS
            .iter()
            .filter_map(|v| v.quota_resources(&self.config))
            .flat_map(|r| [(r.memory, r.memory_factor), (r.cores, 1)])
            .filter(|(name, _)| !name.is_empty())
            .map(|(name, factor)| (name.to_string(), factor))
            .collect();
        let object = format!("quota/{}/{}", quota.namespace, quota.name);
        let mut limits = Vec::new();
        for (resource, _) in &tracked {
            let key = format!("limits.{resource}");
            if let Some(value) = lookup(&quota.hard, &key) {
                let n = quantity::parse_integer(value)
                    .ok()
                    .and_then(|n| i64::try_from(n).ok())
                    .filter(|n| *n >= 0)
                    .ok_or_else(|| {
                        Error::InvalidInput(Invalid::new(
                            &object,
                            format!("spec.hard[{key}]"),
                            value,
                            "must be a non-negative whole number",
                        ))
                    })?;
                limits.push((resource.clone(), n));
            }
        }
        self.remove_quota(&quota.namespace, &quota.name);
        for (resource, n) in limits {
            self.quotas
                .limits
                .entry((quota.namespace.clone(), resource))
                .or_default()
                .insert(quota.name.clone(), n);
        }
        self.quota_objects
            .insert((quota.namespace.clone(), quota.name.clone()), quota);
        Ok(())
    }

    pub fn remove_quota(&mut self, namespace: &str, name: &str) {
        self.quota_objects
            .remove(&(namespace.to_string(), name.to_string()));
        for ((ns, _), by_name) in self.quotas.limits.iter_mut() {
            if ns == namespace {
                by_name.remove(name);
            }
        }
        self.quotas.limits.retain(|_, by_name| !by_name.is_empty());
    }

    /// Whether `vendor`'s registration on `node` is live at `now`.
    pub fn vendor_live(&self, entry: &NodeEntry, vendor: &dyn Vendor, now: i64) -> bool {
        let key = vendor.key();
        entry.liveness.iter().any(|(k, l)| *k == key && l.at(now))
    }
}

/// The card `uuid` of `vendor` (the first, should a registration list it twice).
fn card_mut<'c>(cards: &'c mut [Card], vendor: &str, uuid: &str) -> Option<&'c mut Card> {
    cards
        .iter_mut()
        .find(|c| c.vendor == vendor && c.info.id == uuid)
}

/// Books (`sign` 1) or takes back (`sign` -1) a pod's shares on its node's cards: what
/// [`Ledger::rebuild_cards`] counts of each pod besides its tags and MIG slices, and all
/// that [`Ledger::charge_in_place`] changes.
fn charge_usage(cards: &mut [Card], pod: &PodEntry, sign: i64) {
    for (vendor, usage) in &pod.usage {
        for u in usage {
            if let Some(c) = card_mut(cards, vendor, &u.uuid) {
                c.used += sign * u.slots.max(1);
                c.used_mem += sign * u.mem;
                c.used_cores += sign * u.cores;
            }
        }
    }
}

/// Moves the use of `previous` cards onto the same `cards` of a new registration: `true` when
/// every card has the same vendor, id and mode at the same place, which is all that
/// [`Ledger::rebuild_node`] reads of a card to book the node's pods on it.
fn keep_use(previous: &mut [Card], cards: &mut [Card]) -> bool {
    let same = previous.len() == cards.len()
        && previous.iter().zip(cards.iter()).all(|(p, c)| {
            p.vendor == c.vendor && p.info.id == c.info.id && p.info.mode == c.info.mode
        });
    if same {
        for (p, c) in previous.iter_mut().zip(cards.iter_mut()) {
            c.used = p.used;
            c.used_mem = p.used_mem;
            c.used_cores = p.used_cores;
            c.forced_unhealthy = p.forced_unhealthy;
            c.mig_in_use = std::mem::take(&mut p.mig_in_use);
            c.tags = std::mem::take(&mut p.tags);
        }
    }
    same
}

/// The [`Liveness`] of each vendor registered on `node`.
fn liveness(
    node: &Node,
    vendors: &BTreeSet<&'static str>,
    config: &Config,
) -> Vec<(&'static str, Liveness)> {
    VENDORS
        .iter()
        .filter(|v| vendors.contains(v.key()))
        .map(|v| (v.key(), v.liveness(node, config)))
        .collect()
}

/// All init containers have terminated with exit code 0.
fn init_done(pod: &Pod) -> bool {
    pod.init_containers.iter().all(|c| {
        pod.init_container_statuses
            .iter()
            .any(|s| s.name == c.name && s.terminated_exit_code == Some(0))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::DeviceInfo;

    #[test]
    fn node_name_hashes_spread_their_bucket_and_tag_bits() {
        use std::hash::BuildHasher;
        let names: Vec<String> = (0..5000)
            .map(|i| format!("node-{i:05}"))
            .chain((0..5000).map(|i| format!("ip-10-0-{}-{}.ec2.internal", i / 256, i % 256)))
            .collect();
        let hashes: BTreeSet<u64> = names.iter().map(|n| NameHash.hash_one(n)).collect();
        assert_eq!(hashes.len(), names.len(), "no two of these names collide");
        // hashbrown picks the bucket from the low bits and a 7-bit tag from the top ones.
        let buckets: BTreeSet<u64> = hashes.iter().map(|h| h & 0x3fff).collect();
        assert!(
            buckets.len() > 7000,
            "{} of 16384 buckets used",
            buckets.len()
        );
        let mut tags = [0usize; 128];
        for h in &hashes {
            tags[(h >> 57) as usize] += 1;
        }
        let (least, most) = (tags.iter().min().unwrap(), tags.iter().max().unwrap());
        assert!(
            *least > 40 && *most < 120,
            "tags used {least}..{most} times"
        );
    }

    #[test]
    fn name_ranks_follow_name_order_across_arrivals_and_removals() {
        let mut l = Ledger::default();
        let node = |name: &str| Node {
            name: name.to_string(),
            labels: Vec::new(),
            annotations: Vec::new(),
            allocatable: Vec::new(),
            capacity: Vec::new(),
        };
        let order = |l: &Ledger| {
            let mut names: Vec<(&u32, &String)> =
                l.nodes.iter().map(|(n, e)| (&e.name_rank, n)).collect();
            names.sort();
            names
                .into_iter()
                .map(|(_, n)| n.clone())
                .collect::<Vec<_>>()
        };
        for n in ["n3", "n1", "n2"] {
            l.upsert_node(node(n)).unwrap();
        }
        l.rank_names();
        assert_eq!(order(&l), ["n1", "n2", "n3"]);
        // An update of a known node keeps its rank; a removal leaves the others in order.
        l.upsert_node(node("n2")).unwrap();
        l.apply(&[Delta::NodeRemove("n1".into())]);
        l.rank_names();
        assert_eq!(order(&l), ["n2", "n3"]);
        // A new name between them is ranked where it sorts.
        l.upsert_node(node("n25")).unwrap();
        l.rank_names();
        assert_eq!(order(&l), ["n2", "n25", "n3"]);
    }

    /// The ledger's best-first walk, as names.
    fn walked(l: &Ledger, policy: NodePolicy) -> Vec<String> {
        let by_rank: BTreeMap<u32, &String> =
            l.nodes.iter().map(|(n, e)| (e.name_rank, n)).collect();
        l.best_first(policy).map(|r| by_rank[&r].clone()).collect()
    }

    /// Every node sorted by [`NodePolicy::better`] on its use score.
    fn sorted(l: &Ledger, policy: NodePolicy) -> Vec<String> {
        let mut all: Vec<(&String, f64)> = l.nodes.iter().map(|(n, e)| (n, e.use_score)).collect();
        all.sort_by(|a, b| policy.better((a.0, a.1), (b.0, b.1)));
        all.into_iter().map(|(n, _)| n.clone()).collect()
    }

    #[test]
    fn the_best_first_order_follows_use_arrivals_reregistrations_and_removals() {
        let mut l = Ledger::default();
        let node = |name: &str, slots: i64| {
            let card = ONE_CARD
                .replace("GPU-a", &format!("GPU-{name}"))
                .replace("\"count\":10", &format!("\"count\":{slots}"));
            Node {
                name: name.to_string(),
                annotations: vec![(REGISTER.to_string(), card)],
                ..Node::default()
            }
        };
        let pod = |node: &str, mem: i64| PodEntry {
            namespace: "default".into(),
            name: format!("p-{node}-{mem}"),
            node: node.to_string(),
            devices: Vec::new(),
            usage: vec![(
                "NVIDIA",
                vec![Usage {
                    uuid: format!("GPU-{node}"),
                    mem,
                    cores: 10,
                    slots: 1,
                }],
            )],
            stray_slices: Vec::new(),
            assumed: false,
            tags: Vec::new(),
        };
        let check = |l: &Ledger, step: &str| {
            for policy in [NodePolicy::Binpack, NodePolicy::Spread] {
                assert_eq!(walked(l, policy), sorted(l, policy), "{step}, {policy:?}");
            }
            // Each node's summary is the one its cards and liveness give now.
            for (name, e) in &l.nodes {
                let mut fresh = Summaries::default();
                fresh.set(e.name_rank, &e.cards, &e.liveness);
                let (kept, fresh) = (l.summary(e.name_rank), fresh.get(e.name_rank));
                let view =
                    |s: Option<NodeSummary<'_>>| s.map(|s| (s.vendor, s.live, s.cards.to_vec()));
                assert_eq!(view(kept), view(fresh), "{step}: {name}");
                assert!(kept.is_some(), "{step}: {name} is summarised");
            }
        };
        for n in ["n4", "n2", "n7", "n1", "n5"] {
            l.upsert_node(node(n, 10)).unwrap();
        }
        l.rank_names();
        check(&l, "arrivals");
        for (uid, n, mem) in [
            ("a", "n2", 4096),
            ("b", "n7", 40960),
            ("c", "n2", 4096),
            ("d", "n5", 4096),
        ] {
            l.insert_pod(uid.into(), pod(n, mem));
            check(&l, uid);
        }
        l.remove_pod("b");
        check(&l, "a pod released");
        // A handshake moves liveness without a parse.
        let mut stale = node("n7", 10);
        stale.annotations.push((
            crate::vendor::nvidia::register::HANDSHAKE.to_string(),
            "Requesting_2026-11-28 10:00:00".to_string(),
        ));
        l.upsert_node(stale).unwrap();
        check(&l, "a handshake");
        assert!(matches!(
            l.summary(l.nodes["n7"].name_rank).map(|s| s.live),
            Some(Liveness::Until(_))
        ));
        // A registration change (more slots) moves the node's score.
        l.upsert_node(node("n2", 20)).unwrap();
        check(&l, "re-registered");
        l.remove_node("n4");
        check(&l, "a removal");
        l.upsert_node(node("n3", 10)).unwrap();
        l.insert_pod("e".into(), pod("n3", 8192));
        l.rank_names();
        check(&l, "an arrival with use, ranked");
    }

    #[test]
    fn a_candidate_list_is_resolved_again_only_when_it_or_the_nodes_change() {
        let mut l = Ledger::default();
        for n in ["a", "b", "c"] {
            l.upsert_node(Node {
                name: n.into(),
                ..Node::default()
            })
            .unwrap();
        }
        l.rank_names();
        l.resolve_candidates(&["c", "zz", "a"]);
        let positions = |l: &Ledger| {
            (0..3)
                .map(|r| l.candidates().position(r))
                .collect::<Vec<_>>()
        };
        assert_eq!(positions(&l), vec![Some(2), None, Some(0)]);
        assert_eq!(l.candidates().unknown(), &[1]);
        // "zz" arrives: ranks change, the same list resolves anew.
        l.upsert_node(Node {
            name: "zz".into(),
            ..Node::default()
        })
        .unwrap();
        l.rank_names();
        l.resolve_candidates(&["c", "zz", "a"]);
        assert_eq!(l.candidates().unknown(), &[] as &[u32]);
        assert_eq!(l.candidates().position(3), Some(1));
        l.remove_node("a");
        l.resolve_candidates(&["c", "zz", "a"]);
        assert_eq!(l.candidates().unknown(), &[2]);
    }

    fn registered(annotations: &[(&str, &str)]) -> Node {
        Node {
            name: "n1".into(),
            annotations: annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Node::default()
        }
    }

    const REGISTER: &str = crate::vendor::nvidia::register::REGISTER;
    const ONE_CARD: &str = r#"[{"id":"GPU-a","index":0,"count":10,"devmem":81920,"devcore":100,"type":"NVIDIA H100","numa":0,"mode":"hami-core","health":true}]"#;

    fn card_infos(l: &Ledger) -> Vec<Arc<DeviceInfo>> {
        l.nodes["n1"].cards.iter().map(|c| c.info.clone()).collect()
    }

    #[test]
    fn a_handshake_or_lock_change_keeps_the_parsed_cards_and_takes_the_new_object() {
        let mut l = Ledger::default();
        l.upsert_node(registered(&[(REGISTER, ONE_CARD)])).unwrap();
        let before = card_infos(&l);
        let heartbeat = registered(&[
            (NODE_LOCK, "2026-11-29T10:00:00Z,ml,p1"),
            ("hami.io/node-handshake", "Requesting_2026-11-29 10:00:00"),
            (REGISTER, ONE_CARD),
        ]);
        l.upsert_node(heartbeat.clone()).unwrap();
        assert_eq!(l.nodes["n1"].node, heartbeat, "the new object is kept");
        let after = card_infos(&l);
        assert!(
            before.iter().zip(&after).all(|(a, b)| Arc::ptr_eq(a, b)),
            "not parsed again"
        );
        // Any other change parses again.
        let drained = ONE_CARD.replace(r#","health":true"#, "");
        l.upsert_node(registered(&[(REGISTER, &drained)])).unwrap();
        assert!(!l.nodes["n1"].cards[0].info.health);
        let relabelled = Node {
            labels: vec![("gpu".into(), "on".into())],
            ..registered(&[(REGISTER, &drained)])
        };
        let before = card_infos(&l);
        l.upsert_node(relabelled).unwrap();
        assert!(!Arc::ptr_eq(&before[0], &card_infos(&l)[0]), "labels count");
    }

    #[test]
    fn a_malformed_registration_reports_again_while_only_the_handshake_moves() {
        let mut l = Ledger::default();
        l.upsert_node(registered(&[(REGISTER, ONE_CARD)])).unwrap();
        let broken = registered(&[(REGISTER, "[{")]);
        let first = l.upsert_node(broken.clone()).unwrap_err();
        assert_eq!(l.nodes["n1"].cards.len(), 1, "the last good cards stay");
        let mut beat = broken;
        beat.annotations
            .push(("hami.io/node-handshake".into(), "Requesting_x".into()));
        assert_eq!(l.upsert_node(beat).unwrap_err(), first);
        assert_eq!(l.nodes["n1"].cards.len(), 1);
    }

    #[test]
    fn a_new_configuration_parses_every_node_again() {
        // Moore Threads cards come from capacity under the configured resource names.
        let mut l = Ledger::default();
        let node = Node {
            capacity: vec![
                ("example.com/cores".into(), "32".into()),
                ("example.com/memory".into(), "4".into()),
            ],
            ..registered(&[])
        };
        l.upsert_node(node.clone()).unwrap();
        assert!(l.nodes["n1"].cards.is_empty());
        let config = Config::from_json(
            r#"{"mthreads":{"resourceCoreName":"example.com/cores","resourceMemoryName":"example.com/memory"}}"#,
        )
        .unwrap();
        l.configure(config);
        assert_eq!(l.nodes["n1"].cards.len(), 2, "32 cores are two cards");
        // The same object again is not parsed again, and keeps them.
        l.upsert_node(node).unwrap();
        assert_eq!(l.nodes["n1"].cards.len(), 2);
    }

    #[test]
    fn cambricon_cards_are_read_under_the_configured_resource_names() {
        let config = Config::from_json(
            r#"{"cambricon":{"resourceCoreName":"example.com/vcore","resourceMemoryName":"example.com/vmem"}}"#,
        )
        .unwrap();
        let mut l = Ledger::new(config);
        l.upsert_node(Node {
            capacity: vec![
                ("example.com/vcore".into(), "200".into()),
                ("example.com/vmem".into(), "32".into()),
            ],
            ..registered(&[])
        })
        .unwrap();
        let cards = &l.nodes["n1"].cards;
        assert_eq!(cards.len(), 2, "200 cores are two cards");
        assert_eq!(cards[0].vendor, crate::vendor::cambricon::VENDOR);
        assert_eq!(cards[0].info.devmem, 32 * 256 * 100 / 200);
    }

    /// Pods placed and released in a random order, some with MIG slices, card tags or left-over
    /// slices, some on a card that changes to MIG mode under them, some on unknown cards or
    /// nodes: after every step each node's cards and score equal a recomputation from its pods.
    #[test]
    fn use_charged_in_place_equals_the_node_recomputed() {
        use crate::device::{ContainerDevice, MigInUse, Placement};
        let register = |node: usize, card_2_mode: &str| {
            let cards: Vec<String> = (0..4)
                .map(|c| {
                    let mode = match c {
                        2 => card_2_mode,
                        3 => "mig",
                        _ => "hami-core",
                    };
                    format!(
                        r#"{{"id":"GPU-{node}-{c}","index":{c},"count":10,"devmem":40960,"devcore":100,"type":"NVIDIA A100","numa":0,"mode":"{mode}","health":true}}"#
                    )
                })
                .collect();
            Node {
                name: format!("n{node}"),
                annotations: vec![(REGISTER.to_string(), format!("[{}]", cards.join(",")))],
                ..Node::default()
            }
        };
        let mut l = Ledger::default();
        l.upsert_node(register(1, "hami-core")).unwrap();
        l.upsert_node(register(2, "hami-core")).unwrap();
        l.rank_names();
        let mut rng = crate::testing::XorShift(0x9e37_79b9_7f4a_7c15_u64);
        let mut next = |n: u64| rng.below(n);
        // Placements on a registered node, by what the ledger must do: charge the pod in place
        // (plain shares: no MIG slice, tag or left-over slice, no device on a MIG-mode card),
        // or recompute the node. Card 3 is always in MIG mode, card 2 as last registered.
        let (mut in_place, mut recomputed) = (0, 0);
        let mut card_2_mig = [false; 4];
        for step in 0..2000 {
            match next(10) {
                0..=5 => {
                    let node = 1 + next(3) as usize; // n3 is not registered
                    let kind = next(8);
                    let slice = |start| MigInUse {
                        profile: "1g.10gb".into(),
                        placement: Placement { start, size: 1 },
                    };
                    let devices: Vec<ContainerDevice> = (0..1 + next(2))
                        .map(|_| {
                            let card = next(5); // GPU-n-4 does not exist
                            ContainerDevice {
                                uuid: format!("GPU-{node}-{card}"),
                                vendor: "NVIDIA".into(),
                                mem: 1024 * (1 + next(8) as i64),
                                cores: 5 * next(10) as i64,
                                index: card as u32,
                                mig: (kind == 0).then(|| slice(card as u32)),
                            }
                        })
                        .collect();
                    let uuid = devices[0].uuid.clone();
                    let per_container = vec![devices];
                    let entry = PodEntry {
                        namespace: "ml".into(),
                        name: format!("p{step}"),
                        node: format!("n{node}"),
                        usage: vec![("NVIDIA", device::collapse(&per_container, 0, false))],
                        devices: vec![("NVIDIA", per_container)],
                        stray_slices: if kind == 1 {
                            vec![("NVIDIA", uuid.clone(), slice(7))]
                        } else {
                            Vec::new()
                        },
                        assumed: next(2) == 0,
                        tags: if kind == 2 {
                            vec![("NVIDIA", uuid, Arc::from("class-a"))]
                        } else {
                            Vec::new()
                        },
                    };
                    let on_mig_card = entry.devices[0].1[0].iter().any(|d| {
                        d.uuid.ends_with("-3") || (card_2_mig[node] && d.uuid.ends_with("-2"))
                    });
                    match (node, kind > 2 && !on_mig_card) {
                        (3, _) => {}
                        (_, true) => in_place += 1,
                        (_, false) => recomputed += 1,
                    }
                    l.insert_pod(format!("uid-{}", next(30)), entry);
                }
                6..=8 => {
                    l.remove_pod(&format!("uid-{}", next(30)));
                }
                _ => {
                    // Card 2's mode changes (the node is recomputed), or card 0's health or
                    // nothing (the use is kept).
                    let mig = next(2) == 0;
                    let at = 1 + next(2) as usize;
                    let mut node = register(at, if mig { "mig" } else { "hami-core" });
                    card_2_mig[at] = mig;
                    if next(2) == 0 {
                        let r = &mut node.annotations[0].1;
                        *r = r.replacen(r#","health":true"#, "", 1);
                    }
                    l.upsert_node(node).unwrap();
                }
            }
            let mut fresh = l.clone();
            for name in ["n1", "n2"] {
                fresh.rebuild_node(name);
                let (a, b) = (&l.nodes[name], &fresh.nodes[name]);
                assert_eq!(a.cards, b.cards, "{name}'s cards after step {step}");
                assert_eq!(a.use_score, b.use_score, "{name}'s score after step {step}");
            }
        }
        assert!(
            in_place > 300 && recomputed > 300,
            "both paths taken: {in_place} plain pods, {recomputed} others"
        );
    }

    /// Every vendor's decision annotations for one device, and keys no vendor keeps devices
    /// under, with junk: the annotations a pod may carry.
    fn placed_annotations() -> Vec<(String, String)> {
        let mut pairs = Vec::new();
        for v in VENDORS {
            let device = crate::device::ContainerDevice {
                uuid: "GPU-a".into(),
                vendor: v.key().into(),
                mem: 1024,
                cores: 10,
                index: 0,
                mig: None,
            };
            pairs.extend(v.annotations(&vec![vec![device]]));
        }
        for key in [
            VGPU_NODE,
            "hami.io/vgpu-time",
            crate::vendor::nvidia::mig::MIG_ALLOCATIONS,
            "hami.io/bind-phase",
            "volcano.sh/vgpu-node",
            "example.com/other",
        ] {
            pairs.push((key.to_string(), "x".to_string()));
        }
        pairs
    }

    #[test]
    fn a_vendor_finds_no_devices_without_its_allocated_key() {
        let pairs = placed_annotations();
        for v in VENDORS {
            // Every other annotation, valid and junk, but none under this vendor's key.
            for junk in [false, true] {
                let pod = Pod {
                    uid: "u".into(),
                    namespace: "ml".into(),
                    name: "p".into(),
                    annotations: pairs
                        .iter()
                        .filter(|(k, _)| k != v.allocated_key())
                        .map(|(k, val)| {
                            (k.clone(), if junk { "a,b,c:".into() } else { val.clone() })
                        })
                        .collect(),
                    ..Pod::default()
                };
                assert!(
                    matches!(v.decode_pod(&pod), Ok(None)),
                    "{} decoded a pod without {} (junk: {junk})",
                    v.key(),
                    v.allocated_key()
                );
            }
            // And finds its own.
            let own = Pod {
                annotations: pairs
                    .iter()
                    .filter(|(k, _)| k == v.allocated_key())
                    .cloned()
                    .collect(),
                ..Pod::default()
            };
            assert!(
                matches!(v.decode_pod(&own), Ok(Some(_))),
                "{} found nothing under {}",
                v.key(),
                v.allocated_key()
            );
        }
    }

    #[test]
    fn decoding_for_the_keys_a_pod_carries_equals_decoding_for_every_vendor() {
        let pairs = placed_annotations();
        let mut rng = crate::testing::XorShift(0x2545_f491_4f6c_dd1d_u64);
        let mut next = |n: usize| rng.below(n as u64) as usize;
        let (mut found, mut failed) = (0, 0);
        for i in 0..5000 {
            let annotations = (0..next(5))
                .map(|_| {
                    let (k, v) = &pairs[next(pairs.len())];
                    // Junk every decoder rejects (an item of three fields), or lenient ones.
                    let value = match next(8) {
                        0 | 1 => "a,b,c:".to_string(),
                        2 => "x".to_string(),
                        _ => v.clone(),
                    };
                    (k.clone(), value)
                })
                .collect();
            let pod = Pod {
                uid: format!("u{i}"),
                namespace: "ml".into(),
                name: format!("p{i}"),
                annotations,
                init_containers: vec![Default::default(); next(2)],
                containers: vec![Default::default(); 1 + next(2)],
                ..Pod::default()
            };
            let every = decode_placed(&pod, VendorSet::MAX);
            match &every {
                Ok((devices, _)) if !devices.is_empty() => found += 1,
                Err(_) => failed += 1,
                Ok(_) => {}
            }
            assert_eq!(
                decode_placed(&pod, VendorsByName::allocations().of_pod(&pod)),
                every,
                "{pod:?}"
            );
        }
        assert!(
            found > 1000 && failed > 500,
            "{found} found, {failed} failed"
        );
    }

    /// The node agent shares the ledger between threads (kubelet's gRPC and its watches).
    #[test]
    fn the_ledger_can_be_shared_between_threads() {
        fn shared<T: Send + Sync>() {}
        shared::<Ledger>();
    }

    #[test]
    fn quota_report_lists_limited_and_used_pairs_only() {
        let mut q = Quotas::default();
        let key = |ns: &str, r: &str| (ns.to_string(), r.to_string());
        q.limits
            .entry(key("ml", "nvidia.com/gpumem"))
            .or_default()
            .extend([("a".to_string(), 4096), ("b".to_string(), 2048)]);
        q.charge("ml", "nvidia.com/gpumem", 1000);
        q.charge("ml", "nvidia.com/gpucores", 30);
        // A pair whose pods all left, and that no quota limits: not reported.
        q.charge("dev", "nvidia.com/gpumem", 400);
        q.charge("dev", "nvidia.com/gpumem", -400);
        let row = |r: &str, used, limit| QuotaUsage {
            namespace: "ml".into(),
            resource_name: r.into(),
            used,
            limit,
        };
        assert_eq!(
            q.report(),
            vec![
                row("nvidia.com/gpucores", 30, None),
                row("nvidia.com/gpumem", 1000, Some(2048)),
            ]
        );
    }
}
