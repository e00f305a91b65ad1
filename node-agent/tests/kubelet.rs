//! The plugin stays registered with kubelet: registration waits for kubelet, and a kubelet
//! restart (its socket re-created, the plugin directory wiped) is followed by a new server and
//! a new registration, all over real unix sockets.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hamr_node_agent::allocate::Allocator;
use hamr_node_agent::api::Empty;
use hamr_node_agent::api::device_plugin_client::DevicePluginClient;
use hamr_node_agent::config::Config;
use hamr_node_agent::discovery::Inventory;
use hamr_node_agent::discovery::fake::FakeDiscovery;
use hamr_node_agent::kubelet::{KubeletLink, supervise};
use hamr_node_agent::plugin::{Plugin, unix_channel};
use hamr_node_agent::pods::MemoryPods;

fn plugin(dir: &Path) -> Plugin<MemoryPods> {
    let file = dir.join("devices.yaml");
    std::fs::write(
        &file,
        "devices:\n- {id: GPU-a, vendor: NVIDIA, model: NVIDIA A100, memoryMiB: 40960}\n",
    )
    .expect("write devices");
    let inventory = Inventory::new(Arc::new(FakeDiscovery::new(&file))).expect("scan");
    let config = Config {
        plugin_dir: dir.to_path_buf(),
        device_split_count: 2,
        ..Config::default()
    };
    let allocator = Arc::new(Allocator::new("node1", config, MemoryPods::default()));
    // The inventory's sender lives in the plugin's receiver; leak the inventory so the list
    // stays open for the whole test.
    let devices = inventory.subscribe();
    std::mem::forget(inventory);
    Plugin::new(devices, allocator)
}

fn link(dir: &Path) -> KubeletLink {
    KubeletLink {
        plugin_dir: dir.to_path_buf(),
        socket_name: "nvidia-gpu.sock".into(),
        resource: "nvidia.com/gpu".into(),
        poll: Duration::from_millis(20),
        retry: Duration::from_millis(50),
    }
}

async fn device_count(socket: &Path) -> usize {
    let mut client = DevicePluginClient::new(unix_channel(socket).await.expect("dial the plugin"));
    let mut stream = client
        .list_and_watch(Empty {})
        .await
        .expect("ListAndWatch")
        .into_inner();
    let first = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("a list within 5 s")
        .expect("stream healthy")
        .expect("stream open");
    first.devices.len()
}

#[tokio::test]
async fn the_plugin_registers_when_kubelet_comes_up_and_again_after_kubelet_restarts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let supervisor = tokio::spawn(supervise(plugin(dir.path()), link(dir.path()), async {
        let _ = stopped.await;
    }));

    // kubelet is not up yet: the plugin serves and waits.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let socket = dir.path().join("nvidia-gpu.sock");
    assert_eq!(
        device_count(&socket).await,
        2,
        "serving before kubelet is up"
    );

    // kubelet starts: one registration.
    let kubelet = common::Kubelet::default();
    let first = kubelet.start(&dir.path().join("kubelet.sock"));
    let seen = kubelet.wait_for(1).await;
    assert_eq!(
        (
            seen[0].version.as_str(),
            seen[0].endpoint.as_str(),
            seen[0].resource_name.as_str()
        ),
        ("v1beta1", "nvidia-gpu.sock", "nvidia.com/gpu")
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        kubelet.registrations().len(),
        1,
        "registered once while nothing changes"
    );

    // kubelet restarts: it stops, wipes the plugin directory and creates a new kubelet.sock.
    first.abort();
    let _ = first.await;
    std::fs::remove_file(dir.path().join("kubelet.sock")).expect("remove kubelet.sock");
    std::fs::remove_file(&socket).expect("remove our socket");
    let restarted = common::Kubelet::default();
    restarted.start(&dir.path().join("kubelet.sock"));
    let seen = restarted.wait_for(1).await;
    assert_eq!(seen[0].endpoint, "nvidia-gpu.sock");
    assert_eq!(
        device_count(&socket).await,
        2,
        "serving again on a new socket"
    );

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(5), supervisor)
        .await
        .expect("the supervisor stops")
        .expect("task")
        .expect("stopped cleanly");
}

#[tokio::test]
async fn a_new_kubelet_socket_alone_is_enough_to_register_again() {
    let dir = tempfile::tempdir().expect("temp dir");
    let kubelet = common::Kubelet::default();
    let first = kubelet.start(&dir.path().join("kubelet.sock"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let supervisor = tokio::spawn(supervise(plugin(dir.path()), link(dir.path()), async {
        let _ = stopped.await;
    }));
    kubelet.wait_for(1).await;

    // Our socket survives, but kubelet.sock is a new file: kubelet forgot us.
    first.abort();
    let _ = first.await;
    std::fs::remove_file(dir.path().join("kubelet.sock")).expect("remove kubelet.sock");
    let restarted = common::Kubelet::default();
    restarted.start(&dir.path().join("kubelet.sock"));
    restarted.wait_for(1).await;
    assert_eq!(kubelet.registrations().len(), 1, "the old kubelet saw one");

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(5), supervisor)
        .await
        .expect("the supervisor stops")
        .expect("task")
        .expect("stopped cleanly");
}
