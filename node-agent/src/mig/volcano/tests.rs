//! Volcano's slices: the layout of each geometry group, the slot of a position, and the
//! manager reading, adopting and reconciling the slices of Volcano pods.

use std::sync::Arc;
use std::time::Instant;

use hamr_guest::config::{MigInstance, VolcanoConfig};
use hamr_guest::vendor::volcano;

use super::*;
use crate::mig::fake::FakeMig;
use crate::mig::manager::Recognise;
use crate::mig::tests::{a100, on_card};
use crate::mig::{Instance, MigManager};
use crate::pods::PodInfo;

fn a100_profiles() -> Vec<GiProfile> {
    a100()[0].mig_profiles.clone()
}

/// (profile, start, size) of each position.
fn shape(slots: &[Slot]) -> Vec<(&str, u32, u32)> {
    slots
        .iter()
        .map(|s| (s.profile.as_str(), s.placement.start, s.placement.size))
        .collect()
}

fn group(name: &str, geometries: &[(&str, i64)]) -> MigGroup {
    MigGroup {
        group: name.into(),
        geometries: geometries
            .iter()
            .map(|(n, count)| MigInstance {
                name: n.to_string(),
                memory: 1,
                count: *count,
            })
            .collect(),
    }
}

#[test]
fn the_charts_a100_groups_lay_out_so_that_every_slice_fits_with_the_others() {
    let groups = VolcanoConfig::default()
        .geometries_for("NVIDIA-NVIDIA A100-SXM4-40GB")
        .expect("the chart lists the A100 40GB")
        .to_vec();
    let profiles = a100_profiles();
    let got: Vec<Vec<(String, u32, u32)>> = groups
        .iter()
        .map(|g| {
            shape(&lay_out("GPU-a", g, &profiles).expect("fits"))
                .into_iter()
                .map(|(p, s, z)| (p.to_string(), s, z))
                .collect()
        })
        .collect();
    let row = |r: &[(&str, u32, u32)]| {
        r.iter()
            .map(|(p, s, z)| (p.to_string(), *s, *z))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        got,
        vec![
            row(&(0..7).map(|s| ("1g.5gb", s, 1)).collect::<Vec<_>>()),
            // Three 2g slices first (positions 0-2), the 1g one last: it takes slice 6.
            row(&[
                ("2g.10gb", 0, 2),
                ("2g.10gb", 2, 2),
                ("2g.10gb", 4, 2),
                ("1g.5gb", 6, 1)
            ]),
            row(&[("3g.20gb", 0, 4), ("3g.20gb", 4, 4)]),
            row(&[("7g.40gb", 0, 8)]),
        ]
    );
}

#[test]
fn a_layout_that_greedy_placement_misses_is_found_by_trying_the_next_placement() {
    // Four memory slices; the 2g profile may start at 1 or 2, the 1g one at 0 or 1. The 2g
    // slice at 1 leaves one place for two 1g slices; at 2 it leaves both.
    let profiles = vec![
        GiProfile {
            id: 0,
            slice_count: 1,
            instance_count: 2,
            placements: vec![
                Placement { start: 0, size: 1 },
                Placement { start: 1, size: 1 },
            ],
            ..GiProfile::default()
        },
        GiProfile {
            id: 1,
            slice_count: 2,
            instance_count: 1,
            placements: vec![
                Placement { start: 1, size: 2 },
                Placement { start: 2, size: 2 },
            ],
            ..GiProfile::default()
        },
    ];
    let g = group("g", &[("1g.x", 2), ("2g.y", 1)]);
    let slots = lay_out("GPU-a", &g, &profiles).expect("fits");
    assert_eq!(
        shape(&slots),
        vec![("1g.x", 0, 1), ("1g.x", 1, 1), ("2g.y", 2, 2)]
    );
}

#[test]
fn groups_that_cannot_be_cut_from_the_card_are_refused_with_the_reason() {
    let profiles = a100_profiles();
    let cases = [
        (
            group("g", &[("3g.20gb", 2), ("1g.5gb", 1)]),
            "card GPU-a: Volcano MIG geometry group \"g\": its slices do not fit on the card together",
        ),
        (
            group("g", &[("2g.10gb", 2), ("2g.10gb", 2)]),
            "card GPU-a: Volcano MIG geometry group \"g\": 4 instance(s) of 2g.10gb but the card holds 3",
        ),
        (
            group("g", &[("6g.30gb", 1)]),
            "card GPU-a: no MIG profile \"6g.30gb\"",
        ),
    ];
    for (g, want) in cases {
        let err = lay_out("GPU-a", &g, &profiles).expect_err("refused");
        assert_eq!(err.to_string(), want);
    }
}

fn geometries(model: &str) -> Geometries {
    Geometries::new(VolcanoConfig::default(), [("GPU-a", model)])
}

#[test]
fn a_slot_is_found_by_the_cards_model_group_and_position_or_the_error_names_which_is_missing() {
    let fake = FakeMig::from_devices(&a100());
    let known = geometries("NVIDIA A100-SXM4-40GB");
    let slot = known.slot(&fake, "GPU-a", "group2", 3).expect("slot");
    assert_eq!(shape(&[slot]), vec![("1g.5gb", 6, 1)]);

    let errors = [
        known.slot(&fake, "GPU-z", "group2", 0),
        known.slot(&fake, "GPU-a", "group9", 0),
        known.slot(&fake, "GPU-a", "group2", 4),
        geometries("Tesla T4").slot(&fake, "GPU-a", "group1", 0),
    ]
    .map(|r| r.expect_err("refused").to_string());
    assert_eq!(
        errors,
        [
            "card GPU-z: not on this node",
            "card GPU-a: Volcano MIG geometry group \"group9\": not a geometry group of \
             \"NVIDIA-NVIDIA A100-SXM4-40GB\"",
            "card GPU-a: Volcano MIG geometry group \"group2\": position 4 is past the group's \
             4 slice(s)",
            "card GPU-a: Volcano MIG geometry group \"group1\": no volcano.knownMigGeometries \
             entry names a model in \"NVIDIA-Tesla T4\"",
        ]
    );
}

fn volcano_pod(name: &str, phase: &str, bind_phase: &str, ids: &str) -> PodInfo {
    PodInfo {
        namespace: "default".into(),
        name: name.into(),
        uid: name.into(),
        phase: phase.into(),
        annotations: [
            (volcano::VGPU_IDS_NEW.to_string(), ids.to_string()),
            (volcano::BIND_PHASE.to_string(), bind_phase.to_string()),
        ]
        .into(),
        ..PodInfo::default()
    }
}

const TWO_SLICES: &str = "GPU-a[group2-0],NVIDIA,10240,0:;GPU-a[group2-3],NVIDIA,5120,0:";

fn manager() -> (Arc<FakeMig>, MigManager) {
    let fake = Arc::new(FakeMig::from_devices(&a100()));
    let manager = MigManager::new(fake.clone()).with_volcano(geometries("NVIDIA A100-SXM4-40GB"));
    (fake, manager)
}

/// Creates the slices of `pod` as Allocate does, container by container.
fn serve(manager: &MigManager, pod: &PodInfo) -> Vec<Instance> {
    let devices =
        volcano::decode(pod.annotation(volcano::VGPU_IDS_NEW).expect("ids")).expect("decodes");
    devices
        .iter()
        .enumerate()
        .flat_map(|(c, container)| {
            let wanted = manager.volcano_reservations(c, container).expect("placed");
            manager.realise(&pod.uid, &wanted).expect("created")
        })
        .collect()
}

#[test]
fn a_volcano_pods_slices_are_active_reservations_at_their_groups_placements() {
    let (_, manager) = manager();
    let pod = volcano_pod("v", "Pending", "allocating", TWO_SLICES);
    let active = manager.active(&[pod]);
    let got: Vec<(i64, &str, u32, Recognise)> = active
        .reservations
        .iter()
        .map(|a| {
            (
                a.reservation.container_index,
                a.reservation.profile.as_str(),
                a.reservation.placement.start,
                a.recognise,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (0, "2g.10gb", 0, Recognise::NotYet),
            (1, "1g.5gb", 6, Recognise::NotYet)
        ]
    );
    assert_eq!(active.cards, ["GPU-a".to_string()].into());
    assert!(!active.cards_unknown && active.protected.is_empty());
}

#[test]
fn after_a_restart_a_served_volcano_pods_slices_are_adopted_and_destroyed_once_it_is_gone() {
    let (fake, first) = manager();
    let pod = volcano_pod("v", "Running", "success", TWO_SLICES);
    serve(&first, &pod);
    assert_eq!(on_card(&fake), vec![(1, 0, 1), (0, 6, 2)]);

    // A new agent: nothing tracked, nothing written back to find the instances by.
    let second = MigManager::new(fake.clone()).with_volcano(geometries("NVIDIA A100-SXM4-40GB"));
    assert_eq!(second.start(Some(std::slice::from_ref(&pod)), true), vec![]);
    assert_eq!(
        on_card(&fake),
        vec![(1, 0, 1), (0, 6, 2)],
        "the card is in use: not reset"
    );
    assert_eq!(second.tracked().len(), 2);

    assert_eq!(second.reconcile_pods(&[], Instant::now()), vec![]);
    assert_eq!(on_card(&fake), vec![]);
}

#[test]
fn a_pending_volcano_pods_slot_is_not_adopted_from_a_leftover_instance() {
    let (fake, first) = manager();
    let old = volcano_pod(
        "old",
        "Running",
        "success",
        "GPU-a[group2-3],NVIDIA,5120,0:",
    );
    serve(&first, &old);
    // The old pod is gone; its process still runs in the instance the new pod is given.
    fake.set_processes(
        "GPU-a",
        vec![crate::mig::Process {
            pid: 7,
            gi: Some(1),
        }],
    );
    let new = volcano_pod(
        "new",
        "Pending",
        "allocating",
        "GPU-a[group2-3],NVIDIA,5120,0:",
    );
    let second = MigManager::new(fake.clone()).with_volcano(geometries("NVIDIA A100-SXM4-40GB"));
    assert_eq!(
        second.reconcile_pods(std::slice::from_ref(&new), Instant::now()),
        vec![]
    );
    assert!(second.tracked().is_empty(), "not served yet: not adopted");
    let wanted = second
        .volcano_reservations(
            0,
            &volcano::decode("GPU-a[group2-3],NVIDIA,5120,0:").expect("ids")[0],
        )
        .expect("placed");
    let err = second.realise(&new.uid, &wanted).expect_err("busy");
    assert_eq!(
        err.to_string(),
        "card GPU-a: refusing to repartition: processes [7] are running on it"
    );
}

#[test]
fn a_volcano_pod_whose_slices_cannot_be_read_keeps_its_instances() {
    let (fake, manager) = manager();
    let pod = volcano_pod("v", "Running", "success", "GPU-a[group2-3],NVIDIA,5120,0:");
    serve(&manager, &pod);

    let unknown_group = volcano_pod("v", "Running", "success", "GPU-a[group9-3],NVIDIA,5120,0:");
    let active = manager.active(std::slice::from_ref(&unknown_group));
    assert!(
        !active.cards_unknown,
        "the card is known: {:?}",
        active.cards
    );
    assert_eq!(active.cards, ["GPU-a".to_string()].into());
    assert_eq!(
        manager.reconcile_pods(&[unknown_group], Instant::now()),
        vec![]
    );
    assert_eq!(on_card(&fake), vec![(0, 6, 1)]);

    let garbled = volcano_pod("v", "Running", "success", "GPU-a[group2],NVIDIA,5120,0:");
    let active = manager.active(std::slice::from_ref(&garbled));
    assert!(active.cards_unknown);
    assert_eq!(
        active.undecodable,
        vec![
            "pod default/v: volcano.sh/vgpu-ids-new: MIG device id \"GPU-a[group2]\" is not \
             UUID[<group>-<position>]"
        ]
    );
    assert_eq!(manager.reconcile_pods(&[garbled], Instant::now()), vec![]);
    assert_eq!(on_card(&fake), vec![(0, 6, 1)]);
}
