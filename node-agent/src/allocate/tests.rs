use std::collections::HashMap;
use std::path::Path;

use super::*;
use crate::api::{ContainerAllocateRequest, Mount};
use crate::pods::{ContainerInfo, MemoryPods};

pub(crate) const NODE: &str = "node1";

/// A pod as the scheduler leaves it after filter and bind.
pub(crate) fn decided(name: &str, to_allocate: &str, containers: &[&str]) -> PodInfo {
    PodInfo {
        namespace: "default".into(),
        name: name.into(),
        uid: format!("uid-{name}"),
        phase: "Pending".into(),
        annotations: BTreeMap::from([
            (DEVICES_TO_ALLOCATE.to_string(), to_allocate.to_string()),
            (VGPU_NODE.to_string(), NODE.to_string()),
            (BIND_PHASE.to_string(), "allocating".to_string()),
            (BIND_TIME.to_string(), "1795867200".to_string()),
        ]),
        containers: containers
            .iter()
            .map(|c| ContainerInfo {
                name: c.to_string(),
                disable_control: false,
            })
            .collect(),
        init_containers: 0,
        ..PodInfo::default()
    }
}

/// A configuration whose isolation paths lie under `root`.
pub(crate) fn config(root: &Path) -> Config {
    Config {
        hook_path: root.join("hook"),
        lock_dir: root.join("vgpulock"),
        ..Config::default()
    }
}

/// One container request for the replica `ids`.
pub(crate) fn request(ids: &[&str]) -> AllocateRequest {
    AllocateRequest {
        container_requests: vec![ContainerAllocateRequest {
            devices_ids: ids.iter().map(|s| s.to_string()).collect(),
        }],
    }
}

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test]
async fn a_decided_pod_gets_its_cards_limits_and_mounts_and_is_marked_success() {
    let root = tempfile::tempdir().expect("temp dir");
    let pods = MemoryPods::default();
    pods.insert(NODE, decided("p1", "GPU-a,NVIDIA,10240,30:;", &["main"]));
    let allocator = Allocator::new(NODE, config(root.path()), pods.clone());

    let response = allocator
        .allocate(&request(&["GPU-a-3"]))
        .await
        .expect("allocated");

    let r = &response.container_responses[0];
    let hook = root.path().join("hook/vgpu");
    let h = |p: &str| hook.join(p).to_string_lossy().into_owned();
    assert_eq!(
        r.envs,
        env(&[
            ("NVIDIA_VISIBLE_DEVICES", "GPU-a"),
            ("CUDA_DEVICE_MEMORY_LIMIT_0", "10240m"),
            ("CUDA_DEVICE_SM_LIMIT", "30"),
            ("CUDA_DEVICE_MEMORY_SHARED_CACHE", &h("uid-p1.cache")),
        ])
    );
    let lock = root.path().join("vgpulock").to_string_lossy().into_owned();
    let m = |c: &str, h: &str, ro: bool| Mount {
        container_path: c.into(),
        host_path: h.into(),
        read_only: ro,
    };
    assert_eq!(
        r.mounts,
        vec![
            m(&h("libvgpu.so"), &h("libvgpu.so"), true),
            m(&hook.to_string_lossy(), &h("containers/uid-p1_main"), false),
            m("/tmp/vgpulock", &lock, false),
            m("/etc/ld.so.preload", &h("ld.so.preload"), true),
        ]
    );
    assert_eq!(r.cdi_devices[0].name, "nvidia.com/gpu=GPU-a");
    assert!(hook.join("containers/uid-p1_main").is_dir(), "dir prepared");

    let pod = pods.get("default", "p1").expect("pod");
    assert_eq!(pod.annotation(DEVICES_TO_ALLOCATE), Some(";"));
    assert_eq!(pod.annotation(BIND_PHASE), Some("success"));
}

#[tokio::test]
async fn a_two_container_pod_stays_allocating_until_its_second_container_is_served() {
    let root = tempfile::tempdir().expect("temp dir");
    let pods = MemoryPods::default();
    let list = "GPU-a,NVIDIA,3000,30:;GPU-a,NVIDIA,5000,0:;";
    pods.insert(NODE, decided("p1", list, &["first", "second"]));
    let allocator = Allocator::new(NODE, config(root.path()), pods.clone());

    let one = allocator
        .allocate(&request(&["GPU-a-0"]))
        .await
        .expect("first");
    assert_eq!(
        one.container_responses[0].envs["CUDA_DEVICE_MEMORY_LIMIT_0"],
        "3000m"
    );
    let pod = pods.get("default", "p1").expect("pod");
    assert_eq!(
        pod.annotation(DEVICES_TO_ALLOCATE),
        Some(";GPU-a,NVIDIA,5000,0:;")
    );
    assert_eq!(pod.annotation(BIND_PHASE), Some("allocating"));

    let two = allocator
        .allocate(&request(&["GPU-a-1"]))
        .await
        .expect("second");
    let envs = &two.container_responses[0].envs;
    assert_eq!(
        (
            envs["CUDA_DEVICE_MEMORY_LIMIT_0"].as_str(),
            envs["CUDA_DEVICE_SM_LIMIT"].as_str()
        ),
        ("5000m", "0")
    );
    let mount = &two.container_responses[0].mounts[1];
    assert!(
        mount.host_path.ends_with("containers/uid-p1_second"),
        "{mount:?}"
    );
    let pod = pods.get("default", "p1").expect("pod");
    assert_eq!(pod.annotation(DEVICES_TO_ALLOCATE), Some(";;"));
    assert_eq!(pod.annotation(BIND_PHASE), Some("success"));
}

#[tokio::test]
async fn an_init_container_without_cards_is_skipped_and_positions_hold() {
    let root = tempfile::tempdir().expect("temp dir");
    let pods = MemoryPods::default();
    pods.insert(
        NODE,
        decided("p1", ";GPU-a,NVIDIA,2500,25:;", &["init", "app"]),
    );
    let allocator = Allocator::new(NODE, config(root.path()), pods);
    let r = allocator
        .allocate(&request(&["GPU-a-0"]))
        .await
        .expect("allocated");
    assert!(
        r.container_responses[0].mounts[1]
            .host_path
            .ends_with("uid-p1_app")
    );
}

#[tokio::test]
async fn two_cards_for_one_container_get_one_limit_each_and_the_first_cards_sm_limit() {
    let root = tempfile::tempdir().expect("temp dir");
    let pods = MemoryPods::default();
    let list = "GPU-a,NVIDIA,1000,30:GPU-b,NVIDIA,2000,60:;";
    pods.insert(NODE, decided("p1", list, &["main"]));
    let allocator = Allocator::new(NODE, config(root.path()), pods);
    let r = allocator
        .allocate(&request(&["GPU-a-0", "GPU-b-0"]))
        .await
        .expect("allocated");
    let envs = &r.container_responses[0].envs;
    assert_eq!(envs["NVIDIA_VISIBLE_DEVICES"], "GPU-a,GPU-b");
    assert_eq!(envs["CUDA_DEVICE_MEMORY_LIMIT_0"], "1000m");
    assert_eq!(envs["CUDA_DEVICE_MEMORY_LIMIT_1"], "2000m");
    assert_eq!(envs["CUDA_DEVICE_SM_LIMIT"], "30");
    let cdi: Vec<&str> = r.container_responses[0]
        .cdi_devices
        .iter()
        .map(|d| d.name.as_str())
        .collect();
    assert_eq!(cdi, ["nvidia.com/gpu=GPU-a", "nvidia.com/gpu=GPU-b"]);
}

#[tokio::test]
async fn no_matching_pod_is_an_error_naming_node_resource_and_count() {
    let root = tempfile::tempdir().expect("temp dir");
    let pods = MemoryPods::default();
    // One card decided, two asked: the count does not match.
    pods.insert(NODE, decided("p1", "GPU-a,NVIDIA,1000,30:;", &["main"]));
    let mut elsewhere = decided(
        "p2",
        "GPU-a,NVIDIA,1000,30:GPU-b,NVIDIA,1000,30:;",
        &["main"],
    );
    elsewhere
        .annotations
        .insert(VGPU_NODE.into(), "node2".into());
    pods.insert(NODE, elsewhere);
    let allocator = Allocator::new(NODE, config(root.path()), pods.clone());
    let err = allocator
        .allocate(&request(&["GPU-a-0", "GPU-b-0"]))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "no pod to allocate 2 nvidia.com/gpu device(s) on node node1: looked for a Pending pod \
         with hami.io/vgpu-node=node1, hami.io/bind-phase=allocating and a next container entry \
         of 2 device(s) in hami.io/vgpu-devices-to-allocate (or Volcano's volcano.sh/vgpu-node, \
         volcano.sh/bind-phase and volcano.sh/devices-to-allocate)"
    );
    let untouched = pods.get("default", "p1").expect("pod");
    assert_eq!(untouched.annotation(BIND_PHASE), Some("allocating"));
}

#[tokio::test]
async fn a_pod_not_yet_bound_or_already_running_is_not_chosen() {
    let root = tempfile::tempdir().expect("temp dir");
    let pods = MemoryPods::default();
    let mut unbound = decided("p1", "GPU-a,NVIDIA,1000,30:;", &["main"]);
    unbound.annotations.remove(BIND_PHASE);
    let mut running = decided("p2", "GPU-a,NVIDIA,1000,30:;", &["main"]);
    running.phase = "Running".into();
    pods.insert(NODE, unbound);
    pods.insert(NODE, running);
    let allocator = Allocator::new(NODE, config(root.path()), pods);
    assert!(matches!(
        allocator.allocate(&request(&["GPU-a-0"])).await,
        Err(AllocateError::NoPod { count: 1, .. })
    ));
}

#[tokio::test]
async fn kubelets_replicas_choose_between_two_pods_before_bind_time_does() {
    let root = tempfile::tempdir().expect("temp dir");
    let pods = MemoryPods::default();
    pods.insert(NODE, decided("older", "GPU-a,NVIDIA,1000,30:;", &["main"]));
    let mut newer = decided("newer", "GPU-b,NVIDIA,2000,30:;", &["main"]);
    newer
        .annotations
        .insert(BIND_TIME.into(), "1795867300".into());
    pods.insert(NODE, newer);
    let allocator = Allocator::new(NODE, config(root.path()), pods.clone());

    let r = allocator
        .allocate(&request(&["GPU-b-4"]))
        .await
        .expect("allocated");
    assert_eq!(
        r.container_responses[0].envs["NVIDIA_VISIBLE_DEVICES"],
        "GPU-b"
    );
    // Replicas of neither card: the older bind goes first.
    let r = allocator
        .allocate(&request(&["GPU-z-0"]))
        .await
        .expect("allocated");
    assert_eq!(
        r.container_responses[0].envs["NVIDIA_VISIBLE_DEVICES"],
        "GPU-a"
    );
}

#[tokio::test]
async fn a_container_that_disables_control_gets_no_preload_mount() {
    let root = tempfile::tempdir().expect("temp dir");
    let pods = MemoryPods::default();
    let mut pod = decided("p1", "GPU-a,NVIDIA,1000,30:;", &["main"]);
    pod.containers[0].disable_control = true;
    pods.insert(NODE, pod);
    let allocator = Allocator::new(NODE, config(root.path()), pods);
    let r = allocator
        .allocate(&request(&["GPU-a-0"]))
        .await
        .expect("allocated");
    let targets: Vec<&str> = r.container_responses[0]
        .mounts
        .iter()
        .map(|m| m.container_path.as_str())
        .collect();
    assert!(!targets.contains(&"/etc/ld.so.preload"), "{targets:?}");
}

#[tokio::test]
async fn an_entry_for_a_missing_container_marks_the_pod_failed() {
    let root = tempfile::tempdir().expect("temp dir");
    let pods = MemoryPods::default();
    pods.insert(NODE, decided("p1", ";GPU-a,NVIDIA,1000,30:;", &["only"]));
    let allocator = Allocator::new(NODE, config(root.path()), pods.clone());
    let err = allocator
        .allocate(&request(&["GPU-a-0"]))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "pod default/p1: hami.io/vgpu-devices-to-allocate has an entry for container 1, the pod has 1"
    );
    let pod = pods.get("default", "p1").expect("pod");
    assert_eq!(pod.annotation(BIND_PHASE), Some("failed"));
}

#[tokio::test]
async fn scaling_log_level_and_disabled_core_limit_add_their_env() {
    let root = tempfile::tempdir().expect("temp dir");
    let pods = MemoryPods::default();
    pods.insert(NODE, decided("p1", "GPU-a,NVIDIA,1000,30:;", &["main"]));
    let config = Config {
        device_memory_scaling: 2.0,
        lib_cuda_log_level: Some(1),
        disable_core_limit: true,
        ..config(root.path())
    };
    let allocator = Allocator::new(NODE, config, pods);
    let r = allocator
        .allocate(&request(&["GPU-a-0"]))
        .await
        .expect("allocated");
    let envs = &r.container_responses[0].envs;
    assert_eq!(envs["CUDA_OVERSUBSCRIBE"], "true");
    assert_eq!(envs["LIBCUDA_LOG_LEVEL"], "1");
    assert_eq!(envs["GPU_CORE_UTILIZATION_POLICY"], "disable");
}

#[tokio::test]
async fn the_preferred_replicas_are_those_of_the_decided_cards() {
    let root = tempfile::tempdir().expect("temp dir");
    let pods = MemoryPods::default();
    pods.insert(NODE, decided("p1", "GPU-b,NVIDIA,1000,30:;", &["main"]));
    let allocator = Allocator::new(NODE, config(root.path()), pods);
    let available: Vec<String> = ["GPU-a-0", "GPU-a-1", "GPU-b-0", "GPU-b-1"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let preferred = allocator.preferred(&available, &[], 1).await.expect("read");
    assert_eq!(preferred, Some(vec!["GPU-b-0".to_string()]));
}

/// A pod as Volcano's scheduler leaves it: its lists cover regular containers only.
pub(crate) fn volcano_decided(name: &str, to_allocate: &str) -> PodInfo {
    PodInfo {
        namespace: "default".into(),
        name: name.into(),
        uid: format!("uid-{name}"),
        phase: "Pending".into(),
        annotations: BTreeMap::from([
            (
                "volcano.sh/devices-to-allocate".to_string(),
                to_allocate.to_string(),
            ),
            (
                "volcano.sh/vgpu-ids-new".to_string(),
                to_allocate.to_string(),
            ),
            ("volcano.sh/vgpu-node".to_string(), NODE.to_string()),
            (
                "volcano.sh/bind-phase".to_string(),
                "allocating".to_string(),
            ),
            ("volcano.sh/bind-time".to_string(), "1795867200".to_string()),
        ]),
        containers: ["setup", "main"]
            .iter()
            .map(|c| ContainerInfo {
                name: c.to_string(),
                disable_control: false,
            })
            .collect(),
        init_containers: 1,
        ..PodInfo::default()
    }
}

#[tokio::test]
async fn a_volcano_pod_is_served_from_its_own_keys_and_its_list_skips_init_containers() {
    let root = tempfile::tempdir().expect("temp dir");
    let pods = MemoryPods::default();
    pods.insert(NODE, volcano_decided("v1", "GPU-a,NVIDIA,3000,50:"));
    let allocator = Allocator::new(NODE, config(root.path()), pods.clone());

    let response = allocator
        .allocate(&request(&["GPU-a-1"]))
        .await
        .expect("allocated");
    let r = &response.container_responses[0];
    assert_eq!(r.envs["NVIDIA_VISIBLE_DEVICES"], "GPU-a");
    assert_eq!(r.envs["CUDA_DEVICE_MEMORY_LIMIT_0"], "3000m");
    assert_eq!(r.envs["CUDA_DEVICE_SM_LIMIT"], "50");
    assert!(
        r.mounts[1].host_path.ends_with("containers/uid-v1_main"),
        "the regular container, not the init one: {:?}",
        r.mounts[1]
    );
    let pod = pods.get("default", "v1").expect("pod");
    assert_eq!(pod.annotation("volcano.sh/devices-to-allocate"), Some(""));
    assert_eq!(pod.annotation("volcano.sh/bind-phase"), Some("success"));
    assert_eq!(
        pod.annotation("volcano.sh/vgpu-ids-new"),
        Some("GPU-a,NVIDIA,3000,50:"),
        "the scheduler's record stays"
    );
    assert_eq!(pod.annotation(BIND_PHASE), None, "no HAMi key is written");
}

#[tokio::test]
async fn without_mig_control_a_hami_decision_with_mig_reservations_is_refused_and_marked_failed() {
    let root = tempfile::tempdir().expect("temp dir");
    let pods = MemoryPods::default();
    let mut pod = decided("m1", "GPU-a,NVIDIA,5120,14:;", &["main"]);
    pod.annotations.insert(
        "hami.io/vgpu-mig-allocations".into(),
        r#"[{"containerIndex":0,"deviceIndex":0,"gpuUUID":"GPU-a","profile":"1g.5gb","placement":{"start":0,"size":1}}]"#.into(),
    );
    pods.insert(NODE, pod);
    let allocator = Allocator::new(NODE, config(root.path()), pods.clone());
    let err = allocator
        .allocate(&request(&["GPU-a-0"]))
        .await
        .expect_err("no MIG instances can be created");
    assert_eq!(
        err.to_string(),
        "pod default/m1: its decision reserves MIG slices (hami.io/vgpu-mig-allocations), which \
         this node agent does not create (operatingMode is not mig); refusing rather than \
         handing out the whole card"
    );
    let pod = pods.get("default", "m1").expect("pod");
    assert_eq!(pod.annotation(BIND_PHASE), Some("failed"));
}

#[tokio::test]
async fn a_volcano_mig_slice_on_a_node_not_in_mig_mode_is_refused_with_its_id() {
    let root = tempfile::tempdir().expect("temp dir");
    let pods = MemoryPods::default();
    pods.insert(
        NODE,
        volcano_decided("v2", "GPU-a[group2-3],NVIDIA,4864,0:"),
    );
    let allocator = Allocator::new(NODE, config(root.path()), pods.clone());
    let err = allocator
        .allocate(&request(&["GPU-a-0"]))
        .await
        .expect_err("refused");
    assert!(
        err.to_string()
            .contains("(GPU-a[group2-3] in volcano.sh/devices-to-allocate)"),
        "{err}"
    );
    let pod = pods.get("default", "v2").expect("pod");
    assert_eq!(pod.annotation("volcano.sh/bind-phase"), Some("failed"));
}
