//! Kunlun vXPU (`XPU`, spec §3.3): JSON registration, memory rounded up to a quarter, half or
//! whole card, equal-size slices only on a shared card, and the wing topology.

use serde_json::Value;

use crate::api::{
    Container, ContainerLimit, ContainerRef, Invalid, Mutation, Node, Pairs, Pod, lookup,
};
use crate::config::Config;
use crate::device::{self, Card, ContainerDevice, DeviceInfo, Placed, PodDevices};
use crate::policy::contains_ignore_case;
use crate::reason::{self, Counter};
use crate::vendor::kit;
use crate::vendor::{Fit, FitContext, Request, Slot, Vendor};

use super::{
    HANDSHAKE, MAX_MEMORY, REGISTER, VXPU_MEMORY, VXPU_RESOURCE, VXPU_VENDOR, XPU_ALLOCATED,
    XPU_TO_ALLOCATE,
};

/// The vXPU Kunlun backend.
pub struct KunlunVxpu;

/// `trimMemory`: MiB rounded up to 24576, 49152 or 98304 (0 → 24576; 200000 → 98304).
pub fn align(m: i128) -> i64 {
    if m <= 24576 {
        24576
    } else if m <= 49152 {
        49152
    } else {
        MAX_MEMORY
    }
}

/// `FitVXPU`: healthy, room for the slice, and either idle or holding slices of the same size.
pub fn fits_vxpu(card: &Card, memreq: i64) -> bool {
    if kit::unusable(card, "").is_some() || memreq + card.used_mem > card.info.devmem {
        return false;
    }
    card.used == 0 || card.used_mem / card.used == memreq
}

/// Parses the JSON registration (§1.3; keys in any case).
pub fn registration(node: &Node, text: &str) -> Result<Vec<DeviceInfo>, Invalid> {
    let bad = |m: String| Invalid::new(format!("node/{}", node.name), REGISTER, text, m);
    let value: Value = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
    let Value::Array(items) = kit::lower_keys(value) else {
        return Err(bad("want a JSON array of devices".into()));
    };
    let mut out = Vec::with_capacity(items.len());
    for (k, item) in items.iter().enumerate() {
        let int = |key: &str| -> Result<i64, Invalid> {
            match item.get(key) {
                None | Some(Value::Null) => Ok(0),
                Some(v) => v
                    .as_i64()
                    .filter(|n| i32::try_from(*n).is_ok())
                    .ok_or_else(|| bad(format!("device {k}: {key} is not a 32-bit integer"))),
            }
        };
        let text_of = |key: &str| item.get(key).and_then(Value::as_str).unwrap_or_default();
        let index = int("index")?;
        out.push(DeviceInfo {
            id: text_of("id").to_string(),
            index: u32::try_from(index)
                .map_err(|_| bad(format!("device {k}: index {index} is negative")))?,
            count: int("count")?,
            devmem: int("devmem")?,
            devcore: int("devcore")?,
            model: text_of("type").to_string(),
            numa: int("numa")?,
            mode: text_of("mode").to_string(),
            health: item.get("health").and_then(Value::as_bool).unwrap_or(false),
            ..DeviceInfo::default()
        });
    }
    Ok(out)
}

impl Vendor for KunlunVxpu {
    fn key(&self) -> &'static str {
        VXPU_VENDOR
    }

    fn managed_resources(&self, _config: &Config) -> Vec<String> {
        vec![VXPU_RESOURCE.to_string(), VXPU_MEMORY.to_string()]
    }

    fn parse_node(&self, node: &Node) -> Result<Option<Vec<DeviceInfo>>, Invalid> {
        match node.annotation(REGISTER) {
            None => Ok(None),
            Some(text) => {
                let devices = registration(node, text)?;
                Ok((!devices.is_empty()).then_some(devices))
            }
        }
    }

    fn liveness(&self, node: &Node, _config: &Config) -> crate::vendor::Liveness {
        crate::vendor::common::handshake_liveness(node, HANDSHAKE, VXPU_RESOURCE)
    }

    fn handshake_key(&self) -> Option<&'static str> {
        Some(HANDSHAKE)
    }

    /// Count from limits else requests; memory (limits else requests) aligned; cores follow
    /// the memory (`mem × 100 / 98304`); no memory is a whole card.
    fn request(
        &self,
        container: &Container,
        slot: Slot<'_>,
        _config: &Config,
    ) -> Result<Option<Request>, Invalid> {
        let Some(n) = kit::int_resource(container, VXPU_RESOURCE, true, slot)? else {
            return Ok(None);
        };
        if n == 0 {
            return Ok(None);
        }
        if !(1..=i128::from(i32::MAX)).contains(&n) {
            return Err(kit::bad_resource(
                slot,
                VXPU_RESOURCE,
                n,
                "must be a card count between 1 and 2147483647",
            ));
        }
        let mem = kit::int_resource(container, VXPU_MEMORY, true, slot)?;
        Ok(Some(match mem {
            None => Request {
                vendor: VXPU_VENDOR,
                nums: n as i64,
                memreq: MAX_MEMORY,
                mem_pct: 100,
                coresreq: 100,
            },
            Some(m) => {
                let m = align(m);
                Request {
                    vendor: VXPU_VENDOR,
                    nums: n as i64,
                    memreq: m,
                    mem_pct: 0,
                    coresreq: m * 100 / MAX_MEMORY,
                }
            }
        }))
    }

    /// Rewrites a `vxpu-memory` limit, and the request, to the aligned slice size.
    fn admit_container(
        &self,
        container: &Container,
        slot: Slot<'_>,
        cref: ContainerRef,
        _config: &Config,
    ) -> Result<(bool, Vec<Mutation>), Invalid> {
        if !kit::in_limits(container, VXPU_RESOURCE) {
            return Ok((false, Vec::new()));
        }
        let mut out = Vec::new();
        if lookup(&container.limits, VXPU_MEMORY).is_some()
            && let Some(m) = kit::int_resource(container, VXPU_MEMORY, false, slot)?
        {
            let value = align(m).to_string();
            let item = ContainerLimit {
                container: cref,
                name: VXPU_MEMORY.to_string(),
                value,
            };
            out.push(Mutation::SetLimit(item.clone()));
            out.push(Mutation::SetRequest(item));
        }
        Ok((true, out))
    }

    fn owns(&self, card: &Card) -> bool {
        card.vendor == VXPU_VENDOR && contains_ignore_case(&card.info.model, VXPU_VENDOR)
    }

    fn fit(&self, cards: &[&Card], request: &Request, ctx: &FitContext<'_>) -> Fit {
        let pod = ctx.pod;
        let mutex = ctx.policy.is_mutex;
        let sorted = super::by_index(cards);
        let fits: Vec<bool> = sorted
            .iter()
            .map(|c| {
                fits_vxpu(c, request.memreq)
                    && (!mutex || c.used == 0)
                    && super::uuid_ok(pod, &c.info.id)
            })
            .collect();
        let indices: Vec<u32> = sorted.iter().map(|c| c.info.index).collect();
        if request.vendor == VXPU_VENDOR
            && let Some(chosen) = super::select(&indices, &fits, request.nums)
        {
            return Fit::Fits(
                chosen
                    .iter()
                    .filter_map(|i| sorted.iter().find(|c| c.info.index == *i))
                    .map(|c| ContainerDevice {
                        uuid: c.info.id.clone(),
                        vendor: VXPU_VENDOR.to_string(),
                        mem: request.memreq,
                        cores: request.coresreq,
                        index: c.info.index,
                        mig: None,
                    })
                    .collect(),
            );
        }
        let busy = cards
            .iter()
            .filter(|c| c.used > 0 && fits_vxpu(c, request.memreq))
            .count() as u32;
        if mutex && busy > 0 {
            let mut c = Counter::default();
            c.add_n(reason::EXCLUSIVE_DEVICE_ALLOCATE_CONFLICT, busy);
            return Fit::NoFit(c);
        }
        Fit::NoFit(super::shortfall(cards, pod))
    }

    fn annotations(&self, devices: &PodDevices) -> Pairs {
        let encoded = device::encode(devices);
        vec![
            (XPU_TO_ALLOCATE.to_string(), encoded.clone()),
            (XPU_ALLOCATED.to_string(), encoded),
        ]
    }

    fn allocated_key(&self) -> &'static str {
        XPU_ALLOCATED
    }

    fn decode_pod(&self, pod: &Pod) -> Result<Option<Placed>, Invalid> {
        kit::decode_pod(pod, XPU_ALLOCATED, VXPU_VENDOR)
    }
}
