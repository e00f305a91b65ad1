//! AWS Neuron (spec hami-vendors.md §5): Neuron devices and NeuronCores discovered from node
//! capacity; whole devices placed as contiguous windows by instance family, single devices at
//! core granularity with core masks.

use crate::api::{Container, ContainerRef, Invalid, Mutation, Node, Pairs, Pod, lookup};
use crate::config::Config;
use crate::device::{self, Card, ContainerDevice, DeviceInfo, Placed, PodDevices};
use crate::quantity;
use crate::reason::{self, Counter};
use crate::vendor::kit;
use crate::vendor::{DecisionContext, Fit, FitContext, Request, Slot, Vendor};

pub const VENDOR: &str = "AWSNeuron";
pub const NEURON: &str = "aws.amazon.com/neuron";
pub const NEURON_CORE: &str = "aws.amazon.com/neuroncore";
pub const INSTANCE_TYPE: &str = "node.kubernetes.io/instance-type";
pub const ALLOCATED: &str = "hami.io/aws-neuron-devices-allocated";
pub const NEURON_IDS: &str = "AWS_NEURON_IDS";
pub const RESOURCE_TYPE: &str = "NEURON_RESOURCE_TYPE";
pub const ALLOC_TIME: &str = "NEURON_ALLOC_TIME";
pub const ALLOCATED_FLAG: &str = "NEURON_ALLOCATED";
pub const PREDICATE_NODE: &str = "aws.amazon.com/predicate-node";
pub const USE_UUID: &str = "aws.amazon.com/use-neuron-uuid";
pub const NOUSE_UUID: &str = "aws.amazon.com/nouse-neuron-uuid";

/// Cores a whole-device (`neuron`) request asks: every core of the device it lands on.
pub const WHOLE_DEVICE: i64 = -1;

/// Addressable cores per device when splitting a `neuroncore` ask (HAMi's `min(c, 2)`, 2 before
/// any node is seen; hamr uses 2, see DEVIATIONS vendors-a, A7).
pub const CORES_PER_DEVICE: i128 = 2;

/// The AWS Neuron backend.
pub struct AwsNeuron;

fn popcount(mask: i64) -> i64 {
    i64::from(mask.max(0).count_ones())
}

/// `splitCoreRequest`: `k` cores as (devices, cores per device): (2,1)→(1,1), (2,6)→(3,2).
pub fn split_cores(k: i128) -> Result<(i64, i64), String> {
    if !(1..=2 * i128::from(i32::MAX)).contains(&k) {
        return Err(format!(
            "{NEURON_CORE} must be between 1 and 4294967294, got {k}"
        ));
    }
    if k <= CORES_PER_DEVICE {
        return Ok((1, k as i64));
    }
    if k % CORES_PER_DEVICE != 0 {
        return Err(format!(
            "{NEURON_CORE} must be 1 or a multiple of {CORES_PER_DEVICE}, got {k}"
        ));
    }
    Ok(((k / CORES_PER_DEVICE) as i64, CORES_PER_DEVICE as i64))
}

/// A quantity from limits, else requests.
fn either<'a>(c: &'a Container, name: &str) -> Option<&'a str> {
    lookup(&c.limits, name).or_else(|| lookup(&c.requests, name))
}

/// Whole devices: windows of `nums` consecutive positions (any start on Inferentia, aligned
/// starts of 4, 8 or 16 elsewhere), all free and usable. Returns the window's start.
pub fn window(free: &[bool], nums: usize, inferentia: bool) -> Option<usize> {
    if nums == 0 || nums > free.len() {
        return None;
    }
    let step = if inferentia {
        1
    } else if matches!(nums, 4 | 8 | 16) {
        nums
    } else {
        return None;
    };
    (0..=free.len() - nums)
        .step_by(step)
        .find(|&s| free[s..s + nums].iter().all(|f| *f))
}

impl Vendor for AwsNeuron {
    fn key(&self) -> &'static str {
        VENDOR
    }

    fn managed_resources(&self, _config: &Config) -> Vec<String> {
        vec![NEURON.to_string(), NEURON_CORE.to_string()]
    }

    /// `capacity[neuron]` devices `<node>-AWSNeuron-<i>` with `c = neuroncore / neuron` cores
    /// each (count c, core mask 2^c − 1), tagged with the instance type.
    fn parse_node(&self, node: &Node) -> Result<Option<Vec<DeviceInfo>>, Invalid> {
        let n = kit::capacity(node, NEURON).min(i64::from(u16::MAX));
        if n == 0 {
            return Ok(None);
        }
        let c = (kit::capacity(node, NEURON_CORE) / n).min(30);
        let family = lookup(&node.labels, INSTANCE_TYPE).unwrap_or_default();
        Ok(Some(
            (0..n)
                .map(|i| {
                    let mut info = DeviceInfo {
                        id: format!("{}-{VENDOR}-{i}", node.name),
                        index: i as u32,
                        count: c,
                        devmem: 0,
                        devcore: (1i64 << c) - 1,
                        model: VENDOR.to_string(),
                        health: true,
                        ..DeviceInfo::default()
                    };
                    info.custom.insert("awsnodetype".into(), family.to_string());
                    info
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
        let parse = |name: &str| -> Result<Option<i128>, Invalid> {
            let Some(v) = either(container, name) else {
                return Ok(None);
            };
            quantity::parse_integer(v).map(Some).map_err(|e| {
                Invalid::new(
                    slot.object,
                    slot.field(&format!("resources.limits[{name}]")),
                    v,
                    e.to_string(),
                )
            })
        };
        if let Some(n) = parse(NEURON)? {
            if !(1..=i128::from(i32::MAX)).contains(&n) {
                return Err(kit::bad_resource(
                    slot,
                    NEURON,
                    n,
                    "must be a device count between 1 and 2147483647",
                ));
            }
            return Ok(Some(Request {
                vendor: VENDOR,
                nums: n as i64,
                memreq: 0,
                mem_pct: 101,
                coresreq: WHOLE_DEVICE,
            }));
        }
        let Some(k) = parse(NEURON_CORE)? else {
            return Ok(None);
        };
        let (nums, cores) =
            split_cores(k).map_err(|m| kit::bad_resource(slot, NEURON_CORE, k, &m))?;
        Ok(Some(Request {
            vendor: VENDOR,
            nums,
            memreq: 0,
            mem_pct: 101,
            coresreq: cores,
        }))
    }

    /// Found when either resource is asked; the request rules are checked here too.
    fn admit_container(
        &self,
        container: &Container,
        slot: Slot<'_>,
        _cref: ContainerRef,
        config: &Config,
    ) -> Result<(bool, Vec<Mutation>), Invalid> {
        let asked = either(container, NEURON).is_some() || either(container, NEURON_CORE).is_some();
        if asked {
            self.request(container, slot, config)?;
        }
        Ok((asked, Vec::new()))
    }

    fn owns(&self, card: &Card) -> bool {
        card.vendor == VENDOR
    }

    fn fit(&self, cards: &[&Card], request: &Request, ctx: &FitContext<'_>) -> Fit {
        if request.nums > 1 {
            return fit_window(cards, request);
        }
        let mut counter = Counter::default();
        for card in cards.iter().rev() {
            let d = &card.info;
            let free = popcount(d.devcore) - popcount(card.used_cores);
            let need = if request.coresreq == WHOLE_DEVICE {
                popcount(d.devcore)
            } else {
                request.coresreq
            };
            let failure = if let Some(r) = kit::unusable(card, reason::CARD_NOT_HEALTH) {
                Some(r)
            } else if request.vendor != VENDOR {
                Some(reason::CARD_TYPE_MISMATCH)
            } else if !kit::uuid_ok(ctx.pod, &d.id, USE_UUID, NOUSE_UUID) {
                Some(reason::CARD_UUID_MISMATCH)
            } else if d.count <= card.used {
                Some(reason::CARD_TIME_SLICING_EXHAUSTED)
            } else if ctx.policy.is_mutex && card.used > 0 {
                Some(reason::EXCLUSIVE_DEVICE_ALLOCATE_CONFLICT)
            } else if free < need {
                Some(reason::CARD_INSUFFICIENT_CORE)
            } else {
                None
            };
            if let Some(r) = failure {
                kit::reject(&mut counter, ctx, VENDOR, card, r, &|| {
                    format!("{free} cores free, {need} asked")
                });
                continue;
            }
            let mask = match (card.used_cores, need) {
                (_, _) if request.coresreq == WHOLE_DEVICE => d.devcore,
                (0, 2) => 3,
                (0, _) => 1,
                (current, _) => 3 - current,
            };
            return Fit::Fits(vec![ContainerDevice {
                uuid: d.id.clone(),
                vendor: VENDOR.to_string(),
                mem: 0,
                cores: mask,
                index: d.index,
                mig: None,
            }]);
        }
        Fit::NoFit(counter)
    }

    fn annotations(&self, devices: &PodDevices) -> Pairs {
        vec![(ALLOCATED.to_string(), device::encode(devices))]
    }

    /// The ids the device plugin reads: device indices for `neuron` containers, core indices
    /// (`c × Idx` and `c × Idx + 1` by mask bit) for `neuroncore` ones, accumulated over the
    /// containers (ambiguity A8 kept).
    fn decision_annotations(&self, devices: &PodDevices, ctx: &DecisionContext<'_>) -> Pairs {
        let mut out = self.annotations(devices);
        let containers: Vec<&Container> = ctx.pod.all_containers().collect();
        let mut ids: Vec<String> = Vec::new();
        let mut core_type = false;
        for (i, list) in devices.iter().enumerate() {
            if list.is_empty() {
                continue;
            }
            let whole = containers.get(i).is_some_and(|c| {
                lookup(&c.limits, NEURON)
                    .and_then(|v| quantity::parse_integer(v).ok())
                    .is_some_and(|n| n > 0)
            });
            for d in list {
                if whole {
                    ids.push(d.index.to_string());
                    continue;
                }
                core_type = true;
                let c = ctx
                    .cards
                    .iter()
                    .find(|card| card.info.id == d.uuid)
                    .map_or(2, |card| card.info.count);
                let base = c * i64::from(d.index);
                if d.cores & 1 != 0 {
                    ids.push(base.to_string());
                }
                if d.cores & 2 != 0 {
                    ids.push((base + 1).to_string());
                }
            }
        }
        if core_type {
            out.push((RESOURCE_TYPE.to_string(), NEURON_CORE.to_string()));
        }
        out.push((NEURON_IDS.to_string(), ids.join(",")));
        out.push((
            ALLOC_TIME.to_string(),
            (i128::from(ctx.now) * 1_000_000_000).to_string(),
        ));
        out.push((ALLOCATED_FLAG.to_string(), "false".to_string()));
        out.push((PREDICATE_NODE.to_string(), ctx.node.to_string()));
        out
    }

    fn allocated_key(&self) -> &'static str {
        ALLOCATED
    }

    fn decode_pod(&self, pod: &Pod) -> Result<Option<Placed>, Invalid> {
        kit::decode_pod(pod, ALLOCATED, VENDOR)
    }
}

/// Whole devices, Nums > 1: a contiguous window over the devices sorted by index (A1); the UUID,
/// mutex and type filters do not apply (A18). Failure: unhealthy and cordoned devices by their
/// reasons (hamr) and one `NumaNotFit`.
fn fit_window(cards: &[&Card], request: &Request) -> Fit {
    let sorted = crate::vendor::kunlun::by_index(cards);
    let family = sorted
        .first()
        .and_then(|c| c.info.custom.get("awsnodetype"))
        .filter(|f| !f.is_empty());
    let free: Vec<bool> = sorted
        .iter()
        .map(|c| c.used == 0 && kit::unusable(c, "").is_none())
        .collect();
    let nums = request.nums as usize;
    let start = family.and_then(|f| window(&free, nums, f.contains("inf") || f.contains("Inf")));
    match start {
        Some(s) => Fit::Fits(
            (s..s + nums)
                .filter_map(|p| sorted.iter().find(|c| c.info.index as usize == p))
                .map(|c| ContainerDevice {
                    uuid: c.info.id.clone(),
                    vendor: VENDOR.to_string(),
                    mem: c.info.devmem,
                    cores: c.info.devcore,
                    index: c.info.index,
                    mig: None,
                })
                .collect(),
        ),
        None => {
            let mut c = Counter::default();
            for card in cards {
                if let Some(r) = kit::unusable(card, reason::CARD_NOT_HEALTH) {
                    c.add(r);
                }
            }
            c.add(reason::NUMA_NOT_FIT);
            Fit::NoFit(c)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_core_requests_aw_02_03() {
        assert_eq!(split_cores(1), Ok((1, 1)));
        assert_eq!(split_cores(2), Ok((1, 2)));
        assert_eq!(split_cores(6), Ok((3, 2)));
        assert_eq!(split_cores(4), Ok((2, 2)));
        assert_eq!(
            split_cores(3),
            Err("aws.amazon.com/neuroncore must be 1 or a multiple of 2, got 3".into())
        );
        assert!(split_cores(0).is_err() && split_cores(-1).is_err());
    }

    #[test]
    fn popcount_aw_04() {
        assert_eq!([3, 2, 1, 0].map(popcount), [2, 1, 1, 0]);
    }

    #[test]
    fn windows_by_instance_family() {
        let mut trn = vec![true; 16];
        trn[7] = false;
        assert_eq!(window(&trn, 8, false), Some(8), "trn: 7 used -> [8..15]");
        trn[13] = false;
        assert_eq!(window(&trn, 8, false), None, "trn: 7 and 13 used");
        let mut inf = vec![true; 16];
        inf[5] = false;
        inf[14] = false;
        assert_eq!(
            window(&inf, 8, true),
            Some(6),
            "inf: 5 and 14 used -> [6..13]"
        );
        assert_eq!(window(&[true; 16], 16, true), Some(0));
        assert_eq!(
            window(&[true; 16], 3, false),
            None,
            "trn: 3 is not 4, 8 or 16"
        );
        assert_eq!(window(&[true; 16], 3, true), Some(0), "inf: any size");
    }
}
