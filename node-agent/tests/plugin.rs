//! The device plugin as kubelet drives it, over real unix sockets: register with a stand-in
//! kubelet, GetDevicePluginOptions, ListAndWatch, Allocate for a pod whose decision the guest
//! library makes (as `hamr simulate` does) on `examples/cluster.yaml` with this agent's own
//! registration, then health changes streamed to kubelet (a scan, a recovery, an XID mark).

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
use hamr_node_agent::pods::{MemoryPods, PodInfo};
use hamr_node_agent::register::registration;
use tonic::Streaming;

const NODE: &str = "gpu-a100-1";
const CARD_A: &str = "GPU-d4cce389-fd14-aca7-7c50-f995f0424fa0";
const CARD_D: &str = "GPU-83eeeee7-68b8-1c8d-a1f7-3c12a3140947";
const UID: &str = "6f1c1a52-9d0e-4c55-8a43-2b1f0f1d7e21";

fn repo(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// `examples/node-agent/devices.yaml` (the four cards of gpu-a100-1), card 3 healthy or not.
fn devices_file(path: &Path, d_healthy: bool) {
    let mut text =
        std::fs::read_to_string(repo("examples/node-agent/devices.yaml")).expect("example");
    assert!(
        text.trim_end().ends_with("numa: 1") && text.contains(CARD_D),
        "card 3 is the file's last entry"
    );
    text = format!("{}\n    healthy: {d_healthy}\n", text.trim_end());
    std::fs::write(path, text).expect("write devices file");
}

/// The agent's configuration with its host paths and kubelet's directory under `dir`.
fn agent_config(dir: &Path) -> Config {
    Config {
        hook_path: dir.join("usr/local"),
        lock_dir: dir.join("vgpulock"),
        plugin_dir: dir.to_path_buf(),
        ..Config::default()
    }
}

/// `ml-team/vgpu-share` placed as `hamr simulate` places it: the guest library (the same code
/// the component runs) holds `examples/cluster.yaml`, with gpu-a100-1's registration replaced
/// by the one this agent computes from its devices; the pod is admitted and filtered at the
/// scenarios' default time, and hamr's bind adds `bind-phase: allocating` and `bind-time`.
fn simulated_vgpu_share(registered: &BTreeMap<String, String>) -> PodInfo {
    use hamr_guest::api::Delta;
    use k8s_openapi::api::core::v1::{Node, Pod};

    const NOW: i64 = 1_795_867_200; // 2026-11-28T12:00:00Z
    let text = std::fs::read_to_string(repo("examples/cluster.yaml")).expect("cluster");
    let cluster: serde_json::Value = serde_norway::from_str(&text).expect("cluster yaml");
    let mut deltas = Vec::new();
    let mut nodes = Vec::new();
    for item in cluster["items"].as_array().expect("a List") {
        match item["kind"].as_str() {
            Some("Node") => {
                let node: Node = serde_json::from_value(item.clone()).expect("node");
                let mut record = hamr_k8s_convert::node(&node);
                if record.name == NODE {
                    record
                        .annotations
                        .retain(|(k, _)| !registered.contains_key(k));
                    record.annotations.extend(registered.clone());
                }
                nodes.push(record.name.clone());
                deltas.push(Delta::NodeUpsert(record));
            }
            Some("Pod") => {
                let pod: Pod = serde_json::from_value(item.clone()).expect("pod");
                deltas.push(Delta::PodUpsert(hamr_k8s_convert::pod(&pod)));
            }
            _ => {}
        }
    }
    let mut engine = hamr_guest::Engine::new();
    assert_eq!(engine.apply(&deltas), vec![], "the cluster loads");

    let text = std::fs::read_to_string(repo("examples/pods/vgpu-share.yaml")).expect("pod");
    let mut pod: Pod = serde_norway::from_str(&text).expect("pod yaml");
    pod.metadata.uid = Some(UID.to_string());
    let record = hamr_k8s_convert::pod(&pod);
    let admission = engine.admit(&record).expect("admission");
    assert!(admission.allowed, "{}", admission.message);
    let admitted = hamr_guest::admission::apply(&record, &admission.mutations);
    let outcome = engine.filter(&admitted, &nodes, NOW).expect("filter");
    let decision = outcome.decision.expect("the pod fits somewhere");
    assert_eq!(decision.node, NODE);

    let annotations = pod.metadata.annotations.get_or_insert_default();
    annotations.extend(decision.annotations.iter().cloned());
    annotations.insert(BIND_PHASE.to_string(), "allocating".to_string());
    annotations.insert(BIND_TIME.to_string(), (NOW + 1).to_string());
    pod.spec.as_mut().expect("spec").node_name = Some(NODE.to_string());
    // Bound, its containers not started yet: the API server reports it Pending.
    pod.status = Some(k8s_openapi::api::core::v1::PodStatus {
        phase: Some("Pending".to_string()),
        ..Default::default()
    });
    hamr_node_agent::pods::pod_info(&pod)
}

/// The plugin served on a unix socket until [`Serving::stop`].
struct Serving {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), hamr_node_agent::plugin::PluginError>>,
}

impl Serving {
    /// Serves `plugin` on `socket` and waits (up to 1 s) for the socket to appear.
    async fn start<P: hamr_node_agent::pods::PodSource>(
        plugin: Plugin<P>,
        socket: &Path,
    ) -> Serving {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn({
            let socket = socket.to_path_buf();
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
        Serving { stop, task }
    }

    /// Stops serving; the server must end cleanly within 5 s.
    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("server stops")
            .expect("task")
            .expect("served cleanly");
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
    let config = agent_config(dir.path());

    // A stand-in kubelet on kubelet.sock.
    let kubelet = common::Kubelet::default();
    kubelet.start(&dir.path().join("kubelet.sock"));

    // The agent: fake discovery, in-memory pods, the plugin on nvidia-gpu.sock.
    let inventory = Inventory::new(Arc::new(FakeDiscovery::new(&file))).expect("first scan");
    let pods = MemoryPods::default();
    let pod = simulated_vgpu_share(&registration(&inventory.current(), &config));
    assert_eq!(
        pod.annotation("hami.io/vgpu-devices-to-allocate"),
        Some(format!("{CARD_D},NVIDIA,10240,30:;").as_str()),
        "the scheduler chose card 3, the one free card"
    );
    pods.insert(NODE, pod);
    let allocator = Arc::new(Allocator::new(NODE, config.clone(), pods.clone()));
    let plugin = Plugin::new(inventory.subscribe(), allocator);
    let options = plugin.options();
    let socket = dir.path().join(config.socket_name());
    let server = Serving::start(plugin, &socket).await;

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
    let expected: Vec<String> = inventory
        .current()
        .iter()
        .flat_map(|d| (0..10).map(move |n| format!("{}-{n}", d.id)))
        .collect();
    assert_eq!(expected.len(), 40);
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
    let uid = UID;
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

    drop(stream);
    drop(client);
    server.stop().await;
}

/// The pods of `examples/cluster.yaml` bound to gpu-a100-1 (with their decisions), and
/// `ml-team/vgpu-share` as kube-scheduler-wasm-extension leaves it: admitted by the guest
/// (which names hamr-scheduler), bound to gpu-a100-1, without any decision annotation.
fn bound_without_a_decision() -> (Vec<PodInfo>, PodInfo) {
    use k8s_openapi::api::core::v1::Pod;

    let text = std::fs::read_to_string(repo("examples/cluster.yaml")).expect("cluster");
    let cluster: serde_json::Value = serde_norway::from_str(&text).expect("cluster yaml");
    let on_node: Vec<PodInfo> = cluster["items"]
        .as_array()
        .expect("a List")
        .iter()
        .filter(|i| i["kind"] == "Pod" && i["spec"]["nodeName"] == NODE)
        .map(|i| {
            let pod: Pod = serde_json::from_value(i.clone()).expect("pod");
            hamr_node_agent::pods::pod_info(&pod)
        })
        .collect();
    assert!(!on_node.is_empty(), "the cluster has pods on {NODE}");

    let text = std::fs::read_to_string(repo("examples/pods/vgpu-share.yaml")).expect("pod");
    let mut pod: Pod = serde_norway::from_str(&text).expect("pod yaml");
    pod.metadata.uid = Some(UID.to_string());
    let record = hamr_k8s_convert::pod(&pod);
    let admission = hamr_guest::Engine::new().admit(&record).expect("admission");
    assert!(admission.allowed, "{}", admission.message);
    let mut admitted = hamr_guest::admission::apply(&record, &admission.mutations);
    assert_eq!(admitted.scheduler_name.as_deref(), Some("hamr-scheduler"));
    admitted.node_name = Some(NODE.to_string());
    admitted.phase = hamr_guest::api::PodPhase::Pending;
    let bound = hamr_node_agent::pods::pod_info(&hamr_k8s_convert::to_pod(&admitted));
    assert!(
        !bound.annotations.keys().any(|k| k.starts_with("hami.io/")),
        "no decision: {:?}",
        bound.annotations
    );
    (on_node, bound)
}

#[tokio::test]
async fn kubelets_allocate_completes_a_pod_the_scheduler_bound_without_a_decision() {
    use hamr_node_agent::complete::Completer;
    use hamr_node_agent::config::CompleteConfig;

    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("devices.yaml");
    devices_file(&file, true);
    let config = Config {
        complete_decisions: CompleteConfig {
            wait_seconds: 1,
            ..CompleteConfig::default()
        },
        ..agent_config(dir.path())
    };
    let inventory = Inventory::new(Arc::new(FakeDiscovery::new(&file))).expect("first scan");
    let registered = registration(&inventory.current(), &config);
    // The independent run: hamr simulate's placement of the same pod on the same cluster.
    let simulated = simulated_vgpu_share(&registered);
    let to_allocate = "hami.io/vgpu-devices-to-allocate";
    let expected = simulated
        .annotation(to_allocate)
        .expect("decided")
        .to_string();
    assert_eq!(expected, format!("{CARD_D},NVIDIA,10240,30:;"));

    let pods = MemoryPods::default();
    let (on_node, bound) = bound_without_a_decision();
    for p in on_node {
        pods.insert(NODE, p);
    }
    pods.insert(NODE, bound);
    let registration = tokio::sync::watch::Sender::new(registered);
    let completer = Completer::new(
        NODE,
        &config.complete_decisions,
        registration.subscribe(),
        pods.clone(),
    )
    .expect("completer");
    let allocator =
        Allocator::new(NODE, config.clone(), pods.clone()).with_completer(Arc::new(completer));
    let plugin = Plugin::new(inventory.subscribe(), Arc::new(allocator));
    let socket = dir.path().join(config.socket_name());
    let server = Serving::start(plugin, &socket).await;
    let mut client = DevicePluginClient::new(unix_channel(&socket).await.expect("dial plugin"));

    // kubelet calls Allocate right after the bind: the agent completes the pod, then serves it.
    let response = client
        .allocate(AllocateRequest {
            container_requests: vec![ContainerAllocateRequest {
                devices_ids: vec![format!("{CARD_A}-2")],
            }],
        })
        .await
        .expect("allocated")
        .into_inner();
    let envs = &response.container_responses[0].envs;
    assert_eq!(
        (
            envs["NVIDIA_VISIBLE_DEVICES"].as_str(),
            envs["CUDA_DEVICE_MEMORY_LIMIT_0"].as_str(),
            envs["CUDA_DEVICE_SM_LIMIT"].as_str()
        ),
        (CARD_D, "10240m", "30")
    );
    let pod = pods.get("ml-team", "vgpu-share").expect("pod");
    assert_eq!(
        pod.annotation("hami.io/vgpu-devices-allocated"),
        Some(expected.as_str())
    );
    assert_eq!(pod.annotation(to_allocate), Some(";"));
    assert_eq!(pod.annotation(BIND_PHASE), Some("success"));
    let patches: Vec<String> = pods.patches().into_iter().map(|(p, _)| p).collect();
    assert_eq!(
        patches,
        ["ml-team/vgpu-share", "ml-team/vgpu-share"],
        "the completion, then Allocate's write-back"
    );

    drop(client);
    server.stop().await;
}
