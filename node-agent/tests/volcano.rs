//! Volcano's three kubelet resources over real unix sockets: with `volcano.register` the agent
//! serves `volcano.sh/vgpu-number`, `volcano.sh/vgpu-memory` and `volcano.sh/vgpu-cores` on
//! their own sockets, each registered with (a stand-in) kubelet, so the node's allocatable shows
//! all three and Volcano counts the node as live; a card turning unhealthy leaves all three.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hamr_node_agent::allocate::Allocator;
use hamr_node_agent::api::device_plugin_client::DevicePluginClient;
use hamr_node_agent::api::{
    AllocateRequest, ContainerAllocateRequest, ContainerAllocateResponse, Empty,
    ListAndWatchResponse,
};
use hamr_node_agent::config::{Config, VolcanoConfig};
use hamr_node_agent::discovery::Inventory;
use hamr_node_agent::discovery::fake::FakeDiscovery;
use hamr_node_agent::plugin::counted::spawn_volcano;
use hamr_node_agent::plugin::{Plugin, unix_channel};
use hamr_node_agent::pods::MemoryPods;
use tonic::Streaming;

fn devices(path: &Path, b_healthy: bool) {
    std::fs::write(
        path,
        format!(
            "devices:\n\
             - {{id: GPU-a, vendor: NVIDIA, model: NVIDIA A100, memoryMiB: 3072}}\n\
             - {{id: GPU-b, vendor: NVIDIA, model: NVIDIA A100, memoryMiB: 2048, index: 1, healthy: {b_healthy}}}\n"
        ),
    )
    .expect("write devices");
}

async fn next(stream: &mut Streaming<ListAndWatchResponse>) -> Vec<(String, String)> {
    tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("a list within 5 s")
        .expect("stream healthy")
        .expect("stream open")
        .devices
        .into_iter()
        .map(|d| (d.id, d.health))
        .collect()
}

async fn watch(socket: &Path) -> Streaming<ListAndWatchResponse> {
    let mut client = DevicePluginClient::new(unix_channel(socket).await.expect("dial"));
    client
        .list_and_watch(Empty {})
        .await
        .expect("ListAndWatch")
        .into_inner()
}

fn ids(list: &[(String, String)], health: &str) -> Vec<String> {
    list.iter()
        .filter(|(_, h)| h == health)
        .map(|(id, _)| id.clone())
        .collect()
}

#[tokio::test]
async fn volcano_resources_are_served_registered_and_follow_health() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("devices.yaml");
    devices(&file, true);
    let config = Config {
        plugin_dir: dir.path().to_path_buf(),
        device_split_count: 2,
        volcano: VolcanoConfig {
            register: true,
            gpu_memory_factor: 1024,
            ..VolcanoConfig::default()
        },
        ..Config::default()
    };
    let kubelet = common::Kubelet::default();
    let _kubelet = kubelet.start(&dir.path().join("kubelet.sock"));

    let inventory = Inventory::new(Arc::new(FakeDiscovery::new(&file))).expect("scan");
    let allocator = Arc::new(Allocator::new(
        "node1",
        config.clone(),
        MemoryPods::default(),
    ));
    let plugin = Plugin::new(inventory.subscribe(), allocator);
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    let poll = Duration::from_millis(20);
    // The agent's own wiring (main.rs calls the same function).
    spawn_volcano(&mut tasks, &config, plugin, &inventory, poll, &stopping);

    // Three registrations, each resource on its own socket.
    let mut seen: Vec<(String, String, String)> = kubelet
        .wait_for(3)
        .await
        .into_iter()
        .map(|r| (r.version, r.endpoint, r.resource_name))
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            (
                "v1beta1".into(),
                "nvidia-vgpu-cores.sock".into(),
                "volcano.sh/vgpu-cores".into()
            ),
            (
                "v1beta1".into(),
                "nvidia-vgpu-memory.sock".into(),
                "volcano.sh/vgpu-memory".into()
            ),
            (
                "v1beta1".into(),
                "nvidia-vgpu-number.sock".into(),
                "volcano.sh/vgpu-number".into()
            ),
        ]
    );

    // What kubelet would put in allocatable: 2 x 2 replicas, 3 + 2 GiB units, 2 x 100 cores.
    let mut number = watch(&dir.path().join("nvidia-vgpu-number.sock")).await;
    let mut memory = watch(&dir.path().join("nvidia-vgpu-memory.sock")).await;
    let mut cores = watch(&dir.path().join("nvidia-vgpu-cores.sock")).await;
    let n = next(&mut number).await;
    assert_eq!(
        ids(&n, "Healthy"),
        ["GPU-a-0", "GPU-a-1", "GPU-b-0", "GPU-b-1"]
    );
    let m = next(&mut memory).await;
    assert_eq!(ids(&m, "Healthy"), ["0-0", "0-1", "0-2", "1-0", "1-1"]);
    let c = next(&mut cores).await;
    assert_eq!(c.len(), 200);
    assert_eq!(ids(&c, "Healthy").len(), 200);
    assert_eq!(
        (c[0].0.as_str(), c[199].0.as_str()),
        ("GPU-a-core-0", "GPU-b-core-99")
    );

    // Card b turns unhealthy: its units leave all three resources.
    devices(&file, false);
    assert!(inventory.refresh().expect("scan"));
    let n = next(&mut number).await;
    assert_eq!(ids(&n, "Unhealthy"), ["GPU-b-0", "GPU-b-1"]);
    let m = next(&mut memory).await;
    assert_eq!(ids(&m, "Unhealthy"), ["1-0", "1-1"]);
    assert_eq!(ids(&m, "Healthy"), ["0-0", "0-1", "0-2"]);
    let c = next(&mut cores).await;
    assert_eq!(ids(&c, "Unhealthy").len(), 100);
    assert!(
        ids(&c, "Unhealthy")
            .iter()
            .all(|id| id.starts_with("GPU-b-core-"))
    );

    // Allocate on a counted resource answers every container, with nothing to add.
    let mut client = DevicePluginClient::new(
        unix_channel(&dir.path().join("nvidia-vgpu-memory.sock"))
            .await
            .expect("dial"),
    );
    let request = |ids: &[&str]| ContainerAllocateRequest {
        devices_ids: ids.iter().map(|s| s.to_string()).collect(),
    };
    let answer = client
        .allocate(AllocateRequest {
            container_requests: vec![request(&["0-0", "0-1"]), request(&["0-2"])],
        })
        .await
        .expect("Allocate")
        .into_inner();
    assert_eq!(
        answer.container_responses,
        [
            ContainerAllocateResponse::default(),
            ContainerAllocateResponse::default()
        ]
    );

    // Open streams would hold the servers' graceful shutdown.
    drop((number, memory, cores, client));
    let _ = stop.send(true);
    assert_eq!(tasks.len(), 3);
    while let Some(task) = tokio::time::timeout(Duration::from_secs(10), tasks.join_next())
        .await
        .expect("stops")
    {
        let result = task.expect("no panic");
        assert!(result.is_ok(), "{result:?}");
    }
}
