//! HAMi's reason strings and their `n/total Reason` aggregation (spec §11.1).

use crate::api::ReasonCount;

pub const CARD_NOT_HEALTH: &str = "CardNotHealth";
pub const CARD_CORDONED: &str = "CardCordoned";
pub const CARD_TYPE_MISMATCH: &str = "CardTypeMismatch";
pub const NUMA_NOT_FIT: &str = "NumaNotFit";
pub const CARD_UUID_MISMATCH: &str = "CardUuidMismatch";
pub const CARD_TIME_SLICING_EXHAUSTED: &str = "CardTimeSlicingExhausted";
pub const EXCLUSIVE_DEVICE_ALLOCATE_CONFLICT: &str = "ExclusiveDeviceAllocateConflict";
pub const RESOURCE_QUOTA_NOT_FIT: &str = "ResourceQuotaNotFit";
pub const CARD_INSUFFICIENT_MEMORY: &str = "CardInsufficientMemory";
pub const CARD_INSUFFICIENT_CORE: &str = "CardInsufficientCore";
pub const CARD_COMPUTE_UNITS_EXHAUSTED: &str = "CardComputeUnitsExhausted";
pub const CARD_MIG_TOPOLOGY_INFEASIBLE: &str = "CardMigTopologyInfeasible";
pub const ALLOCATED_CARDS_INSUFFICIENT_REQUEST: &str = "AllocatedCardsInsufficientRequest";
/// hamr's (Volcano has no per-card reasons): the card already holds a pod of the same PodGroup
/// and the pod asks `volcano.sh/vgpu-podgroup-policy: spread`.
pub const CARD_POD_GROUP_CONFLICT: &str = "CardPodGroupConflict";
/// Node level, bare (not in `n/m` form): more cards requested than the node has of that type.
pub const NODE_INSUFFICIENT_DEVICE: &str = "NodeInsufficientDevice";
/// Node level, bare: the node has no live registration for the requested vendor.
pub const NODE_UNREGISTERED: &str = "node unregistered";

/// Per-card failure counters of one fit, keyed by reason: kept sorted by reason, in place
/// (no allocation) up to [`INLINE`] distinct reasons, past which they move to the heap.
/// `filter` builds one per node it rejects, and compares it with those it has written.
#[derive(Clone, Debug)]
pub struct Counter {
    store: Store,
}

/// Two counters are equal when they count the same reasons the same: they then print the
/// same. A counter holds no reason at 0 ([`Counter::set`]), so the held items are compared.
impl PartialEq for Counter {
    fn eq(&self, other: &Counter) -> bool {
        let (a, b) = (self.items(), other.items());
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|((r, n), (s, m))| n == m && same_reason(r, s))
    }
}

impl Eq for Counter {}

/// Reasons are the code's constants: the same text is nearly always at the same address, and
/// comparing the address first spares a `memcmp` call (in the guest) per compare.
fn same_reason(a: &str, b: &str) -> bool {
    std::ptr::eq(a, b) || a == b
}

/// Hashes what [`PartialEq`] compares, cheaply: each reason's length and count.
impl std::hash::Hash for Counter {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        for (r, n) in self.items() {
            h.write_usize(r.len());
            h.write_u32(*n);
        }
    }
}

/// Distinct reasons a [`Counter`] holds without allocating. Four: a node's cards mostly fail
/// for one to three reasons, and a counter is moved several times per rejected node, where 8
/// slots (200 bytes, each move a `memcpy` call) took a quarter of a fits-nowhere `filter`.
pub const INLINE: usize = 4;

#[derive(Clone, Debug)]
enum Store {
    Inline {
        items: [(&'static str, u32); INLINE],
        len: u8,
    },
    Heap(Vec<(&'static str, u32)>),
}

impl Default for Counter {
    fn default() -> Counter {
        Counter {
            store: Store::Inline {
                items: [("", 0); INLINE],
                len: 0,
            },
        }
    }
}

impl Counter {
    /// The counters, sorted by reason.
    fn items(&self) -> &[(&'static str, u32)] {
        match &self.store {
            Store::Inline { items, len } => &items[..usize::from(*len)],
            Store::Heap(v) => v,
        }
    }

    /// The counter of `reason`, inserted at 0 if absent.
    fn slot(&mut self, reason: &'static str) -> &mut u32 {
        // Reasons are the code's constants: a counted one is nearly always found by address,
        // without comparing text (in the guest each compare is a `memcmp` call).
        let by_address = self
            .items()
            .iter()
            .position(|(r, _)| std::ptr::eq(*r, reason));
        let found = match by_address {
            Some(at) => Ok(at),
            None => self.items().binary_search_by(|(r, _)| (*r).cmp(reason)),
        };
        let at = match found {
            Ok(at) => at,
            Err(at) => {
                if let Store::Inline { items, len } = &mut self.store
                    && usize::from(*len) == INLINE
                {
                    self.store = Store::Heap(items.to_vec());
                }
                match &mut self.store {
                    Store::Inline { items, len } => {
                        let n = usize::from(*len);
                        items.copy_within(at..n, at + 1);
                        items[at] = (reason, 0);
                        *len += 1;
                    }
                    Store::Heap(v) => v.insert(at, (reason, 0)),
                }
                at
            }
        };
        match &mut self.store {
            Store::Inline { items, .. } => &mut items[at].1,
            Store::Heap(v) => &mut v[at].1,
        }
    }

    pub fn add(&mut self, reason: &'static str) {
        *self.slot(reason) += 1;
    }

    /// Counts `n` more of `reason`, which sorts after every reason held or is the last one
    /// held: no search, where [`Counter::add_n`] searches (a string compare per step in the
    /// guest). A node's counter is built this way from per-reason counts.
    pub fn push_sorted(&mut self, reason: &'static str, n: u32) {
        match &mut self.store {
            Store::Inline { items, len } => {
                let held = usize::from(*len);
                let last = held.checked_sub(1).map(|l| items[l].0);
                if last.is_some_and(|r| same_reason(r, reason)) {
                    items[held - 1].1 += n;
                } else if held < INLINE {
                    debug_assert!(held == 0 || items[held - 1].0 < reason, "in order");
                    items[held] = (reason, n);
                    *len += 1;
                } else {
                    self.add_n(reason, n);
                }
            }
            Store::Heap(_) => self.add_n(reason, n),
        }
    }

    /// Adds `n` to a counter (NUMA discards count several cards at once).
    pub fn add_n(&mut self, reason: &'static str, n: u32) {
        if n > 0 {
            *self.slot(reason) += n;
        }
    }

    /// Sets a counter (HAMi assigns `AllocatedCardsInsufficientRequest`, it does not add).
    /// Setting 0 forgets the reason: a counter holds only reasons counted.
    pub fn set(&mut self, reason: &'static str, n: u32) {
        if n > 0 {
            *self.slot(reason) = n;
            return;
        }
        let Ok(at) = self.items().binary_search_by(|(r, _)| (*r).cmp(reason)) else {
            return;
        };
        match &mut self.store {
            Store::Inline { items, len } => {
                let n = usize::from(*len);
                items.copy_within(at + 1..n, at);
                *len -= 1;
            }
            Store::Heap(v) => {
                v.remove(at);
            }
        }
    }

    /// The count of one reason (0 when never counted).
    pub fn get(&self, reason: &str) -> u32 {
        self.items()
            .iter()
            .find(|(r, _)| *r == reason)
            .map_or(0, |(_, n)| *n)
    }

    pub fn is_empty(&self) -> bool {
        self.items().iter().all(|&(_, n)| n == 0)
    }

    /// The counts against `total` cards, in the order of [`Counter::text`].
    pub fn counts(&self, total: u32) -> Vec<ReasonCount> {
        let mut items: Vec<(String, ReasonCount)> = self
            .items()
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|&(reason, count)| {
                (
                    format!("{count}/{total} {reason}"),
                    ReasonCount {
                        reason: reason.to_string(),
                        count,
                        total,
                    },
                )
            })
            .collect();
        items.sort_by(|a, b| a.0.cmp(&b.0));
        items.into_iter().map(|(_, c)| c).collect()
    }

    /// HAMi's `GenReason`: `"<count>/<total> <Reason>"` per non-zero counter, sorted as plain
    /// strings (so `"10/12 X"` sorts before `"2/12 Y"`), joined with `", "`.
    ///
    /// ```
    /// # use hamr_guest::reason::*;
    /// let mut c = Counter::default();
    /// c.add(RESOURCE_QUOTA_NOT_FIT);
    /// c.add(RESOURCE_QUOTA_NOT_FIT);
    /// c.add(RESOURCE_QUOTA_NOT_FIT);
    /// c.set(ALLOCATED_CARDS_INSUFFICIENT_REQUEST, 1);
    /// assert_eq!(c.text(4), "1/4 AllocatedCardsInsufficientRequest, 3/4 ResourceQuotaNotFit");
    /// ```
    pub fn text(&self, total: u32) -> String {
        join(&self.counts(total))
    }
}

/// Joins counted reasons the way HAMi prints them.
pub fn join(counts: &[ReasonCount]) -> String {
    counts
        .iter()
        .map(|c| format!("{}/{} {}", c.count, c.total, c.reason))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_sort_as_plain_strings_so_ten_comes_before_two() {
        let mut c = Counter::default();
        c.add_n(CARD_TIME_SLICING_EXHAUSTED, 10);
        c.add_n(CARD_INSUFFICIENT_MEMORY, 2);
        assert_eq!(
            c.text(12),
            "10/12 CardTimeSlicingExhausted, 2/12 CardInsufficientMemory"
        );
    }

    #[test]
    fn more_reasons_than_fit_in_place_keep_counting_in_order() {
        const R: [&str; 11] = ["K", "J", "I", "H", "G", "F", "E", "D", "C", "B", "A"];
        let mut c = Counter::default();
        for (i, r) in R.iter().enumerate() {
            c.add_n(r, i as u32 + 1);
        }
        c.add("F");
        c.set("K", 7);
        assert_eq!(c.get("F"), 7);
        assert_eq!(c.get("K"), 7);
        assert_eq!(c.get("A"), 11);
        assert_eq!(c.get("Z"), 0);
        assert_eq!(
            c.text(99),
            "10/99 B, 11/99 A, 2/99 J, 3/99 I, 4/99 H, 5/99 G, 7/99 E, 7/99 F, 7/99 K, 8/99 D, 9/99 C"
        );
        // The same counts in another order make an equal counter.
        let mut d = Counter::default();
        for (i, r) in R.iter().enumerate().rev() {
            d.add_n(r, i as u32 + 1);
        }
        d.add_n("F", 1);
        d.set("K", 7);
        assert_eq!(c, d);
    }

    #[test]
    fn zero_counters_are_left_out() {
        let mut c = Counter::default();
        c.set(ALLOCATED_CARDS_INSUFFICIENT_REQUEST, 0);
        assert!(c.is_empty());
        assert_eq!(c.text(3), "");
    }

    #[test]
    fn a_reason_set_to_zero_is_forgotten_in_place_and_on_the_heap() {
        use std::hash::BuildHasher;
        for extra in [0, INLINE] {
            let mut plain = Counter::default();
            let mut reset = Counter::default();
            for i in 0..extra {
                let r: &'static str = ["a", "b", "c", "d", "e", "f"][i];
                plain.add(r);
                reset.add(r);
            }
            plain.add(CARD_INSUFFICIENT_MEMORY);
            reset.set(ALLOCATED_CARDS_INSUFFICIENT_REQUEST, 2);
            reset.add(CARD_INSUFFICIENT_MEMORY);
            reset.set(ALLOCATED_CARDS_INSUFFICIENT_REQUEST, 0);
            reset.set(CARD_NOT_HEALTH, 0);
            assert_eq!(reset.get(ALLOCATED_CARDS_INSUFFICIENT_REQUEST), 0);
            assert_eq!(plain, reset, "{extra} other reasons");
            let state = std::hash::RandomState::new();
            assert_eq!(state.hash_one(&plain), state.hash_one(&reset));
        }
    }

    #[test]
    fn a_counter_pushed_in_order_equals_one_counted_in_any_order() {
        // "c" twice, as two of NVIDIA's card checks share HAMi's reason text.
        let reasons = ["a", "b", "c", "c", "e", "f", "g"];
        // Every pattern of counts 0..3 over seven reasons, inline (up to four held) and not.
        for pattern in 0..3u32.pow(7) {
            let counts: Vec<u32> = (0..7).map(|i| pattern / 3u32.pow(i) % 3).collect();
            let (mut added, mut pushed) = (Counter::default(), Counter::default());
            for (i, &n) in counts.iter().enumerate().rev() {
                added.add_n(reasons[i], n);
            }
            for (i, &n) in counts.iter().enumerate() {
                if n > 0 {
                    pushed.push_sorted(reasons[i], n);
                }
            }
            assert_eq!(pushed, added, "{counts:?}");
            assert_eq!(pushed.items(), added.items(), "{counts:?}");
        }
    }
}
