//! Volcano's kubelet resources (interfaces.md §3.6): Volcano ignores a node unless its
//! allocatable has non-zero `volcano.sh/vgpu-number`, `volcano.sh/vgpu-memory` and
//! `volcano.sh/vgpu-cores`, so with `volcano.register` the agent serves all three, each on its
//! own socket `nvidia-<suffix>.sock` registered with kubelet, as volcano-vgpu does:
//!
//! | resource | per NVIDIA card | ids | Allocate |
//! | --- | --- | --- | --- |
//! | `volcano.sh/vgpu-number` | `deviceSplitCount` replicas | `<uuid>-<n>` | HAMi's [`Plugin`](super::Plugin) (the pod's Volcano decision) |
//! | `volcano.sh/vgpu-memory` | the card's registered memory: MiB ÷ `gpuMemoryFactor` (× memory scaling) | `<index>-<n>` | one empty answer per container |
//! | `volcano.sh/vgpu-cores` | 100 (percent of the card) | `<uuid>-core-<n>` | one empty answer per container |
//!
//! Every unit carries its card's health, so an unhealthy card leaves the node's allocatable.
//! The memory ids are short because kubelet reads a ListAndWatch message of at most 4 MiB; a
//! list above that is logged with the advice to raise `volcano.gpuMemoryFactor`.

use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use prost::Message;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_stream::wrappers::WatchStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use super::{HEALTHY, Plugin, PluginError, UNHEALTHY, serve_service};
use crate::api::device_plugin_server::DevicePlugin;
use crate::api::{
    AllocateRequest, AllocateResponse, ContainerAllocateResponse,
    ContainerPreferredAllocationResponse, Device as ApiDevice, DevicePluginOptions, Empty,
    ListAndWatchResponse, PreStartContainerRequest, PreStartContainerResponse,
    PreferredAllocationRequest, PreferredAllocationResponse,
};
use crate::config::Config;
use crate::discovery::{Device, Inventory, NVIDIA};
use crate::kubelet::{KubeletLink, Served, supervise};
use crate::pods::PodSource;
use crate::register::volcano::registered_memory;

pub const VGPU_NUMBER: &str = "volcano.sh/vgpu-number";
pub const VGPU_MEMORY: &str = "volcano.sh/vgpu-memory";
pub const VGPU_CORES: &str = "volcano.sh/vgpu-cores";

/// Cores units per card: percent of its SMs.
pub const CORES_PER_CARD: u32 = 100;

/// The largest message kubelet's device plugin client accepts (gRPC's default).
pub const KUBELET_MAX_MESSAGE: usize = 4 * 1024 * 1024;

/// What a counted resource counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Memory,
    Cores,
}

impl Unit {
    pub fn resource(self) -> &'static str {
        match self {
            Unit::Memory => VGPU_MEMORY,
            Unit::Cores => VGPU_CORES,
        }
    }
}

/// kubelet's device list of a counted resource: the units of every NVIDIA card, in index order,
/// each carrying its card's health.
pub fn units(devices: &[Device], unit: Unit, config: &Config) -> Vec<ApiDevice> {
    let mut cards: Vec<&Device> = devices.iter().filter(|d| d.vendor == NVIDIA).collect();
    cards.sort_by_key(|d| d.index);
    cards
        .into_iter()
        .flat_map(|d| {
            let health = if d.healthy { HEALTHY } else { UNHEALTHY };
            let count = match unit {
                Unit::Memory => u32::try_from(registered_memory(d, config).max(0)).unwrap_or(0),
                Unit::Cores => CORES_PER_CARD,
            };
            (0..count).map(move |n| ApiDevice {
                id: match unit {
                    Unit::Memory => format!("{}-{n}", d.index),
                    Unit::Cores => format!("{}-core-{n}", d.id),
                },
                health: health.to_string(),
                topology: None,
            })
        })
        .collect()
}

/// The kubelet links of Volcano's resources for `config` (none unless `volcano.register`):
/// `volcano.sh/vgpu-number` served by HAMi's plugin (left out when `resourceName` is already
/// that), and the memory and cores units.
pub fn volcano_links(config: &Config) -> (Option<KubeletLink>, Vec<(Unit, KubeletLink)>) {
    if !config.volcano.register {
        return (None, Vec::new());
    }
    let link = |resource: &str| KubeletLink {
        plugin_dir: config.plugin_dir.clone(),
        socket_name: socket_name(resource),
        resource: resource.to_string(),
        poll: Duration::from_secs(1),
        retry: Duration::from_secs(5),
    };
    let number = (config.resource_name != VGPU_NUMBER).then(|| link(VGPU_NUMBER));
    let counted = [Unit::Memory, Unit::Cores]
        .into_iter()
        .map(|u| (u, link(u.resource())))
        .collect();
    (number, counted)
}

/// Starts Volcano's resources for `config` in `tasks` (none unless `volcano.register`):
/// `volcano.sh/vgpu-number` served by `plugin` and the memory and cores units of `inventory`,
/// each supervised on its own socket ([`supervise`]), watching `kubelet.sock` every `poll`,
/// until `stop` turns true.
pub fn spawn_volcano<P: PodSource>(
    tasks: &mut JoinSet<Result<(), PluginError>>,
    config: &Config,
    plugin: Plugin<P>,
    inventory: &Inventory,
    poll: Duration,
    stop: &watch::Receiver<bool>,
) {
    let until = || {
        let mut stop = stop.clone();
        async move {
            let _ = stop.wait_for(|s| *s).await;
        }
    };
    let (number, counted) = volcano_links(config);
    if let Some(mut link) = number {
        link.poll = poll;
        tasks.spawn(supervise(plugin, link, until()));
    }
    for (unit, mut link) in counted {
        link.poll = poll;
        let served = CountedPlugin::new(inventory.subscribe(), unit, config.clone());
        tasks.spawn(supervise(served, link, until()));
    }
}

/// `nvidia-<part after the slash>.sock`, as volcano-vgpu names its sockets.
pub fn socket_name(resource: &str) -> String {
    let suffix = resource.rsplit_once('/').map_or(resource, |(_, s)| s);
    format!("nvidia-{suffix}.sock")
}

/// A counted resource's `DevicePlugin` service.
#[derive(Clone)]
pub struct CountedPlugin {
    devices: watch::Receiver<Vec<Device>>,
    unit: Unit,
    config: Config,
}

impl CountedPlugin {
    pub fn new(devices: watch::Receiver<Vec<Device>>, unit: Unit, config: Config) -> Self {
        CountedPlugin {
            devices,
            unit,
            config,
        }
    }
}

impl Served for CountedPlugin {
    fn options(&self) -> DevicePluginOptions {
        DevicePluginOptions::default()
    }

    async fn serve_on(
        self,
        socket: PathBuf,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), PluginError> {
        serve_service(self, &socket, shutdown).await
    }
}

type WatchResponses = Pin<Box<dyn Stream<Item = Result<ListAndWatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl DevicePlugin for CountedPlugin {
    async fn get_device_plugin_options(
        &self,
        _: Request<Empty>,
    ) -> Result<Response<DevicePluginOptions>, Status> {
        Ok(Response::new(Served::options(self)))
    }

    type ListAndWatchStream = WatchResponses;

    async fn list_and_watch(
        &self,
        _: Request<Empty>,
    ) -> Result<Response<Self::ListAndWatchStream>, Status> {
        let (unit, config) = (self.unit, self.config.clone());
        let stream = WatchStream::new(self.devices.clone()).map(move |devices| {
            let response = ListAndWatchResponse {
                devices: units(&devices, unit, &config),
            };
            let size = response.encoded_len();
            if size > KUBELET_MAX_MESSAGE {
                tracing::warn!(
                    resource = unit.resource(),
                    units = response.devices.len(),
                    bytes = size,
                    "the device list is larger than kubelet reads (4 MiB); raise volcano.gpuMemoryFactor"
                );
            }
            Ok(response)
        });
        Ok(Response::new(Box::pin(stream)))
    }

    /// Not offered to kubelet; answers with kubelet's own order if asked anyway.
    async fn get_preferred_allocation(
        &self,
        request: Request<PreferredAllocationRequest>,
    ) -> Result<Response<PreferredAllocationResponse>, Status> {
        let container_responses = request
            .into_inner()
            .container_requests
            .into_iter()
            .map(|c| {
                let size = usize::try_from(c.allocation_size).unwrap_or(0);
                let device_i_ds = super::kubelet_order(
                    c.must_include_device_i_ds,
                    &c.available_device_i_ds,
                    size,
                );
                ContainerPreferredAllocationResponse { device_i_ds }
            })
            .collect();
        Ok(Response::new(PreferredAllocationResponse {
            container_responses,
        }))
    }

    /// The units only count: the container's limits come from the `vgpu-number` Allocate.
    async fn allocate(
        &self,
        request: Request<AllocateRequest>,
    ) -> Result<Response<AllocateResponse>, Status> {
        let container_responses = request
            .get_ref()
            .container_requests
            .iter()
            .map(|_| ContainerAllocateResponse::default())
            .collect();
        Ok(Response::new(AllocateResponse {
            container_responses,
        }))
    }

    async fn pre_start_container(
        &self,
        _: Request<PreStartContainerRequest>,
    ) -> Result<Response<PreStartContainerResponse>, Status> {
        Ok(Response::new(PreStartContainerResponse {}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(id: &str, index: u32, memory_mib: u64, healthy: bool) -> Device {
        Device {
            id: id.into(),
            vendor: NVIDIA.into(),
            index,
            memory_mib,
            cores: 100,
            healthy,
            ..Device::default()
        }
    }

    #[test]
    fn memory_units_follow_the_registered_memory_and_cores_are_100_per_card() {
        let mut config = Config::default();
        config.volcano.gpu_memory_factor = 1024;
        config.device_memory_scaling = 1.5;
        let mut other = card("MLU-0", 0, 4096, true);
        other.vendor = "MLU".into();
        let devices = [
            card("GPU-b", 1, 2048, false),
            card("GPU-a", 0, 3072, true),
            other,
        ];
        let memory = units(&devices, Unit::Memory, &config);
        let ids: Vec<(&str, &str)> = memory
            .iter()
            .map(|d| (d.id.as_str(), d.health.as_str()))
            .collect();
        // 3072 / 1024 = 3 x 1.5 = 4.5 -> 4; 2048 / 1024 = 2 x 1.5 = 3.
        assert_eq!(
            ids,
            [
                ("0-0", HEALTHY),
                ("0-1", HEALTHY),
                ("0-2", HEALTHY),
                ("0-3", HEALTHY),
                ("1-0", UNHEALTHY),
                ("1-1", UNHEALTHY),
                ("1-2", UNHEALTHY),
            ]
        );
        let cores = units(&devices, Unit::Cores, &config);
        assert_eq!(cores.len(), 200);
        assert_eq!(cores[0].id, "GPU-a-core-0");
        assert_eq!(cores[199].id, "GPU-b-core-99");
        assert_eq!(cores[199].health, UNHEALTHY);
    }

    #[test]
    fn links_exist_only_with_volcano_register_and_vgpu_number_is_not_served_twice() {
        let mut config = Config::default();
        let (number, counted) = volcano_links(&config);
        assert!(number.is_none() && counted.is_empty());
        config.volcano.register = true;
        let (number, counted) = volcano_links(&config);
        assert_eq!(
            number.map(|l| (l.socket_name, l.resource)),
            Some(("nvidia-vgpu-number.sock".into(), VGPU_NUMBER.into()))
        );
        let counted: Vec<(Unit, String, String)> = counted
            .into_iter()
            .map(|(u, l)| (u, l.socket_name, l.resource))
            .collect();
        assert_eq!(
            counted,
            [
                (
                    Unit::Memory,
                    "nvidia-vgpu-memory.sock".into(),
                    VGPU_MEMORY.into()
                ),
                (
                    Unit::Cores,
                    "nvidia-vgpu-cores.sock".into(),
                    VGPU_CORES.into()
                ),
            ]
        );
        config.resource_name = VGPU_NUMBER.into();
        assert!(volcano_links(&config).0.is_none());
    }

    #[test]
    fn an_80_gib_card_with_factor_1_is_more_than_kubelet_reads_and_factor_1024_is_not() {
        let devices: Vec<Device> = (0..8)
            .map(|i| card(&format!("GPU-{i}"), i, 81920, true))
            .collect();
        let mut config = Config::default();
        let size = |c: &Config| {
            ListAndWatchResponse {
                devices: units(&devices, Unit::Memory, c),
            }
            .encoded_len()
        };
        assert!(size(&config) > KUBELET_MAX_MESSAGE);
        config.volcano.gpu_memory_factor = 1024;
        assert!(size(&config) < KUBELET_MAX_MESSAGE);
    }
}
