//! The nodes in `filter`'s best-first order, kept by the ledger as their use changes, and the
//! last candidate list resolved against it (issue #6).
//!
//! `filter` tries candidates best first (HAMi's node score on existing use under the node
//! policy, then the name) and stops at the first that fits. Finding the best candidate used to
//! mean looking every candidate name up, thousands of hash probes per decision. Instead:
//! - [`NodeOrder`] holds every node's (score, name rank) in both policies' orders, updated
//!   when a node's use changes (a pod placed or released: one remove and one insert);
//! - [`Candidates`] is kube-scheduler's candidate list resolved to ranks. With
//!   `nodeCacheCapable` it sends the same names call after call; a list equal to the last one
//!   (compared name by name) is not resolved again while no node arrived or left.
//!
//! `filter` then walks the order from the best node and evaluates those that are candidates.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

use crate::policy::NodePolicy;

/// A score as an integer with the same order (scores are never NaN; -0 counts as 0).
fn key(score: f64) -> i64 {
    let bits = (score + 0.0).to_bits() as i64;
    // Negative floats order backwards by their bits: flip all but the sign bit.
    bits ^ ((((bits >> 63) as u64) >> 1) as i64)
}

/// Every ranked node by (score, rank), in each node policy's order.
#[derive(Clone, Debug, Default)]
pub struct NodeOrder {
    /// Binpack: the higher score first, then the smaller rank.
    binpack: BTreeSet<(Reverse<i64>, u32)>,
    /// Spread: the lower score first, then the smaller rank.
    spread: BTreeSet<(i64, u32)>,
}

impl NodeOrder {
    /// The order of `nodes`, (rank, score) each.
    pub fn of(nodes: impl Iterator<Item = (u32, f64)>) -> NodeOrder {
        let mut order = NodeOrder::default();
        for (rank, score) in nodes {
            order.insert(rank, score);
        }
        order
    }

    pub fn insert(&mut self, rank: u32, score: f64) {
        let k = key(score);
        self.binpack.insert((Reverse(k), rank));
        self.spread.insert((k, rank));
    }

    pub fn remove(&mut self, rank: u32, score: f64) {
        let k = key(score);
        self.binpack.remove(&(Reverse(k), rank));
        self.spread.remove(&(k, rank));
    }

    /// The node of rank `rank` now scores `after` instead of `before`.
    pub fn reposition(&mut self, rank: u32, before: f64, after: f64) {
        if key(before) != key(after) {
            self.remove(rank, before);
            self.insert(rank, after);
        }
    }

    /// The ranks of every node, the best first under `policy` (exactly
    /// [`NodePolicy::better`] on the scores, ties to the smaller rank).
    pub fn best_first(&self, policy: NodePolicy) -> Box<dyn Iterator<Item = u32> + '_> {
        match policy {
            NodePolicy::Binpack => Box::new(self.binpack.iter().map(|(_, rank)| *rank)),
            NodePolicy::Spread => Box::new(self.spread.iter().map(|(_, rank)| *rank)),
        }
    }

    pub fn len(&self) -> usize {
        self.spread.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spread.is_empty()
    }
}

/// A candidate list resolved to the ledger's name ranks.
#[derive(Clone, Debug, Default)]
pub struct Candidates {
    /// The names joined by line breaks (WIT's `node-names`).
    text: String,
    /// Where each name ends in `text`.
    ends: Vec<u32>,
    /// The ledger's node generation when resolved (nodes arrived, left or re-ranked since:
    /// stale).
    generation: u64,
    /// By rank: where the node's name first stands in the list (`u32::MAX`: not listed).
    position: Vec<u32>,
    /// By rank: the later positions of a name listed more than once (rare).
    repeats: BTreeMap<u32, Vec<u32>>,
    /// The positions of names the ledger does not know.
    unknown: Vec<u32>,
    /// False for the empty list a ledger starts with, true once a list was resolved.
    resolved: bool,
}

impl Candidates {
    /// Resolves `names` with `rank` (a name's rank, `None` when unknown).
    pub fn resolve<N: AsRef<str>>(
        names: &[N],
        generation: u64,
        ranks: usize,
        rank: impl Fn(&str) -> Option<u32>,
    ) -> Candidates {
        let mut out = Candidates {
            text: String::with_capacity(names.iter().map(|n| n.as_ref().len() + 1).sum()),
            ends: Vec::with_capacity(names.len()),
            generation,
            position: vec![u32::MAX; ranks],
            repeats: BTreeMap::new(),
            unknown: Vec::new(),
            resolved: true,
        };
        for (position, name) in names.iter().enumerate() {
            let name = name.as_ref();
            if position > 0 {
                out.text.push('\n');
            }
            out.text.push_str(name);
            out.ends
                .push(u32::try_from(out.text.len()).unwrap_or(u32::MAX));
            let position = u32::try_from(position).unwrap_or(u32::MAX);
            let found = rank(name).filter(|r| (*r as usize) < ranks);
            match found {
                None => out.unknown.push(position),
                Some(r) if out.position[r as usize] == u32::MAX => {
                    out.position[r as usize] = position;
                }
                Some(r) => out.repeats.entry(r).or_default().push(position),
            }
        }
        out
    }

    /// Whether `names` is the list resolved here, at the ledger's `generation`.
    pub fn same<N: AsRef<str>>(&self, names: &[N], generation: u64) -> bool {
        self.generation == generation
            && self.ends.len() == names.len()
            && names
                .iter()
                .enumerate()
                .all(|(i, n)| self.name(i) == n.as_ref())
    }

    /// Whether `text` (WIT's `node-names`) is the list resolved here, at the ledger's
    /// `generation`: one compare of the whole text.
    pub fn same_text(&self, text: &str, generation: u64) -> bool {
        self.current(generation) && self.text == text
    }

    /// Whether the list was resolved at the ledger's `generation` (no node arrived, left or
    /// was re-ranked since).
    pub fn current(&self, generation: u64) -> bool {
        self.generation == generation
    }

    /// Whether a list was resolved (the default list is not).
    pub fn resolved(&self) -> bool {
        self.resolved
    }

    /// The names, one per line (WIT's `node-names`).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// How many names the list has.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The name at `position`.
    pub fn name(&self, position: usize) -> &str {
        let end = self.ends.get(position).map_or(0, |e| *e as usize);
        let start = match position.checked_sub(1) {
            Some(before) => self.ends.get(before).map_or(0, |e| *e as usize + 1),
            None => 0,
        };
        self.text.get(start..end).unwrap_or_default()
    }

    /// Where the node of rank `rank` first stands in the list.
    pub fn position(&self, rank: u32) -> Option<usize> {
        self.position
            .get(rank as usize)
            .filter(|p| **p != u32::MAX)
            .map(|p| *p as usize)
    }

    /// The later positions of the node of rank `rank`, when listed more than once.
    pub fn repeats(&self, rank: u32) -> &[u32] {
        self.repeats.get(&rank).map_or(&[], Vec::as_slice)
    }

    /// The positions of the names the ledger does not know.
    pub fn unknown(&self) -> &[u32] {
        &self.unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_keys_order_as_the_scores_do() {
        let scores = [-3.5, -0.0, 0.0, 1e-300, 0.5, 10.0, 30.0, f64::MAX];
        for a in scores {
            for b in scores {
                let want = a.partial_cmp(&b).expect("not NaN");
                assert_eq!(key(a).cmp(&key(b)), want, "{a} vs {b}");
            }
        }
    }

    #[test]
    fn each_policy_walks_its_order_with_ties_to_the_smaller_rank() {
        let mut order = NodeOrder::of([(0, 5.0), (1, 7.5), (2, 5.0), (3, 0.0)].into_iter());
        order.reposition(3, 0.0, 7.5);
        let walk = |o: &NodeOrder, p| o.best_first(p).collect::<Vec<_>>();
        assert_eq!(walk(&order, NodePolicy::Binpack), vec![1, 3, 0, 2]);
        assert_eq!(walk(&order, NodePolicy::Spread), vec![0, 2, 1, 3]);
        order.remove(1, 7.5);
        assert_eq!(walk(&order, NodePolicy::Binpack), vec![3, 0, 2]);
        assert_eq!(order.len(), 3);
    }

    #[test]
    fn a_list_resolves_to_positions_repeats_and_unknown_names_and_is_recognised() {
        let ranks = |n: &str| match n {
            "a" => Some(0),
            "b" => Some(1),
            "c" => Some(2),
            _ => None,
        };
        let names = ["c", "x", "a", "c", "c"];
        let set = Candidates::resolve(&names, 7, 3, ranks);
        assert_eq!(set.position(2), Some(0));
        assert_eq!(set.position(0), Some(2));
        assert_eq!(set.position(1), None);
        assert_eq!(set.repeats(2), &[3, 4]);
        assert_eq!(set.unknown(), &[1]);

        assert_eq!(
            (0..set.len()).map(|p| set.name(p)).collect::<Vec<_>>(),
            names
        );
        assert!(set.same(&names, 7));
        assert!(set.same_text("c\nx\na\nc\nc", 7));
        assert!(!set.same_text("c\nx\na\nc\nc\n", 7));
        assert!(!set.same_text("c\nx\na\nc\nc", 8));
        assert!(!set.same(&names, 8), "nodes changed since");
        assert!(!set.same(&["c", "x", "a", "c"], 7));
        assert!(!set.same(&["c", "x", "a", "c", "b"], 7));
        assert!(!set.same(&["c", "x", "a", "cc", "c"], 7));
    }
}
