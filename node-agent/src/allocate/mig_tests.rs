//! Allocate with dynamic MIG, over the fake MIG backend of the fake devices file.

use std::collections::HashMap;
use std::path::Path;

use super::*;
use crate::api::{CdiDevice, ContainerAllocateRequest};
use crate::mig::fake::FakeMig;
use crate::mig::volcano::Geometries;
use crate::mig::{MigControl, Process};
use crate::pods::MemoryPods;

const NODE: &str = "node1";

fn reserved(name: &str, to_allocate: &str, containers: &[&str], reservations: &str) -> PodInfo {
    let mut pod = super::tests::decided(name, to_allocate, containers);
    pod.annotations
        .insert(MIG_ALLOCATIONS.to_string(), reservations.to_string());
    pod
}

fn setup(
    root: &Path,
) -> (
    MemoryPods,
    Arc<FakeMig>,
    Arc<MigManager>,
    Allocator<MemoryPods>,
) {
    let pods = MemoryPods::default();
    let fake = Arc::new(FakeMig::from_devices(&crate::mig::tests::a100()));
    let geometries = Geometries::new(
        hamr_guest::config::VolcanoConfig::default(),
        [("GPU-a", "NVIDIA A100-SXM4-40GB")],
    );
    let manager = Arc::new(MigManager::new(fake.clone()).with_volcano(geometries));
    let config = Config {
        hook_path: root.join("hook"),
        lock_dir: root.join("vgpulock"),
        operating_mode: "mig".into(),
        ..Config::default()
    };
    let allocator = Allocator::new(NODE, config, pods.clone()).with_mig(manager.clone());
    (pods, fake, manager, allocator)
}

fn request(ids: &[&[&str]]) -> AllocateRequest {
    AllocateRequest {
        container_requests: ids
            .iter()
            .map(|c| ContainerAllocateRequest {
                devices_ids: c.iter().map(|s| s.to_string()).collect(),
            })
            .collect(),
    }
}

const TWO_CONTAINERS: &str = concat!(
    r#"[{"containerIndex":0,"deviceIndex":0,"gpuUUID":"GPU-a","profile":"3g.20gb","placement":{"start":4,"size":4}},"#,
    r#"{"containerIndex":1,"deviceIndex":0,"gpuUUID":"GPU-a","profile":"1g.5gb","placement":{"start":3,"size":1}}]"#
);

#[tokio::test]
async fn each_container_gets_the_mig_device_created_at_its_reserved_placement() {
    let root = tempfile::tempdir().expect("temp dir");
    let (pods, fake, _, allocator) = setup(root.path());
    pods.insert(
        NODE,
        reserved(
            "m1",
            "GPU-a,NVIDIA,19968,43:;GPU-a,NVIDIA,4864,15:;",
            &["big", "small"],
            TWO_CONTAINERS,
        ),
    );

    let response = allocator
        .allocate(&request(&[&["GPU-a-0"], &["GPU-a-1"]]))
        .await
        .expect("allocated");

    let got: Vec<(HashMap<String, String>, Vec<CdiDevice>, usize)> = response
        .container_responses
        .iter()
        .map(|r| (r.envs.clone(), r.cdi_devices.clone(), r.mounts.len()))
        .collect();
    let expect = |uuid: &str| {
        (
            HashMap::from([("NVIDIA_VISIBLE_DEVICES".to_string(), uuid.to_string())]),
            // No CDI names: install-time CDI specs cannot list MIG devices created later.
            Vec::<CdiDevice>::new(),
            0,
        )
    };
    assert_eq!(got, vec![expect("MIG-a/1/0"), expect("MIG-a/2/0")]);
    let on_card: Vec<(u32, u32, u32)> = fake
        .instances("GPU-a")
        .expect("card")
        .iter()
        .map(|i| (i.profile_id, i.placement.start, i.placement.size))
        .collect();
    assert_eq!(on_card, vec![(2, 4, 4), (0, 3, 1)]);

    let pod = pods.get("default", "m1").expect("pod");
    assert_eq!(
        pod.annotation(MIG_ALLOCATIONS),
        Some(concat!(
            r#"[{"containerIndex":0,"deviceIndex":0,"gpuUUID":"GPU-a","profile":"3g.20gb","placement":{"start":4,"size":4},"migUUID":"MIG-a/1/0","gpuInstanceID":1,"computeInstanceID":0},"#,
            r#"{"containerIndex":1,"deviceIndex":0,"gpuUUID":"GPU-a","profile":"1g.5gb","placement":{"start":3,"size":1},"migUUID":"MIG-a/2/0","gpuInstanceID":2,"computeInstanceID":0}]"#
        ))
    );
    assert_eq!(pod.annotation(BIND_PHASE), Some("success"));
    assert_eq!(pod.annotation(DEVICES_TO_ALLOCATE), Some(";;"));
}

#[tokio::test]
async fn the_instances_of_a_pod_that_is_gone_are_destroyed_at_the_next_reconciliation() {
    let root = tempfile::tempdir().expect("temp dir");
    let (pods, fake, manager, allocator) = setup(root.path());
    pods.insert(
        NODE,
        reserved(
            "m1",
            "GPU-a,NVIDIA,19968,43:;GPU-a,NVIDIA,4864,15:;",
            &["big", "small"],
            TWO_CONTAINERS,
        ),
    );
    allocator
        .allocate(&request(&[&["GPU-a-0"], &["GPU-a-1"]]))
        .await
        .expect("allocated");
    let mut running = pods.get("default", "m1").expect("pod");
    running.phase = "Running".into();
    assert_eq!(
        manager.reconcile_pods(&[running.clone()], std::time::Instant::now()),
        vec![]
    );
    assert_eq!(
        fake.instances("GPU-a").expect("card").len(),
        2,
        "still in use"
    );

    // The pod is deleted while its small container's process still runs: only the big
    // container's instance goes; the other follows once the process has ended.
    running.deleting = true;
    fake.set_processes(
        "GPU-a",
        vec![Process {
            pid: 31,
            gi: Some(2),
        }],
    );
    let errors = manager.reconcile_pods(&[running], std::time::Instant::now());
    assert_eq!(
        errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
        vec!["card GPU-a: refusing to repartition: processes [31] are running on it"]
    );
    let left: Vec<u32> = fake
        .instances("GPU-a")
        .expect("card")
        .iter()
        .map(|i| i.gi)
        .collect();
    assert_eq!(left, vec![2]);
    fake.set_processes("GPU-a", vec![]);
    assert_eq!(
        manager.reconcile_pods(&[], std::time::Instant::now()),
        vec![]
    );
    assert_eq!(fake.instances("GPU-a").expect("card"), vec![]);
}

#[tokio::test]
async fn a_reservation_on_another_card_than_the_device_is_refused_and_nothing_is_created() {
    let root = tempfile::tempdir().expect("temp dir");
    let (pods, fake, _, allocator) = setup(root.path());
    pods.insert(
        NODE,
        reserved(
            "m2",
            "GPU-b,NVIDIA,4864,15:;",
            &["main"],
            r#"[{"containerIndex":0,"deviceIndex":0,"gpuUUID":"GPU-a","profile":"1g.5gb","placement":{"start":0,"size":1}}]"#,
        ),
    );
    let err = allocator
        .allocate(&request(&[&["GPU-b-0"]]))
        .await
        .expect_err("refused");
    assert_eq!(
        err.to_string(),
        "pod default/m2: hami.io/vgpu-mig-allocations: container 0 device 0 is GPU-b but its \
         reservation is device 0 on GPU-a"
    );
    assert_eq!(fake.instances("GPU-a").expect("card"), vec![]);
    let pod = pods.get("default", "m2").expect("pod");
    assert_eq!(pod.annotation(BIND_PHASE), Some("failed"));
}

#[tokio::test]
async fn a_card_with_a_whole_card_process_is_not_cut_and_allocate_names_it() {
    let root = tempfile::tempdir().expect("temp dir");
    let (pods, fake, _, allocator) = setup(root.path());
    fake.set_processes("GPU-a", vec![Process { pid: 9, gi: None }]);
    pods.insert(
        NODE,
        reserved(
            "m3",
            "GPU-a,NVIDIA,4864,15:;",
            &["main"],
            r#"[{"containerIndex":0,"deviceIndex":0,"gpuUUID":"GPU-a","profile":"1g.5gb","placement":{"start":0,"size":1}}]"#,
        ),
    );
    let err = allocator
        .allocate(&request(&[&["GPU-a-0"]]))
        .await
        .expect_err("refused");
    assert_eq!(
        err.to_string(),
        "pod default/m3: card GPU-a: refusing to repartition: processes [9] are running on it"
    );
    assert_eq!(fake.instances("GPU-a").expect("card"), vec![]);
}

#[tokio::test]
async fn a_volcano_pods_slices_are_created_where_their_group_lays_them_out() {
    let root = tempfile::tempdir().expect("temp dir");
    let (pods, fake, _, allocator) = setup(root.path());
    // Volcano's lists cover the regular container only; the pod has one.
    pods.insert(
        NODE,
        super::tests::volcano_decided(
            "v1",
            "GPU-a[group2-0],NVIDIA,10240,0:GPU-a[group2-3],NVIDIA,5120,0:",
        ),
    );

    let response = allocator
        .allocate(&request(&[&["GPU-a-0", "GPU-a-1"]]))
        .await
        .expect("allocated");

    let only = &response.container_responses[0];
    assert_eq!(
        only.envs,
        HashMap::from([(
            "NVIDIA_VISIBLE_DEVICES".to_string(),
            "MIG-a/1/0,MIG-a/2/0".to_string()
        )])
    );
    assert!(only.mounts.is_empty() && only.cdi_devices.is_empty());
    let on_card: Vec<(u32, u32, u32)> = fake
        .instances("GPU-a")
        .expect("card")
        .iter()
        .map(|i| (i.profile_id, i.placement.start, i.placement.size))
        .collect();
    // group2 of the A100 40GB: 2g.10gb at 0, 2, 4 (positions 0-2), 1g.5gb at 6 (position 3).
    assert_eq!(on_card, vec![(1, 0, 2), (0, 6, 1)]);
    let pod = pods.get("default", "v1").expect("pod");
    assert_eq!(pod.annotation("volcano.sh/bind-phase"), Some("success"));
    assert_eq!(
        pod.annotation(MIG_ALLOCATIONS),
        None,
        "nothing HAMi's is written"
    );
}

#[tokio::test]
async fn a_volcano_slice_of_a_group_the_card_does_not_have_fails_the_pod_and_creates_nothing() {
    let root = tempfile::tempdir().expect("temp dir");
    let (pods, fake, _, allocator) = setup(root.path());
    pods.insert(
        NODE,
        super::tests::volcano_decided(
            "v2",
            "GPU-a[group2-0],NVIDIA,10240,0:GPU-a[group5-0],NVIDIA,5120,0:",
        ),
    );
    let err = allocator
        .allocate(&request(&[&["GPU-a-0", "GPU-a-1"]]))
        .await
        .expect_err("refused");
    assert_eq!(
        err.to_string(),
        "pod default/v2: card GPU-a: Volcano MIG geometry group \"group5\": not a geometry \
         group of \"NVIDIA-NVIDIA A100-SXM4-40GB\""
    );
    assert_eq!(fake.instances("GPU-a").expect("card"), vec![]);
    let pod = pods.get("default", "v2").expect("pod");
    assert_eq!(pod.annotation("volcano.sh/bind-phase"), Some("failed"));
}
