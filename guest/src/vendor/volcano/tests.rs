//! Unit tables for the Volcano protocol; end-to-end cases live in
//! `conformance/scenarios/volcano/`.

use super::*;
use crate::api::{Delta, PodPhase};
use crate::config::{MigGroup, MigInstance};
use crate::device::{MigInUse, Placement};

fn pairs(items: &[(&str, &str)]) -> Pairs {
    items
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn node(annotations: &[(&str, &str)]) -> Node {
    Node {
        name: "n1".into(),
        annotations: pairs(annotations),
        allocatable: pairs(&[
            ("volcano.sh/vgpu-number", "20"),
            ("volcano.sh/vgpu-cores", "200"),
            ("volcano.sh/vgpu-memory", "81920"),
        ]),
        ..Node::default()
    }
}

fn a100_40() -> Config {
    let inst = |name: &str, memory, count| MigInstance {
        name: name.into(),
        memory,
        count,
    };
    let mut c = Config::default();
    c.volcano.known_mig_geometries = vec![crate::config::MigGeometries {
        models: vec!["A100-SXM4-40GB".into()],
        allowed_geometries: vec![
            MigGroup {
                group: "group1".into(),
                geometries: vec![inst("1g.5gb", 5120, 7)],
            },
            MigGroup {
                group: "group2".into(),
                geometries: vec![inst("2g.10gb", 10240, 3), inst("1g.5gb", 5120, 1)],
            },
            MigGroup {
                group: "group3".into(),
                geometries: vec![inst("3g.20gb", 20480, 2)],
            },
        ],
    }];
    c
}

#[test]
fn registration_reads_six_fields_per_card_and_normalises_the_mode() {
    let n = node(&[(
        register::REGISTER,
        "GPU-a,10,40960,NVIDIA-NVIDIA A100-SXM4-40GB,true,mig:GPU-b,4,23034,NVIDIA-NVIDIA L4,false,mps,extra:",
    )]);
    let cards = register::parse(&n, &a100_40())
        .expect("valid")
        .expect("cards");
    let got: Vec<(&str, u32, i64, i64, &str, bool)> = cards
        .iter()
        .map(|c| {
            (
                c.id.as_str(),
                c.index,
                c.count,
                c.devmem,
                c.mode.as_str(),
                c.health,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("GPU-a", 0, 10, 40960, "mig", true),
            ("GPU-b", 1, 4, 23034, "hami-core", false),
        ]
    );
}

#[test]
fn mig_card_without_a_known_geometry_falls_back_to_hami_core() {
    let n = node(&[(
        register::REGISTER,
        "GPU-a,10,24576,NVIDIA-NVIDIA A30,true,mig:",
    )]);
    let cards = register::parse(&n, &a100_40())
        .expect("valid")
        .expect("cards");
    assert_eq!(cards[0].mode, "hami-core");
}

#[test]
fn malformed_registrations_name_the_problem() {
    let cases = [
        ("GPU-a,10,40960,NVIDIA-X,true:", "has 5 fields"),
        (
            "GPU-a,ten,40960,NVIDIA-X,true,hami-core:",
            "SplitCount \"ten\"",
        ),
        ("GPU-a,10,40960,NVIDIA-X,yes,hami-core:", "Health \"yes\""),
        ("GPU-a,10,40960,NVIDIA-X,true,hami-core", "no ':'"),
    ];
    for (text, want) in cases {
        let err = register::parse(&node(&[(register::REGISTER, text)]), &Config::default())
            .expect_err(text);
        assert_eq!(err.field, register::REGISTER);
        assert!(err.message.contains(want), "{text}: {}", err.message);
    }
}

#[test]
fn cards_hami_also_registers_stay_with_hami() {
    let n = node(&[
        (
            register::REGISTER,
            "GPU-a,10,40960,NVIDIA-A100,true,hami-core:GPU-b,10,40960,NVIDIA-A100,true,hami-core:",
        ),
        (
            "hami.io/node-nvidia-register",
            r#"[{"id":"GPU-a","index":0,"count":10,"devmem":40960,"devcore":100,"type":"NVIDIA A100","health":true}]"#,
        ),
    ]);
    let cards = register::parse(&n, &Config::default())
        .expect("valid")
        .expect("cards");
    let ids: Vec<&str> = cards.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, vec!["GPU-b"]);
}

#[test]
fn a_node_without_vgpu_allocatable_is_not_live() {
    let mut n = node(&[]);
    let cfg = Config::default().volcano;
    assert!(register::live(&n, &cfg));
    n.allocatable.retain(|(k, _)| k != "volcano.sh/vgpu-cores");
    assert!(!register::live(&n, &cfg));
}

fn container(limits: &[(&str, &str)], requests: &[(&str, &str)]) -> Container {
    Container {
        name: "main".into(),
        limits: pairs(limits),
        requests: pairs(requests),
        ..Container::default()
    }
}

fn derive(c: &Container, init: bool) -> Result<Option<(i64, i64, i64, i64)>, Invalid> {
    let slot = Slot {
        object: "pod/default/p",
        init,
        index: 0,
    };
    request::derive(c, slot, &Config::default().volcano)
        .map(|r| r.map(|r| (r.nums, r.memreq, r.mem_pct, r.coresreq)))
}

/// (limits, requests, init container, expected (nums, memreq, pct, cores)).
type RequestRow = (
    &'static [(&'static str, &'static str)],
    &'static [(&'static str, &'static str)],
    bool,
    Option<(i64, i64, i64, i64)>,
);

/// (slices in use, MiB asked, expected (group, position, slice MiB)).
type MigRow = (
    &'static [(&'static str, u32)],
    i64,
    Option<(&'static str, u32, i64)>,
);

#[test]
fn request_derivation_table() {
    const N: &str = "volcano.sh/vgpu-number";
    const M: &str = "volcano.sh/vgpu-memory";
    const P: &str = "volcano.sh/vgpu-memory-percentage";
    const C: &str = "volcano.sh/vgpu-cores";
    // (limits, requests, init, expected (nums, memreq, pct, cores))
    let table: Vec<RequestRow> = vec![
        (&[(N, "2")], &[], false, Some((2, 0, 100, 0))),
        (&[(M, "3000")], &[], false, Some((1, 3000, 101, 0))),
        (
            &[(N, "1"), (P, "50"), (C, "30")],
            &[],
            false,
            Some((1, 0, 50, 30)),
        ),
        (
            &[(N, "1")],
            &[(M, "2000"), (C, "10")],
            false,
            Some((1, 2000, 101, 10)),
        ),
        (&[(N, "1"), (P, "101")], &[], false, Some((1, 0, 100, 0))),
        (&[], &[(N, "1"), (M, "2000")], false, None),
        (&[(C, "50")], &[], false, None),
        (&[(N, "0"), (M, "2000")], &[], false, None),
        (&[(N, "1")], &[], true, None),
    ];
    for (i, (limits, requests, init, want)) in table.into_iter().enumerate() {
        let got = derive(&container(limits, requests), init).expect("valid");
        assert_eq!(got, want, "row {i}");
    }
}

#[test]
fn malformed_request_values_name_the_field() {
    let cases = [
        ("volcano.sh/vgpu-cores", "101"),
        ("volcano.sh/vgpu-memory-percentage", "150"),
        ("volcano.sh/vgpu-memory", "16Gi"),
    ];
    for (name, value) in cases {
        let c = container(&[("volcano.sh/vgpu-number", "1"), (name, value)], &[]);
        let err = derive(&c, false).expect_err(name);
        assert_eq!(err.field, format!("containers[0].limits[{name}]"));
        assert_eq!(err.value, value);
    }
}

fn mig_card(in_use: &[(&str, u32)]) -> Card {
    let mut card = Card::new(
        VENDOR,
        DeviceInfo {
            id: "GPU-a".into(),
            count: 10,
            devmem: 40960,
            devcore: 100,
            model: "NVIDIA-NVIDIA A100-SXM4-40GB".into(),
            mode: "mig".into(),
            health: true,
            ..DeviceInfo::default()
        },
    );
    card.mig_in_use = in_use
        .iter()
        .map(|(g, p)| MigInUse {
            profile: g.to_string(),
            placement: Placement { start: *p, size: 1 },
        })
        .collect();
    card
}

#[test]
fn mig_best_fit_table() {
    let cfg = a100_40();
    let groups = cfg
        .volcano
        .geometries_for("NVIDIA-NVIDIA A100-SXM4-40GB")
        .expect("known");
    // (slices in use, MiB asked, expected (group, position, slice MiB))
    let table: Vec<MigRow> = vec![
        (&[], 4000, Some(("group1", 0, 5120))),
        (&[], 8000, Some(("group2", 0, 10240))),
        (&[], 20000, Some(("group3", 0, 20480))),
        (&[], 30000, None),
        (
            &[("group1", 0), ("group1", 1)],
            4000,
            Some(("group1", 2, 5120)),
        ),
        // The group is fixed: 8000 MiB does not fit group1's slices.
        (&[("group1", 0)], 8000, None),
        // Smallest slice that fits: 4000 MiB takes group2's 1g.5gb (position 3) first.
        (&[("group2", 0)], 4000, Some(("group2", 3, 5120))),
        // With the 1g.5gb taken, the next smallest with a free slot is a 2g.10gb.
        (&[("group2", 3)], 4000, Some(("group2", 0, 10240))),
        (&[("group2", 0), ("group2", 1), ("group2", 2)], 8000, None),
        // A group the configuration does not know, or two groups on one card: no slice.
        (&[("group9", 0)], 1000, None),
        (&[("group1", 0), ("group2", 0)], 1000, None),
    ];
    for (i, (in_use, need, want)) in table.into_iter().enumerate() {
        let got = mig::choose(&mig_card(in_use), groups, need);
        let got = got.map(|(s, mem)| (s.profile, s.placement.start, mem));
        let want = want.map(|(g, p, m)| (g.to_string(), p, m));
        assert_eq!(got, want, "row {i}");
    }
}

#[test]
fn allocation_strings_round_trip_with_slices_and_empty_containers() {
    let text = ";GPU-a[group2-3],NVIDIA,5120,0:GPU-b,NVIDIA,3000,50:";
    let devices = decode(text).expect("decodes");
    assert_eq!(devices.len(), 2);
    assert_eq!(devices[1][0].uuid, "GPU-a");
    assert_eq!(
        devices[1][0].mig.as_ref().map(|m| m.placement.start),
        Some(3)
    );
    assert_eq!(devices[1][1].vendor, VENDOR);
    assert_eq!(encode(&devices), text);
    assert!(decode("GPU-a[group2],NVIDIA,1,0:").is_err());
}

#[test]
fn a_decision_writes_volcanos_keys_only_and_reads_back_as_usage() {
    let mut engine = crate::Engine::new();
    let n = node(&[(
        register::REGISTER,
        "GPU-a,10,40960,NVIDIA-NVIDIA A100-SXM4-40GB,true,hami-core:",
    )]);
    assert!(engine.apply(&[Delta::NodeUpsert(n)]).is_empty());
    let mut pod = Pod {
        uid: "u1".into(),
        namespace: "default".into(),
        name: "p".into(),
        init_containers: vec![container(&[], &[])],
        containers: vec![container(
            &[
                ("volcano.sh/vgpu-number", "1"),
                ("volcano.sh/vgpu-memory", "3000"),
            ],
            &[],
        )],
        ..Pod::default()
    };
    let out = engine
        .filter(&pod, &["n1".to_string()], 1_700_000_000)
        .expect("evaluates");
    let decision = out.decision.expect("fits");
    let keys: Vec<&str> = decision
        .annotations
        .iter()
        .map(|(k, _)| k.as_str())
        .collect();
    assert_eq!(
        keys,
        vec![
            VGPU_NODE,
            VGPU_TIME,
            VGPU_IDS_NEW,
            DEVICES_TO_ALLOCATE,
            BIND_PHASE,
            BIND_TIME
        ]
    );
    assert_eq!(
        crate::api::lookup(&decision.annotations, VGPU_IDS_NEW),
        Some("GPU-a,NVIDIA,3000,0:")
    );
    assert!(decision.labels.is_empty());
    // The placed pod, seen again with its annotations, holds the same share.
    pod.annotations = decision.annotations.clone();
    pod.node_name = Some("n1".into());
    pod.phase = PodPhase::Running;
    engine.clear();
    let n = node(&[(
        register::REGISTER,
        "GPU-a,10,40960,NVIDIA-NVIDIA A100-SXM4-40GB,true,hami-core:",
    )]);
    assert!(
        engine
            .apply(&[Delta::NodeUpsert(n), Delta::PodUpsert(pod)])
            .is_empty()
    );
    let usage = engine.usage(&[], 0);
    assert_eq!(usage[0].cards[0].used_memory_mib, 3000);
    assert_eq!(usage[0].cards[0].used_slots, 1);
}

#[test]
fn default_geometries_are_the_charts_three_models() {
    let cfg = Config::default().volcano;
    let groups = cfg
        .geometries_for("NVIDIA-NVIDIA A100-SXM4-80GB")
        .expect("A100 80GB is known");
    let sizes: Vec<i64> = groups.iter().map(|g| g.geometries[0].memory).collect();
    assert_eq!(sizes, vec![9728, 19968, 40192, 80896]);
    assert!(cfg.geometries_for("NVIDIA-NVIDIA A30").is_some());
    assert!(cfg.geometries_for("NVIDIA-NVIDIA L4").is_none());
}
