//! `/metrics`: HAMi's `hami_*` per-card and quota gauges (refreshed from the guest's `usage`
//! and `quotas` at each scrape) and what HAMi lacks: filter and bind latency, decisions by
//! outcome and reason, reservations assumed but not yet bound and why they were released,
//! guest traps and rebuilds, leadership and cache state, and the registrations whose handshake
//! went stale.

use std::sync::Mutex;

use hamr_guest::api;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

const MIB: f64 = 1_048_576.0;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CardLabels {
    pub zone: &'static str,
    pub node: String,
    pub device_uuid: String,
    pub device_index: String,
    pub device_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CardCoreLabels {
    pub zone: &'static str,
    pub node: String,
    pub device_uuid: String,
    pub device_index: String,
    pub device_cores: String,
    pub device_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QuotaUsedLabels {
    pub zone: &'static str,
    pub namespace: String,
    /// The device resource (`nvidia.com/gpumem`), as HAMi names its quota entries.
    pub quota_name: String,
    /// The limit as written, `0` when no quota sets one (HAMi's `fmt.Sprint(Limit)`).
    pub limit: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QuotaLimitLabels {
    pub zone: &'static str,
    pub namespace: String,
    pub quota_name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StaleLabels {
    pub node: String,
    /// The vendor key (`NVIDIA`).
    pub vendor: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    /// `placed`, `unschedulable` or `error`.
    pub result: &'static str,
    /// The reason name (`CardInsufficientMemory`, ...) for `unschedulable`; empty otherwise.
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReleaseLabels {
    /// `timeout`, `deleted` or `bind_failed`.
    pub cause: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `ok` or `error`.
    pub result: &'static str,
}

/// Every metric `hamr serve` exports.
pub struct Metrics {
    registry: Registry,
    pub filter_seconds: Family<ResultLabels, Histogram>,
    pub bind_seconds: Family<ResultLabels, Histogram>,
    pub decisions: Family<DecisionLabels, Counter>,
    pub reservations_pending: Gauge,
    pub reservations_released: Family<ReleaseLabels, Counter>,
    pub guest_traps: Counter,
    pub guest_rebuilds: Counter,
    pub leader: Gauge,
    pub synced: Gauge,
    pub deltas: Counter,
    pub delta_errors: Counter,
    memory_limit: Family<CardLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    core_limit: Family<CardLabels, Gauge>,
    memory_allocated: Family<CardCoreLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    shared_count: Family<CardLabels, Gauge>,
    core_allocated: Family<CardLabels, Gauge>,
    memory_ratio: Family<CardLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    quota_used: Family<QuotaUsedLabels, Gauge>,
    quota_limit: Family<QuotaLimitLabels, Gauge>,
    stale: Family<StaleLabels, Gauge>,
    pub handshake_writes: Family<ResultLabels, Counter>,
    /// Last trap and rebuild totals seen, so the counters advance by the difference.
    seen: Mutex<(u64, u64)>,
}

fn latency() -> Histogram {
    // 50 µs .. ~3.3 s.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.00005, 2.0, 17,
    ))
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let m = Metrics {
            filter_seconds: Family::new_with_constructor(latency),
            bind_seconds: Family::new_with_constructor(latency),
            decisions: Family::default(),
            reservations_pending: Gauge::default(),
            reservations_released: Family::default(),
            guest_traps: Counter::default(),
            guest_rebuilds: Counter::default(),
            leader: Gauge::default(),
            synced: Gauge::default(),
            deltas: Counter::default(),
            delta_errors: Counter::default(),
            memory_limit: Family::default(),
            core_limit: Family::default(),
            memory_allocated: Family::default(),
            shared_count: Family::default(),
            core_allocated: Family::default(),
            memory_ratio: Family::default(),
            quota_used: Family::default(),
            quota_limit: Family::default(),
            stale: Family::default(),
            handshake_writes: Family::default(),
            seen: Mutex::new((0, 0)),
            registry: Registry::default(),
        };
        registry.register(
            "hamr_filter_duration_seconds",
            "Time to answer /filter (guest decision and pod patch)",
            m.filter_seconds.clone(),
        );
        registry.register(
            "hamr_bind_duration_seconds",
            "Time to answer /bind (annotations and Binding)",
            m.bind_seconds.clone(),
        );
        registry.register(
            "hamr_decisions",
            "Filter outcomes; for unschedulable pods one count per reason seen on any node",
            m.decisions.clone(),
        );
        registry.register(
            "hamr_reservations_pending",
            "Allocations assumed at filter and not yet bound",
            m.reservations_pending.clone(),
        );
        registry.register(
            "hamr_reservations_released",
            "Assumed allocations given back before binding, by cause",
            m.reservations_released.clone(),
        );
        registry.register(
            "hamr_guest_traps",
            "Traps and timeouts of the guest component",
            m.guest_traps.clone(),
        );
        registry.register(
            "hamr_guest_rebuilds",
            "Guest instances rebuilt from the host cache after a trap",
            m.guest_rebuilds.clone(),
        );
        registry.register(
            "hamr_leader",
            "1 when this replica holds the lease",
            m.leader.clone(),
        );
        registry.register(
            "hamr_cache_synced",
            "1 once the initial lists of nodes, pods and quotas reached the guest",
            m.synced.clone(),
        );
        registry.register(
            "hamr_deltas",
            "Object changes applied to the guest",
            m.deltas.clone(),
        );
        registry.register(
            "hamr_delta_errors",
            "Object changes the guest refused (malformed annotations; logged with the field)",
            m.delta_errors.clone(),
        );
        registry.register(
            "hami_gpu_memory_limit_bytes",
            "Device memory of each card",
            m.memory_limit.clone(),
        );
        registry.register(
            "hami_gpu_core_limit_ratio",
            "Device cores of each card",
            m.core_limit.clone(),
        );
        registry.register(
            "hami_gpu_memory_allocated_bytes",
            "Device memory allocated on each card",
            m.memory_allocated.clone(),
        );
        registry.register(
            "hami_gpu_shared_count",
            "Containers sharing each card",
            m.shared_count.clone(),
        );
        registry.register(
            "hami_gpu_core_allocated_ratio",
            "Device cores allocated on each card",
            m.core_allocated.clone(),
        );
        registry.register(
            "hami_node_gpu_memory_allocated_ratio",
            "Allocated over total memory of each card",
            m.memory_ratio.clone(),
        );
        registry.register(
            "hami_resource_quota_used",
            "Device resource used in each namespace (MiB for memory, percent for cores)",
            m.quota_used.clone(),
        );
        registry.register(
            "hami_resource_quota_limit",
            "Device resource limit of each namespace, where a ResourceQuota sets one",
            m.quota_limit.clone(),
        );
        registry.register(
            "hamr_node_devices_stale",
            "1 for each vendor registered on a node whose registration is not live (an unanswered handshake, or no allocatable devices)",
            m.stale.clone(),
        );
        registry.register(
            "hamr_node_handshake_writes",
            "Handshake stamps (Requesting_<time>) patched onto nodes",
            m.handshake_writes.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Replaces the quota gauges with the guest's current quota use.
    pub fn quotas(&self, usage: &[api::QuotaUsage]) {
        self.quota_used.clear();
        self.quota_limit.clear();
        for q in usage {
            let used = i64::try_from(q.used).unwrap_or(i64::MAX);
            self.quota_used
                .get_or_create(&QuotaUsedLabels {
                    zone: "vGPU",
                    namespace: q.namespace.clone(),
                    quota_name: q.resource_name.clone(),
                    limit: q.limit.unwrap_or(0).to_string(),
                })
                .set(used);
            if let Some(limit) = q.limit {
                self.quota_limit
                    .get_or_create(&QuotaLimitLabels {
                        zone: "vGPU",
                        namespace: q.namespace.clone(),
                        quota_name: q.resource_name.clone(),
                    })
                    .set(i64::try_from(limit).unwrap_or(i64::MAX));
            }
        }
    }

    /// Replaces the stale-registration gauges with the guest's latest handshake answer.
    pub fn stale(&self, handshakes: &[api::NodeHandshake]) {
        self.stale.clear();
        for h in handshakes {
            for vendor in &h.stale {
                self.stale
                    .get_or_create(&StaleLabels {
                        node: h.node.clone(),
                        vendor: vendor.clone(),
                    })
                    .set(1);
            }
        }
    }

    /// Advances the trap and rebuild counters to the engine's totals.
    pub fn guest_totals(&self, traps: u64, rebuilds: u64) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if traps > seen.0 {
            self.guest_traps.inc_by(traps - seen.0);
        }
        if rebuilds > seen.1 {
            self.guest_rebuilds.inc_by(rebuilds - seen.1);
        }
        *seen = (traps.max(seen.0), rebuilds.max(seen.1));
    }

    /// Replaces the per-card gauges with the guest's current usage.
    pub fn cards(&self, usage: &[api::NodeUsage]) {
        self.memory_limit.clear();
        self.core_limit.clear();
        self.memory_allocated.clear();
        self.shared_count.clear();
        self.core_allocated.clear();
        self.memory_ratio.clear();
        for node in usage {
            for c in &node.cards {
                let labels = CardLabels {
                    zone: "vGPU",
                    node: node.node.clone(),
                    device_uuid: c.uuid.clone(),
                    device_index: c.index.to_string(),
                    device_type: c.model.clone(),
                };
                self.memory_limit
                    .get_or_create(&labels)
                    .set(c.total_memory_mib as f64 * MIB);
                self.core_limit
                    .get_or_create(&labels)
                    .set(i64::from(c.total_cores));
                self.memory_allocated
                    .get_or_create(&CardCoreLabels {
                        zone: "vGPU",
                        node: node.node.clone(),
                        device_uuid: c.uuid.clone(),
                        device_index: c.index.to_string(),
                        device_cores: c.used_cores.to_string(),
                        device_type: c.model.clone(),
                    })
                    .set(c.used_memory_mib as f64 * MIB);
                self.shared_count
                    .get_or_create(&labels)
                    .set(i64::from(c.used_slots));
                self.core_allocated
                    .get_or_create(&labels)
                    .set(i64::from(c.used_cores));
                if c.total_memory_mib > 0 {
                    self.memory_ratio
                        .get_or_create(&labels)
                        .set(c.used_memory_mib as f64 / c.total_memory_mib as f64);
                }
            }
        }
    }

    /// The OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "encoding metrics");
        }
        out
    }
}
