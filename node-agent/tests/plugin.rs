//! The device plugin as kubelet drives it, over real unix sockets: register with a stand-in
//! kubelet, GetDevicePluginOptions, ListAndWatch, Allocate for a pod carrying the decision
//! `hamr simulate` makes for `examples/pods/vgpu-share.yaml` on `examples/cluster.yaml`, and a
//! health change streamed to kubelet.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hamr_guest::vendor::nvidia::register::REGISTER;
use hamr_node_agent::allocate::{Allocator, BIND_PHASE, BIND_TIME};
use hamr_node_agent::api::device_plugin_client::DevicePluginClient;
use hamr_node_agent::api::{
    AllocateRequest, ContainerAllocateRequest, Empty, ListAndWatchResponse, Mount,
};
use hamr_node_agent::config::Config;
use hamr_node_agent::discovery::Inventory;
use hamr_node_agent::discovery::fake::FakeDiscovery;
use hamr_node_agent::plugin::{Plugin, register_with_kubelet, unix_channel};
use hamr_node_agent::pods::{ContainerInfo, MemoryPods, PodInfo};
use hamr_node_agent::register::registration;
use tonic::Streaming;

const NODE: &str = "gpu-a100-1";
const CARD_A: &str = "GPU-d4cce389-fd14-aca7-7c50-f995f0424fa0";
const CARD_D: &str = "GPU-83eeeee7-68b8-1c8d-a1f7-3c12a3140947";

fn devices_file(path: &Path, d_healthy: bool) {
    let text = format!(
        "devices:\n\
         - {{id: {CARD_A}, vendor: NVIDIA, model: NVIDIA A100-SXM4-80GB, memoryMiB: 81920}}\n\
         - {{id: {CARD_D}, vendor: NVIDIA, model: NVIDIA A100-SXM4-80GB, memoryMiB: 81920, \
            numa: 1, index: 3, healthy: {d_healthy}}}\n"
    );
    std::fs::write(path, text).expect("write devices file");
}

/// `ml-team/vgpu-share` after hamr's filter and bind placed it on card 3 of gpu-a100-1.
fn vgpu_share() -> PodInfo {
    PodInfo {
        namespace: "ml-team".into(),
        name: "vgpu-share".into(),
        uid: "6f1c1a52-9d0e-4c55-8a43-2b1f0f1d7e21".into(),
        phase: "Pending".into(),
        annotations: BTreeMap::from([
            (
                "hami.io/vgpu-devices-to-allocate".to_string(),
                format!("{CARD_D},NVIDIA,10240,30:;"),
            ),
            (
                "hami.io/vgpu-devices-allocated".to_string(),
                format!("{CARD_D},NVIDIA,10240,30:;"),
            ),
            ("hami.io/vgpu-node".to_string(), NODE.to_string()),
            ("hami.io/vgpu-time".to_string(), "1795867200".to_string()),
            (BIND_PHASE.to_string(), "allocating".to_string()),
            (BIND_TIME.to_string(), "1795867201".to_string()),
        ]),
        containers: vec![ContainerInfo {
            name: "cuda".into(),
            disable_control: false,
        }],
        init_containers: 0,
    }
}

async fn next(stream: &mut Streaming<ListAndWatchResponse>) -> ListAndWatchResponse {
    tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("a ListAndWatch message within 5 s")
        .expect("stream healthy")
        .expect("stream open")
}

fn health_of(response: &ListAndWatchResponse, card: &str) -> Vec<String> {
    response
        .devices
        .iter()
        .filter(|d| d.id.starts_with(card))
        .map(|d| d.health.clone())
        .collect()
}

#[tokio::test]
async fn kubelet_registers_lists_allocates_and_sees_a_card_turn_unhealthy() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("devices.yaml");
    devices_file(&file, true);
    let config = Config {
        hook_path: dir.path().join("usr/local"),
        lock_dir: dir.path().join("vgpulock"),
        plugin_dir: dir.path().to_path_buf(),
        ..Config::default()
    };

    // A stand-in kubelet on kubelet.sock.
    let kubelet = common::Kubelet::default();
    kubelet.start(&dir.path().join("kubelet.sock"));

    // The agent: fake discovery, in-memory pods, the plugin on nvidia-gpu.sock.
    let inventory = Inventory::new(Arc::new(FakeDiscovery::new(&file))).expect("first scan");
    let pods = MemoryPods::default();
    pods.insert(NODE, vgpu_share());
    let allocator = Arc::new(Allocator::new(NODE, config.clone(), pods.clone()));
    let plugin = Plugin::new(inventory.subscribe(), allocator);
    let options = plugin.options();
    let socket = dir.path().join(config.socket_name());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn({
        let socket = socket.clone();
        async move {
            plugin
                .serve(&socket, async {
                    let _ = stopped.await;
                })
                .await
        }
    });
    for _ in 0..50 {
        if socket.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // 1. Register with kubelet.
    register_with_kubelet(
        &dir.path().join("kubelet.sock"),
        "nvidia-gpu.sock",
        "nvidia.com/gpu",
        options,
    )
    .await
    .expect("kubelet accepts");
    let seen = kubelet.registrations();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        (
            seen[0].version.as_str(),
            seen[0].endpoint.as_str(),
            seen[0].resource_name.as_str()
        ),
        ("v1beta1", "nvidia-gpu.sock", "nvidia.com/gpu")
    );

    // 2. kubelet dials back: options, then the device list.
    let mut client = DevicePluginClient::new(unix_channel(&socket).await.expect("dial plugin"));
    let options = client
        .get_device_plugin_options(Empty {})
        .await
        .expect("options")
        .into_inner();
    assert!(!options.pre_start_required);
    assert!(!options.get_preferred_allocation_available);

    let mut stream = client
        .list_and_watch(Empty {})
        .await
        .expect("watch")
        .into_inner();
    let first = next(&mut stream).await;
    let ids: Vec<&str> = first.devices.iter().map(|d| d.id.as_str()).collect();
    let mut expected: Vec<String> = (0..10).map(|n| format!("{CARD_A}-{n}")).collect();
    expected.extend((0..10).map(|n| format!("{CARD_D}-{n}")));
    assert_eq!(ids, expected);
    assert!(first.devices.iter().all(|d| d.health == "Healthy"));

    // 3. Allocate: kubelet picked some replica; the decision says card 3, 10240 MiB, 30%.
    let response = client
        .allocate(AllocateRequest {
            container_requests: vec![ContainerAllocateRequest {
                devices_ids: vec![format!("{CARD_A}-7")],
            }],
        })
        .await
        .expect("allocated")
        .into_inner();
    let container = &response.container_responses[0];
    let vgpu = dir.path().join("usr/local/vgpu");
    let at = |p: &str| vgpu.join(p).to_string_lossy().into_owned();
    let uid = "6f1c1a52-9d0e-4c55-8a43-2b1f0f1d7e21";
    let expected_env: HashMap<String, String> = [
        ("NVIDIA_VISIBLE_DEVICES", CARD_D.to_string()),
        ("CUDA_DEVICE_MEMORY_LIMIT_0", "10240m".to_string()),
        ("CUDA_DEVICE_SM_LIMIT", "30".to_string()),
        (
            "CUDA_DEVICE_MEMORY_SHARED_CACHE",
            at(&format!("{uid}.cache")),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(container.envs, expected_env);
    let mount = |c: String, h: String, read_only: bool| Mount {
        container_path: c,
        host_path: h,
        read_only,
    };
    assert_eq!(
        container.mounts,
        vec![
            mount(at("libvgpu.so"), at("libvgpu.so"), true),
            mount(
                vgpu.to_string_lossy().into_owned(),
                at(&format!("containers/{uid}_cuda")),
                false
            ),
            mount(
                "/tmp/vgpulock".into(),
                dir.path().join("vgpulock").to_string_lossy().into_owned(),
                false
            ),
            mount("/etc/ld.so.preload".into(), at("ld.so.preload"), true),
        ]
    );
    let cdi: Vec<&str> = container
        .cdi_devices
        .iter()
        .map(|d| d.name.as_str())
        .collect();
    assert_eq!(cdi, [format!("nvidia.com/gpu={CARD_D}")]);
    let pod = pods.get("ml-team", "vgpu-share").expect("pod");
    assert_eq!(pod.annotation(BIND_PHASE), Some("success"));
    assert_eq!(
        pod.annotation("hami.io/vgpu-devices-to-allocate"),
        Some(";")
    );

    // A second Allocate for the same count finds nothing left to serve.
    let status = client
        .allocate(AllocateRequest {
            container_requests: vec![ContainerAllocateRequest {
                devices_ids: vec![format!("{CARD_A}-1")],
            }],
        })
        .await
        .expect_err("nothing left");
    assert!(
        status
            .message()
            .starts_with("no pod to allocate 1 nvidia.com/gpu device(s) on node gpu-a100-1"),
        "{}",
        status.message()
    );

    // 4. Card 3 fails: the next scan re-sends the list with its replicas Unhealthy.
    devices_file(&file, false);
    assert!(
        inventory.refresh().expect("rescan"),
        "the scan saw a change"
    );
    let second = next(&mut stream).await;
    assert_eq!(
        health_of(&second, CARD_D),
        vec!["Unhealthy".to_string(); 10]
    );
    assert_eq!(health_of(&second, CARD_A), vec!["Healthy".to_string(); 10]);
    let registered = registration(&inventory.current(), &config);
    assert!(
        registered[REGISTER].contains(&format!(
            r#"{{"id":"{CARD_D}","index":3,"count":10,"devmem":81920,"devcore":100,"type":"NVIDIA A100-SXM4-80GB","numa":1,"mode":"hami-core"}}"#
        )),
        "the registration drops card 3's health flag: {}",
        registered[REGISTER]
    );

    // 5. The card is fine again: its replicas are streamed Healthy.
    devices_file(&file, true);
    assert!(inventory.refresh().expect("rescan"));
    let third = next(&mut stream).await;
    assert_eq!(health_of(&third, CARD_D), vec!["Healthy".to_string(); 10]);

    // 6. An XID event on card 0 is streamed at once, without waiting for a scan.
    assert!(inventory.mark_unhealthy(CARD_A, "XID 79"));
    let fourth = next(&mut stream).await;
    assert_eq!(
        health_of(&fourth, CARD_A),
        vec!["Unhealthy".to_string(); 10]
    );
    assert_eq!(health_of(&fourth, CARD_D), vec!["Healthy".to_string(); 10]);

    let _ = stop.send(());
    drop(stream);
    drop(client);
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("server stops")
        .expect("task")
        .expect("served cleanly");
}
