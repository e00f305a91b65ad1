//! Hygon DCU (spec hami-vendors.md §8): colon registration, G-Fit with the card-model filter
//! `hygon.com/use-dcutype` / `nouse-dcutype`.

use crate::api::{Container, ContainerRef, Invalid, Mutation, Node, Pairs, Pod};
use crate::config::Config;
use crate::device::{self, Card, DeviceInfo, Placed, PodDevices};
use crate::vendor::common::{self, Resources, Sharing};
use crate::vendor::{Fit, FitContext, QuotaResources, Request, Slot, Vendor};

/// The common word (request and annotation type).
pub const VENDOR: &str = "DCU";
pub const REGISTER: &str = "hami.io/node-dcu-register";
pub const HANDSHAKE: &str = "hami.io/node-handshake-dcu";
pub const DEVICES_TO_ALLOCATE: &str = "hami.io/dcu-devices-to-allocate";
pub const DEVICES_ALLOCATED: &str = "hami.io/dcu-devices-allocated";
pub const USE_UUID: &str = "hygon.com/use-gpuuuid";
pub const NOUSE_UUID: &str = "hygon.com/nouse-gpuuuid";
pub const USE_TYPE: &str = "hygon.com/use-dcutype";
pub const NOUSE_TYPE: &str = "hygon.com/nouse-dcutype";

/// The Hygon DCU backend.
pub struct Hygon;

impl Vendor for Hygon {
    fn key(&self) -> &'static str {
        VENDOR
    }

    fn managed_resources(&self, config: &Config) -> Vec<String> {
        config.hygon.all()
    }

    fn parse_node(&self, node: &Node) -> Result<Option<Vec<DeviceInfo>>, Invalid> {
        common::parse_colon_registration(node, REGISTER)
    }

    fn liveness(&self, node: &Node, config: &Config) -> crate::vendor::Liveness {
        common::handshake_liveness(node, HANDSHAKE, config.hygon.count())
    }

    fn handshake_key(&self) -> Option<&'static str> {
        Some(HANDSHAKE)
    }

    fn request(
        &self,
        c: &Container,
        slot: Slot<'_>,
        config: &Config,
    ) -> Result<Option<Request>, Invalid> {
        let names = &config.hygon;
        let factor = names.memory_factor.max(1);
        let r = Resources { container: c, slot };
        let nums = r.integer(names.count(), 0, i64::from(i32::MAX), false)?;
        let mem = r.integer(names.memory(), 0, i64::from(i32::MAX) / factor, false)?;
        let core = r.integer(names.core(), 0, i64::from(i32::MAX), false)?;
        let Some(nums) = nums.filter(|n| *n > 0) else {
            return Ok(None);
        };
        let memreq = mem.unwrap_or(0) * factor;
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
        Ok((r.in_limits(config.hygon.count()), Vec::new()))
    }

    fn owns(&self, card: &Card) -> bool {
        card.vendor == VENDOR
    }

    fn quota_resources<'a>(&self, config: &'a Config) -> Option<QuotaResources<'a>> {
        Some(QuotaResources {
            memory: config.hygon.memory(),
            cores: config.hygon.core(),
            memory_factor: config.hygon.memory_factor.max(1),
        })
    }

    fn fit(&self, cards: &[&Card], request: &Request, ctx: &FitContext<'_>) -> Fit {
        let sharing = Sharing {
            vendor: VENDOR,
            uuid_keys: (USE_UUID, NOUSE_UUID),
            type_keys: Some((USE_TYPE, NOUSE_TYPE)),
            quota: false,
            same_card: false,
            collect_all: false,
            total_core: None,
        };
        common::gfit(cards, request, ctx, &sharing).finish()
    }

    fn annotations(&self, devices: &PodDevices) -> Pairs {
        let encoded = device::encode(devices);
        vec![
            (DEVICES_TO_ALLOCATE.to_string(), encoded.clone()),
            (DEVICES_ALLOCATED.to_string(), encoded),
        ]
    }

    fn allocated_key(&self) -> &'static str {
        DEVICES_ALLOCATED
    }

    fn decode_pod(&self, pod: &Pod) -> Result<Option<Placed>, Invalid> {
        common::decode_allocated(pod, DEVICES_ALLOCATED, VENDOR)
    }
}
