//! Moore Threads (spec hami-vendors.md §10): devices from node capacity (16 core units per
//! GPU), whole-GPU rounding at admission, G-Fit that keeps a pod on one card.

use crate::api::{Container, ContainerLimit, ContainerRef, Invalid, Mutation, Node, Pairs, Pod};
use crate::config::{Config, ResourceNames};
use crate::device::{self, Card, DeviceInfo, Placed, PodDevices};
use crate::vendor::common::{self, Resources, Sharing};
use crate::vendor::{DecisionContext, Fit, FitContext, QuotaResources, Request, Slot, Vendor};

/// The common word (request and annotation type).
pub const VENDOR: &str = "Mthreads";
pub const DEVICES_ALLOCATED: &str = "hami.io/mthreads-vgpu-devices-allocated";
pub const GPU_INDEX: &str = "mthreads.com/gpu-index";
pub const PREDICATE_TIME: &str = "mthreads.com/predicate-time";
pub const PREDICATE_NODE: &str = "mthreads.com/predicate-node";
pub const USE_UUID: &str = "mthreads.ai/use-gpuuuid";
pub const NOUSE_UUID: &str = "mthreads.ai/nouse-gpuuuid";
/// Pod annotation admission sets to the card count of a multi-GPU request.
pub const REQUEST_GPU_NUM: &str = "mthreads.com/request-gpu-num";
/// MiB per memory unit.
pub const MEMORY_UNIT: i64 = 512;
/// Core units of one GPU.
pub const GPU_CORES: i64 = 16;
/// Memory units of one whole GPU as the webhook writes it.
pub const GPU_MEMORY_UNITS: i64 = 96;
/// The memory values (units) a one-GPU request may ask for.
pub const VALID_MEMORY: [i64; 7] = [2, 4, 8, 16, 32, 64, 96];

/// The Moore Threads backend.
pub struct Mthreads;

impl Vendor for Mthreads {
    fn key(&self) -> &'static str {
        VENDOR
    }

    fn managed_resources(&self, config: &Config) -> Vec<String> {
        config.mthreads.all()
    }

    /// `ceil(cores/16)` GPUs of 16 core units sharing the memory: core 1 and memory 1 give one
    /// GPU of `1*512*16/1 = 8192` MiB (MT-01).
    fn parse_node(&self, node: &Node) -> Result<Option<Vec<DeviceInfo>>, Invalid> {
        parse(node, &Config::default().mthreads)
    }

    /// With the configured resource names (and without building a default configuration for
    /// every node update).
    fn parse_node_configured(
        &self,
        node: &Node,
        config: &Config,
    ) -> Result<Option<Vec<DeviceInfo>>, Invalid> {
        parse(node, &config.mthreads)
    }

    fn liveness(&self, _node: &Node, _config: &Config) -> crate::vendor::Liveness {
        crate::vendor::Liveness::Live
    }

    /// Memory in 512 MiB units, cores default 0, both divided by the count (per GPU).
    fn request(
        &self,
        c: &Container,
        slot: Slot<'_>,
        config: &Config,
    ) -> Result<Option<Request>, Invalid> {
        let names = &config.mthreads;
        let r = Resources { container: c, slot };
        let nums = r.integer(names.count(), 0, i64::from(i32::MAX), false)?;
        let mem = r.integer(names.memory(), 0, i64::from(i32::MAX) / MEMORY_UNIT, false)?;
        let core = r.integer(names.core(), 0, i64::from(i32::MAX), false)?;
        let Some(nums) = nums.filter(|n| *n > 0) else {
            return Ok(None);
        };
        let memreq = mem.unwrap_or(0) * MEMORY_UNIT / nums;
        Ok(Some(Request {
            vendor: VENDOR,
            nums,
            memreq,
            mem_pct: if memreq == 0 { 100 } else { 0 },
            coresreq: core.unwrap_or(0) / nums,
        }))
    }

    /// Several GPUs, or one GPU without memory, are whole GPUs (16 cores, 96 memory units
    /// each); one GPU with memory must ask for one of [`VALID_MEMORY`] (MT-02).
    fn admit_container(
        &self,
        c: &Container,
        slot: Slot<'_>,
        cref: ContainerRef,
        config: &Config,
    ) -> Result<(bool, Vec<Mutation>), Invalid> {
        let names = &config.mthreads;
        let r = Resources { container: c, slot };
        let Some(count) = r.integer(names.count(), i64::MIN, i64::from(i32::MAX), false)? else {
            return Ok((false, Vec::new()));
        };
        if count <= 0 {
            return Err(r.invalid(names.count(), "must be at least 1"));
        }
        let mem = r.integer(names.memory(), 0, i64::from(i32::MAX) / MEMORY_UNIT, false)?;
        r.integer(names.core(), 0, i64::from(i32::MAX), false)?;
        let set = |name: &str, value: i64| {
            Mutation::SetLimit(ContainerLimit {
                container: cref,
                name: name.to_string(),
                value: value.to_string(),
            })
        };
        let mut mutations = Vec::new();
        match (count, mem) {
            (1, Some(m)) if !VALID_MEMORY.contains(&m) => {
                return Err(r.invalid(
                    names.memory(),
                    "sGPU memory request value is invalid, valid values are [2, 4, 8, 16, 32, 64, 96]",
                ));
            }
            (1, Some(_)) => {}
            (n, _) => {
                mutations.push(set(names.core(), GPU_CORES * n));
                mutations.push(set(names.memory(), GPU_MEMORY_UNITS * n));
                if n > 1 {
                    mutations.push(Mutation::SetAnnotation((
                        REQUEST_GPU_NUM.to_string(),
                        n.to_string(),
                    )));
                }
            }
        }
        Ok((true, mutations))
    }

    fn owns(&self, card: &Card) -> bool {
        card.vendor == VENDOR
    }

    fn quota_resources<'a>(&self, config: &'a Config) -> Option<QuotaResources<'a>> {
        Some(QuotaResources {
            memory: config.mthreads.memory(),
            cores: config.mthreads.core(),
            memory_factor: MEMORY_UNIT,
        })
    }

    fn fit(&self, cards: &[&Card], request: &Request, ctx: &FitContext<'_>) -> Fit {
        let sharing = Sharing {
            vendor: VENDOR,
            uuid_keys: (USE_UUID, NOUSE_UUID),
            type_keys: None,
            quota: false,
            same_card: true,
            collect_all: false,
            total_core: None,
        };
        common::gfit(cards, request, ctx, &sharing).finish()
    }

    /// Only the allocated key is written (HAMi registers the to-allocate key but never writes
    /// it), and the indices of the last container that has devices.
    fn annotations(&self, devices: &PodDevices) -> Pairs {
        let mut out = vec![(DEVICES_ALLOCATED.to_string(), device::encode(devices))];
        if let Some(last) = devices.iter().rev().find(|c| !c.is_empty()) {
            let idx: Vec<String> = last.iter().map(|d| d.index.to_string()).collect();
            out.push((GPU_INDEX.to_string(), idx.join(",")));
        }
        out
    }

    fn decision_annotations(&self, devices: &PodDevices, ctx: &DecisionContext<'_>) -> Pairs {
        let mut out = self.annotations(devices);
        out.push((
            PREDICATE_TIME.to_string(),
            (i128::from(ctx.now) * 1_000_000_000).to_string(),
        ));
        out.push((PREDICATE_NODE.to_string(), ctx.node.to_string()));
        out
    }

    fn allocated_key(&self) -> &'static str {
        DEVICES_ALLOCATED
    }

    fn decode_pod(&self, pod: &Pod) -> Result<Option<Placed>, Invalid> {
        common::decode_allocated(pod, DEVICES_ALLOCATED, VENDOR)
    }
}

/// `ceil(cores/16)` GPUs of 16 core units sharing the memory, read from the node's capacity
/// under `names`.
fn parse(node: &Node, names: &ResourceNames) -> Result<Option<Vec<DeviceInfo>>, Invalid> {
    let cores = common::node_quantity(&node.capacity, names.core());
    if cores <= 0 {
        return Ok(None);
    }
    let mem_total = common::node_quantity(&node.capacity, names.memory());
    let devmem = i64::try_from(
        i128::from(mem_total) * i128::from(MEMORY_UNIT * GPU_CORES) / i128::from(cores),
    )
    .ok()
    .filter(|m| *m <= i64::from(i32::MAX))
    .ok_or_else(|| {
        Invalid::new(
            format!("node/{}", node.name),
            format!("status.capacity[{}]", names.memory()),
            &mem_total.to_string(),
            "memory per GPU does not fit 32 bits",
        )
    })?;
    let n = (cores + GPU_CORES - 1) / GPU_CORES;
    Ok(Some(
        (0..n)
            .map(|i| DeviceInfo {
                id: format!("{}-mthreads-{i}", node.name),
                index: i as u32,
                count: 100,
                devmem,
                devcore: GPU_CORES,
                model: VENDOR.to_string(),
                health: true,
                ..DeviceInfo::default()
            })
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(limits: &[(&str, &str)]) -> Container {
        Container {
            name: "main".into(),
            limits: limits
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Container::default()
        }
    }

    #[test]
    fn memory_and_cores_are_divided_by_the_count() {
        let slot = Slot {
            object: "pod/default/p",
            init: false,
            index: 0,
        };
        let c = container(&[
            ("mthreads.com/vgpu", "2"),
            ("mthreads.com/sgpu-memory", "192"),
            ("mthreads.com/sgpu-core", "32"),
        ]);
        let r = Mthreads
            .request(&c, slot, &Config::default())
            .expect("valid")
            .expect("asks");
        assert_eq!((r.nums, r.memreq, r.mem_pct, r.coresreq), (2, 49152, 0, 16));
        let c = container(&[("mthreads.com/vgpu", "1")]);
        let r = Mthreads
            .request(&c, slot, &Config::default())
            .expect("valid")
            .expect("asks");
        assert_eq!((r.memreq, r.mem_pct, r.coresreq), (0, 100, 0));
    }
}
