//! Biren (spec hami-vendors.md §11): JSON registration, whole cards shared only by the
//! registered slot count.

use crate::api::{Container, ContainerRef, Invalid, Mutation, Node, Pairs, Pod};
use crate::config::Config;
use crate::device::{Card, DeviceInfo, Placed, PodDevices};
use crate::vendor::common::{self, Resources};
use crate::vendor::{Fit, FitContext, Request, Slot, Vendor};

/// The common word (request and annotation type).
pub const VENDOR: &str = "Biren";
pub const REGISTER: &str = "hami.io/node-biren-register";
pub const HANDSHAKE: &str = "hami.io/node-handshake-biren";
pub const DEVICES_TO_ALLOCATE: &str = "hami.io/Biren-devices-to-allocate";
pub const DEVICES_ALLOCATED: &str = "hami.io/Biren-devices-allocated";
pub const USE_UUID: &str = "birentech.com/use-gpuuuid";
pub const NOUSE_UUID: &str = "birentech.com/nouse-gpuuuid";

/// The Biren backend.
pub struct Biren;

/// A count-only request: `{n, 0 MiB, 100 %, 0 cores}`.
pub fn count_request(
    vendor: &'static str,
    count: &str,
    c: &Container,
    slot: Slot<'_>,
) -> Result<Option<Request>, Invalid> {
    let r = Resources { container: c, slot };
    let Some(nums) = r
        .integer(count, 0, i64::from(i32::MAX), false)?
        .filter(|n| *n > 0)
    else {
        return Ok(None);
    };
    Ok(Some(Request {
        vendor,
        nums,
        memreq: 0,
        mem_pct: 100,
        coresreq: 0,
    }))
}

impl Vendor for Biren {
    fn key(&self) -> &'static str {
        VENDOR
    }

    fn managed_resources(&self, config: &Config) -> Vec<String> {
        config.biren.all()
    }

    /// Every card's cores are set to 100 (HAMi: "only for score computation", BR-01).
    fn parse_node(&self, node: &Node) -> Result<Option<Vec<DeviceInfo>>, Invalid> {
        Ok(common::parse_json_registration(node, REGISTER)?.map(|l| {
            l.into_iter()
                .map(|r| DeviceInfo {
                    devcore: 100,
                    ..r.info
                })
                .collect()
        }))
    }

    fn liveness(&self, node: &Node, config: &Config) -> crate::vendor::Liveness {
        common::handshake_liveness(node, HANDSHAKE, config.biren.count())
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
        count_request(VENDOR, config.biren.count(), c, slot)
    }

    fn admit_container(
        &self,
        c: &Container,
        slot: Slot<'_>,
        _cref: ContainerRef,
        config: &Config,
    ) -> Result<(bool, Vec<Mutation>), Invalid> {
        self.request(c, slot, config)?;
        Ok((
            Resources { container: c, slot }.in_limits(config.biren.count()),
            Vec::new(),
        ))
    }

    fn owns(&self, card: &Card) -> bool {
        card.vendor == VENDOR
    }

    fn fit(&self, cards: &[&Card], request: &Request, ctx: &FitContext<'_>) -> Fit {
        common::slot_walk(
            cards,
            request,
            ctx,
            VENDOR,
            (USE_UUID, NOUSE_UUID),
            false,
            &|_| false,
        )
        .finish()
    }

    fn annotations(&self, devices: &PodDevices) -> Pairs {
        common::allocation_pairs(DEVICES_TO_ALLOCATE, DEVICES_ALLOCATED, devices)
    }

    fn allocated_key(&self) -> &'static str {
        DEVICES_ALLOCATED
    }

    fn decode_pod(&self, pod: &Pod) -> Result<Option<Placed>, Invalid> {
        common::decode_allocated(pod, DEVICES_ALLOCATED, VENDOR)
    }
}
