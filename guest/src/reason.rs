//! HAMi's reason strings and their `n/total Reason` aggregation (spec §11.1).

use std::collections::BTreeMap;

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

/// Per-card failure counters of one fit, keyed by reason.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    counts: BTreeMap<&'static str, u32>,
}

impl Counter {
    pub fn add(&mut self, reason: &'static str) {
        *self.counts.entry(reason).or_default() += 1;
    }

    /// Adds `n` to a counter (NUMA discards count several cards at once).
    pub fn add_n(&mut self, reason: &'static str, n: u32) {
        if n > 0 {
            *self.counts.entry(reason).or_default() += n;
        }
    }

    /// Sets a counter (HAMi assigns `AllocatedCardsInsufficientRequest`, it does not add).
    pub fn set(&mut self, reason: &'static str, n: u32) {
        self.counts.insert(reason, n);
    }

    /// The count of one reason (0 when never counted).
    pub fn get(&self, reason: &str) -> u32 {
        self.counts.get(reason).copied().unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.counts.values().all(|&n| n == 0)
    }

    /// The counts against `total` cards, in the order of [`Counter::text`].
    pub fn counts(&self, total: u32) -> Vec<ReasonCount> {
        let mut items: Vec<(String, ReasonCount)> = self
            .counts
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(reason, &count)| {
                (
                    format!("{count}/{total} {reason}"),
                    ReasonCount {
                        reason: (*reason).to_string(),
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
    fn zero_counters_are_left_out() {
        let mut c = Counter::default();
        c.set(ALLOCATED_CARDS_INSUFFICIENT_REQUEST, 0);
        assert!(c.is_empty());
        assert_eq!(c.text(3), "");
    }
}
