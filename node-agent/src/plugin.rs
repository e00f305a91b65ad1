//! The kubelet device plugin v1beta1 (interfaces.md §4): the `DevicePlugin` service over a unix
//! socket, and registration with kubelet's `kubelet.sock`.
//!
//! Each NVIDIA card is advertised as `deviceSplitCount` replicas `<uuid>-<n>` carrying the card's
//! health (node-side.md §2.4); the list is re-sent whenever the inventory changes.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use hyper_util::rt::TokioIo;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;
use tokio_stream::wrappers::{UnixListenerStream, WatchStream};
use tokio_stream::{Stream, StreamExt};
use tonic::transport::{Endpoint, Server};
use tonic::{Request, Response, Status};

use crate::allocate::Allocator;
use crate::api::device_plugin_server::{DevicePlugin, DevicePluginServer};
use crate::api::registration_client::RegistrationClient;
use crate::api::{
    AllocateRequest, AllocateResponse, ContainerPreferredAllocationResponse, Device as ApiDevice,
    DevicePluginOptions, Empty, ListAndWatchResponse, NumaNode, PreStartContainerRequest,
    PreStartContainerResponse, PreferredAllocationRequest, PreferredAllocationResponse,
    RegisterRequest, TopologyInfo,
};
use crate::discovery::{Device, NVIDIA};
use crate::pods::PodSource;

pub mod counted;

/// The API version kubelet accepts.
pub const VERSION: &str = "v1beta1";
pub const HEALTHY: &str = "Healthy";
pub const UNHEALTHY: &str = "Unhealthy";

/// Why the plugin could not start or register.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// Our socket could not be created (directory missing, or not writable).
    #[error("serving on {path}: {source}")]
    Bind {
        path: PathBuf,
        source: std::io::Error,
    },
    /// kubelet's socket did not answer (kubelet down, or the plugin directory not mounted).
    #[error("connecting to kubelet at {path}: {source}")]
    Connect {
        path: PathBuf,
        source: tonic::transport::Error,
    },
    /// kubelet refused the registration (unsupported version, or the resource name is taken).
    #[error("kubelet refused to register {resource}: {status}")]
    Register { resource: String, status: Status },
}

/// The replica id kubelet sees for replica `n` of a card.
pub fn replica_id(uuid: &str, n: u32) -> String {
    format!("{uuid}-{n}")
}

/// Whether `id` is one of the replicas of card `uuid`: `<uuid>-<n>` (also HAMi's `<uuid>::<n>`)
/// or the card itself. Matching against the known UUID avoids guessing where a UUID ends.
pub fn is_replica_of(id: &str, uuid: &str) -> bool {
    id == uuid
        || id
            .strip_prefix(uuid)
            .and_then(|rest| rest.strip_prefix('-').or_else(|| rest.strip_prefix("::")))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// kubelet's device list for the NVIDIA cards: `split` replicas per card, each carrying the
/// card's health, and its NUMA node when `numa` is set.
pub fn replicas(devices: &[Device], split: u32, numa: bool) -> Vec<ApiDevice> {
    devices
        .iter()
        .filter(|d| d.vendor == NVIDIA)
        .flat_map(|d| {
            (0..split).map(move |n| ApiDevice {
                id: replica_id(&d.id, n),
                health: if d.healthy { HEALTHY } else { UNHEALTHY }.to_string(),
                topology: numa.then(|| TopologyInfo {
                    nodes: vec![NumaNode {
                        id: i64::from(d.numa),
                    }],
                }),
            })
        })
        .collect()
}

/// The `DevicePlugin` service.
pub struct Plugin<P> {
    devices: watch::Receiver<Vec<Device>>,
    allocator: Arc<Allocator<P>>,
}

impl<P> Clone for Plugin<P> {
    fn clone(&self) -> Plugin<P> {
        Plugin {
            devices: self.devices.clone(),
            allocator: self.allocator.clone(),
        }
    }
}

impl<P: PodSource> Plugin<P> {
    pub fn new(devices: watch::Receiver<Vec<Device>>, allocator: Arc<Allocator<P>>) -> Plugin<P> {
        Plugin { devices, allocator }
    }

    /// The options we announce (also sent with `Register`).
    pub fn options(&self) -> DevicePluginOptions {
        DevicePluginOptions {
            pre_start_required: false,
            get_preferred_allocation_available: self
                .allocator
                .config()
                .enable_get_preferred_allocation,
        }
    }

    /// Serves the plugin on `socket` (removing a stale file first) until `shutdown` resolves.
    pub async fn serve(
        self,
        socket: &Path,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), PluginError> {
        serve_service(self, socket, shutdown).await
    }
}

/// Serves a `DevicePlugin` service on `socket` (a stale file removed first) until `shutdown`.
pub async fn serve_service<T: DevicePlugin>(
    service: T,
    socket: &Path,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), PluginError> {
    let bind_error = |source| PluginError::Bind {
        path: socket.to_path_buf(),
        source,
    };
    match std::fs::remove_file(socket) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(bind_error(e)),
        _ => {}
    }
    let listener = UnixListener::bind(socket).map_err(bind_error)?;
    Server::builder()
        .add_service(DevicePluginServer::new(service))
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
        .await
        .map_err(|e| bind_error(std::io::Error::other(e)))
}

type WatchResponses = Pin<Box<dyn Stream<Item = Result<ListAndWatchResponse, Status>> + Send>>;

/// A preferred allocation without a decision to follow: the must-include ids first, then
/// kubelet's own order of the available ones, up to `size`.
pub(crate) fn kubelet_order(
    must_include: Vec<String>,
    available: &[String],
    size: usize,
) -> Vec<String> {
    let mut ids = must_include;
    for id in available {
        if ids.len() >= size {
            break;
        }
        if !ids.contains(id) {
            ids.push(id.clone());
        }
    }
    ids
}

#[tonic::async_trait]
impl<P: PodSource> DevicePlugin for Plugin<P> {
    async fn get_device_plugin_options(
        &self,
        _: Request<Empty>,
    ) -> Result<Response<DevicePluginOptions>, Status> {
        Ok(Response::new(self.options()))
    }

    type ListAndWatchStream = WatchResponses;

    async fn list_and_watch(
        &self,
        _: Request<Empty>,
    ) -> Result<Response<Self::ListAndWatchStream>, Status> {
        let config = self.allocator.config().clone();
        // WatchStream yields the current list at once, then every change.
        let stream = WatchStream::new(self.devices.clone()).map(move |devices| {
            Ok(ListAndWatchResponse {
                devices: replicas(
                    &devices,
                    config.device_split_count,
                    config.enable_numa_topology,
                ),
            })
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn get_preferred_allocation(
        &self,
        request: Request<PreferredAllocationRequest>,
    ) -> Result<Response<PreferredAllocationResponse>, Status> {
        let mut container_responses = Vec::new();
        for c in request.into_inner().container_requests {
            let size = usize::try_from(c.allocation_size).unwrap_or(0);
            let preferred = self
                .allocator
                .preferred(&c.available_device_i_ds, &c.must_include_device_i_ds, size)
                .await
                .map_err(|e| Status::unavailable(e.to_string()))?;
            let device_i_ds = preferred.unwrap_or_else(|| {
                kubelet_order(c.must_include_device_i_ds, &c.available_device_i_ds, size)
            });
            container_responses.push(ContainerPreferredAllocationResponse { device_i_ds });
        }
        Ok(Response::new(PreferredAllocationResponse {
            container_responses,
        }))
    }

    async fn allocate(
        &self,
        request: Request<AllocateRequest>,
    ) -> Result<Response<AllocateResponse>, Status> {
        self.allocator
            .allocate(request.get_ref())
            .await
            .map(Response::new)
            .map_err(|e| {
                tracing::warn!(error = %e, "allocate failed");
                Status::failed_precondition(e.to_string())
            })
    }

    async fn pre_start_container(
        &self,
        _: Request<PreStartContainerRequest>,
    ) -> Result<Response<PreStartContainerResponse>, Status> {
        Ok(Response::new(PreStartContainerResponse {}))
    }
}

/// A gRPC channel over a unix socket (the URI is required by tonic and ignored).
pub async fn unix_channel(path: &Path) -> Result<tonic::transport::Channel, PluginError> {
    let target = path.to_path_buf();
    Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_| {
            let target = target.clone();
            async move { UnixStream::connect(target).await.map(TokioIo::new) }
        }))
        .await
        .map_err(|source| PluginError::Connect {
            path: path.to_path_buf(),
            source,
        })
}

/// Registers our socket (`endpoint`, a file name in kubelet's plugin directory) for `resource`.
pub async fn register_with_kubelet(
    kubelet_socket: &Path,
    endpoint: &str,
    resource: &str,
    options: DevicePluginOptions,
) -> Result<(), PluginError> {
    let channel = unix_channel(kubelet_socket).await?;
    RegistrationClient::new(channel)
        .register(RegisterRequest {
            version: VERSION.to_string(),
            endpoint: endpoint.to_string(),
            resource_name: resource.to_string(),
            options: Some(options),
        })
        .await
        .map_err(|status| PluginError::Register {
            resource: resource.to_string(),
            status,
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replica_ids_map_back_to_their_card() {
        let uuid = "GPU-0fc3eda5-e98b-a25b-5b0d-cf5c855d1448";
        assert_eq!(replica_id(uuid, 7), format!("{uuid}-7"));
        assert!(is_replica_of(&replica_id(uuid, 7), uuid));
        assert!(is_replica_of("GPU-a::3", "GPU-a"));
        assert!(
            !is_replica_of("GPU-ab-3", "GPU-a"),
            "another card's replica"
        );
        assert!(!is_replica_of("GPU-a-x", "GPU-a"), "no replica number");
    }

    #[tokio::test]
    async fn list_and_watch_tells_each_replicas_numa_node_only_when_configured() {
        let card = Device {
            id: "GPU-a".into(),
            vendor: NVIDIA.into(),
            numa: 1,
            memory_mib: 1024,
            cores: 100,
            healthy: true,
            ..Device::default()
        };
        for (numa, expected) in [(false, None), (true, Some(1))] {
            let (_devices, rx) = watch::channel(vec![card.clone()]);
            let config = crate::config::Config {
                device_split_count: 2,
                enable_numa_topology: numa,
                ..crate::config::Config::default()
            };
            let pods = crate::pods::MemoryPods::default();
            let plugin = Plugin::new(rx, Arc::new(Allocator::new("node1", config, pods)));
            let mut stream = plugin
                .list_and_watch(Request::new(Empty {}))
                .await
                .expect("stream")
                .into_inner();
            let first = stream.next().await.expect("a list").expect("ok");
            let nodes: Vec<Option<i64>> = first
                .devices
                .iter()
                .map(|d| d.topology.as_ref().map(|t| t.nodes[0].id))
                .collect();
            assert_eq!(nodes, [expected, expected], "enableNumaTopology: {numa}");
        }
    }
}
