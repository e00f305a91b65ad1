//! Spec §16.1 (GN-01..08) and §1.7 CheckType, plus the G-Fit walk on hand-built cards.

use std::cell::RefCell;

use super::*;
use crate::api::Node;
use crate::config::Config;
use crate::policy::GpuPolicy;

fn pod(annotations: &[(&str, &str)]) -> Pod {
    Pod {
        namespace: "default".into(),
        name: "p".into(),
        annotations: annotations
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Pod::default()
    }
}

fn node(key: &str, value: &str) -> Node {
    Node {
        name: "n1".into(),
        annotations: vec![(key.to_string(), value.to_string())],
        ..Node::default()
    }
}

/// (pod annotations, card id or model, allowed).
type Case = (&'static [(&'static str, &'static str)], &'static str, bool);

#[test]
fn check_uuid_gn01_to_gn06() {
    const U: &str = "use";
    const N: &str = "nouse";
    let (u, n) = (U, N);
    // (annotations, id, allowed)
    let cases: &[Case] = &[
        (&[], "abc", true),
        (&[(U, "abc")], "abc", true),
        (&[(U, "abc")], "1abc", false),
        (&[(N, "abc")], "abc", false),
        (&[(N, "abc")], "1abc", true),
        (&[(U, "abc"), (N, "abc")], "abc", false),
        (&[(U, " abc , x")], "abc", true),
        (&[(U, "  ")], "abc", true),
        (&[(U, ""), (N, "")], "abc", true),
    ];
    for (annotations, id, want) in cases {
        assert_eq!(
            uuid_allowed(&pod(annotations), id, u, n),
            *want,
            "{annotations:?} {id}"
        );
    }
}

#[test]
fn check_type_am07_to_am09() {
    const U: &str = "use";
    const N: &str = "nouse";
    let (u, n) = (U, N);
    let cases: &[Case] = &[
        (&[(U, "MI300")], "MI300X", true),
        (&[(U, "MI250")], "MI300X", false),
        (&[(N, "MI300")], "MI300X", false),
        (&[(N, "MI250")], "MI300X", true),
        (&[(N, "")], "MI300X", true),
        (&[(N, " ")], "MI300X", true),
        (&[(N, "MI250,")], "MI300X", true),
        (&[(N, ",MI250")], "MI300X", true),
        (&[(N, ", ")], "MI300X", true),
        (&[(U, "")], "MI300X", true),
        (&[(U, " ")], "MI300X", true),
        (&[(N, " MI250 , ")], "MI250X", false),
        (&[(U, "MI300,")], "MI250X", false),
        (&[(U, ", ")], "MI300X", false),
        (&[(U, "dcu")], "DCU", true),
        (&[(U, "dcu,test")], "DCU", true),
    ];
    for (annotations, model, want) in cases {
        assert_eq!(
            card_type_allowed(&pod(annotations), model, u, n),
            *want,
            "{annotations:?} {model}"
        );
    }
}

#[test]
fn colon_registration_gn07_gn08() {
    let d = parse_colon_registration(&node("r", "test-0,1,1024,100,DCU,0,true,0,test:"), "r")
        .expect("parses")
        .expect("has a device");
    assert_eq!(d.len(), 1);
    let d = &d[0];
    assert_eq!(
        (
            d.id.as_str(),
            d.count,
            d.devmem,
            d.devcore,
            d.model.as_str(),
            d.numa,
            d.health,
            d.index,
            d.mode.as_str()
        ),
        ("test-0", 1, 1024, 100, "DCU", 0, true, 0, "test")
    );
    assert_eq!(parse_colon_registration(&node("r", ":"), "r"), Ok(None));
    let err = parse_colon_registration(&node("r", "a,1,2,3,DCU,0,true,0:"), "r").unwrap_err();
    assert!(err.message.contains("8 fields"), "{}", err.message);
    let seven = parse_colon_registration(&node("r", "a,1,2,3,DCU,0,false:"), "r")
        .expect("parses")
        .expect("has a device");
    assert_eq!(
        (seven[0].mode.as_str(), seven[0].health),
        ("hami-core", false)
    );
}

#[test]
fn json_registration_keys_in_any_case_and_custom_info() {
    let r = parse_json_registration(
        &node(
            "r",
            r#"[{"ID":"npu-0","Index":2,"COUNT":4,"DevMem":65536,"devcore":20,"Type":"Ascend910B3","Health":true,"CustomInfo":{"NetworkID":3}}]"#,
        ),
        "r",
    )
    .expect("parses")
    .expect("has a device");
    assert_eq!(r[0].info.id, "npu-0");
    assert_eq!(
        (r[0].info.index, r[0].info.count, r[0].info.devmem),
        (2, 4, 65536)
    );
    assert_eq!(
        r[0].custom.get("NetworkID").and_then(|v| v.as_f64()),
        Some(3.0)
    );
    let err =
        parse_json_registration(&node("r", r#"[{"id":"x","count":"four"}]"#), "r").unwrap_err();
    assert_eq!(err.field, "r");
    assert!(err.message.contains("count"), "{}", err.message);
    assert_eq!(parse_json_registration(&node("r", "[]"), "r"), Ok(None));
}

fn card(
    id: &str,
    used: i64,
    count: i64,
    used_mem: i64,
    mem: i64,
    used_cores: i64,
    cores: i64,
) -> Card {
    let mut c = Card::new(
        "DCU",
        DeviceInfo {
            id: id.into(),
            count,
            devmem: mem,
            devcore: cores,
            model: "DCU".into(),
            health: true,
            ..DeviceInfo::default()
        },
    );
    c.used = used;
    c.used_mem = used_mem;
    c.used_cores = used_cores;
    c
}

fn walk(
    cards: &[Card],
    nums: i64,
    memreq: i64,
    pct: i64,
    cores: i64,
) -> Result<Vec<String>, String> {
    let p = pod(&[]);
    let node = Node::default();
    let policy = GpuPolicy::for_pod(&p, "spread");
    let quota = |_: &[ContainerDevice], _: &str, _: i64, _: i64| true;
    let explain = RefCell::new(Vec::new());
    let config = Config::default();
    let ctx = FitContext {
        pod: &p,
        node: &node,
        policy: &policy,
        quota: &quota,
        explain: Some(&explain),
        position: 0,
        earlier: &[],
        config: &config,
    };
    let s = Sharing {
        vendor: "DCU",
        uuid_keys: ("u", "n"),
        type_keys: None,
        quota: false,
        same_card: false,
        collect_all: false,
        total_core: None,
    };
    let refs: Vec<&Card> = cards.iter().collect();
    let r = Request {
        vendor: "DCU",
        nums,
        memreq,
        mem_pct: pct,
        coresreq: cores,
    };
    match gfit(&refs, &r, &ctx, &s).finish() {
        Fit::Fits(d) => Ok(d
            .into_iter()
            .map(|d| format!("{}:{}:{}", d.uuid, d.mem, d.cores))
            .collect()),
        Fit::NoFit(c) => Err(c.text(cards.len() as u32)),
    }
}

#[test]
fn gfit_walks_backward_clamps_cores_and_counts_reasons() {
    let idle = |id: &str| card(id, 0, 10, 0, 1000, 0, 100);
    assert_eq!(
        walk(&[idle("a"), idle("b")], 1, 100, 0, 150),
        Ok(vec!["b:100:100".into()])
    );
    assert_eq!(
        walk(&[idle("a")], 1, 0, 50, 10),
        Ok(vec!["a:500:10".into()])
    );
    assert_eq!(
        walk(
            &[card("a", 1, 10, 0, 1000, 0, 100), idle("b")],
            2,
            100,
            0,
            100
        ),
        Err("1/2 AllocatedCardsInsufficientRequest, 1/2 ExclusiveDeviceAllocateConflict".into())
    );
    assert_eq!(
        walk(&[card("a", 1, 10, 0, 1000, 100, 100)], 1, 100, 0, 0),
        Err("1/1 CardComputeUnitsExhausted".into())
    );
    assert_eq!(
        walk(&[card("a", 1, 1, 0, 1000, 0, 100)], 1, 1, 0, 0),
        Err("1/1 CardTimeSlicingExhausted".into())
    );
}
