//! `Metax-GPU` (spec §2.1): whole cards discovered from node capacity, G-Fit with every
//! container of a pod on one card, and a node score from the topology annotations.

use std::collections::BTreeMap;

use crate::api::{Container, ContainerRef, Invalid, Mutation, Node, Pairs, Pod};
use crate::config::Config;
use crate::device::{self, Card, DeviceInfo, Placed, PodDevices};
use crate::policy::NodePolicy;
use crate::vendor::kit::{self, GFit};
use crate::vendor::{Fit, FitContext, Request, ScoreContext, Slot, Vendor};

use super::{
    GPU_ALLOCATED, GPU_RESOURCE, GPU_TO_ALLOCATE, GPU_VENDOR, TOPOLOGY_LOSSES, TOPOLOGY_SCORES,
};

/// The whole-card MetaX backend.
pub struct MetaxGpu;

impl Vendor for MetaxGpu {
    fn key(&self) -> &'static str {
        GPU_VENDOR
    }

    fn managed_resources(&self, _config: &Config) -> Vec<String> {
        vec![GPU_RESOURCE.to_string()]
    }

    /// `capacity[metax-tech.com/gpu]` cards `<node>-metax-<i>`, 64 GiB, 100 cores, healthy.
    fn parse_node(&self, node: &Node) -> Result<Option<Vec<DeviceInfo>>, Invalid> {
        let n = kit::capacity(node, GPU_RESOURCE);
        if n == 0 {
            return Ok(None);
        }
        Ok(Some(
            (0..n.min(i64::from(u16::MAX)))
                .map(|i| DeviceInfo {
                    id: format!("{}-metax-{i}", node.name),
                    index: i as u32,
                    count: 1,
                    devmem: 65536,
                    devcore: 100,
                    model: GPU_VENDOR.to_string(),
                    health: true,
                    ..DeviceInfo::default()
                })
                .collect(),
        ))
    }

    fn liveness(&self, _node: &Node, _config: &Config) -> crate::vendor::Liveness {
        crate::vendor::Liveness::Live
    }

    /// `n` from limits, else requests: whole, exclusive cards.
    fn request(
        &self,
        container: &Container,
        slot: Slot<'_>,
        _config: &Config,
    ) -> Result<Option<Request>, Invalid> {
        let Some(n) = kit::int_resource(container, GPU_RESOURCE, true, slot)? else {
            return Ok(None);
        };
        if n == 0 {
            return Ok(None);
        }
        if !(1..=i128::from(i32::MAX)).contains(&n) {
            return Err(kit::bad_resource(
                slot,
                GPU_RESOURCE,
                n,
                "must be a card count between 1 and 2147483647",
            ));
        }
        Ok(Some(Request {
            vendor: GPU_VENDOR,
            nums: n as i64,
            memreq: 0,
            mem_pct: 100,
            coresreq: 100,
        }))
    }

    fn admit_container(
        &self,
        container: &Container,
        _slot: Slot<'_>,
        _cref: ContainerRef,
        _config: &Config,
    ) -> Result<(bool, Vec<Mutation>), Invalid> {
        Ok((kit::in_limits(container, GPU_RESOURCE), Vec::new()))
    }

    fn owns(&self, card: &Card) -> bool {
        card.vendor == GPU_VENDOR
    }

    /// G-Fit without UUID lists, cores clamped to 100, and the custom rule: every card given
    /// to the pod's earlier containers is this card (ambiguity A11 kept).
    fn fit(&self, cards: &[&Card], request: &Request, ctx: &FitContext<'_>) -> Fit {
        let same_card = |card: &Card| {
            ctx.earlier
                .iter()
                .filter(|(_, d)| d.vendor == GPU_VENDOR)
                .all(|(_, d)| d.uuid == card.info.id)
        };
        kit::gfit(
            cards,
            request,
            ctx,
            &GFit {
                vendor: GPU_VENDOR,
                uuid_keys: None,
                clamp_cores: true,
                custom: Some(&same_card),
            },
        )
    }

    fn rank_is_use_only(&self) -> bool {
        false
    }

    /// `2000 − losses[n]` under binpack, `2000 − scores[n]` under spread, where `n` is the
    /// number of cards the pod gets; 0 without the node annotation. A value missing or not
    /// parsable counts 0 (ambiguity A21 kept): `{"1":100,"2":200}` with two cards → 1800.
    fn score_node(&self, ctx: &ScoreContext<'_>) -> f64 {
        let key = match ctx.policy {
            NodePolicy::Binpack => TOPOLOGY_LOSSES,
            NodePolicy::Spread => TOPOLOGY_SCORES,
        };
        let Some(text) = ctx.node.annotation(key) else {
            return 0.0;
        };
        let n: usize = ctx.devices.iter().map(Vec::len).sum();
        let table: BTreeMap<String, i64> = serde_json::from_str(text).unwrap_or_default();
        (2000 - table.get(&n.to_string()).copied().unwrap_or(0)) as f64
    }

    fn annotations(&self, devices: &PodDevices) -> Pairs {
        let encoded = device::encode(devices);
        vec![
            (GPU_TO_ALLOCATE.to_string(), encoded.clone()),
            (GPU_ALLOCATED.to_string(), encoded),
        ]
    }

    fn allocated_key(&self) -> &'static str {
        GPU_ALLOCATED
    }

    fn decode_pod(&self, pod: &Pod) -> Result<Option<Placed>, Invalid> {
        kit::decode_pod(pod, GPU_ALLOCATED, GPU_VENDOR)
    }
}
