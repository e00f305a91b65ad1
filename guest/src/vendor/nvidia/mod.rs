//! NVIDIA: HAMi's vGPU protocol (spec hami-core-nvidia.md).

pub mod fit;
pub mod mig;
pub mod register;
pub mod request;

use crate::api::{Container, ContainerRef, Invalid, Mutation, Node, Pairs, Pod};
use crate::config::Config;
use crate::device::{self, Card, DeviceInfo, Placed, PodDevices};
use crate::policy::{GpuPolicy, contains_ignore_case};
use crate::reason::Counter;
use crate::vendor::{Fit, FitContext, QuotaResources, Request, Slot, Vendor};

/// The vendor key in requests and annotations.
pub const VENDOR: &str = "NVIDIA";

pub const DEVICES_TO_ALLOCATE: &str = "hami.io/vgpu-devices-to-allocate";
pub const DEVICES_ALLOCATED: &str = "hami.io/vgpu-devices-allocated";
pub const USE_GPU_TYPE: &str = "nvidia.com/use-gputype";
pub const NOUSE_GPU_TYPE: &str = "nvidia.com/nouse-gputype";
pub const USE_GPU_UUID: &str = "nvidia.com/use-gpuuuid";
pub const NOUSE_GPU_UUID: &str = "nvidia.com/nouse-gpuuuid";
pub const VGPU_MODE: &str = "nvidia.com/vgpu-mode";

/// The NVIDIA backend.
pub struct Nvidia;

impl Vendor for Nvidia {
    fn runtime_class_name<'a>(&self, config: &'a Config) -> Option<&'a str> {
        Some(config.nvidia.runtime_class_name.as_str())
    }

    fn key(&self) -> &'static str {
        VENDOR
    }

    fn managed_resources(&self, config: &Config) -> Vec<String> {
        let n = &config.nvidia;
        [
            &n.resource_count_name,
            &n.resource_memory_name,
            &n.resource_memory_percentage_name,
            &n.resource_core_name,
            &n.resource_priority_name,
        ]
        .into_iter()
        .filter(|s| !s.is_empty())
        .cloned()
        .collect()
    }

    fn parse_node(&self, node: &Node) -> Result<Option<Vec<DeviceInfo>>, Invalid> {
        register::parse(node)
    }

    fn liveness(&self, node: &Node, config: &Config) -> crate::vendor::Liveness {
        register::Handshake::read(node, &config.nvidia.resource_count_name).liveness()
    }

    fn handshake_key(&self) -> Option<&'static str> {
        Some(register::HANDSHAKE)
    }

    fn request(
        &self,
        container: &Container,
        slot: Slot<'_>,
        config: &Config,
    ) -> Result<Option<Request>, Invalid> {
        request::derive(container, slot, &config.nvidia)
    }

    fn admit_container(
        &self,
        container: &Container,
        slot: Slot<'_>,
        cref: ContainerRef,
        config: &Config,
    ) -> Result<(bool, Vec<Mutation>), Invalid> {
        let a = request::admit(container, slot, cref, &config.nvidia)?;
        Ok((a.has_resource, a.mutations))
    }

    fn owns(&self, card: &Card) -> bool {
        contains_ignore_case(&card.info.model, VENDOR)
    }

    fn multi_slice(&self, pod: &Pod, request: &Request, cards: &[&Card]) -> bool {
        request.vendor == VENDOR
            && pod.annotation(VGPU_MODE).is_none_or(|m| m.contains("mig"))
            && cards.iter().any(|c| c.info.mode == "mig")
    }

    fn quota_resources<'a>(&self, config: &'a Config) -> Option<QuotaResources<'a>> {
        Some(QuotaResources {
            memory: &config.nvidia.resource_memory_name,
            cores: &config.nvidia.resource_core_name,
            memory_factor: config.nvidia.memory_factor,
        })
    }

    fn fit(&self, cards: &[&Card], request: &Request, ctx: &FitContext<'_>) -> Fit {
        fit::fit(cards, request, ctx)
    }

    fn parse_node_again(
        &self,
        node: &Node,
        _config: &Config,
        previous: &Node,
        cards: &[Card],
    ) -> Result<Option<Vec<DeviceInfo>>, Invalid> {
        register::parse_again(node, previous, cards)
    }

    fn summary_check(
        &self,
        pod: &Pod,
        request: &Request,
        policy: &GpuPolicy,
        quota_limited: bool,
    ) -> Option<crate::vendor::SummaryCheck> {
        fit::summary_check(pod, request, policy, quota_limited)
    }

    fn fails_on_every_card(
        &self,
        cards: &[Card],
        request: &Request,
        ctx: &FitContext<'_>,
    ) -> Option<Counter> {
        fit::fails_on_every_card(cards, request, ctx)
    }

    fn annotations(&self, devices: &PodDevices) -> Pairs {
        let encoded = device::encode(devices);
        let mut out = vec![
            (DEVICES_TO_ALLOCATE.to_string(), encoded.clone()),
            (DEVICES_ALLOCATED.to_string(), encoded),
        ];
        if let Some(mig) = mig::encode_reservations(devices) {
            out.push((mig::MIG_ALLOCATIONS.to_string(), mig));
        }
        out
    }

    fn allocated_key(&self) -> &'static str {
        DEVICES_ALLOCATED
    }

    fn decode_pod(&self, pod: &Pod) -> Result<Option<Placed>, Invalid> {
        let Some(text) = pod.annotation(DEVICES_ALLOCATED) else {
            return Ok(None);
        };
        let mut devices = device::decode(text)
            .map_err(|e| Invalid::new(pod.object(), DEVICES_ALLOCATED, text, e.to_string()))?;
        devices
            .iter_mut()
            .flatten()
            .for_each(|d| d.vendor = VENDOR.to_string());
        let mut stray_slices = Vec::new();
        if let Some(json) = pod.annotation(mig::MIG_ALLOCATIONS) {
            let reservations = mig::decode_reservations(json)
                .map_err(|m| Invalid::new(pod.object(), mig::MIG_ALLOCATIONS, json, m))?;
            stray_slices = mig::attach(&mut devices, &reservations);
        }
        Ok(Some(Placed {
            devices,
            stray_slices,
        }))
    }
}

#[cfg(test)]
mod tests;
