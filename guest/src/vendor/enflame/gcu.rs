//! Enflame whole cards (`GCU`, spec §4.1): cards from capacity, always exclusive.

use crate::api::{Container, ContainerRef, Invalid, Mutation, Node, Pairs, Pod};
use crate::config::Config;
use crate::device::{self, Card, ContainerDevice, DeviceInfo, Placed, PodDevices};
use crate::reason::{self, Counter};
use crate::vendor::kit;
use crate::vendor::{Fit, FitContext, Request, Slot, Vendor};

use super::{GCU_ALLOCATED, GCU_RESOURCE, GCU_TO_ALLOCATE, GCU_VENDOR};

/// The whole-card Enflame backend.
pub struct EnflameGcu;

impl Vendor for EnflameGcu {
    fn key(&self) -> &'static str {
        GCU_VENDOR
    }

    fn managed_resources(&self, _config: &Config) -> Vec<String> {
        vec![GCU_RESOURCE.to_string()]
    }

    /// `capacity[enflame.com/gcu]` cards `<node>-GCU-<i>` (count 1, memory and cores 100).
    fn parse_node(&self, node: &Node) -> Result<Option<Vec<DeviceInfo>>, Invalid> {
        let n = kit::capacity(node, GCU_RESOURCE).min(i64::from(u16::MAX));
        if n == 0 {
            return Ok(None);
        }
        Ok(Some(
            (0..n)
                .map(|i| DeviceInfo {
                    id: format!("{}-GCU-{i}", node.name),
                    index: i as u32,
                    count: 1,
                    devmem: 100,
                    devcore: 100,
                    model: GCU_VENDOR.to_string(),
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
        let Some(n) = kit::int_resource(container, GCU_RESOURCE, true, slot)? else {
            return Ok(None);
        };
        if n == 0 {
            return Ok(None);
        }
        if !(1..=i128::from(i32::MAX)).contains(&n) {
            return Err(kit::bad_resource(
                slot,
                GCU_RESOURCE,
                n,
                "must be a card count between 1 and 2147483647",
            ));
        }
        Ok(Some(Request {
            vendor: GCU_VENDOR,
            nums: n as i64,
            memreq: 100,
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
        Ok((kit::in_limits(container, GCU_RESOURCE), Vec::new()))
    }

    fn owns(&self, card: &Card) -> bool {
        card.vendor == GCU_VENDOR
    }

    /// Backward walk: unhealthy or cordoned, type, busy (cards are exclusive); else taken whole.
    fn fit(&self, cards: &[&Card], request: &Request, ctx: &FitContext<'_>) -> Fit {
        let mut counter = Counter::default();
        let mut picked = Vec::new();
        for card in cards.iter().rev() {
            let failure = if let Some(r) = kit::unusable(card, reason::CARD_NOT_HEALTH) {
                Some(r)
            } else if request.vendor != GCU_VENDOR {
                Some(reason::CARD_TYPE_MISMATCH)
            } else if card.used > 0 {
                Some(reason::EXCLUSIVE_DEVICE_ALLOCATE_CONFLICT)
            } else {
                None
            };
            if let Some(r) = failure {
                kit::reject(&mut counter, ctx, GCU_VENDOR, card, r, &|| r.to_string());
                continue;
            }
            picked.push(ContainerDevice {
                uuid: card.info.id.clone(),
                vendor: GCU_VENDOR.to_string(),
                mem: 100,
                cores: 100,
                index: card.info.index,
                mig: None,
            });
            if picked.len() as i64 >= request.nums {
                return Fit::Fits(picked);
            }
        }
        counter.set(
            reason::ALLOCATED_CARDS_INSUFFICIENT_REQUEST,
            picked.len() as u32,
        );
        Fit::NoFit(counter)
    }

    fn annotations(&self, devices: &PodDevices) -> Pairs {
        let encoded = device::encode(devices);
        vec![
            (GCU_TO_ALLOCATE.to_string(), encoded.clone()),
            (GCU_ALLOCATED.to_string(), encoded),
        ]
    }

    fn allocated_key(&self) -> &'static str {
        GCU_ALLOCATED
    }

    fn decode_pod(&self, pod: &Pod) -> Result<Option<Placed>, Invalid> {
        kit::decode_pod(pod, GCU_ALLOCATED, GCU_VENDOR)
    }
}
