//! Scores and orderings: the device score and its per-pod weights (spec §6.4), the card
//! ordering policies and their chains (§6.5), and the node score and node policy (§6.2, §6.8).

use std::cmp::Ordering;

use crate::api::{Invalid, Pod};
use crate::device::Card;
use crate::vendor::Request;

pub const GPU_POLICY_ANNOTATION: &str = "hami.io/gpu-scheduler-policy";
pub const NODE_POLICY_ANNOTATION: &str = "hami.io/node-scheduler-policy";
pub const WEIGHTS_ANNOTATION: &str = "hami.io/device-scoring-weights";
pub const NUMA_BIND_ANNOTATION: &str = "nvidia.com/numa-bind";

/// Weights of the three terms of the device score.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Weights {
    pub slot: i64,
    pub core: i64,
    pub memory: i64,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            slot: 1,
            core: 1,
            memory: 1,
        }
    }
}

impl Weights {
    /// Parses `slot=<int>,core=<int>,memory=<int>` (any order, spaces tolerated).
    pub fn from_pod(pod: &Pod) -> Result<Weights, Invalid> {
        let Some(text) = pod.annotation(WEIGHTS_ANNOTATION) else {
            return Ok(Weights::default());
        };
        let bad = |m: &str| Invalid::new(pod.object(), WEIGHTS_ANNOTATION, text, m);
        let items: Vec<&str> = text.split(',').collect();
        if items.len() != 3 {
            return Err(bad("want exactly three items slot=<n>,core=<n>,memory=<n>"));
        }
        let (mut slot, mut core, mut memory) = (None, None, None);
        for item in items {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| bad(&format!("item {:?} has no '='", item.trim())))?;
            let value: i64 = value
                .trim()
                .parse()
                .map_err(|_| bad(&format!("{:?} is not an integer", value.trim())))?;
            if value < 0 {
                return Err(bad("weights must not be negative"));
            }
            let target = match key.trim() {
                "slot" => &mut slot,
                "core" => &mut core,
                "memory" => &mut memory,
                other => return Err(bad(&format!("unknown key {other:?}"))),
            };
            if target.replace(value).is_some() {
                return Err(bad(&format!("duplicate key {:?}", key.trim())));
            }
        }
        let w = Weights {
            slot: slot.unwrap_or(0),
            core: core.unwrap_or(0),
            memory: memory.unwrap_or(0),
        };
        if w.slot == 0 && w.core == 0 && w.memory == 0 {
            return Err(bad("at least one weight must be positive"));
        }
        Ok(w)
    }
}

/// The device score of `card` for a container request, in float32 as HAMi computes it:
/// `10 × (Ws×(req+Used)/Count + Wc×(core+Usedcores)/Totalcore + Wm×(mem+Usedmem)/Totalmem)`.
/// The request counts one slot when the card's model contains the request's vendor
/// (case-insensitive; HAMi's quirk Q1 fixed as upstream PR #2870 does).
///
/// Worked example (spec §13.5 S2): Count 10, Used 2, Totalcore 4, Usedcores 1, Totalmem 8192,
/// Usedmem 2048, request 1024 MiB and 1 core → 10 × (3/10 + 2/4 + 3072/8192) = 11.75.
pub fn device_score(card: &Card, request: Option<&Request>, w: Weights) -> f32 {
    let i = &card.info;
    if i.count == 0 || i.devcore == 0 || i.devmem == 0 {
        return 0.0;
    }
    let (mut req, mut core, mut mem) = (0i64, 0i64, 0i64);
    if let Some(r) = request
        && contains_ignore_case(&i.model, r.vendor)
    {
        req = 1;
        core = r.coresreq;
        mem = if r.mem_pct != 0 && r.mem_pct != 101 {
            i.devmem * r.mem_pct / 100
        } else {
            r.memreq
        };
    }
    let term = |weight: i64, num: i64, den: i64| weight as f32 * (num as f32 / den as f32);
    10.0 * (term(w.slot, req + card.used, i.count)
        + term(w.core, core + card.used_cores, i.devcore)
        + term(w.memory, mem + card.used_mem, i.devmem))
}

/// Whether `needle` occurs in `haystack`, ignoring ASCII case (HAMi lower-cases both sides;
/// model names and vendor keys are ASCII). Allocation-free: it runs for every card of every
/// node in a filter.
pub fn contains_ignore_case(haystack: &str, needle: &str) -> bool {
    let (h, n) = (haystack.as_bytes(), needle.as_bytes());
    if n.is_empty() {
        return true;
    }
    n.len() <= h.len() && h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n))
}

/// A sort key of a policy chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    Binpack,
    Spread,
    Numa,
}

/// The card policy of one pod (spec §6.5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GpuPolicy {
    /// The policy string as given.
    pub raw: String,
    /// Chain mode: keys in order (used when the string has a comma or is `numa`).
    pub chain: Option<Vec<Key>>,
    /// Single mode value.
    pub single: String,
    pub need_topology: bool,
    pub is_mutex: bool,
    pub numa_bind: bool,
}

impl GpuPolicy {
    /// The pod's annotation, else the configured default.
    pub fn for_pod(pod: &Pod, default: &str) -> GpuPolicy {
        let raw = pod
            .annotation(GPU_POLICY_ANNOTATION)
            .unwrap_or(default)
            .to_string();
        let numa_bind = pod
            .annotation(NUMA_BIND_ANNOTATION)
            .is_some_and(|v| parse_go_bool(v.trim()) == Some(true));
        let tokens: Vec<&str> = raw.split(',').map(str::trim).collect();
        let need_topology = tokens.contains(&"topology-aware");
        let is_mutex = tokens.contains(&"mutex");
        let chain = (raw.contains(',') || raw.trim() == "numa").then(|| {
            let mut keys: Vec<Key> = Vec::new();
            for t in &tokens {
                let k = match *t {
                    "binpack" => Key::Binpack,
                    "spread" => Key::Spread,
                    "numa" => Key::Numa,
                    _ => continue,
                };
                if !keys.contains(&k) {
                    keys.push(k);
                }
            }
            if keys.is_empty() {
                keys.push(Key::Spread);
            }
            if numa_bind && keys[0] != Key::Numa {
                keys.retain(|k| *k != Key::Numa);
                keys.insert(0, Key::Numa);
            }
            keys
        });
        GpuPolicy {
            single: raw.trim().to_string(),
            raw,
            chain,
            need_topology,
            is_mutex,
            numa_bind,
        }
    }

    /// HAMi's `Less(i, j)` as an ordering: `Less` sorts `a` before `b`. Fit tries the sorted
    /// list from the end, so "sorts last" means "tried first".
    pub fn compare(&self, a: (&Card, f32), b: (&Card, f32)) -> Ordering {
        let (ca, sa) = a;
        let (cb, sb) = b;
        let numa = |x: &Card, y: &Card| x.info.numa.cmp(&y.info.numa);
        let score_asc = || sa.partial_cmp(&sb).unwrap_or(Ordering::Equal);
        if let Some(keys) = &self.chain {
            for k in keys {
                let o = match k {
                    Key::Binpack => score_asc(),
                    Key::Spread => score_asc().reverse(),
                    Key::Numa => numa(ca, cb),
                };
                if o != Ordering::Equal {
                    return o;
                }
            }
            return ca.info.index.cmp(&cb.info.index);
        }
        match self.single.as_str() {
            "mutex" => cb.used.cmp(&ca.used).then_with(|| numa(ca, cb)),
            "binpack" if self.numa_bind => numa(cb, ca).then_with(score_asc),
            _ if self.numa_bind => numa(ca, cb).then_with(|| score_asc().reverse()),
            "binpack" => score_asc().then_with(|| numa(ca, cb)),
            _ => score_asc().reverse().then_with(|| numa(ca, cb)),
        }
    }
}

/// Go's `strconv.ParseBool`.
pub fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// The node policy: only the exact value `spread` means spread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodePolicy {
    Binpack,
    Spread,
}

impl NodePolicy {
    pub fn for_pod(pod: &Pod, default: &str) -> NodePolicy {
        match pod.annotation(NODE_POLICY_ANNOTATION).unwrap_or(default) {
            "spread" => NodePolicy::Spread,
            _ => NodePolicy::Binpack,
        }
    }

    /// Maps HAMi's node score (0..30 for a node that is not over-booked) to 0..=100, higher
    /// is better under this policy.
    pub fn normalise(self, raw: f64) -> u32 {
        let busy = (raw / 30.0 * 100.0).round().clamp(0.0, 100.0) as u32;
        match self {
            NodePolicy::Binpack => busy,
            NodePolicy::Spread => 100 - busy,
        }
    }

    /// Orders two fitting nodes: the better one first. Binpack prefers the higher score,
    /// spread the lower; ties go to the node whose name sorts first (HAMi's order is arbitrary).
    pub fn better(self, a: (&str, f64), b: (&str, f64)) -> Ordering {
        let by_score = a.1.partial_cmp(&b.1).unwrap_or(Ordering::Equal);
        let by_score = match self {
            NodePolicy::Binpack => by_score.reverse(),
            NodePolicy::Spread => by_score,
        };
        by_score.then_with(|| a.0.cmp(b.0))
    }
}

/// HAMi's node score over every card of the node (existing use only, quirk Q3 kept):
/// `10 × (Σused/Σcount + Σusedcores/Σtotalcore + Σusedmem/Σtotalmem)`, 0 if a total is 0.
pub fn node_score<'a>(cards: impl Iterator<Item = &'a Card>) -> f64 {
    let (mut used, mut count, mut ucores, mut tcores, mut umem, mut tmem) =
        (0i64, 0i64, 0i64, 0i64, 0i64, 0i64);
    for c in cards {
        used += c.used;
        count += c.info.count;
        ucores += c.used_cores;
        tcores += c.info.devcore;
        umem += c.used_mem;
        tmem += c.info.devmem;
    }
    if count == 0 || tcores == 0 || tmem == 0 {
        return 0.0;
    }
    10.0 * (used as f64 / count as f64 + ucores as f64 / tcores as f64 + umem as f64 / tmem as f64)
}

#[cfg(test)]
mod tests;
