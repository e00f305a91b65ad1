//! Fit-level tables from spec §13.3 and §13.4, on hand-built cards in "fit order" (the last
//! card is tried first), independent of any ordering policy.

use std::cell::RefCell;

use super::*;
use crate::api::{Node, Pod};
use crate::device::{Card, DeviceInfo};
use crate::policy::GpuPolicy;
use crate::vendor::{Fit, FitContext, Request};

fn dev(
    id: &str,
    used: i64,
    count: i64,
    used_mem: i64,
    mem: i64,
    used_cores: i64,
    cores: i64,
) -> Card {
    let mut c = Card::new(
        VENDOR,
        DeviceInfo {
            id: id.into(),
            count,
            devmem: mem,
            devcore: cores,
            model: "NVIDIA".into(),
            mode: "hami-core".into(),
            health: true,
            ..DeviceInfo::default()
        },
    );
    c.used = used;
    c.used_mem = used_mem;
    c.used_cores = used_cores;
    c
}

fn req(nums: i64, memreq: i64, mem_pct: i64, coresreq: i64) -> Request {
    Request {
        vendor: VENDOR,
        nums,
        memreq,
        mem_pct,
        coresreq,
    }
}

fn run(
    cards: &[Card],
    r: &Request,
    annotations: &[(&str, &str)],
    node_annotations: &[(&str, &str)],
) -> Result<Vec<(String, i64, i64)>, String> {
    let pairs = |l: &[(&str, &str)]| {
        l.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let pod = Pod {
        namespace: "default".into(),
        name: "p".into(),
        annotations: pairs(annotations),
        ..Pod::default()
    };
    let node = Node {
        name: "n".into(),
        annotations: pairs(node_annotations),
        ..Node::default()
    };
    let policy = GpuPolicy::for_pod(&pod, "spread");
    let quota = |_: &[crate::device::ContainerDevice], _: &str, _: i64, _: i64| true;
    let explain = RefCell::new(Vec::new());
    let config = crate::config::Config::default();
    let ctx = FitContext {
        pod: &pod,
        config: &config,
        node: &node,
        policy: &policy,
        quota: &quota,
        explain: Some(&explain),
        position: 0,
        earlier: &[],
    };
    // The ledger marks cordoned cards from the node's annotation; do the same here.
    let cordon = node
        .annotation(fit::DEVICE_CORDON)
        .unwrap_or_default()
        .to_string();
    let cards: Vec<Card> = cards
        .iter()
        .cloned()
        .map(|mut c| {
            c.cordoned = cordon.split(',').map(str::trim).any(|u| u == c.info.id);
            c
        })
        .collect();
    let refs: Vec<&Card> = cards.iter().collect();
    match fit::fit(&refs, r, &ctx) {
        Fit::Fits(d) => Ok(d.into_iter().map(|d| (d.uuid, d.mem, d.cores)).collect()),
        Fit::NoFit(c) => Err(c.text(cards.len() as u32)),
    }
}

/// (name, cards in fit order, request, pod annotations, node annotations, expected).
type Case = (
    &'static str,
    Vec<Card>,
    Request,
    Vec<(&'static str, &'static str)>,
    Vec<(&'static str, &'static str)>,
    Outcome,
);
type Outcome = Result<Vec<(String, i64, i64)>, String>;

fn ok(list: &[(&str, i64, i64)]) -> Result<Vec<(String, i64, i64)>, String> {
    Ok(list
        .iter()
        .map(|(u, m, c)| (u.to_string(), *m, *c))
        .collect())
}

#[test]
fn fit_table_f1_to_f23() {
    let idle = |id: &str| dev(id, 0, 100, 0, 128, 0, 100);
    let cases: Vec<Case> = vec![
        (
            "F1 the last card is tried first",
            vec![idle("dev-0"), idle("dev-1")],
            req(1, 64, 101, 50),
            vec![],
            vec![],
            ok(&[("dev-1", 64, 50)]),
        ),
        (
            "F2",
            vec![idle("dev-0")],
            req(1, 512, 101, 50),
            vec![],
            vec![],
            Err("1/1 CardInsufficientMemory".into()),
        ),
        (
            "F3",
            vec![dev("dev-0", 0, 100, 0, 1024, 100, 100)],
            req(1, 512, 101, 50),
            vec![],
            vec![],
            Err("1/1 CardInsufficientCore".into()),
        ),
        (
            "F5",
            vec![idle("dev-1")],
            req(2, 64, 101, 0),
            vec![(USE_GPU_UUID, "dev-0")],
            vec![],
            Err("1/1 CardUuidMismatch".into()),
        ),
        (
            "F6",
            vec![idle("dev-0")],
            req(1, 64, 101, 0),
            vec![(NOUSE_GPU_UUID, "dev-0")],
            vec![],
            Err("1/1 CardUuidMismatch".into()),
        ),
        (
            "F7",
            vec![dev("dev-0", 100, 100, 0, 128, 0, 100)],
            req(1, 64, 101, 0),
            vec![],
            vec![],
            Err("1/1 CardTimeSlicingExhausted".into()),
        ),
        (
            "F8 cores above 100 are clamped",
            vec![dev("dev-0", 0, 100, 0, 1280, 0, 100)],
            req(1, 512, 101, 120),
            vec![],
            vec![],
            ok(&[("dev-0", 512, 100)]),
        ),
        (
            "F9",
            vec![dev("dev-0", 20, 100, 0, 1280, 0, 100)],
            req(1, 512, 101, 100),
            vec![],
            vec![],
            Err("1/1 ExclusiveDeviceAllocateConflict".into()),
        ),
        (
            "F10",
            vec![dev("dev-0", 20, 100, 0, 1280, 100, 100)],
            req(1, 512, 101, 0),
            vec![],
            vec![],
            Err("1/1 CardComputeUnitsExhausted".into()),
        ),
        (
            "F11",
            vec![dev("dev-0", 20, 100, 0, 1280, 10, 100)],
            req(2, 512, 101, 20),
            vec![],
            vec![],
            Err("1/1 AllocatedCardsInsufficientRequest".into()),
        ),
        (
            "F12",
            vec![
                dev("dev-0", 0, 100, 0, 1280, 0, 100),
                dev("dev-1", 0, 100, 0, 1280, 0, 100),
            ],
            req(3, 0, 101, 0),
            vec![],
            vec![],
            Err("2/2 AllocatedCardsInsufficientRequest".into()),
        ),
        (
            "F13 percentage of the card",
            vec![dev("dev-0", 20, 100, 0, 1280, 10, 100)],
            req(1, 0, 10, 20),
            vec![],
            vec![],
            ok(&[("dev-0", 128, 20)]),
        ),
        (
            "F15 cordon with spaces",
            vec![idle("dev-0"), idle("dev-1")],
            req(1, 64, 101, 50),
            vec![],
            vec![(DEVICE_CORDON_KEY, "dev-1, ")],
            ok(&[("dev-0", 64, 50)]),
        ),
        (
            "F15 both cordoned",
            vec![idle("dev-0"), idle("dev-1")],
            req(1, 64, 101, 50),
            vec![],
            vec![(DEVICE_CORDON_KEY, "dev-0,dev-1")],
            Err("2/2 CardCordoned".into()),
        ),
        (
            "F16 whole card books all memory",
            vec![dev("dev-0", 0, 10, 0, 11264, 0, 100)],
            req(1, 0, 100, 0),
            vec![],
            vec![],
            ok(&[("dev-0", 11264, 0)]),
        ),
        (
            "F16 four MiB short",
            vec![dev("dev-0", 0, 10, 11260, 11264, 0, 100)],
            req(1, 0, 100, 0),
            vec![],
            vec![],
            Err("1/1 CardInsufficientMemory".into()),
        ),
        (
            "F18 mutex skips used cards",
            vec![
                dev("used", 1, 10, 0, 128, 0, 100),
                dev("idle", 0, 10, 0, 128, 0, 100),
            ],
            req(1, 10, 101, 0),
            vec![("hami.io/gpu-scheduler-policy", "mutex")],
            vec![],
            ok(&[("idle", 10, 0)]),
        ),
        (
            "F20 clamped cores still exceed",
            vec![dev("test-0", 1, 4, 2048, 8192, 1, 4)],
            req(1, 100, 101, 200),
            vec![],
            vec![],
            Err("1/1 CardInsufficientCore".into()),
        ),
        (
            "F21",
            vec![dev("test-0", 1, 4, 8000, 8000, 1, 4)],
            req(1, 0, 100, 100),
            vec![],
            vec![],
            Err("1/1 CardInsufficientMemory".into()),
        ),
        (
            "F22",
            vec![dev("test-0", 1, 4, 2048, 8192, 0, 100)],
            req(1, 100, 101, 100),
            vec![],
            vec![],
            Err("1/1 ExclusiveDeviceAllocateConflict".into()),
        ),
        (
            "F23",
            vec![dev("test-0", 1, 4, 2048, 8192, 1, 1)],
            req(1, 1024, 101, 0),
            vec![],
            vec![],
            Err("1/1 CardComputeUnitsExhausted".into()),
        ),
    ];
    for (name, cards, r, ann, node_ann, want) in cases {
        assert_eq!(run(&cards, &r, &ann, &node_ann), want, "{name}");
    }
}

const DEVICE_CORDON_KEY: &str = fit::DEVICE_CORDON;

#[test]
fn f14_f17_f19_health_and_numa() {
    let mut sick = dev("dev-0", 0, 10, 0, 1280, 0, 100);
    let mut info = (*sick.info).clone();
    info.health = false;
    sick.info = std::sync::Arc::new(info);
    assert_eq!(
        run(&[sick], &req(1, 0, 10, 0), &[], &[]),
        Err("1/1 CardNotHealth".into()),
        "F14"
    );

    let numa = |id: &str, n: i64| {
        let mut c = dev(id, 0, 10, 0, 8192, 0, 100);
        let mut info = (*c.info).clone();
        info.numa = n;
        c.info = std::sync::Arc::new(info);
        c
    };
    let bind = [("nvidia.com/numa-bind", "true")];
    // F17 in fit order dev-0(numa1), dev-1(numa1), dev-2(numa0): dev-2 is collected first and
    // discarded when the NUMA node changes.
    let cards = [numa("dev-0", 1), numa("dev-1", 1), numa("dev-2", 0)];
    assert_eq!(
        run(&cards, &req(2, 100, 101, 10), &bind, &[]),
        ok(&[("dev-1", 100, 10), ("dev-0", 100, 10)]),
        "F17"
    );
    // F19: two cards on two NUMA nodes cannot serve a NUMA-bound pair.
    let mut t0 = dev("test-0", 1, 4, 2048, 8192, 1, 4);
    let mut t1 = dev("test-1", 1, 4, 2048, 8192, 1, 4);
    for (c, n) in [(&mut t0, 0), (&mut t1, 1)] {
        let mut info = (*c.info).clone();
        info.numa = n;
        c.info = std::sync::Arc::new(info);
    }
    assert_eq!(
        run(
            &[t0, t1],
            &req(2, 1024, 101, 1),
            &[
                ("nvidia.com/use-gputype", "NVIDIA"),
                ("nvidia.com/numa-bind", "true")
            ],
            &[]
        ),
        Err("1/2 AllocatedCardsInsufficientRequest, 1/2 NumaNotFit".into()),
        "F19"
    );
}

#[test]
fn topology_table_t1_to_t6() {
    let scored = |id: &str, pairs: &[(&str, i64)]| {
        let mut c = dev(id, 0, 10, 0, 8192, 0, 100);
        let mut info = (*c.info).clone();
        info.pair_scores =
            std::sync::Arc::new(pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect());
        c.info = std::sync::Arc::new(info);
        c
    };
    let topo = [("hami.io/gpu-scheduler-policy", "topology-aware")];
    let ids = |r: Result<Vec<(String, i64, i64)>, String>| -> Vec<String> {
        let mut v: Vec<String> = r.expect("fits").into_iter().map(|d| d.0).collect();
        v.sort();
        v
    };
    let plain = [scored("dev-0", &[]), scored("dev-1", &[])];
    assert_eq!(
        ids(run(&plain, &req(2, 10, 101, 0), &topo, &[])),
        vec!["dev-0", "dev-1"],
        "T1"
    );
    let t2 = [
        scored("dev-0", &[("dev-1", 100), ("dev-2", 200)]),
        scored("dev-1", &[("dev-0", 100), ("dev-2", 150)]),
        scored("dev-2", &[("dev-0", 200), ("dev-1", 150)]),
    ];
    assert_eq!(
        ids(run(&t2, &req(1, 10, 101, 0), &topo, &[])),
        vec!["dev-1"],
        "T2 least damage"
    );
    assert_eq!(
        ids(run(&t2, &req(2, 10, 101, 0), &topo, &[])),
        vec!["dev-0", "dev-2"],
        "T3 best pair"
    );
    let zero = [
        scored("dev-0", &[]),
        scored("dev-1", &[]),
        scored("dev-2", &[]),
    ];
    assert_eq!(
        ids(run(&zero, &req(2, 10, 101, 0), &topo, &[])).len(),
        2,
        "T4"
    );
    let t5 = [
        scored("dev-0", &[("dev-1", -5), ("dev-2", -3)]),
        scored("dev-1", &[("dev-0", -5), ("dev-2", -1)]),
        scored("dev-2", &[("dev-0", -3), ("dev-1", -1)]),
    ];
    assert_eq!(
        ids(run(&t5, &req(1, 10, 101, 0), &topo, &[])),
        vec!["dev-0"],
        "T5"
    );
    assert_eq!(
        ids(run(&t5, &req(2, 10, 101, 0), &topo, &[])),
        vec!["dev-1", "dev-2"],
        "T6"
    );
}

/// The summary check ([`fit::summary_check`]) against the full fit on random nodes: whenever
/// it rejects, the fit fails every card with the same counter (and the card total), and it
/// rejects every node where the fit fails every card, unless a card is in MIG mode or more
/// cards are asked than the node has. Selectors, mutex and quota turn it off.
#[test]
fn the_summary_check_rejects_exactly_where_every_card_fails() {
    let mut rng = crate::testing::XorShift(0x9e37_79b9_7f4a_7c15);
    let mut next = |n: u64| rng.below(n);
    let pod = Pod {
        namespace: "default".into(),
        name: "p".into(),
        ..Pod::default()
    };
    let node = Node::default();
    let config = crate::config::Config::default();
    let quota = |_: &[crate::device::ContainerDevice], _: &str, _: i64, _: i64| true;
    let (mut rejected, mut undecided) = (0, 0);
    for round in 0..4000 {
        let policy = GpuPolicy::for_pod(&pod, ["spread", "binpack", "topology-aware"][round % 3]);
        let cards: Vec<Card> = (0..1 + next(8))
            .map(|i| {
                let devmem = [0, 1024, 16384, 81920][next(4) as usize];
                let devcore = [0, 50, 100][next(3) as usize];
                let count = next(4) as i64;
                let mut c = dev(
                    &format!("GPU-{i}"),
                    next(5) as i64,
                    count,
                    devmem * next(5) as i64 / 4,
                    devmem,
                    devcore * next(5) as i64 / 4,
                    devcore,
                );
                let info = std::sync::Arc::make_mut(&mut c.info);
                info.health = next(8) != 0;
                if next(16) == 0 {
                    info.mode = "mig".into();
                }
                c.cordoned = next(8) == 0;
                c.owned = next(16) != 0;
                c
            })
            .collect();
        let r = req(
            1 + next(3) as i64,
            [0, 512, 8192, 40000, 90000][next(5) as usize],
            [101, 0, 25, 100][next(4) as usize],
            [0, 10, 50, 100, 150][next(5) as usize],
        );
        let ctx = FitContext {
            pod: &pod,
            config: &config,
            node: &node,
            policy: &policy,
            quota: &quota,
            explain: None,
            position: 0,
            earlier: &[],
        };
        let live = [(VENDOR, crate::vendor::Liveness::Live)];
        let mut summaries = crate::summary::Summaries::default();
        summaries.set(0, &cards, &live);
        let rows = summaries.get(0).expect("summarised").cards;
        let check = fit::summary_check(&pod, &r, &policy, false).expect("plain pod");
        let mine: Vec<&Card> = cards.iter().filter(|c| c.owned).collect();
        let full = fit::fails_on_every_card(&cards, &r, &ctx);
        match check(rows) {
            Some((counter, total)) => {
                rejected += 1;
                assert_eq!(
                    Some(&counter),
                    full.as_ref(),
                    "round {round}: {r:?} {cards:?}"
                );
                assert_eq!(total as usize, mine.len());
                // And the fit itself, in card order, fails with that counter.
                assert!(
                    matches!(fit::fit(&mine, &r, &ctx), Fit::NoFit(c) if c == counter),
                    "round {round}"
                );
            }
            None => {
                undecided += 1;
                let mig = mine.iter().any(|c| c.info.mode == "mig");
                let short = r.nums > mine.len() as i64;
                assert!(
                    full.is_none() || mig || short,
                    "round {round}: every card fails but the summary did not say so: {r:?} {cards:?}"
                );
            }
        }
    }
    assert!(
        rejected > 500 && undecided > 500,
        "{rejected} / {undecided}"
    );
    // Selectors, a mutex policy or a quota leave every node to the full evaluation.
    let r = req(1, 1024, 101, 10);
    let policy = GpuPolicy::for_pod(&pod, "spread");
    assert!(fit::summary_check(&pod, &r, &policy, true).is_none());
    let mutex = GpuPolicy::for_pod(&pod, "mutex");
    assert!(mutex.is_mutex && fit::summary_check(&pod, &r, &mutex, false).is_none());
    for key in [
        USE_GPU_TYPE,
        NOUSE_GPU_TYPE,
        VGPU_MODE,
        USE_GPU_UUID,
        NOUSE_GPU_UUID,
    ] {
        let with = Pod {
            annotations: vec![(key.to_string(), "x".to_string())],
            ..pod.clone()
        };
        assert!(
            fit::summary_check(&with, &r, &policy, false).is_none(),
            "{key}"
        );
    }
}
