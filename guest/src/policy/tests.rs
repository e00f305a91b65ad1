//! Spec §13.5: device scores with weights, and the ordering comparator's sample table.

use std::cmp::Ordering;

use super::*;
use crate::device::{Card, DeviceInfo};

fn card(count: i64, used: i64, devcore: i64, used_cores: i64, devmem: i64, used_mem: i64) -> Card {
    let mut c = Card::new(
        "NVIDIA",
        DeviceInfo {
            id: "GPU-x".into(),
            count,
            devcore,
            devmem,
            model: "NVIDIA A100".into(),
            health: true,
            ..DeviceInfo::default()
        },
    );
    c.used = used;
    c.used_cores = used_cores;
    c.used_mem = used_mem;
    c
}

fn req(memreq: i64, mem_pct: i64, coresreq: i64) -> Request {
    Request {
        vendor: "NVIDIA",
        nums: 4,
        memreq,
        mem_pct,
        coresreq,
    }
}

#[test]
fn device_scores_s1_to_s5() {
    let w = Weights::default();
    let s1 = card(10, 2, 4, 1, 8192, 2048);
    assert_eq!(device_score(&s1, None, w), 7.0, "S1 existing use only");
    assert_eq!(
        device_score(&s1, Some(&req(1024, 0, 1)), w),
        11.75,
        "S2 one slot, not Nums"
    );
    let idle = card(10, 0, 10, 0, 10000, 0);
    assert_eq!(
        device_score(&idle, Some(&req(0, 50, 2)), w),
        8.0,
        "S3 percentage of the card"
    );
    assert_eq!(
        device_score(&card(0, 0, 10, 0, 10000, 0), Some(&req(0, 50, 2)), w),
        0.0,
        "S5"
    );
}

#[test]
fn weights_change_the_winner_s6_to_s8() {
    // gpu-a (Used 1, cores 90, mem 10) and gpu-b (Used 7, cores 10, mem 20); Count 10, totals 100.
    let a = card(10, 1, 100, 90, 100, 10);
    let b = card(10, 7, 100, 10, 100, 20);
    let r = req(0, 40, 0);
    let score =
        |c: &Card, slot, core, memory| device_score(c, Some(&r), Weights { slot, core, memory });
    assert_eq!((score(&a, 1, 1, 1), score(&b, 1, 1, 1)), (16.0, 15.0), "S6");
    assert_eq!((score(&a, 1, 1, 3), score(&b, 1, 1, 3)), (26.0, 27.0), "S7");
    assert_eq!((score(&a, 1, 3, 1), score(&b, 1, 3, 1)), (34.0, 17.0), "S8");
}

#[test]
fn weights_annotation_errors() {
    let pod = |v: &str| crate::api::Pod {
        namespace: "default".into(),
        name: "p".into(),
        annotations: vec![(WEIGHTS_ANNOTATION.into(), v.into())],
        ..crate::api::Pod::default()
    };
    assert_eq!(
        Weights::from_pod(&pod(" memory=3 , slot=1,core= 2 ")),
        Ok(Weights {
            slot: 1,
            core: 2,
            memory: 3
        })
    );
    for bad in [
        "slot=1,core=1",
        "slot=1,core=1,core=1",
        "slot=1,core=x,memory=1",
        "slot=-1,core=1,memory=1",
        "slot=1,core=1,gpu=1",
        "slot=0,core=0,memory=0",
        "slot=1,core,memory=1",
    ] {
        let err = Weights::from_pod(&pod(bad)).expect_err(bad);
        assert_eq!(err.field, WEIGHTS_ANNOTATION);
    }
}

fn numa_card(numa: i64, used: i64, index: u32) -> Card {
    let mut c = card(10, used, 100, 0, 100, 0);
    let mut info = (*c.info).clone();
    info.numa = numa;
    info.index = index;
    c.info = std::sync::Arc::new(info);
    c
}

fn policy(raw: &str, numa_bind: bool) -> GpuPolicy {
    let mut annotations = vec![(GPU_POLICY_ANNOTATION.to_string(), raw.to_string())];
    if numa_bind {
        annotations.push((NUMA_BIND_ANNOTATION.to_string(), "true".to_string()));
    }
    let pod = crate::api::Pod {
        annotations,
        ..crate::api::Pod::default()
    };
    GpuPolicy::for_pod(&pod, "spread")
}

#[test]
fn comparator_samples() {
    // (policy, numaBind, i: (score, numa, used, index), j, i sorts before j)
    type Side = (f32, i64, i64, u32);
    let table: &[(&str, bool, Side, Side, bool)] = &[
        ("binpack", false, (10.0, 1, 0, 0), (20.0, 0, 0, 1), true),
        ("binpack", false, (15.0, 0, 0, 0), (15.0, 1, 0, 1), true),
        ("binpack", false, (20.0, 1, 0, 0), (10.0, 0, 0, 1), false),
        ("spread", false, (10.0, 0, 0, 0), (20.0, 0, 0, 1), false),
        ("spread", false, (20.0, 1, 0, 0), (10.0, 0, 0, 1), true),
        ("spread", false, (15.0, 0, 0, 0), (15.0, 1, 0, 1), true),
        ("binpack", true, (5.0, 1, 0, 0), (99.0, 0, 0, 1), true),
        ("binpack", true, (10.0, 0, 0, 0), (20.0, 0, 0, 1), true),
        ("spread", true, (5.0, 0, 0, 0), (99.0, 1, 0, 1), true),
        ("spread", true, (20.0, 0, 0, 0), (10.0, 0, 0, 1), true),
        ("mutex", false, (0.0, 0, 2, 0), (0.0, 0, 0, 1), true),
        ("mutex", false, (0.0, 0, 0, 0), (0.0, 1, 0, 1), true),
        ("numa", false, (99.0, 0, 0, 0), (5.0, 1, 0, 1), true),
        ("numa", false, (0.0, 0, 0, 3), (0.0, 0, 0, 1), false),
        (
            "binpack,numa",
            false,
            (15.0, 0, 0, 0),
            (15.0, 1, 0, 1),
            true,
        ),
        ("numa,spread", false, (5.0, 1, 0, 0), (99.0, 0, 0, 1), false),
        (
            "mutex,spread",
            false,
            (10.0, 0, 5, 0),
            (20.0, 0, 0, 1),
            false,
        ),
        (
            "mutex,topology-aware",
            false,
            (10.0, 0, 0, 0),
            (20.0, 0, 0, 1),
            false,
        ),
        (
            "binpack,numa",
            false,
            (10.0, 0, 0, 5),
            (10.0, 0, 0, 2),
            false,
        ),
        (
            "binpack,spread",
            true,
            (99.0, 0, 0, 0),
            (5.0, 1, 0, 1),
            true,
        ),
    ];
    for (raw, bind, i, j, less) in table {
        let p = policy(raw, *bind);
        let ci = numa_card(i.1, i.2, i.3);
        let cj = numa_card(j.1, j.2, j.3);
        let got = p.compare((&ci, i.0), (&cj, j.0)) == Ordering::Less;
        assert_eq!(got, *less, "{raw} numaBind={bind}: {i:?} before {j:?}");
    }
}

#[test]
fn node_policy_prefers_busy_or_idle_and_breaks_ties_by_name() {
    let binpack = NodePolicy::Binpack;
    assert_eq!(binpack.better(("a", 5.0), ("b", 9.0)), Ordering::Greater);
    assert_eq!(
        NodePolicy::Spread.better(("a", 5.0), ("b", 9.0)),
        Ordering::Less
    );
    assert_eq!(binpack.better(("a", 5.0), ("b", 5.0)), Ordering::Less);
    assert_eq!(binpack.normalise(30.0), 100);
    assert_eq!(NodePolicy::Spread.normalise(30.0), 0);
    assert_eq!(binpack.normalise(7.5), 25);
}
