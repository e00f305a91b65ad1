//! Kunlun whole cards (`kunlun`, spec §3.2): cards from node capacity, only completely free
//! cards, the wing topology, and the "bubble" node score.

use crate::api::{Container, ContainerRef, Invalid, Mutation, Node, Pairs, Pod};
use crate::config::Config;
use crate::device::{self, Card, ContainerDevice, DeviceInfo, Placed, PodDevices};
use crate::policy::contains_ignore_case;
use crate::vendor::kit;
use crate::vendor::{Fit, FitContext, Request, ScoreContext, Slot, Vendor};

use super::{DEVICE_IDX, KUNLUN_ALLOCATED, WHOLE_VENDOR, XPU_RESOURCE};

/// The whole-card Kunlun backend.
pub struct KunlunWhole;

impl Vendor for KunlunWhole {
    fn key(&self) -> &'static str {
        WHOLE_VENDOR
    }

    fn managed_resources(&self, _config: &Config) -> Vec<String> {
        vec![XPU_RESOURCE.to_string()]
    }

    /// `capacity[kunlunxin.com/xpu]` cards `<node>-kunlun-<i>`: 100 slots, 98304 MiB, 100 cores,
    /// NUMA 0 for the first half and 1 for the rest.
    fn parse_node(&self, node: &Node) -> Result<Option<Vec<DeviceInfo>>, Invalid> {
        let n = kit::capacity(node, XPU_RESOURCE).min(i64::from(u16::MAX));
        if n == 0 {
            return Ok(None);
        }
        Ok(Some(
            (0..n)
                .map(|i| DeviceInfo {
                    id: format!("{}-kunlun-{i}", node.name),
                    index: i as u32,
                    count: 100,
                    devmem: super::MAX_MEMORY,
                    devcore: 100,
                    model: WHOLE_VENDOR.to_string(),
                    numa: i64::from(i >= n / 2),
                    health: true,
                    ..DeviceInfo::default()
                })
                .collect(),
        ))
    }

    fn liveness(&self, _node: &Node, _config: &Config) -> crate::vendor::Liveness {
        crate::vendor::Liveness::Live
    }

    fn request(
        &self,
        container: &Container,
        slot: Slot<'_>,
        _config: &Config,
    ) -> Result<Option<Request>, Invalid> {
        let Some(n) = kit::int_resource(container, XPU_RESOURCE, true, slot)? else {
            return Ok(None);
        };
        if n == 0 {
            return Ok(None);
        }
        if !(1..=i128::from(i32::MAX)).contains(&n) {
            return Err(kit::bad_resource(
                slot,
                XPU_RESOURCE,
                n,
                "must be a card count between 1 and 2147483647",
            ));
        }
        Ok(Some(Request {
            vendor: WHOLE_VENDOR,
            nums: n as i64,
            memreq: 0,
            mem_pct: 100,
            coresreq: 0,
        }))
    }

    fn admit_container(
        &self,
        container: &Container,
        _slot: Slot<'_>,
        _cref: ContainerRef,
        _config: &Config,
    ) -> Result<(bool, Vec<Mutation>), Invalid> {
        Ok((kit::in_limits(container, XPU_RESOURCE), Vec::new()))
    }

    fn owns(&self, card: &Card) -> bool {
        card.vendor == WHOLE_VENDOR
    }

    /// Completely free, healthy, uncordoned cards allowed by both UUID pairs, chosen by the
    /// wing topology; each chosen card is booked whole.
    fn fit(&self, cards: &[&Card], request: &Request, ctx: &FitContext<'_>) -> Fit {
        let sorted = super::by_index(cards);
        let fits: Vec<bool> = sorted
            .iter()
            .map(|c| {
                c.used == 0 && kit::unusable(c, "").is_none() && super::uuid_ok(ctx.pod, &c.info.id)
            })
            .collect();
        let indices: Vec<u32> = sorted.iter().map(|c| c.info.index).collect();
        match super::select(&indices, &fits, request.nums) {
            Some(chosen) if request.vendor == WHOLE_VENDOR => Fit::Fits(
                chosen
                    .iter()
                    .filter_map(|i| sorted.iter().find(|c| c.info.index == *i))
                    .map(|c| ContainerDevice {
                        uuid: c.info.id.clone(),
                        vendor: WHOLE_VENDOR.to_string(),
                        mem: c.info.devmem,
                        cores: c.info.devcore,
                        index: c.info.index,
                        mig: None,
                    })
                    .collect(),
            ),
            _ => Fit::NoFit(super::shortfall(cards, ctx.pod)),
        }
    }

    /// Only `Used` grows within a pass (ambiguity A22 kept; the predicate reads only `Used`).
    fn add_usage(&self, card: &mut Card, _device: &ContainerDevice) {
        card.used += 1;
    }

    fn rank_is_use_only(&self) -> bool {
        false
    }

    /// The bubble score of the pod's own cards against the busy ones (A3 kept); 0 when the
    /// node has any card that is not a whole Kunlun card (A4 kept).
    fn score_node(&self, ctx: &ScoreContext<'_>) -> f64 {
        if ctx
            .previous
            .iter()
            .any(|c| !contains_ignore_case(&c.info.model, WHOLE_VENDOR))
        {
            return 0.0;
        }
        let prev: Vec<u32> = ctx
            .previous
            .iter()
            .filter(|c| c.used > 0)
            .map(|c| c.info.index)
            .collect();
        let mut cur: Vec<u32> = ctx.devices.iter().flatten().map(|d| d.index).collect();
        cur.sort_unstable();
        cur.dedup();
        super::bubble_score(&prev, &cur) as f64
    }

    fn annotations(&self, devices: &PodDevices) -> Pairs {
        let mut out = vec![(KUNLUN_ALLOCATED.to_string(), device::encode(devices))];
        if let Some(last) = devices.iter().rev().find(|c| !c.is_empty()) {
            let idx: Vec<String> = last.iter().map(|d| d.index.to_string()).collect();
            out.push((DEVICE_IDX.to_string(), idx.join(",")));
        }
        out
    }

    fn allocated_key(&self) -> &'static str {
        KUNLUN_ALLOCATED
    }

    fn decode_pod(&self, pod: &Pod) -> Result<Option<Placed>, Invalid> {
        kit::decode_pod(pod, KUNLUN_ALLOCATED, WHOLE_VENDOR)
    }
}
