//! Cambricon MLU (spec hami-vendors.md §7): devices from node capacity, G-Fit with a per-card
//! namespace quota check, and the DSMLU profile annotations.

use crate::api::{Container, ContainerRef, Invalid, Mutation, Node, Pairs, Pod};
use crate::config::Config;
use crate::device::{self, Card, DeviceInfo, Placed, PodDevices};
use crate::vendor::common::{self, Resources, Sharing};
use crate::vendor::{Fit, FitContext, QuotaResources, Request, Slot, Vendor};

/// The common word (request and annotation type).
pub const VENDOR: &str = "MLU";
pub const DEVICES_TO_ALLOCATE: &str = "hami.io/cambricon-mlu-devices-to-allocate";
pub const DEVICES_ALLOCATED: &str = "hami.io/cambricon-mlu-devices-allocated";
pub const USE_UUID: &str = "cambricon.com/use-gpuuuid";
pub const NOUSE_UUID: &str = "cambricon.com/nouse-gpuuuid";
pub const DSMLU_PROFILE: &str = "CAMBRICON_DSMLU_PROFILE";
pub const DSMLU_ASSIGNED: &str = "CAMBRICON_DSMLU_ASSIGNED";
/// MiB per memory unit.
pub const MEMORY_UNIT: i64 = 256;

/// The Cambricon MLU backend.
pub struct Cambricon;

impl Vendor for Cambricon {
    fn key(&self) -> &'static str {
        VENDOR
    }

    fn managed_resources(&self, config: &Config) -> Vec<String> {
        config.cambricon.all()
    }

    /// `ceil(vcore/100)` cards of 100 cores each, sharing the node's vmemory equally:
    /// vcore 1 and vmemory 1 give one card of `1*256*100/1 = 25600` MiB (CB-01).
    fn parse_node(&self, node: &Node) -> Result<Option<Vec<DeviceInfo>>, Invalid> {
        // The registration is the node's capacity, which the plugin maintains: read it here.
        parse_capacity(node, &Config::default())
    }

    /// Under the configured resource names, as requests are read (and without building a
    /// default configuration, MIG geometries and all, for every node update).
    fn parse_node_configured(
        &self,
        node: &Node,
        config: &Config,
    ) -> Result<Option<Vec<DeviceInfo>>, Invalid> {
        parse_capacity(node, config)
    }

    fn liveness(&self, _node: &Node, _config: &Config) -> crate::vendor::Liveness {
        crate::vendor::Liveness::Live
    }

    fn request(
        &self,
        c: &Container,
        slot: Slot<'_>,
        config: &Config,
    ) -> Result<Option<Request>, Invalid> {
        let names = &config.cambricon;
        let r = Resources { container: c, slot };
        let nums = r.integer(names.count(), 0, i64::from(i32::MAX), false)?;
        let mem = r.integer(names.memory(), 0, i64::from(i32::MAX) / MEMORY_UNIT, false)?;
        let core = r.integer(names.core(), 0, i64::from(i32::MAX), false)?;
        let Some(nums) = nums.filter(|n| *n > 0) else {
            return Ok(None);
        };
        let memreq = mem.unwrap_or(0) * MEMORY_UNIT;
        Ok(Some(Request {
            vendor: VENDOR,
            nums,
            memreq,
            mem_pct: if memreq == 0 { 100 } else { 0 },
            coresreq: core.unwrap_or(100),
        }))
    }

    fn admit_container(
        &self,
        c: &Container,
        slot: Slot<'_>,
        _cref: ContainerRef,
        config: &Config,
    ) -> Result<(bool, Vec<Mutation>), Invalid> {
        self.request(c, slot, config)?;
        let r = Resources { container: c, slot };
        Ok((r.in_limits(config.cambricon.count()), Vec::new()))
    }

    fn owns(&self, card: &Card) -> bool {
        card.vendor == VENDOR
    }

    fn quota_resources<'a>(&self, config: &'a Config) -> Option<QuotaResources<'a>> {
        Some(QuotaResources {
            memory: config.cambricon.memory(),
            cores: config.cambricon.core(),
            memory_factor: MEMORY_UNIT,
        })
    }

    fn fit(&self, cards: &[&Card], request: &Request, ctx: &FitContext<'_>) -> Fit {
        let sharing = Sharing {
            vendor: VENDOR,
            uuid_keys: (USE_UUID, NOUSE_UUID),
            type_keys: None,
            quota: true,
            same_card: false,
            collect_all: false,
            total_core: None,
        };
        common::gfit(cards, request, ctx, &sharing).finish()
    }

    /// The allocation keys, `CAMBRICON_DSMLU_ASSIGNED=false`, and the profile
    /// `<index>_<cores>_<memory units>` of the first device of the first container that has
    /// one: index 0, 1 core and 256000 MiB give `0_1_1000` (CB-04).
    fn annotations(&self, devices: &PodDevices) -> Pairs {
        let encoded = device::encode(devices);
        let mut out = vec![
            (DEVICES_TO_ALLOCATE.to_string(), encoded.clone()),
            (DEVICES_ALLOCATED.to_string(), encoded),
            (DSMLU_ASSIGNED.to_string(), "false".to_string()),
        ];
        if let Some(d) = devices.iter().flatten().next() {
            out.push((
                DSMLU_PROFILE.to_string(),
                format!("{}_{}_{}", d.index, d.cores, d.mem / MEMORY_UNIT),
            ));
        }
        out
    }

    fn allocated_key(&self) -> &'static str {
        DEVICES_ALLOCATED
    }

    fn decode_pod(&self, pod: &Pod) -> Result<Option<Placed>, Invalid> {
        common::decode_allocated(pod, DEVICES_ALLOCATED, VENDOR)
    }
}

/// The cards described by the node's capacity of the vcore and vmemory resources.
pub fn parse_capacity(node: &Node, config: &Config) -> Result<Option<Vec<DeviceInfo>>, Invalid> {
    let cores = common::node_quantity(&node.capacity, config.cambricon.core());
    if cores <= 0 {
        return Ok(None);
    }
    let mem_total = common::node_quantity(&node.capacity, config.cambricon.memory());
    let devmem =
        i64::try_from(i128::from(mem_total) * i128::from(MEMORY_UNIT) * 100 / i128::from(cores))
            .ok()
            .filter(|m| *m <= i64::from(i32::MAX))
            .ok_or_else(|| {
                Invalid::new(
                    format!("node/{}", node.name),
                    format!("status.capacity[{}]", config.cambricon.memory()),
                    &mem_total.to_string(),
                    "memory per card does not fit 32 bits",
                )
            })?;
    let n = (cores + 99) / 100;
    Ok(Some(
        (0..n)
            .map(|i| DeviceInfo {
                id: format!("{}-cambricon-mlu-{i}", node.name),
                index: i as u32,
                count: 100,
                devmem,
                devcore: 100,
                model: VENDOR.to_string(),
                health: true,
                ..DeviceInfo::default()
            })
            .collect(),
    ))
}
