//! Spec §13.1 (request derivation) and §13.2 (admission mutation) as tables.

use super::*;
use crate::api::Container;
use crate::config::NvidiaConfig;

fn container(limits: &[(&str, &str)], requests: &[(&str, &str)]) -> Container {
    let pairs = |l: &[(&str, &str)]| {
        l.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    Container {
        name: "c".into(),
        limits: pairs(limits),
        requests: pairs(requests),
        ..Container::default()
    }
}

const SLOT: Slot<'static> = Slot {
    object: "pod/default/p",
    init: false,
    index: 0,
};

/// `(nums, memreq, mem_pct, coresreq)`.
type Derived = (i64, i64, i64, i64);
/// Admission of one container: (has resource, limits it sets, env it adds).
type AdmitRow = (bool, Vec<(String, String)>, Vec<(String, String)>);

/// The derived request, or `None` for "no NVIDIA request".
fn derived(c: &Container, cfg: &NvidiaConfig) -> Option<Derived> {
    derive(c, SLOT, cfg)
        .expect("valid request")
        .map(|r| (r.nums, r.memreq, r.mem_pct, r.coresreq))
}

#[test]
fn request_derivation_table_r1_to_r12() {
    let cfg = NvidiaConfig::default();
    let gpu = "nvidia.com/gpu";
    let mem = "nvidia.com/gpumem";
    let pct = "nvidia.com/gpumem-percentage";
    let cores = "nvidia.com/gpucores";
    let table: Vec<(&str, Container, Option<Derived>)> = vec![
        (
            "R1 count only takes the whole card",
            container(&[(gpu, "1")], &[]),
            Some((1, 0, 100, 0)),
        ),
        (
            "R2 fixed memory",
            container(&[(gpu, "2"), (mem, "4096")], &[]),
            Some((2, 4096, 101, 0)),
        ),
        (
            "R3 half a card",
            container(&[(gpu, "1"), (pct, "50")], &[]),
            Some((1, 0, 50, 0)),
        ),
        (
            "R4 150% is clamped",
            container(&[(gpu, "1"), (pct, "150")], &[]),
            Some((1, 0, 100, 0)),
        ),
        (
            "R5 2^32+50% is clamped, not wrapped",
            container(&[(gpu, "1"), (pct, "4294967346")], &[]),
            Some((1, 0, 100, 0)),
        ),
        (
            "R6 101% is clamped",
            container(&[(gpu, "1"), (pct, "101")], &[]),
            Some((1, 0, 100, 0)),
        ),
        (
            "R7 cores without memory",
            container(&[(gpu, "1"), (cores, "50")], &[]),
            Some((1, 0, 100, 50)),
        ),
        ("R8 no GPU resources", container(&[("cpu", "1")], &[]), None),
        (
            "R9 count in requests",
            container(&[], &[(gpu, "1")]),
            Some((1, 0, 100, 0)),
        ),
        (
            "R10 0% means unset",
            container(&[(gpu, "1"), (pct, "0")], &[]),
            Some((1, 0, 100, 0)),
        ),
        (
            "R11 -1% means unset",
            container(&[(gpu, "1"), (pct, "-1")], &[]),
            Some((1, 0, 100, 0)),
        ),
        (
            "R12 memory wins over 0%",
            container(&[(gpu, "1"), (mem, "2000"), (pct, "0")], &[]),
            Some((1, 2000, 101, 0)),
        ),
        (
            "limits win over requests",
            container(&[(gpu, "1"), (mem, "1000")], &[(mem, "2000")]),
            Some((1, 1000, 101, 0)),
        ),
        (
            "a count of zero asks for nothing",
            container(&[(gpu, "0"), (mem, "1000")], &[]),
            None,
        ),
    ];
    for (name, c, want) in table {
        assert_eq!(derived(&c, &cfg), want, "{name}");
    }
}

#[test]
fn r13_gpumem_beyond_int32_is_an_error_naming_the_field() {
    let cfg = NvidiaConfig::default();
    for value in ["16Gi", "16.0Gi"] {
        let err = derive(
            &container(
                &[("nvidia.com/gpu", "1"), ("nvidia.com/gpumem", value)],
                &[],
            ),
            SLOT,
            &cfg,
        )
        .expect_err("16Gi MiB does not fit in int32");
        assert_eq!(err.object, "pod/default/p");
        assert_eq!(err.field, "containers[0].limits[nvidia.com/gpumem]");
        assert_eq!(err.value, value);
        assert_eq!(err.message, "must be between 0 and 2147483647");
    }
    let err = derive(
        &container(
            &[("nvidia.com/gpu", "1"), ("nvidia.com/gpumem", "500m")],
            &[],
        ),
        SLOT,
        &cfg,
    )
    .expect_err("not whole");
    assert_eq!(err.message, "must be a whole number");
}

#[test]
fn r14_memory_factor_multiplies_and_bounds_memory() {
    let cfg = NvidiaConfig {
        memory_factor: 2,
        ..NvidiaConfig::default()
    };
    let c = container(
        &[("nvidia.com/gpu", "1"), ("nvidia.com/gpumem", "1024")],
        &[],
    );
    assert_eq!(derived(&c, &cfg), Some((1, 2048, 101, 0)));
    let c = container(
        &[("nvidia.com/gpu", "1"), ("nvidia.com/gpumem", "1Gi")],
        &[],
    );
    assert!(derive(&c, SLOT, &cfg).is_err(), "1Gi × 2 exceeds int32");
}

#[test]
fn r15_default_memory_applies_when_nothing_is_asked() {
    let cfg = NvidiaConfig {
        default_memory: 512,
        ..NvidiaConfig::default()
    };
    for extra in [
        vec![],
        vec![("nvidia.com/gpumem-percentage", "0")],
        vec![("nvidia.com/gpumem", "0")],
    ] {
        let mut limits = vec![("nvidia.com/gpu", "1")];
        limits.extend(extra.iter().copied());
        assert_eq!(
            derived(&container(&limits, &[]), &cfg),
            Some((1, 512, 101, 0)),
            "{extra:?}"
        );
    }
}

fn admitted(c: &Container, cfg: &NvidiaConfig) -> AdmitRow {
    let cref = ContainerRef {
        init: false,
        index: 0,
    };
    let a = admit(c, SLOT, cref, cfg).expect("admissible");
    let mut limits = Vec::new();
    let mut env = Vec::new();
    for m in a.mutations {
        match m {
            Mutation::SetLimit(l) => limits.push((l.name, l.value)),
            Mutation::AddEnv(e) => env.push((e.name, e.value)),
            other => panic!("unexpected pod-level mutation {other:?}"),
        }
    }
    (a.has_resource, limits, env)
}

fn kv(k: &str, v: &str) -> (String, String) {
    (k.to_string(), v.to_string())
}

#[test]
fn admission_table_w1_to_w14() {
    let cfg = NvidiaConfig::default();
    let cores100 = vec![kv("nvidia.com/gpucores", "100")];
    let none: Vec<(String, String)> = vec![];
    let table: Vec<(&str, Container, AdmitRow)> = vec![
        (
            "W1 count only is exclusive",
            container(&[("nvidia.com/gpu", "1")], &[]),
            (true, cores100.clone(), none.clone()),
        ),
        (
            "W2 100% is exclusive",
            container(
                &[
                    ("nvidia.com/gpu", "1"),
                    ("nvidia.com/gpumem-percentage", "100"),
                ],
                &[],
            ),
            (true, cores100.clone(), none.clone()),
        ),
        (
            "W3 requests count and 100%",
            container(
                &[],
                &[
                    ("nvidia.com/gpu", "1"),
                    ("nvidia.com/gpumem-percentage", "100"),
                ],
            ),
            (true, cores100.clone(), none.clone()),
        ),
        (
            "W4 50% is shared",
            container(
                &[
                    ("nvidia.com/gpu", "1"),
                    ("nvidia.com/gpumem-percentage", "50"),
                ],
                &[],
            ),
            (true, none.clone(), none.clone()),
        ),
        (
            "W5 fixed memory is shared",
            container(
                &[("nvidia.com/gpu", "1"), ("nvidia.com/gpumem", "8192")],
                &[],
            ),
            (true, none.clone(), none.clone()),
        ),
        (
            "W6 explicit cores stay",
            container(
                &[("nvidia.com/gpu", "1"), ("nvidia.com/gpucores", "70")],
                &[],
            ),
            (true, none.clone(), none.clone()),
        ),
        (
            "W7 count and cores only in requests",
            container(
                &[],
                &[("nvidia.com/gpu", "1"), ("nvidia.com/gpucores", "55")],
            ),
            (false, none.clone(), none.clone()),
        ),
        (
            "W9 cores alone inject the count",
            container(&[("nvidia.com/gpucores", "1")], &[]),
            (true, vec![kv("nvidia.com/gpu", "1")], none.clone()),
        ),
        (
            "W10 memory alone injects the count",
            container(&[("nvidia.com/gpumem", "1")], &[]),
            (true, vec![kv("nvidia.com/gpu", "1")], none.clone()),
        ),
        (
            "W10 percentage alone injects the count, 1% is shared",
            container(&[("nvidia.com/gpumem-percentage", "1")], &[]),
            (true, vec![kv("nvidia.com/gpu", "1")], none.clone()),
        ),
        (
            "W11 no GPU",
            container(&[("cpu", "1")], &[]),
            (false, none.clone(), none.clone()),
        ),
        (
            "W13 priority becomes an env",
            container(
                &[
                    ("nvidia.com/gpu", "1"),
                    ("nvidia.com/gpumem", "100"),
                    ("nvidia.com/priority", "5"),
                ],
                &[],
            ),
            (true, none.clone(), vec![kv("CUDA_TASK_PRIORITY", "5")]),
        ),
    ];
    for (name, c, want) in table {
        assert_eq!(admitted(&c, &cfg), want, "{name}");
    }
}

#[test]
fn w8_w11_w14_configuration_driven_mutations() {
    let no_memory_name = NvidiaConfig {
        resource_memory_name: String::new(),
        ..NvidiaConfig::default()
    };
    let (has, limits, _) = admitted(&container(&[("nvidia.com/gpu", "1")], &[]), &no_memory_name);
    assert!(has);
    assert_eq!(limits, vec![kv("nvidia.com/gpucores", "100")], "W8");

    let overwrite = NvidiaConfig {
        overwrite_env: true,
        ..NvidiaConfig::default()
    };
    let (_, _, env) = admitted(&container(&[("cpu", "1")], &[]), &overwrite);
    assert_eq!(env, vec![kv("NVIDIA_VISIBLE_DEVICES", "none")], "W11");

    let force = NvidiaConfig {
        gpu_core_policy: "force".into(),
        ..NvidiaConfig::default()
    };
    let (_, _, env) = admitted(
        &container(&[("nvidia.com/gpu", "1"), ("nvidia.com/gpumem", "10")], &[]),
        &force,
    );
    assert_eq!(env, vec![kv("GPU_CORE_UTILIZATION_POLICY", "force")], "W14");
}

#[test]
fn w12_percentages_outside_0_to_100_are_refused_at_admission() {
    let cfg = NvidiaConfig::default();
    for ok in ["0", "100"] {
        let c = container(
            &[
                ("nvidia.com/gpu", "1"),
                ("nvidia.com/gpumem-percentage", ok),
            ],
            &[],
        );
        assert!(
            admit(
                &c,
                SLOT,
                ContainerRef {
                    init: false,
                    index: 0
                },
                &cfg
            )
            .is_ok(),
            "{ok}%"
        );
    }
    for bad in ["101", "150", "-5"] {
        let c = container(
            &[
                ("nvidia.com/gpu", "1"),
                ("nvidia.com/gpumem-percentage", bad),
            ],
            &[],
        );
        let err = admit(
            &c,
            SLOT,
            ContainerRef {
                init: false,
                index: 0,
            },
            &cfg,
        )
        .expect_err("refused");
        assert_eq!(
            err.field, "containers[0].limits[nvidia.com/gpumem-percentage]",
            "{bad}%"
        );
        assert_eq!(err.message, "must be between 0 and 100");
    }
}
