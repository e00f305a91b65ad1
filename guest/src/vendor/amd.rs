//! AMD (spec hami-vendors.md §12): JSON registration with the card's compute units as cores;
//! a request's cores are a percentage of the CUs, booked as a CU count.

use crate::api::{Container, ContainerRef, Invalid, Mutation, Node, Pairs, Pod};
use crate::config::Config;
use crate::device::{self, Card, ContainerDevice, DeviceInfo, Placed, PodDevices};
use crate::reason::{self, Counter};
use crate::vendor::common::{self, Resources};
use crate::vendor::{DecisionContext, Fit, FitContext, Request, Slot, Vendor};

/// The common word (request type; the annotations carry the card's product name).
pub const VENDOR: &str = "AMD";
pub const REGISTER: &str = "hami.io/node-amd-register";
pub const DEVICES_TO_ALLOCATE: &str = "hami.io/amd-devices-to-allocate";
pub const DEVICES_ALLOCATED: &str = "hami.io/amd-devices-allocated";
pub const USE_UUID: &str = "amd.com/use-gpu-uuid";
pub const NOUSE_UUID: &str = "amd.com/nouse-gpu-uuid";
pub const USE_TYPE: &str = "amd.com/use-gputype";
pub const NOUSE_TYPE: &str = "amd.com/nouse-gputype";

/// The AMD backend.
pub struct Amd;

/// The CUs a request of `pct` percent (or the whole memory) takes of a card: MI300X's 304 CUs
/// at 25 % give 76, at 33 % 100, at 67 % 203; at least 1, at most all.
pub fn compute_units(total_cu: i64, pct: i64, memreq: i64, devmem: i64) -> i64 {
    if pct > 0 {
        (total_cu * pct / 100).clamp(1, total_cu.max(1))
    } else if devmem > 0 && memreq >= devmem {
        total_cu
    } else {
        0
    }
}

impl Vendor for Amd {
    fn key(&self) -> &'static str {
        VENDOR
    }

    fn managed_resources(&self, config: &Config) -> Vec<String> {
        config.amd.all()
    }

    fn parse_node(&self, node: &Node) -> Result<Option<Vec<DeviceInfo>>, Invalid> {
        Ok(common::parse_json_registration(node, REGISTER)?
            .map(|l| l.into_iter().map(|r| r.info).collect()))
    }

    /// The node is live while it reports capacity of the count resource.
    fn liveness(&self, node: &Node, config: &Config) -> crate::vendor::Liveness {
        if common::node_quantity(&node.capacity, config.amd.count()) > 0 {
            crate::vendor::Liveness::Live
        } else {
            crate::vendor::Liveness::Dead
        }
    }

    /// Limits only; cores are a percentage 1..=100, default 100.
    fn request(
        &self,
        c: &Container,
        slot: Slot<'_>,
        config: &Config,
    ) -> Result<Option<Request>, Invalid> {
        let names = &config.amd;
        let r = Resources { container: c, slot };
        let nums = r.integer(names.count(), 0, i64::from(i32::MAX), true)?;
        let mem = r.integer(names.memory(), 0, i64::from(i32::MAX), true)?;
        let core = r.integer(names.core(), i64::MIN, i64::MAX, true)?;
        if core.is_some_and(|p| !(1..=100).contains(&p)) {
            return Err(r.invalid(
                names.core(),
                "amd.com/gpucores must be an integer percentage between 1 and 100",
            ));
        }
        let Some(nums) = nums.filter(|n| *n > 0) else {
            return Ok(None);
        };
        Ok(Some(Request {
            vendor: VENDOR,
            nums,
            memreq: mem.unwrap_or(0),
            mem_pct: 0,
            coresreq: core.unwrap_or(100),
        }))
    }

    /// "Found" when the limits name the count, memory or core resource (AM-10).
    fn admit_container(
        &self,
        c: &Container,
        slot: Slot<'_>,
        _cref: ContainerRef,
        config: &Config,
    ) -> Result<(bool, Vec<Mutation>), Invalid> {
        self.request(c, slot, config)?;
        let r = Resources { container: c, slot };
        let names = &config.amd;
        let found =
            r.in_limits(names.count()) || r.in_limits(names.memory()) || r.in_limits(names.core());
        Ok((found, Vec::new()))
    }

    fn owns(&self, card: &Card) -> bool {
        card.vendor == VENDOR
    }

    fn fit(&self, cards: &[&Card], request: &Request, ctx: &FitContext<'_>) -> Fit {
        let mut counter = Counter::default();
        let mut picked = Vec::new();
        let mut nums = request.nums;
        for &card in cards.iter().rev() {
            let d = &card.info;
            if common::unusable(ctx, VENDOR, card, &mut counter) {
                continue;
            }
            let mut fail = |r: &'static str, detail: &dyn Fn() -> String| {
                counter.add(r);
                common::note(ctx, VENDOR, card, r, detail);
            };
            if !request.vendor.eq_ignore_ascii_case(VENDOR)
                || !common::card_type_allowed(ctx.pod, &d.model, USE_TYPE, NOUSE_TYPE)
            {
                fail(reason::CARD_TYPE_MISMATCH, &|| {
                    format!("model {:?} excluded by the pod's type selectors", d.model)
                });
                continue;
            }
            if !common::uuid_allowed(ctx.pod, &d.id, USE_UUID, NOUSE_UUID) {
                fail(reason::CARD_UUID_MISMATCH, &|| {
                    "excluded by amd.com/use-gpu-uuid / nouse-gpu-uuid".into()
                });
                continue;
            }
            if d.count <= card.used {
                fail(reason::CARD_TIME_SLICING_EXHAUSTED, &|| {
                    format!("all {} slots in use", d.count)
                });
                continue;
            }
            if ctx.policy.is_mutex && card.used > 0 {
                fail(reason::EXCLUSIVE_DEVICE_ALLOCATE_CONFLICT, &|| {
                    format!("mutex policy, {} tasks on the card", card.used)
                });
                continue;
            }
            let memreq = if request.memreq <= 0 && d.devmem > 0 {
                d.devmem
            } else {
                request.memreq
            };
            let free_mem = d.devmem - card.used_mem;
            if free_mem < memreq {
                fail(reason::CARD_INSUFFICIENT_MEMORY, &|| {
                    format!("asked {memreq} MiB, free {free_mem} of {} MiB", d.devmem)
                });
                continue;
            }
            if request.coresreq > 0 && d.devcore <= 0 {
                fail(reason::CARD_INSUFFICIENT_CORE, &|| {
                    "the card registers no compute units".into()
                });
                continue;
            }
            let cu = compute_units(d.devcore, request.coresreq, memreq, d.devmem);
            let free_cu = d.devcore - card.used_cores;
            if free_cu < cu {
                fail(reason::CARD_INSUFFICIENT_CORE, &|| {
                    format!("asked {cu} CUs, free {free_cu} of {}", d.devcore)
                });
                continue;
            }
            common::note(ctx, VENDOR, card, "", &|| {
                format!("fits: {memreq} MiB and {cu} CUs")
            });
            picked.push(ContainerDevice {
                uuid: d.id.clone(),
                vendor: VENDOR.to_string(),
                mem: memreq,
                cores: cu,
                index: d.index,
                mig: None,
            });
            nums -= 1;
            if nums <= 0 {
                return Fit::Fits(picked);
            }
        }
        if !picked.is_empty() {
            counter.set(
                reason::ALLOCATED_CARDS_INSUFFICIENT_REQUEST,
                picked.len() as u32,
            );
        }
        Fit::NoFit(counter)
    }

    fn annotations(&self, devices: &PodDevices) -> Pairs {
        common::allocation_pairs(DEVICES_TO_ALLOCATE, DEVICES_ALLOCATED, devices)
    }

    /// The allocation carries each card's registered product name as its type (AM-03).
    fn decision_annotations(&self, devices: &PodDevices, ctx: &DecisionContext<'_>) -> Pairs {
        let typed: PodDevices = devices
            .iter()
            .map(|c| {
                c.iter()
                    .map(|d| {
                        let model = ctx
                            .cards
                            .iter()
                            .find(|card| card.vendor == VENDOR && card.info.id == d.uuid)
                            .map(|card| card.info.model.clone())
                            .filter(|m| !m.is_empty())
                            .unwrap_or_else(|| VENDOR.to_string());
                        ContainerDevice {
                            vendor: model,
                            ..d.clone()
                        }
                    })
                    .collect()
            })
            .collect();
        let encoded = device::encode(&typed);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compute_units_from_percentages_am02_am04_and_the_design_doc() {
        // (total CUs, percent, memreq, devmem, CUs)
        let cases = [
            (304, 25, 0, 0, 76),
            (304, 33, 0, 0, 100),
            (304, 67, 0, 0, 203),
            (64, 1, 0, 0, 1),
            (64, 101, 0, 0, 64),
            (10, 1, 0, 0, 1),
            (100, 50, 500, 1000, 50),
            (304, 0, 1000, 1000, 304),
            (304, 0, 500, 1000, 0),
        ];
        for (total, pct, mem, devmem, want) in cases {
            assert_eq!(
                compute_units(total, pct, mem, devmem),
                want,
                "{pct}% of {total} CUs, {mem}/{devmem} MiB"
            );
        }
    }
}
