//! Volcano: the vGPU protocol of Volcano's deviceshare plugin and `volcano-vgpu-device-plugin`
//! (spec interfaces.md §3.5–3.7), so that hamr can stand in for Volcano's device sharing.
//!
//! - Nodes register `volcano.sh/node-vgpu-register` (`UUID,split,MiB,type,health,mode:` per
//!   card) and are live while their allocatable has non-zero `volcano.sh/vgpu-number`,
//!   `-cores` and `-memory` ([`register`]).
//! - Containers ask `volcano.sh/vgpu-number`, `-memory`, `-memory-percentage`, `-cores`
//!   ([`request`]); only regular containers count.
//! - Cards are tried in Volcano's policy order and checked one by one ([`fit`]); cards in
//!   `mig` mode are carved by best fit from `knownMigGeometries` ([`mig`]); a pod asking
//!   `volcano.sh/vgpu-podgroup-policy: spread` never shares a card with its PodGroup
//!   ([`podgroup`]).
//! - The decision is written as `volcano.sh/vgpu-ids-new` and `volcano.sh/devices-to-allocate`
//!   (`UUID,NVIDIA,MiB,cores:` per device, containers joined by `;`), `volcano.sh/vgpu-node`,
//!   `volcano.sh/vgpu-time`, `volcano.sh/bind-phase: allocating` and `volcano.sh/bind-time`;
//!   running pods are read back from `volcano.sh/vgpu-ids-new`.
//!
//! Inside hamr the vendor key is [`VENDOR`] (`VOLCANO`), so that Volcano's cards and HAMi's
//! never mix; on the wire the device type is `NVIDIA`, as Volcano writes it.

pub mod fit;
pub mod mig;
pub mod podgroup;
pub mod register;
pub mod request;

use std::sync::Arc;

use crate::api::{Container, ContainerRef, Invalid, Mutation, Node, Pairs, Pod};
use crate::config::Config;
use crate::device::{self, Card, ContainerDevice, DeviceInfo, Placed, PodDevices};
use crate::vendor::{DecisionContext, Fit, FitContext, Request, Slot, Vendor};

/// The vendor key inside hamr (requests, ledger, grants).
pub const VENDOR: &str = "VOLCANO";
/// The device type written in Volcano's allocation strings.
pub const WIRE_TYPE: &str = "NVIDIA";

pub const VGPU_MODE: &str = "volcano.sh/vgpu-mode";
pub const USE_GPU_UUID: &str = "volcano.sh/vgpu-use-gpuuuid";
pub const NOUSE_GPU_UUID: &str = "volcano.sh/vgpu-nouse-gpuuuid";
pub const USE_GPU_TYPE: &str = "nvidia.com/use-gputype";
pub const NOUSE_GPU_TYPE: &str = "nvidia.com/nouse-gputype";
/// `spread`: no two pods of the pod's PodGroup on one card ([`podgroup`]).
pub const PODGROUP_POLICY: &str = "volcano.sh/vgpu-podgroup-policy";
/// The PodGroup a pod belongs to, read first.
pub const KUBE_GROUP_NAME: &str = "scheduling.k8s.io/group-name";
/// The PodGroup a pod belongs to, read when [`KUBE_GROUP_NAME`] is absent or empty.
pub const VOLCANO_GROUP_NAME: &str = "scheduling.volcano.sh/group-name";

pub const VGPU_NODE: &str = "volcano.sh/vgpu-node";
pub const VGPU_TIME: &str = "volcano.sh/vgpu-time";
pub const VGPU_IDS_NEW: &str = "volcano.sh/vgpu-ids-new";
pub const DEVICES_TO_ALLOCATE: &str = "volcano.sh/devices-to-allocate";
pub const BIND_PHASE: &str = "volcano.sh/bind-phase";
pub const BIND_TIME: &str = "volcano.sh/bind-time";

/// Card modes as Volcano names them.
pub const MODE_HAMI_CORE: &str = "hami-core";
pub const MODE_MIG: &str = "mig";

/// The Volcano backend.
pub struct Volcano;

impl Vendor for Volcano {
    fn key(&self) -> &'static str {
        VENDOR
    }

    fn managed_resources(&self, config: &Config) -> Vec<String> {
        let v = &config.volcano;
        [
            &v.resource_count_name,
            &v.resource_memory_name,
            &v.resource_memory_percentage_name,
            &v.resource_core_name,
        ]
        .into_iter()
        .filter(|s| !s.is_empty())
        .cloned()
        .collect()
    }

    fn parse_node(&self, node: &Node) -> Result<Option<Vec<DeviceInfo>>, Invalid> {
        register::parse(node, &Config::default())
    }

    fn parse_node_configured(
        &self,
        node: &Node,
        config: &Config,
    ) -> Result<Option<Vec<DeviceInfo>>, Invalid> {
        register::parse(node, config)
    }

    fn liveness(&self, node: &Node, config: &Config) -> crate::vendor::Liveness {
        if register::live(node, &config.volcano) {
            crate::vendor::Liveness::Live
        } else {
            crate::vendor::Liveness::Dead
        }
    }

    fn request(
        &self,
        container: &Container,
        slot: Slot<'_>,
        config: &Config,
    ) -> Result<Option<Request>, Invalid> {
        request::derive(container, slot, &config.volcano)
    }

    /// Volcano pods are not mutated: Volcano's own admission owns them, and hamr's webhook
    /// must not hand them to another scheduler.
    fn admit_container(
        &self,
        container: &Container,
        slot: Slot<'_>,
        _cref: ContainerRef,
        config: &Config,
    ) -> Result<(bool, Vec<Mutation>), Invalid> {
        // Malformed values are refused at admission as they would be at filter.
        request::derive(container, slot, &config.volcano)?;
        Ok((false, Vec::new()))
    }

    fn owns(&self, card: &Card) -> bool {
        card.vendor == VENDOR
    }

    /// The pod's PodGroup membership, on each card it uses memory or cores of.
    fn card_tag(&self, pod: &Pod, device: &ContainerDevice) -> Option<Arc<str>> {
        podgroup::tag(pod, device)
    }

    fn fit(&self, cards: &[&Card], request: &Request, ctx: &FitContext<'_>) -> Fit {
        fit::fit(cards, request, ctx)
    }

    fn rank_is_use_only(&self) -> bool {
        false
    }

    fn node_score(
        &self,
        cards: &[Card],
        chosen: &[&ContainerDevice],
        config: &Config,
    ) -> Option<u32> {
        Some(fit::node_score(
            &config.volcano.schedule_policy,
            cards,
            chosen,
        ))
    }

    fn annotations(&self, devices: &PodDevices) -> Pairs {
        let encoded = encode(devices);
        vec![
            (VGPU_IDS_NEW.to_string(), encoded.clone()),
            (DEVICES_TO_ALLOCATE.to_string(), encoded),
        ]
    }

    fn hami_keys(&self) -> bool {
        false
    }

    /// Volcano's keys; the device lists cover regular containers only.
    fn decision_annotations(&self, devices: &PodDevices, ctx: &DecisionContext<'_>) -> Pairs {
        let (pod, node, now) = (ctx.pod, ctx.node, ctx.now);
        let init = pod.init_containers.len().min(devices.len());
        let regular: PodDevices = devices.get(init..).unwrap_or_default().to_vec();
        let mut out = vec![
            (VGPU_NODE.to_string(), node.to_string()),
            (VGPU_TIME.to_string(), now.to_string()),
        ];
        out.extend(self.annotations(&regular));
        out.push((BIND_PHASE.to_string(), "allocating".to_string()));
        out.push((BIND_TIME.to_string(), now.to_string()));
        out
    }

    /// `volcano.sh/vgpu-node`, else the pod's `spec.nodeName`.
    fn placed_node(&self, pod: &Pod) -> Option<String> {
        pod.annotation(VGPU_NODE)
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .or_else(|| pod.node_name.clone().filter(|n| !n.is_empty()))
    }

    fn allocated_key(&self) -> &'static str {
        VGPU_IDS_NEW
    }

    fn decode_pod(&self, pod: &Pod) -> Result<Option<Placed>, Invalid> {
        let Some(text) = pod.annotation(VGPU_IDS_NEW) else {
            return Ok(None);
        };
        let invalid = |m: String| Invalid::new(pod.object(), VGPU_IDS_NEW, text, m);
        let regular = decode(text).map_err(invalid)?;
        // Positions in hamr's lists are init containers first.
        let mut devices: PodDevices = vec![Vec::new(); pod.init_containers.len()];
        devices.extend(regular);
        Ok(Some(Placed {
            devices,
            stray_slices: Vec::new(),
        }))
    }
}

/// Encodes Volcano's allocation string: per container `UUID,NVIDIA,MiB,cores:` items (a MIG
/// slice's UUID carries `[<group>-<position>]`), containers joined by `;`.
///
/// ```
/// # use hamr_guest::device::*;
/// # use hamr_guest::vendor::volcano::encode;
/// let d = |u: &str| ContainerDevice { uuid: u.into(), vendor: "VOLCANO".into(), mem: 3000, cores: 50, index: 0, mig: None };
/// assert_eq!(encode(&vec![vec![d("GPU-a")]]), "GPU-a,NVIDIA,3000,50:");
/// assert_eq!(encode(&vec![vec![], vec![d("GPU-a")]]), ";GPU-a,NVIDIA,3000,50:");
/// ```
pub fn encode(devices: &PodDevices) -> String {
    devices
        .iter()
        .map(|container| {
            container
                .iter()
                .map(|d| format!("{},{WIRE_TYPE},{},{}:", mig::device_id(d), d.mem, d.cores))
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join(";")
}

/// Decodes Volcano's allocation string (and HAMi's `;`-terminated form). MIG slice ids are
/// split into the card's UUID and the slice (see [`mig::split_id`]).
pub fn decode(text: &str) -> Result<PodDevices, String> {
    let mut devices = device::decode(text).map_err(|e| e.to_string())?;
    for d in devices.iter_mut().flatten() {
        d.vendor = VENDOR.to_string();
        let (uuid, slice) = mig::split_id(&d.uuid)?;
        if let Some(slice) = slice {
            d.uuid = uuid;
            d.mig = Some(slice);
        }
    }
    Ok(devices)
}

/// The request memory of `request` on a card of `devmem` MiB (percentage resolved per card).
pub(crate) fn memreq(request: &Request, devmem: i64) -> i64 {
    if request.memreq > 0 || request.mem_pct == request::PCT_UNSET {
        request.memreq
    } else {
        devmem * request.mem_pct / 100
    }
}

/// A device given to a container, before the MIG slice is known.
pub(crate) fn device_on(card: &Card, mem: i64, cores: i64) -> ContainerDevice {
    ContainerDevice {
        uuid: card.info.id.clone(),
        vendor: VENDOR.to_string(),
        mem,
        cores,
        index: card.info.index,
        mig: None,
    }
}

#[cfg(test)]
mod tests;
