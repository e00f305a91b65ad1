//! Spec §16.6: template rounding, requests with a memory factor, and the runtime info JSON.

use super::*;
use crate::device::ContainerDevice;

fn container(limits: &[(&str, &str)]) -> Container {
    Container {
        name: "main".into(),
        limits: limits
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Container::default()
    }
}

fn slot() -> Slot<'static> {
    Slot {
        object: "pod/default/p",
        init: false,
        index: 0,
    }
}

#[test]
fn trim_memory_takes_the_first_template_that_holds_it() {
    let a = &ASCEND_910A;
    assert_eq!(a.trim_memory(2000), Some((Some("vir02"), 2184)));
    assert_eq!(a.trim_memory(8738), Some((Some("vir08"), 8738)));
    assert_eq!(a.trim_memory(20000), Some((None, 32768)));
    assert_eq!(a.trim_memory(40000), None);
    assert_eq!(ASCEND_310P.trim_memory(22000), Some((None, 21527)));
}

#[test]
fn as08_memory_factor_multiplies_the_request() {
    for (factor, want) in [(10, 1280), (100, 12800), (0, 128)] {
        let mut config = Config::default();
        config.ascend.memory_factor = factor;
        let c = container(&[
            ("huawei.com/Ascend910B3", "1"),
            ("huawei.com/Ascend910B3-memory", "128"),
        ]);
        let r = ASCEND_910B3
            .derive(&c, slot(), &config)
            .expect("valid")
            .expect("asks");
        assert_eq!(
            (r.memreq, r.mem_pct, r.coresreq),
            (want, 0, 0),
            "factor {factor}"
        );
    }
}

#[test]
fn as17_to_as19_runtime_info() {
    let d = |mem, cores| {
        vec![vec![ContainerDevice {
            uuid: "device-0".into(),
            vendor: "Ascend910A".into(),
            mem,
            cores,
            index: 0,
            mig: None,
        }]]
    };
    assert_eq!(
        ASCEND_910A.runtime_info(&d(8738, 1), false),
        r#"[{"UUID":"device-0","temp":"vir08","memory":8738,"core":1}]"#
    );
    assert_eq!(
        ASCEND_910A.runtime_info(&d(8738, 0), false),
        r#"[{"UUID":"device-0","temp":"vir08","memory":8738}]"#
    );
    assert_eq!(
        ASCEND_910B3.runtime_info(&d(8192, 5), true),
        r#"[{"UUID":"device-0","memory":8192,"core":5}]"#
    );
}

#[test]
fn as04_910c_rounds_one_up_and_refuses_odd_counts() {
    let config = Config::default();
    let cref = ContainerRef {
        init: false,
        index: 0,
    };
    let c = container(&[("huawei.com/Ascend910C", "1")]);
    let (found, m) = ASCEND_910C
        .admit(&Pod::default(), &c, slot(), cref, &config)
        .expect("admitted");
    assert!(found);
    assert!(m.iter().any(|m| matches!(m, Mutation::SetLimit(l) if l.name == "huawei.com/Ascend910C" && l.value == "2")));
    let c = container(&[("huawei.com/Ascend910C", "3")]);
    let err = ASCEND_910C
        .admit(&Pod::default(), &c, slot(), cref, &config)
        .unwrap_err();
    assert_eq!(
        err.message,
        "Ascend910C device request must be 1 or 2*n, got 3"
    );
}
