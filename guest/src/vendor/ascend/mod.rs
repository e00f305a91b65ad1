//! Huawei Ascend NPUs (spec hami-vendors.md §6): one backend per chip of the chart's `vnpus`
//! list, hard split by templates or soft split (`hami-core`), NetworkID grouping on the
//! 910 series and module pairing on the 910C.

pub mod fit;

use serde_json::Value;

use crate::api::{
    Container, ContainerEnv, ContainerLimit, ContainerRef, Invalid, Mutation, Node, Pairs, Pod,
    lookup,
};
use crate::config::Config;
use crate::device::{self, Card, DeviceInfo, Placed, PodDevices};
use crate::ledger::Ledger;
use crate::vendor::common::{self, Resources};
use crate::vendor::{DecisionContext, Fit, FitContext, QuotaResources, Request, Slot, Vendor};

/// The pod annotation that asks for soft split.
pub const VNPU_MODE: &str = "huawei.com/vnpu-mode";
/// The node annotation that allows (`"true"`) or forbids soft split, over the config default.
pub const NODE_VNPU_CORE: &str = "hami-vnpu-core";
pub const PREDICATE_TIME: &str = "predicate-time";

/// A vNPU template: its name and memory, MB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Template {
    pub name: &'static str,
    pub memory: i64,
}

const fn t(name: &'static str, memory: i64) -> Template {
    Template { name, memory }
}

/// One Ascend chip: HAMi's `vnpus.configs[]` entry with the chart's values. The keys are
/// derived from the common word `C` (`huawei.com/C`, `hami.io/node-register-C`, …).
pub struct Ascend {
    pub common: &'static str,
    pub resource: &'static str,
    pub resource_memory: &'static str,
    pub resource_core: &'static str,
    pub register: &'static str,
    pub handshake: &'static str,
    pub use_uuid: &'static str,
    pub nouse_uuid: &'static str,
    pub to_allocate: &'static str,
    pub allocated: &'static str,
    pub memory_allocatable: i64,
    pub memory_capacity: i64,
    pub super_pod: bool,
    /// Ascending by memory.
    pub templates: &'static [Template],
}

macro_rules! chip {
    ($name:ident, $c:literal, $alloc:expr, $cap:expr, $super_pod:expr, $templates:expr) => {
        pub static $name: Ascend = Ascend {
            common: $c,
            resource: concat!("huawei.com/", $c),
            resource_memory: concat!("huawei.com/", $c, "-memory"),
            resource_core: concat!("huawei.com/", $c, "-core"),
            register: concat!("hami.io/node-register-", $c),
            handshake: concat!("hami.io/node-handshake-", $c),
            use_uuid: concat!("hami.io/use-", $c, "-uuid"),
            nouse_uuid: concat!("hami.io/no-use-", $c, "-uuid"),
            to_allocate: concat!("hami.io/", $c, "-devices-to-allocate"),
            allocated: concat!("hami.io/", $c, "-devices-allocated"),
            memory_allocatable: $alloc,
            memory_capacity: $cap,
            super_pod: $super_pod,
            templates: $templates,
        };
    };
}

chip!(
    ASCEND_910A,
    "Ascend910A",
    32768,
    32768,
    false,
    &[
        t("vir02", 2184),
        t("vir04", 4369),
        t("vir08", 8738),
        t("vir16", 17476),
    ]
);
chip!(
    ASCEND_910B2,
    "Ascend910B2",
    65536,
    65536,
    false,
    &[
        t("vir03_1c_8g", 8192),
        t("vir06_1c_16g", 16384),
        t("vir12_3c_32g", 32768),
    ]
);
chip!(
    ASCEND_910B3,
    "Ascend910B3",
    65536,
    65536,
    false,
    &[t("vir05_1c_16g", 16384), t("vir10_3c_32g", 32768),]
);
chip!(
    ASCEND_910B4_1,
    "Ascend910B4-1",
    65536,
    65536,
    false,
    &[t("vir05_1c_16g", 16384), t("vir10_3c_32g", 32768),]
);
chip!(
    ASCEND_910B4,
    "Ascend910B4",
    32768,
    32768,
    false,
    &[t("vir05_1c_8g", 8192), t("vir10_3c_16g", 16384),]
);
chip!(
    ASCEND_310P,
    "Ascend310P",
    21527,
    24576,
    false,
    &[t("vir01", 3072), t("vir02", 6144), t("vir04", 12288),]
);
chip!(
    ASCEND_910C,
    "Ascend910C",
    65536,
    65536,
    true,
    &[t("vir05_1c_16g", 16384), t("vir10_3c_32g", 32768),]
);

impl Ascend {
    /// HAMi's `trimMemory`: the first template with at least `m` MB; else the whole card when
    /// `m` fits the capacity; else `None` (invalid).
    pub fn trim_memory(&self, m: i64) -> Option<(Option<&'static str>, i64)> {
        if let Some(t) = self.templates.iter().find(|t| t.memory >= m) {
            return Some((Some(t.name), t.memory));
        }
        (m <= self.memory_capacity).then_some((None, self.memory_allocatable))
    }

    /// Whether the pod asks for soft split.
    pub fn hami_core(pod: &Pod) -> bool {
        pod.annotation(VNPU_MODE) == Some("hami-core")
    }

    /// Whether the node allows soft split: its `hami-vnpu-core` annotation, else the config.
    pub fn node_allows_hami_core(node: &Node, config: &Config) -> bool {
        match node.annotation(NODE_VNPU_CORE) {
            Some(v) => v == "true",
            None => config.ascend.hami_vnpu_core,
        }
    }

    fn is_910c_pairing(&self) -> bool {
        self.common == "Ascend910C"
    }

    /// The registration with each device's `custominfo` (NetworkID lives there).
    pub fn registration(&self, node: &Node) -> Result<Option<Vec<common::Registered>>, Invalid> {
        common::parse_json_registration(node, self.register)
    }

    fn admit(
        &self,
        pod: &Pod,
        c: &Container,
        slot: Slot<'_>,
        cref: ContainerRef,
        config: &Config,
    ) -> Result<(bool, Vec<Mutation>), Invalid> {
        let r = Resources { container: c, slot };
        let mut mutations = Vec::new();
        let item = |name: &str, value: i64| ContainerLimit {
            container: cref,
            name: name.to_string(),
            value: value.to_string(),
        };
        let set_limit = |name: &str, value: i64| Mutation::SetLimit(item(name, value));
        let set_request = |name: &str, value: i64| Mutation::SetRequest(item(name, value));
        let Some(count) = r.integer(self.resource, 0, i64::from(i32::MAX), false)? else {
            if config.ascend.overwrite_env
                && !c.env_names.iter().any(|n| n == "ASCEND_VISIBLE_DEVICES")
            {
                mutations.push(Mutation::AddEnv(ContainerEnv {
                    container: cref,
                    name: "ASCEND_VISIBLE_DEVICES".to_string(),
                    value: String::new(),
                }));
            }
            return Ok((false, mutations));
        };
        let mut count = count;
        // 2. 910C super-pod: whole modules of two NPUs.
        if self.is_910c_pairing() && self.super_pod {
            if count == 1 {
                count = 2;
                mutations.push(set_limit(self.resource, 2));
                if lookup(&c.requests, self.resource).is_some() {
                    mutations.push(set_request(self.resource, 2));
                }
            } else if count % 2 == 1 {
                return Err(r.invalid(
                    self.resource,
                    format!("Ascend910C device request must be 1 or 2*n, got {count}"),
                ));
            }
        }
        let hami_core = Ascend::hami_core(pod);
        // 3. Cores only in soft split.
        let core = r.integer(self.resource_core, 0, i64::from(i32::MAX), false)?;
        if !hami_core && core.is_some_and(|c| c > 0) {
            return Err(r.invalid(
                self.resource_core,
                format!(
                    "{} is only supported in hami-core (soft split) mode",
                    self.resource_core
                ),
            ));
        }
        // 4. Memory.
        let memory = match r.integer(self.resource_memory, 0, i64::from(i32::MAX), false)? {
            None => self.memory_allocatable,
            Some(m) if hami_core => m,
            Some(m) => match self.trim_memory(m) {
                Some((_, v)) if v > 0 => v,
                _ => {
                    return Err(r.invalid(
                        self.resource_memory,
                        format!(
                            "no template of {} fits {m} MB (capacity {} MB)",
                            self.common, self.memory_capacity
                        ),
                    ));
                }
            },
        };
        // 5. Hard split shares one NPU only.
        if !hami_core && count > 1 && memory != self.memory_allocatable {
            return Err(r.invalid(
                self.resource_memory,
                "vNPU not supported for multiple devices",
            ));
        }
        // 6. The memory is written into the limit and the request. (7, the runtime class, is
        // pod-wide: `runtime_class_name`.)
        mutations.push(set_limit(self.resource_memory, memory));
        mutations.push(set_request(self.resource_memory, memory));
        Ok((true, mutations))
    }

    fn derive(
        &self,
        c: &Container,
        slot: Slot<'_>,
        config: &Config,
    ) -> Result<Option<Request>, Invalid> {
        let r = Resources { container: c, slot };
        let factor = config.ascend.memory_factor.max(1);
        let nums = r.integer(self.resource, 0, i64::from(i32::MAX), false)?;
        let mem = r.integer(self.resource_memory, 0, i64::from(i32::MAX) / factor, false)?;
        let core = r.integer(self.resource_core, 0, i64::from(i32::MAX), false)?;
        let Some(nums) = nums.filter(|n| *n > 0) else {
            return Ok(None);
        };
        let memreq = mem.unwrap_or(0) * factor;
        Ok(Some(Request {
            vendor: self.common,
            nums,
            memreq,
            mem_pct: if memreq == 0 { 100 } else { 0 },
            coresreq: core.unwrap_or(0),
        }))
    }

    /// `huawei.com/C`: per device `{"UUID","temp","memory","core"}`, empty and zero fields left
    /// out; `temp` is the template of the device's memory in hard split.
    fn runtime_info(&self, devices: &PodDevices, hami_core: bool) -> String {
        let quote = |v: &str| Value::from(v).to_string();
        let items: Vec<String> = devices
            .iter()
            .flatten()
            .map(|d| {
                let mut fields = Vec::new();
                if !d.uuid.is_empty() {
                    fields.push(format!("\"UUID\":{}", quote(&d.uuid)));
                }
                if !hami_core && let Some((Some(name), _)) = self.trim_memory(d.mem) {
                    fields.push(format!("\"temp\":{}", quote(name)));
                }
                if d.mem != 0 {
                    fields.push(format!("\"memory\":{}", d.mem));
                }
                if d.cores != 0 {
                    fields.push(format!("\"core\":{}", d.cores));
                }
                format!("{{{}}}", fields.join(","))
            })
            .collect();
        format!("[{}]", items.join(","))
    }
}

impl Vendor for Ascend {
    fn key(&self) -> &'static str {
        self.common
    }

    fn managed_resources(&self, _config: &Config) -> Vec<String> {
        vec![
            self.resource.to_string(),
            self.resource_memory.to_string(),
            self.resource_core.to_string(),
        ]
    }

    fn parse_node(&self, node: &Node) -> Result<Option<Vec<DeviceInfo>>, Invalid> {
        Ok(self.registration(node)?.map(|l| {
            l.into_iter()
                .map(|r| {
                    let mut info = r.info;
                    if let Some(id) = fit::network_id_of(&r.custom) {
                        info.custom.insert(fit::NETWORK_ID.into(), id.to_string());
                    }
                    info
                })
                .collect()
        }))
    }

    fn liveness(&self, node: &Node, _config: &Config) -> crate::vendor::Liveness {
        common::handshake_liveness(node, self.handshake, self.resource)
    }

    fn handshake_key(&self) -> Option<&'static str> {
        Some(self.handshake)
    }

    fn request(
        &self,
        container: &Container,
        slot: Slot<'_>,
        config: &Config,
    ) -> Result<Option<Request>, Invalid> {
        self.derive(container, slot, config)
    }

    fn admit_pod_container(
        &self,
        pod: &Pod,
        container: &Container,
        slot: Slot<'_>,
        cref: ContainerRef,
        ledger: &Ledger,
    ) -> Result<(bool, Vec<Mutation>), Invalid> {
        self.admit(pod, container, slot, cref, &ledger.config)
    }

    fn runtime_class_name<'a>(&self, config: &'a Config) -> Option<&'a str> {
        Some(config.ascend.runtime_class_name.as_str())
    }

    fn admit_container(
        &self,
        container: &Container,
        slot: Slot<'_>,
        cref: ContainerRef,
        config: &Config,
    ) -> Result<(bool, Vec<Mutation>), Invalid> {
        self.admit(&Pod::default(), container, slot, cref, config)
    }

    fn owns(&self, card: &Card) -> bool {
        card.vendor == self.common
    }

    fn quota_resources<'a>(&self, config: &'a Config) -> Option<QuotaResources<'a>> {
        Some(QuotaResources {
            memory: self.resource_memory,
            cores: self.resource_core,
            memory_factor: config.ascend.memory_factor.max(1),
        })
    }

    fn fit(&self, cards: &[&Card], request: &Request, ctx: &FitContext<'_>) -> Fit {
        fit::fit(self, cards, request, ctx)
    }

    fn annotations(&self, devices: &PodDevices) -> Pairs {
        let encoded = device::encode(devices);
        vec![
            (self.to_allocate.to_string(), encoded.clone()),
            (self.allocated.to_string(), encoded),
        ]
    }

    fn decision_annotations(&self, devices: &PodDevices, ctx: &DecisionContext<'_>) -> Pairs {
        let mut out = self.annotations(devices);
        out.push((PREDICATE_TIME.to_string(), ctx.now.to_string()));
        out.push((
            self.resource.to_string(),
            self.runtime_info(devices, Ascend::hami_core(ctx.pod)),
        ));
        out
    }

    fn rank_is_use_only(&self) -> bool {
        false
    }

    fn topology_score(&self, _node: &Node, devices: &PodDevices, previous: &[Card]) -> f64 {
        fit::score(self, previous, devices)
    }

    fn allocated_key(&self) -> &'static str {
        self.allocated
    }

    fn decode_pod(&self, pod: &Pod) -> Result<Option<Placed>, Invalid> {
        common::decode_allocated(pod, self.allocated, self.common)
    }
}

#[cfg(test)]
mod tests;
