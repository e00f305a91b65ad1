use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use hamr_guest::device::Placement;
use hamr_guest::vendor::nvidia::mig::{MIG_ALLOCATIONS, Reservation};

use super::fake::FakeMig;
use super::manager::Key;
use super::*;
use crate::config::{Config, default_mig_allowlist};
use crate::discovery::Device;
use crate::pods::PodInfo;

/// An A100-SXM4-40GB in MIG mode as the fake devices file describes it (NVML's figures).
pub(crate) const A100_YAML: &str = r#"devices:
- id: GPU-a
  vendor: NVIDIA
  model: NVIDIA A100-SXM4-40GB
  memoryMiB: 40960
  migEnabled: true
  mig:
    profiles:
    - {sliceCount: 1, instanceCount: 7, multiprocessors: 14, memoryMiB: 4864, placements: [{start: 0, size: 1}, {start: 1, size: 1}, {start: 2, size: 1}, {start: 3, size: 1}, {start: 4, size: 1}, {start: 5, size: 1}, {start: 6, size: 1}]}
    - {sliceCount: 2, instanceCount: 3, multiprocessors: 28, memoryMiB: 9856, placements: [{start: 0, size: 2}, {start: 2, size: 2}, {start: 4, size: 2}]}
    - {sliceCount: 3, instanceCount: 2, multiprocessors: 42, memoryMiB: 19968, placements: [{start: 0, size: 4}, {start: 4, size: 4}]}
    - {sliceCount: 4, instanceCount: 1, multiprocessors: 56, memoryMiB: 19968, placements: [{start: 0, size: 4}]}
    - {sliceCount: 7, instanceCount: 1, multiprocessors: 98, memoryMiB: 40192, placements: [{start: 0, size: 8}]}
- id: GPU-b
  vendor: NVIDIA
  model: NVIDIA A100-SXM4-40GB
  memoryMiB: 40960
"#;

pub(crate) fn a100() -> Vec<Device> {
    crate::discovery::fake::parse(Path::new("devices.yaml"), A100_YAML).expect("valid file")
}

fn manager() -> (Arc<FakeMig>, MigManager) {
    let fake = Arc::new(FakeMig::from_devices(&a100()));
    let manager = MigManager::new(fake.clone());
    (fake, manager)
}

fn reservation(container: i64, device: i64, profile: &str, start: u32, size: u32) -> Reservation {
    Reservation {
        container_index: container,
        device_index: device,
        gpu_uuid: "GPU-a".into(),
        profile: profile.into(),
        placement: Placement { start, size },
        mig_uuid: None,
        gpu_instance_id: None,
        compute_instance_id: None,
    }
}

/// (profile id, start, gi) of the card's instances.
pub(crate) fn on_card(fake: &FakeMig) -> Vec<(u32, u32, u32)> {
    fake.instances("GPU-a")
        .expect("card")
        .iter()
        .map(|i| (i.profile_id, i.placement.start, i.gi))
        .collect()
}

fn pod(name: &str, phase: &str, reservations: &[Reservation]) -> PodInfo {
    PodInfo {
        namespace: "default".into(),
        name: name.into(),
        uid: name.into(),
        phase: phase.into(),
        annotations: [(
            MIG_ALLOCATIONS.to_string(),
            serde_json::to_string(reservations).expect("encodes"),
        )]
        .into(),
        ..PodInfo::default()
    }
}

#[test]
fn profile_names_map_to_nvml_profile_ids_by_their_slice_count() {
    let table = [
        ("1g.5gb", Some(0)),
        ("2g.10gb", Some(1)),
        ("3g.20gb", Some(2)),
        ("4g.24gb", Some(3)),
        ("7g.80gb", Some(4)),
        ("8g.96gb", Some(5)),
        ("6g.48gb", Some(6)),
        ("5g.40gb", None),
        ("g.5gb", None),
        ("1g.", None),
        ("1g", None),
        ("0g.1gb", None),
    ];
    for (name, want) in table {
        assert_eq!(slices_of(name).and_then(profile_id), want, "{name}");
    }
}

#[test]
fn an_a100_registers_the_allowed_profiles_with_cores_rounded_up_and_its_largest_instance_count() {
    let card = &a100()[0];
    let (profiles, count) =
        profiles::registered(&card.model, &card.mig_profiles, &default_mig_allowlist())
            .expect("A100-SXM4-40GB is allowed");
    let got: Vec<(&str, i64, i64, u32, Vec<u32>)> = profiles
        .iter()
        .map(|p| {
            (
                p.name.as_str(),
                p.memory_mb,
                p.core,
                p.slice_count,
                p.placements.iter().map(|pl| pl.start).collect(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("1g.5gb", 4864, 15, 1, vec![0, 1, 2, 3, 4, 5, 6]),
            ("2g.10gb", 9856, 29, 2, vec![0, 2, 4]),
            ("3g.20gb", 19968, 43, 3, vec![0, 4]),
            ("7g.40gb", 40192, 100, 7, vec![0]),
        ]
    );
    assert_eq!(count, 7);
}

#[test]
fn in_mig_mode_the_registration_lists_profiles_and_leaves_out_cards_without_any() {
    let config = Config {
        operating_mode: "mig".into(),
        ..Config::default()
    };
    let registered = crate::register::registration(&a100(), &config);
    let register: serde_json::Value = serde_json::from_str(
        registered
            .get("hami.io/node-nvidia-register")
            .expect("the card is registered"),
    )
    .expect("JSON");
    // Compared as JSON values: HAMi's decoder reads keys by name, not by their order.
    let expected: serde_json::Value = serde_json::from_str(concat!(
            r#"[{"id":"GPU-a","count":7,"devmem":40960,"devcore":100,"type":"NVIDIA A100-SXM4-40GB","mode":"mig","health":true,"migProfiles":["#,
            r#"{"core":15,"memoryMB":4864,"name":"1g.5gb","placements":[{"size":1,"start":0},{"size":1,"start":1},{"size":1,"start":2},{"size":1,"start":3},{"size":1,"start":4},{"size":1,"start":5},{"size":1,"start":6}],"sliceCount":1},"#,
            r#"{"core":29,"memoryMB":9856,"name":"2g.10gb","placements":[{"size":2,"start":0},{"size":2,"start":2},{"size":2,"start":4}],"sliceCount":2},"#,
            r#"{"core":43,"memoryMB":19968,"name":"3g.20gb","placements":[{"size":4,"start":0},{"size":4,"start":4}],"sliceCount":3},"#,
            r#"{"core":100,"memoryMB":40192,"name":"7g.40gb","placements":[{"size":8,"start":0}],"sliceCount":7}]}]"#
        )).expect("JSON");
    assert_eq!(register, expected);
    // A model no allowlist entry names registers nothing either.
    let other = Config {
        mig_profile_allowlist: vec![crate::config::MigAllow {
            models: vec!["H100".into()],
            profiles: vec!["1g.10gb".into()],
        }],
        ..config
    };
    assert_eq!(crate::register::nvidia_devices(&a100(), &other), Vec::new());
}

#[test]
fn a_mig_block_on_a_card_of_another_vendor_or_with_an_odd_slice_count_is_refused() {
    let parse = |text: &str| {
        crate::discovery::fake::parse(Path::new("d.yaml"), text)
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        parse("devices:\n- {id: m, vendor: MLU, memoryMiB: 1, mig: {profiles: []}}\n"),
        "d.yaml: devices[0].mig: only NVIDIA cards have MIG"
    );
    assert_eq!(
        parse(
            "devices:\n- {id: a, vendor: NVIDIA, memoryMiB: 1, mig: {profiles: [\
             {sliceCount: 5, instanceCount: 1, multiprocessors: 1, memoryMiB: 1, placements: []}]}}\n"
        ),
        "d.yaml: devices[0].mig.profiles[0].sliceCount: 5 is not 1, 2, 3, 4, 6, 7 or 8"
    );
    assert_eq!(
        parse(
            "devices:\n- {id: a, vendor: NVIDIA, memoryMiB: 1, mig: {profiles: [\
             {sliceCount: 1, instanceCount: 1, multiprocessors: 1, memoryMiB: 1, placements: [{start: 3, size: 0}]}]}}\n"
        ),
        "d.yaml: devices[0].mig.profiles[0].placements: the placement at 3 has size 0"
    );
    let err = parse(
        "devices:\n- {id: a, vendor: NVIDIA, memoryMiB: 1, mig: {profiles: [{sliceCount: 1}]}}\n",
    );
    assert!(
        err.starts_with("d.yaml: devices[0].mig.profiles[0]: missing field `instanceCount`"),
        "{err}"
    );
}

#[test]
fn a_reservation_is_created_at_its_placement_once_and_reused_after() {
    let (fake, manager) = manager();
    let r = reservation(0, 0, "2g.10gb", 2, 2);
    let first = manager
        .realise("p", std::slice::from_ref(&r))
        .expect("created");
    assert_eq!(
        first,
        vec![Instance {
            gpu: "GPU-a".into(),
            profile_id: 1,
            placement: Placement { start: 2, size: 2 },
            gi: 1,
            ci: 0,
            uuid: "MIG-a/1/0".into(),
        }]
    );
    let again = manager.realise("p", &[r]).expect("reused");
    assert_eq!(again, first);
    assert_eq!(on_card(&fake), vec![(1, 2, 1)], "one instance, not two");
}

#[test]
fn a_placement_the_profile_does_not_allow_is_refused_and_nothing_is_created() {
    let (fake, manager) = manager();
    let err = manager
        .realise("p", &[reservation(0, 0, "2g.10gb", 1, 2)])
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "card GPU-a: profile \"2g.10gb\" cannot start at slice 1 (size 2)"
    );
    let err = manager
        .realise("p", &[reservation(0, 0, "5g.30gb", 0, 5)])
        .unwrap_err();
    assert_eq!(err.to_string(), "card GPU-a: no MIG profile \"5g.30gb\"");
    assert_eq!(on_card(&fake), vec![]);
}

#[test]
fn when_a_later_slice_fails_the_ones_created_by_the_same_call_are_destroyed() {
    let (fake, manager) = manager();
    fake.insert(Instance {
        gpu: "GPU-a".into(),
        profile_id: 1,
        placement: Placement { start: 4, size: 2 },
        gi: 9,
        ci: 0,
        uuid: "MIG-other".into(),
    });
    let err = manager
        .realise(
            "p",
            &[
                reservation(0, 0, "3g.20gb", 0, 4),
                reservation(0, 1, "1g.5gb", 5, 1),
            ],
        )
        .unwrap_err();
    assert_eq!(
        err,
        MigError::Occupied {
            gpu: "GPU-a".into(),
            start: 4,
            end: 6,
            gi: 9
        }
    );
    assert_eq!(
        on_card(&fake),
        vec![(1, 4, 9)],
        "the 3g instance is gone again"
    );
    assert!(manager.tracked().is_empty());
}

#[test]
fn a_card_with_a_process_outside_any_instance_is_not_repartitioned() {
    let (fake, manager) = manager();
    fake.set_processes(
        "GPU-a",
        vec![Process {
            pid: 4242,
            gi: None,
        }],
    );
    let err = manager
        .realise("p", &[reservation(0, 0, "1g.5gb", 6, 1)])
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "card GPU-a: refusing to repartition: processes [4242] are running on it"
    );
    assert_eq!(on_card(&fake), vec![]);
}

#[test]
fn a_card_with_mig_off_is_switched_on_only_when_idle_and_a_pending_change_is_refused() {
    let devices = crate::discovery::fake::parse(
        Path::new("d.yaml"),
        &A100_YAML.replace("  migEnabled: true\n", ""),
    )
    .expect("valid");
    let fake = Arc::new(FakeMig::from_devices(&devices));
    let manager = MigManager::new(fake.clone());
    manager
        .realise("p", &[reservation(0, 0, "1g.5gb", 6, 1)])
        .expect("switched on and created");
    assert_eq!(
        fake.mode("GPU-a").expect("card"),
        Mode {
            current: true,
            pending: true
        }
    );

    let pending = crate::discovery::fake::parse(
        Path::new("d.yaml"),
        &A100_YAML.replace("    profiles:\n", "    pending: false\n    profiles:\n"),
    )
    .expect("valid");
    let manager = MigManager::new(Arc::new(FakeMig::from_devices(&pending)));
    let err = manager
        .realise("p", &[reservation(0, 0, "1g.5gb", 6, 1)])
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "card GPU-a: a MIG mode change is pending (current true, pending false); reset the GPU"
    );
}

#[test]
fn reconciliation_destroys_the_instances_of_gone_pods_but_not_under_a_running_process() {
    let (fake, manager) = manager();
    let kept = reservation(0, 0, "1g.5gb", 6, 1);
    let gone = reservation(0, 0, "2g.10gb", 0, 2);
    manager
        .realise("p-kept", std::slice::from_ref(&kept))
        .expect("created");
    manager
        .realise("p-gone", std::slice::from_ref(&gone))
        .expect("created");
    assert_eq!(on_card(&fake), vec![(0, 6, 1), (1, 0, 2)]);

    // The pod of `gone` finished, but its process is still in instance 2.
    fake.set_processes(
        "GPU-a",
        vec![Process {
            pid: 77,
            gi: Some(2),
        }],
    );
    let pods = vec![
        pod("p-kept", "Running", std::slice::from_ref(&kept)),
        pod("p-gone", "Succeeded", std::slice::from_ref(&gone)),
    ];
    let errors = manager.reconcile_pods(&pods, std::time::Instant::now());
    assert_eq!(
        errors,
        vec![MigError::Busy {
            gpu: "GPU-a".into(),
            pids: vec![77]
        }]
    );
    assert_eq!(
        on_card(&fake),
        vec![(0, 6, 1), (1, 0, 2)],
        "nothing destroyed"
    );

    fake.set_processes(
        "GPU-a",
        vec![Process {
            pid: 76,
            gi: Some(1),
        }],
    );
    assert_eq!(
        manager.reconcile_pods(&pods, std::time::Instant::now()),
        vec![]
    );
    assert_eq!(
        on_card(&fake),
        vec![(0, 6, 1)],
        "only the gone pod's instance"
    );
    assert_eq!(
        manager.tracked().keys().cloned().collect::<Vec<_>>(),
        vec![Key::of(&kept)]
    );

    // A deleting pod counts as gone.
    let mut deleting = pod("p-kept", "Running", &[kept]);
    deleting.deleting = true;
    fake.set_processes("GPU-a", vec![]);
    assert_eq!(
        manager.reconcile_pods(&[deleting], std::time::Instant::now()),
        vec![]
    );
    assert_eq!(on_card(&fake), vec![]);
}

#[test]
fn a_pod_whose_reservations_do_not_decode_keeps_only_the_instances_it_owns() {
    let (fake, manager) = manager();
    manager
        .realise("p", &[reservation(0, 0, "1g.5gb", 6, 1)])
        .expect("created");
    manager
        .realise("p-gone", &[reservation(0, 0, "2g.10gb", 0, 2)])
        .expect("created");
    let mut bad = pod("p", "Running", &[]);
    bad.annotations
        .insert(MIG_ALLOCATIONS.into(), "[{\"containerIndex\":0}]".into());
    let active = manager.active(std::slice::from_ref(&bad));
    assert!(active.cards_unknown);
    let err = active.undecodable.join("; ");
    assert!(
        err.starts_with("pod default/p: hami.io/vgpu-mig-allocations: not a MIG reservation list"),
        "{err}"
    );
    assert_eq!(
        manager.reconcile_pods(&[bad], std::time::Instant::now()),
        vec![]
    );
    assert_eq!(
        on_card(&fake),
        vec![(0, 6, 1)],
        "the undecodable pod's instance is kept; the gone pod's is destroyed"
    );
}

#[test]
fn start_up_resets_idle_cards_and_adopts_what_active_pods_recorded() {
    let devices = crate::discovery::fake::parse(
        Path::new("d.yaml"),
        &format!(
            "{A100_YAML}  migEnabled: true\n  mig:\n    profiles:\n    - {{sliceCount: 1, instanceCount: 7, multiprocessors: 14, memoryMiB: 4864, placements: [{{start: 0, size: 1}}]}}\n{}",
            "- id: GPU-c\n  vendor: NVIDIA\n  model: NVIDIA A100-SXM4-40GB\n  memoryMiB: 40960\n  mig:\n    profiles:\n    - {sliceCount: 1, instanceCount: 7, multiprocessors: 14, memoryMiB: 4864, placements: [{start: 0, size: 1}]}\n"
        ),
    )
    .expect("valid");
    let fake = Arc::new(FakeMig::from_devices(&devices));
    let leftover = |gpu: &str, gi: u32, start: u32| Instance {
        gpu: gpu.into(),
        profile_id: 0,
        placement: Placement { start, size: 1 },
        gi,
        ci: 0,
        uuid: format!("MIG-{gpu}-{gi}"),
    };
    // GPU-a: two instances recorded by running pods (one record is wrong).
    fake.insert(leftover("GPU-a", 3, 5));
    fake.insert(leftover("GPU-a", 4, 6));
    // GPU-b: idle, with a leftover instance; GPU-c: MIG off, idle.
    fake.insert(leftover("GPU-b", 1, 0));
    let mut recorded = reservation(0, 0, "1g.5gb", 5, 1);
    recorded.mig_uuid = Some("MIG-GPU-a-3".into());
    recorded.gpu_instance_id = Some(3);
    recorded.compute_instance_id = Some(0);
    let mut wrong = reservation(1, 0, "1g.5gb", 6, 1);
    wrong.mig_uuid = Some("MIG-elsewhere".into());
    wrong.gpu_instance_id = Some(4);
    wrong.compute_instance_id = Some(0);
    let pods = vec![pod("p", "Running", &[recorded.clone(), wrong])];

    let manager = MigManager::new(fake.clone());
    let errors = manager.start(Some(&pods), true);
    assert_eq!(
        errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
        vec![
            "card GPU-a: recorded instance 1g.5gb at 6 (GPU instance 4, compute instance 0, \
             MIG-elsewhere) does not match the card"
        ]
    );
    assert_eq!(
        fake.instances("GPU-a").expect("card").len(),
        2,
        "in use: untouched"
    );
    assert_eq!(
        fake.instances("GPU-b").expect("card"),
        vec![],
        "idle: emptied"
    );
    assert!(fake.mode("GPU-c").expect("card").current, "idle: MIG on");
    assert_eq!(
        manager.tracked().into_values().collect::<Vec<_>>(),
        vec![leftover("GPU-a", 3, 5)]
    );
    // The adopted instance is destroyed once its pod is gone; the unverified one never is.
    assert_eq!(
        manager.reconcile(
            &BTreeSet::new(),
            &BTreeSet::new(),
            std::time::Instant::now()
        ),
        vec![]
    );
    assert_eq!(on_card(&fake), vec![(0, 6, 4)]);
}

#[test]
fn start_up_without_the_pod_list_or_on_a_busy_card_resets_nothing() {
    let (fake, manager) = manager();
    fake.insert(Instance {
        gpu: "GPU-a".into(),
        profile_id: 0,
        placement: Placement { start: 0, size: 1 },
        gi: 1,
        ci: 0,
        uuid: "MIG-x".into(),
    });
    assert_eq!(manager.start(None, true), vec![]);
    assert_eq!(on_card(&fake), vec![(0, 0, 1)]);
    fake.set_processes(
        "GPU-a",
        vec![Process {
            pid: 5,
            gi: Some(1),
        }],
    );
    assert_eq!(
        manager.start(Some(&[]), true),
        vec![MigError::Busy {
            gpu: "GPU-a".into(),
            pids: vec![5]
        }]
    );
    assert_eq!(on_card(&fake), vec![(0, 0, 1)]);
}

#[test]
fn the_mig_example_files_register_one_card_with_four_profiles() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/node-agent");
    let config = Config::load(&root.join("config-mig.yaml")).expect("the example parses");
    let devices = crate::discovery::fake::parse(
        Path::new("devices-mig.yaml"),
        &std::fs::read_to_string(root.join("devices-mig.yaml")).expect("readable"),
    )
    .expect("the example parses");
    let registered = crate::register::nvidia_devices(&devices, &config);
    let got: Vec<(&str, i64, Vec<&str>)> = registered
        .iter()
        .map(|d| {
            (
                d.id.as_str(),
                d.count,
                d.mig_profiles.iter().map(|p| p.name.as_str()).collect(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![(
            "GPU-5b8c0d7e-9a51-4c47-8f7d-0c2b6c3f1a40",
            7,
            vec!["1g.5gb", "2g.10gb", "3g.20gb", "7g.40gb"]
        )]
    );
}

#[test]
fn an_untracked_instance_at_exactly_the_reserved_slice_is_reused_unless_a_process_runs_in_it() {
    let (fake, manager) = manager();
    let leftover = Instance {
        gpu: "GPU-a".into(),
        profile_id: 1,
        placement: Placement { start: 2, size: 2 },
        gi: 5,
        ci: 0,
        uuid: "MIG-left".into(),
    };
    fake.insert(leftover.clone());
    fake.set_processes(
        "GPU-a",
        vec![Process {
            pid: 8,
            gi: Some(5),
        }],
    );
    let r = reservation(0, 0, "2g.10gb", 2, 2);
    assert_eq!(
        manager.realise("p", std::slice::from_ref(&r)),
        Err(MigError::Busy {
            gpu: "GPU-a".into(),
            pids: vec![8]
        })
    );
    fake.set_processes("GPU-a", vec![]);
    assert_eq!(manager.realise("p", &[r]), Ok(vec![leftover]));
    assert_eq!(on_card(&fake), vec![(1, 2, 5)], "nothing new created");
    // A different profile over the same slices is someone else's.
    assert_eq!(
        manager.realise("p", &[reservation(1, 0, "1g.5gb", 3, 1)]),
        Err(MigError::Occupied {
            gpu: "GPU-a".into(),
            start: 2,
            end: 4,
            gi: 5
        })
    );
}

#[test]
fn reconciliation_adopts_recorded_instances_nobody_tracks_and_destroys_them_once_their_pod_is_gone()
{
    // After a restart whose start-up adopted nothing (pods unreadable, or reset skipped), the
    // instance a running pod recorded is on the card but untracked.
    let (fake, manager) = manager();
    let recorded_instance = Instance {
        gpu: "GPU-a".into(),
        profile_id: 1,
        placement: Placement { start: 2, size: 2 },
        gi: 5,
        ci: 0,
        uuid: "MIG-rec".into(),
    };
    fake.insert(recorded_instance.clone());
    let mut recorded = reservation(0, 0, "2g.10gb", 2, 2);
    recorded.mig_uuid = Some("MIG-rec".into());
    recorded.gpu_instance_id = Some(5);
    recorded.compute_instance_id = Some(0);
    // A record the card does not confirm is reported and never adopted.
    let mut wrong = reservation(1, 0, "1g.5gb", 6, 1);
    wrong.mig_uuid = Some("MIG-nowhere".into());
    wrong.gpu_instance_id = Some(9);
    wrong.compute_instance_id = Some(0);
    let running = pod("p", "Running", &[recorded.clone(), wrong]);
    assert_eq!(manager.start(None, true), vec![]);
    assert_eq!(manager.tracked().len(), 0, "pods unreadable at start-up");

    let errors = manager.reconcile_pods(std::slice::from_ref(&running), std::time::Instant::now());
    assert_eq!(
        errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
        vec![
            "card GPU-a: recorded instance 1g.5gb at 6 (GPU instance 9, compute instance 0, \
             MIG-nowhere) does not match the card"
        ]
    );
    assert_eq!(
        manager.tracked().into_values().collect::<Vec<_>>(),
        vec![recorded_instance]
    );
    let done = pod("p", "Succeeded", &[recorded]);
    assert_eq!(
        manager.reconcile_pods(&[done], std::time::Instant::now()),
        vec![]
    );
    assert_eq!(on_card(&fake), vec![], "destroyed once the pod is gone");
}

#[test]
fn start_up_without_the_reset_still_adopts_recorded_instances() {
    let (fake, manager) = manager();
    let mut recorded = reservation(0, 0, "1g.5gb", 6, 1);
    let instance = Instance {
        gpu: "GPU-a".into(),
        profile_id: 0,
        placement: Placement { start: 6, size: 1 },
        gi: 2,
        ci: 0,
        uuid: "MIG-r".into(),
    };
    fake.insert(instance.clone());
    // An instance nobody recorded on an idle card: only a reset would remove it.
    fake.insert(Instance {
        gpu: "GPU-a".into(),
        profile_id: 0,
        placement: Placement { start: 0, size: 1 },
        gi: 1,
        ci: 0,
        uuid: "MIG-x".into(),
    });
    recorded.mig_uuid = Some("MIG-r".into());
    recorded.gpu_instance_id = Some(2);
    recorded.compute_instance_id = Some(0);
    let pods = vec![pod("p", "Running", &[recorded])];
    assert_eq!(manager.start(Some(&pods), false), vec![]);
    assert_eq!(on_card(&fake), vec![(0, 6, 2), (0, 0, 1)], "no reset");
    assert_eq!(
        manager.tracked().into_values().collect::<Vec<_>>(),
        vec![instance]
    );
}

#[test]
fn an_instance_tracked_after_the_pod_list_was_read_is_not_destroyed_by_that_list() {
    // Reconciliation read the pods, then waited for the lock while an Allocate created the
    // instance of a pod bound after the read: that list does not show the pod.
    let (fake, manager) = manager();
    let read_before = std::time::Instant::now();
    manager
        .realise("p", &[reservation(0, 0, "1g.5gb", 6, 1)])
        .expect("created");
    assert_eq!(manager.reconcile_pods(&[], read_before), vec![]);
    assert_eq!(on_card(&fake), vec![(0, 6, 1)], "kept: the list is older");
    assert_eq!(manager.tracked().len(), 1);
    // A list read after the instance was tracked that still lacks the pod condemns it.
    assert_eq!(
        manager.reconcile_pods(&[], std::time::Instant::now()),
        vec![]
    );
    assert_eq!(on_card(&fake), vec![]);
}

#[test]
fn an_instance_tracked_for_another_pod_is_handed_over_only_when_idle_and_still_on_the_card() {
    let (fake, manager) = manager();
    let r = reservation(0, 0, "2g.10gb", 2, 2);
    let first = manager
        .realise("uid-1", std::slice::from_ref(&r))
        .expect("created");
    // uid-1 was deleted but its process still runs in the instance; the scheduler gives the
    // same slices to uid-2.
    fake.set_processes(
        "GPU-a",
        vec![Process {
            pid: 9,
            gi: Some(first[0].gi),
        }],
    );
    let err = manager
        .realise("uid-2", std::slice::from_ref(&r))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "card GPU-a: GPU instance 1 still belongs to pod uid-1: processes [9] run in it"
    );
    // The owner keeps getting its own instance.
    assert_eq!(
        manager.realise("uid-1", std::slice::from_ref(&r)),
        Ok(first.clone())
    );

    fake.set_processes("GPU-a", vec![]);
    assert_eq!(
        manager.realise("uid-2", std::slice::from_ref(&r)),
        Ok(first.clone())
    );
    // Gone from the card (destroyed behind the agent's back): created anew for the next pod.
    fake.destroy("GPU-a", first[0].gi).expect("destroyed");
    fake.insert(Instance {
        gpu: "GPU-a".into(),
        profile_id: 0,
        placement: Placement { start: 0, size: 1 },
        gi: 1,
        ci: 0,
        uuid: "MIG-other".into(),
    });
    let again = manager.realise("uid-3", &[r]).expect("created anew");
    assert_eq!((again[0].gi, again[0].placement.start), (2, 2));
    assert_eq!(on_card(&fake), vec![(0, 0, 1), (1, 2, 2)]);
}

#[test]
fn allowlist_models_match_as_whole_words() {
    for (model, pattern, expected) in [
        ("NVIDIA H200", "H20", false),
        ("NVIDIA H200", "H200", true),
        ("NVIDIA H200", "NVIDIA H200", true),
        ("NVIDIA H200 NVL", "H200 NVL", true),
        ("NVIDIA H20", "H20", true),
        ("NVIDIA A100-SXM4-40GB", "A100-SXM4", true),
        ("NVIDIA A100-SXM4-40GB", "A100-SXM4-40GB", true),
        ("NVIDIA A100-SXM4-40GB", "A10", false),
        ("NVIDIA A100-SXM4-40GB", "SXM4-4", false),
        // A later occurrence counts when the first is inside a word.
        ("H200 / H20", "H20", true),
        ("NVIDIA H200", "", false),
        ("", "H200", false),
        ("NVIDIA Ĥ200", "200", false),
    ] {
        assert_eq!(
            profiles::names_model(model, pattern),
            expected,
            "{pattern:?} in {model:?}"
        );
    }
}

/// The GPU-instance profiles an H200 reported through NVML (driver 580.159.04, profile info
/// read on the card; the placements are the MIG layout every 7-slice card shares).
fn h200() -> Vec<GiProfile> {
    let profile =
        |id, slice_count, instance_count, multiprocessors, memory_mib, starts: &[u32], size| {
            GiProfile {
                id,
                slice_count,
                instance_count,
                multiprocessors,
                memory_mib,
                placements: starts
                    .iter()
                    .map(|&start| Placement { start, size })
                    .collect(),
            }
        };
    vec![
        profile(0, 1, 7, 16, 16384, &[0, 1, 2, 3, 4, 5, 6], 1),
        profile(1, 2, 3, 32, 33280, &[0, 2, 4], 2),
        profile(2, 3, 2, 60, 71424, &[0, 4], 4),
        profile(3, 4, 1, 64, 71424, &[0], 4),
        profile(4, 7, 1, 132, 143360, &[0], 8),
    ]
}

#[test]
fn an_h200_registers_the_h200_profiles_not_the_h20_ones() {
    let (profiles, count) = profiles::registered("NVIDIA H200", &h200(), &default_mig_allowlist())
        .expect("NVIDIA H200 is allowed");
    let got: Vec<(&str, i64, i64)> = profiles
        .iter()
        .map(|p| (p.name.as_str(), p.memory_mb, p.core))
        .collect();
    assert_eq!(
        got,
        vec![
            ("1g.18gb", 16384, 13),
            ("2g.35gb", 33280, 25),
            ("3g.71gb", 71424, 46),
            ("7g.141gb", 143360, 100),
        ]
    );
    assert_eq!(count, 7);
    // The H20 keeps its own entry.
    let allowlist = default_mig_allowlist();
    let h20 = profiles::allow_entry(&allowlist, "NVIDIA H20").expect("H20");
    assert_eq!(h20.profiles[0], "1g.12gb");
}
