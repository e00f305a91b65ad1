//! VastAI (spec hami-vendors.md §13): JSON registration; in die mode the dies of one physical
//! card (AIC) are preferred together and mutex keeps a busy card's idle dies free.

use std::collections::BTreeMap;

use crate::api::{Container, ContainerRef, Invalid, Mutation, Node, Pairs, Pod};
use crate::config::Config;
use crate::device::{Card, DeviceInfo, Placed, PodDevices};
use crate::vendor::biren::count_request;
use crate::vendor::common::{self, Resources};
use crate::vendor::{Fit, FitContext, Request, Slot, Vendor};

/// The common word (request and annotation type).
pub const VENDOR: &str = "Vastai";
pub const REGISTER: &str = "hami.io/node-va-register";
pub const HANDSHAKE: &str = "hami.io/node-handshake-va";
pub const DEVICES_TO_ALLOCATE: &str = "hami.io/Vastai-devices-to-allocate";
pub const DEVICES_ALLOCATED: &str = "hami.io/Vastai-devices-allocated";
pub const USE_UUID: &str = "vastaitech.com/use-gpuuuid";
pub const NOUSE_UUID: &str = "vastaitech.com/nouse-gpuuuid";

/// The VastAI backend.
pub struct Vastai;

/// A die's `custominfo`: `DeviceStrategy` and `AIC`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Die {
    pub die_mode: bool,
    pub aic: Option<String>,
}

/// `custom` keys under which `parse_node` keeps a die's facts.
const DIE_MODE: &str = "dieMode";
const AIC: &str = "aic";

/// A registered device's die facts from its `custominfo` (keys in any case).
fn die_of(custom: &serde_json::Map<String, serde_json::Value>) -> Die {
    let get = |k: &str| {
        custom
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| v)
    };
    Die {
        die_mode: get("DeviceStrategy").and_then(|v| v.as_str()) == Some("die"),
        aic: get("AIC")
            .map(|v| match v.as_str() {
                Some(s) => s.to_string(),
                None => v.to_string(),
            })
            .filter(|s| !s.is_empty()),
    }
}

/// Each VastAI card's die facts, by card id, as `parse_node` kept them (the registration is
/// parsed once per node change).
pub fn dies<'a>(cards: impl Iterator<Item = &'a Card>) -> BTreeMap<&'a str, Die> {
    cards
        .filter(|c| c.vendor == VENDOR)
        .map(|c| {
            let die = Die {
                die_mode: c.info.custom.contains_key(DIE_MODE),
                aic: c.info.custom.get(AIC).cloned(),
            };
            (c.info.id.as_str(), die)
        })
        .collect()
}

impl Vendor for Vastai {
    fn key(&self) -> &'static str {
        VENDOR
    }

    fn managed_resources(&self, config: &Config) -> Vec<String> {
        config.vastai.all()
    }

    /// Every card's cores are set to 100 (VA-01).
    fn parse_node(&self, node: &Node) -> Result<Option<Vec<DeviceInfo>>, Invalid> {
        Ok(common::parse_json_registration(node, REGISTER)?.map(|l| {
            l.into_iter()
                .map(|r| {
                    let die = die_of(&r.custom);
                    let mut info = DeviceInfo {
                        devcore: 100,
                        ..r.info
                    };
                    if die.die_mode {
                        info.custom.insert(DIE_MODE.into(), "true".into());
                    }
                    if let Some(aic) = die.aic {
                        info.custom.insert(AIC.into(), aic);
                    }
                    info
                })
                .collect()
        }))
    }

    fn liveness(&self, node: &Node, config: &Config) -> crate::vendor::Liveness {
        common::handshake_liveness(node, HANDSHAKE, config.vastai.count())
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
        count_request(VENDOR, config.vastai.count(), c, slot)
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
            Resources { container: c, slot }.in_limits(config.vastai.count()),
            Vec::new(),
        ))
    }

    fn owns(&self, card: &Card) -> bool {
        card.vendor == VENDOR
    }

    /// Die mode is read from the first candidate (A20). In die mode every fitting die is
    /// collected and the largest AIC groups are filled first.
    fn fit(&self, cards: &[&Card], request: &Request, ctx: &FitContext<'_>) -> Fit {
        let info = dies(cards.iter().copied());
        let die_mode = cards
            .first()
            .and_then(|c| info.get(c.info.id.as_str()))
            .is_some_and(|d| d.die_mode);
        let aic = |id: &str| info.get(id).and_then(|d| d.aic.clone());
        let busy: Vec<String> = if die_mode {
            cards
                .iter()
                .filter(|c| c.used > 0)
                .filter_map(|c| aic(&c.info.id))
                .collect()
        } else {
            Vec::new()
        };
        let on_busy_card = |c: &Card| aic(&c.info.id).is_some_and(|a| busy.contains(&a));
        let walk = common::slot_walk(
            cards,
            request,
            ctx,
            VENDOR,
            (USE_UUID, NOUSE_UUID),
            die_mode,
            &on_busy_card,
        );
        let nums = usize::try_from(request.nums).unwrap_or(0);
        if !die_mode || walk.picked.len() < nums {
            return walk.finish();
        }
        let picked: Vec<_> = walk.picked.into_iter().map(|(d, _)| d).collect();
        if picked.len() == nums || nums == 1 {
            return Fit::Fits(picked.into_iter().take(nums).collect());
        }
        Fit::Fits(common::fill_by_group(picked, |d| aic(&d.uuid), nums))
    }

    fn rank_is_use_only(&self) -> bool {
        false
    }

    /// Per container, the share of its dies on its largest AIC; 0 when a device is not a die
    /// with an AIC.
    fn topology_score(&self, _node: &Node, devices: &PodDevices, previous: &[Card]) -> f64 {
        let info = dies(previous.iter());
        let mut total = 0.0;
        for container in devices.iter().filter(|c| !c.is_empty()) {
            let group = |d: &crate::device::ContainerDevice| {
                info.get(d.uuid.as_str())
                    .filter(|x| x.die_mode)
                    .and_then(|x| x.aic.clone())
            };
            match common::largest_group_share(container, group) {
                Some(share) => total += share,
                None => return 0.0,
            }
        }
        total
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
