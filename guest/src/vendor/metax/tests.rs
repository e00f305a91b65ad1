//! Unit tables for MetaX from spec §16.2; scenarios under `conformance/scenarios/metax` cover
//! the rest end to end.

use std::sync::Arc;

use super::sgpu::{app_class_ok, by_link_zone, by_online_load, qos_ok};
use super::*;
use crate::api::{Mutation, Node, Pod};
use crate::config::Config;
use crate::device::{Card, DeviceInfo};
use crate::vendor::{Request, Vendor};

fn card(index: u32, used: i64, zone: i64, qos: &str, tags: &[&str]) -> Card {
    let mut info = DeviceInfo {
        id: format!("GPU-{index}"),
        index,
        count: 16,
        devmem: 65536,
        devcore: 100,
        model: SGPU_VENDOR.into(),
        health: true,
        ..DeviceInfo::default()
    };
    info.custom.insert("linkzone".into(), zone.to_string());
    info.custom.insert("qospolicy".into(), qos.into());
    let mut c = Card::new(SGPU_VENDOR, info);
    c.used = used;
    c.tags = tags.iter().map(|t| Arc::<str>::from(*t)).collect();
    c
}

fn request(cores: i64) -> Request {
    Request {
        vendor: SGPU_VENDOR,
        nums: 1,
        memreq: 0,
        mem_pct: 100,
        coresreq: cores,
    }
}

#[test]
fn check_device_qos_table_mx_32_to_35() {
    // (card used, registered qos, tags, request cores, want)
    let rows = [
        (0, "burst-share", vec![], 50, true),
        (2, "burst-share", vec![], 100, true),
        (2, "burst-share", vec![], 50, false),
        (2, "best-effort", vec![], 50, true),
        // The pods on the card decide over the registration (the jittery cache).
        (1, "best-effort", vec!["|burst-share"], 50, false),
        // An exclusive pod leaves an empty QoS: anything joins (other rules permitting).
        (1, "burst-share", vec!["|"], 50, true),
    ];
    for (i, (used, qos, tags, cores, want)) in rows.into_iter().enumerate() {
        let c = card(0, used, 0, qos, &tags);
        assert_eq!(qos_ok(&c, "best-effort", &request(cores)), want, "row {i}");
    }
}

#[test]
fn check_app_class_table_mx_52_to_55() {
    let rows: [(i64, &[&str], &str, bool); 8] = [
        (0, &[], "online", true),
        (1, &["online|-"], "", false),
        (1, &["offline|best-effort"], "", false),
        (1, &["|best-effort"], "", true),
        (1, &["|best-effort"], "online", false),
        (2, &["online|-", "offline|best-effort"], "online", true),
        (2, &["online|-", "offline|best-effort"], "offline", false),
        (1, &["offline|best-effort"], "offline", true),
    ];
    for (i, (used, tags, class, want)) in rows.into_iter().enumerate() {
        assert_eq!(
            app_class_ok(&card(0, used, 0, "", tags), class),
            want,
            "row {i}"
        );
    }
}

#[test]
fn online_prioritisation_mx_56_and_59() {
    let cards = [
        card(1, 0, 0, "", &[]),
        card(2, 1, 0, "", &["online|-"]),
        card(6, 1, 0, "", &["offline|x"]),
        card(7, 2, 0, "", &["offline|x", "offline|x"]),
    ];
    let refs: Vec<&Card> = cards.iter().collect();
    assert_eq!(by_online_load(&refs, 1), vec![0]);
    let only_off = [
        card(1, 1, 0, "", &["offline|x"]),
        card(2, 2, 0, "", &["offline|x", "offline|x"]),
    ];
    let refs: Vec<&Card> = only_off.iter().rev().collect();
    assert_eq!(
        by_online_load(&refs, 1),
        vec![1],
        "fewer offline pods first"
    );
}

#[test]
fn link_zone_grouping_prefers_the_smallest_zone_that_fits() {
    // zones by position: 2, 1, 2, 0, 1, 2
    let cards: Vec<Card> = [2, 1, 2, 0, 1, 2]
        .iter()
        .enumerate()
        .map(|(i, z)| card(i as u32, 0, *z, "", &[]))
        .collect();
    let refs: Vec<&Card> = cards.iter().collect();
    assert_eq!(by_link_zone(&refs, 2), vec![1, 4], "zone 1 (2 cards) first");
    assert_eq!(by_link_zone(&refs, 3), vec![0, 2, 5], "zone 2 holds 3");
    assert_eq!(
        by_link_zone(&refs, 5),
        vec![1, 4, 0, 2, 5],
        "zones in ascending size"
    );
    assert_eq!(
        by_link_zone(&refs, 6),
        vec![1, 4, 0, 2, 5, 3],
        "unknown topology last"
    );
}

fn pod(annotations: &[(&str, &str)], limits: &[(&str, &str)]) -> Pod {
    Pod {
        namespace: "default".into(),
        name: "p".into(),
        annotations: annotations
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        containers: vec![crate::api::Container {
            name: "main".into(),
            limits: limits
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }],
        ..Pod::default()
    }
}

#[test]
fn webhook_adds_best_effort_and_validates_mx_08_to_15() {
    let cfg = Config::default();
    let sgpu = [(SGPU_RESOURCE, "1")];
    let (found, m) = MetaxSgpu.admit_pod(&pod(&[], &sgpu), &cfg).expect("admits");
    assert!(found);
    assert_eq!(
        m,
        vec![Mutation::SetAnnotation((
            QOS_POLICY.into(),
            "best-effort".into()
        ))]
    );
    let (found, m) = MetaxSgpu
        .admit_pod(&pod(&[(QOS_POLICY, "burst-share")], &sgpu), &cfg)
        .expect("admits");
    assert!(found && m.is_empty());
    let err = MetaxSgpu
        .admit_pod(&pod(&[(QOS_POLICY, "best-effortx")], &sgpu), &cfg)
        .expect_err("invalid QoS");
    assert_eq!(
        err.message,
        "metax-tech.com/sgpu-qos-policy must be set one of [best-effort, fixed-share, burst-share]"
    );
    let err = MetaxSgpu
        .admit_pod(
            &pod(&[(APP_CLASS, "online")], &[(SGPU_RESOURCE, "2")]),
            &cfg,
        )
        .expect_err("two devices");
    assert_eq!(err.message, "app-class pod must request single device");
    let (_, m) = MetaxSgpu
        .admit_pod(
            &pod(
                &[(APP_CLASS, "online"), (QOS_POLICY, "best-effortx")],
                &sgpu,
            ),
            &cfg,
        )
        .expect("online pods are not QoS-validated");
    assert!(m.is_empty());
    let (found, _) = MetaxSgpu
        .admit_pod(&pod(&[], &[("cpu", "1")]), &cfg)
        .expect("admits");
    assert!(!found);
}

#[test]
fn registration_keys_match_in_any_case() {
    let node = Node {
        name: "n".into(),
        annotations: vec![(
            REGISTER.into(),
            r#"[{"UUID":"GPU-123","Model":"sgpu","totalDevCount":16,"totalCompute":100,"TOTALVRAM":32768,"numa":1,"healthy":true,"qosPolicy":"fixed-share","linkZone":3}]"#.into(),
        )],
        ..Node::default()
    };
    let d = MetaxSgpu
        .parse_node(&node)
        .expect("parses")
        .expect("has devices");
    assert_eq!(
        (d[0].id.as_str(), d[0].count, d[0].devmem, d[0].numa),
        ("GPU-123", 16, 32768, 1)
    );
    assert_eq!(
        d[0].custom.get("qospolicy").map(String::as_str),
        Some("fixed-share")
    );
    assert_eq!(d[0].custom.get("linkzone").map(String::as_str), Some("3"));
    let bad = Node {
        annotations: vec![(REGISTER.into(), "[{".into())],
        ..node.clone()
    };
    assert!(MetaxSgpu.parse_node(&bad).is_err());
    let empty = Node {
        annotations: vec![(REGISTER.into(), "[]".into())],
        ..node
    };
    assert_eq!(MetaxSgpu.parse_node(&empty), Ok(None));
}
