//! The conformance runner: reading scenarios, running them on the native engine, checking
//! expectations, comparing engines, and the summary line.

use std::collections::BTreeMap;

use hamr::conformance::observe::{self, Observation};
use hamr::conformance::scenario::{self, Scenario};
use hamr::conformance::{self as runner, ScenarioPath};
use hamr::engine::EngineKind;
use hamr_guest::api::Code;

const REGISTER: &str = r#"'[{"id":"GPU-a","index":0,"count":10,"devmem":40960,"devcore":100,"type":"NVIDIA A100-SXM4-40GB","numa":0,"mode":"hami-core","health":true}]'"#;

/// One A100-40GB; `schedule` and `expect` are appended verbatim.
fn scenario_text(schedule: &str, expect: &str) -> String {
    format!(
        "name: test scenario\nnodes:\n- metadata:\n    name: gpu-node-1\n    annotations:\n      \
         hami.io/node-nvidia-register: {REGISTER}\nschedule:\n{schedule}expect:\n{expect}"
    )
}

fn pod(name: &str, limits: &str) -> String {
    format!(
        "- metadata: {{name: {name}}}\n  spec:\n    containers:\n    - name: main\n      \
         resources:\n        limits: {{{limits}}}\n"
    )
}

fn read(text: &str) -> Scenario {
    scenario::parse(text, "s.yaml").expect("the scenario reads")
}

/// The failures of a scenario on the native engine.
fn failures(text: &str) -> Vec<String> {
    let s = read(text);
    let mut engine = EngineKind::Native
        .start()
        .expect("the native engine starts");
    match observe::run(&mut engine, &s) {
        Ok(observed) => observe::check(&s.expect, &observed.observations),
        Err(e) => vec![format!("the run stopped: {e}")],
    }
}

const P1: &str = "nvidia.com/gpu: '1', nvidia.com/gpumem: '8000', nvidia.com/gpucores: '30'";

#[test]
fn a_scenario_whose_expectations_hold_passes() {
    let text = scenario_text(
        &pod("p1", P1),
        "- pod: p1\n  node: gpu-node-1\n  admission: allowed\n  annotations:\n    \
         hami.io/vgpu-node: gpu-node-1\n    hami.io/vgpu-devices-to-allocate: \"GPU-a,NVIDIA,8000,30:;\"\n",
    );
    assert_eq!(failures(&text), Vec::<String>::new());
}

#[test]
fn a_wrong_expected_annotation_fails_with_expected_and_actual() {
    let text = scenario_text(
        &pod("p1", P1),
        "- pod: p1\n  annotations:\n    hami.io/vgpu-devices-to-allocate: \"GPU-a,NVIDIA,4000,30:;\"\n",
    );
    assert_eq!(
        failures(&text),
        vec![
            "pod p1: annotation hami.io/vgpu-devices-to-allocate: expected \"GPU-a,NVIDIA,4000,30:;\", \
             got \"GPU-a,NVIDIA,8000,30:;\""
                .to_string()
        ]
    );
}

#[test]
fn mutated_expectations_compare_the_admitted_pod() {
    // Admission adds no mutation here: the limits stay as written, there is no runtime class.
    let text = scenario_text(
        &pod("p1", P1),
        "- pod: p1\n  mutated:\n    runtimeClassName: nvidia\n    annotations: {a: b}\n    \
         limits:\n      main: {nvidia.com/gpumem: '8000', nvidia.com/gpucores: '50'}\n    \
         requests:\n      other: {cpu: '1'}\n",
    );
    assert_eq!(
        failures(&text),
        vec![
            "pod p1: mutated annotation a: expected \"b\", got null".to_string(),
            "pod p1: mutated runtimeClassName: expected \"nvidia\", got null".to_string(),
            "pod p1: mutated limits of main nvidia.com/gpucores: expected \"50\", got \"30\""
                .to_string(),
            "pod p1: mutated requests: no container \"other\"".to_string(),
        ]
    );
}

#[test]
fn a_placed_pod_counts_for_the_next_and_reasons_are_compared_exactly() {
    let schedule = pod("p1", "nvidia.com/gpu: '1', nvidia.com/gpumem: '40000'")
        + &pod("p2", "nvidia.com/gpu: '1', nvidia.com/gpumem: '1000'");
    let text = scenario_text(
        &schedule,
        "- {pod: p2, node: null, reasons: {gpu-node-1: \"1/1 CardInsufficientMemory\"}}\n",
    );
    assert_eq!(failures(&text), Vec::<String>::new());
}

#[test]
fn an_expected_node_that_is_not_chosen_shows_why_no_node_fits() {
    let text = scenario_text(
        &pod("p1", "nvidia.com/gpu: '1', nvidia.com/gpumem: '50000'"),
        "- {pod: default/p1, node: gpu-node-1}\n",
    );
    assert_eq!(
        failures(&text),
        vec![
            "pod default/p1: node: expected \"gpu-node-1\", got null \
             (gpu-node-1: 1/1 CardInsufficientMemory)"
                .to_string()
        ]
    );
}

#[test]
fn a_malformed_request_is_an_admission_denial() {
    let text = scenario_text(
        &pod("big", "nvidia.com/gpu: '1', nvidia.com/gpumem: 16Gi"),
        "- {pod: big, node: null, admission: denied}\n",
    );
    assert_eq!(failures(&text), Vec::<String>::new());
}

#[test]
fn an_expectation_about_a_pod_not_in_schedule_fails() {
    let text = scenario_text(&pod("p1", P1), "- {pod: ghost, node: null}\n");
    assert_eq!(
        failures(&text),
        vec!["pod ghost: not in schedule".to_string()]
    );
}

#[test]
fn an_absent_node_is_not_checked_but_a_wrong_admission_is() {
    let text = scenario_text(&pod("p1", P1), "- {pod: p1, admission: denied}\n");
    assert_eq!(
        failures(&text),
        vec!["pod p1: admission: expected denied, got allowed".to_string()]
    );
}

#[test]
fn a_refused_delta_is_recorded_and_the_scenario_goes_on_without_it() {
    let text = "name: bad registration\nnodes:\n- metadata:\n    name: n1\n    annotations:\n      \
                hami.io/node-nvidia-register: 'GPU-a,10,7680:'\nexpect: []\n";
    let s = read(text);
    let mut engine = EngineKind::Native
        .start()
        .expect("the native engine starts");
    let run = observe::run(&mut engine, &s).expect("the run goes on");
    assert_eq!(run.rejected.len(), 1, "{:?}", run.rejected);
    assert!(
        run.rejected[0].starts_with(
            "node/n1: invalid input: node/n1: hami.io/node-nvidia-register \"GPU-a,10,7680:\": "
        ),
        "{:?}",
        run.rejected
    );
}

#[test]
fn a_misspelt_key_is_an_error_not_a_silent_pass() {
    let err = scenario::parse("name: x\nexpcet: []\n", "s.yaml").expect_err("unknown key");
    assert!(
        err.to_string()
            .starts_with("s.yaml: unknown field `expcet`"),
        "{err}"
    );
}

#[test]
fn now_defaults_to_the_documented_time_and_config_to_an_empty_object() {
    let s = read("name: x\n");
    assert_eq!((s.now, s.config.as_str()), (1_795_867_200, "{}"));
    let s = read("name: x\nnow: '2026-11-28T12:00:10Z'\nconfig: {nodeSchedulerPolicy: spread}\n");
    assert_eq!(
        (s.now, s.config.as_str()),
        (1_795_867_210, r#"{"nodeSchedulerPolicy":"spread"}"#)
    );
}

fn observation(node: &str, time: &str) -> Observation {
    Observation {
        pod: "default/p1".into(),
        denied: None,
        admitted: None,
        node: Some(node.into()),
        annotations: BTreeMap::from([
            ("hami.io/vgpu-node".to_string(), node.to_string()),
            ("hami.io/vgpu-time".to_string(), time.to_string()),
        ]),
        verdicts: BTreeMap::from([(node.to_string(), (Code::Success, String::new()))]),
        error: None,
    }
}

#[test]
fn engines_that_differ_only_in_the_time_stamp_agree() {
    assert_eq!(
        observe::difference(&[observation("n1", "1")], &[observation("n1", "2")]),
        None
    );
}

#[test]
fn engines_that_choose_different_nodes_disagree() {
    assert_eq!(
        observe::difference(&[observation("n1", "1")], &[observation("n2", "1")]),
        Some("pod default/p1: node \"n1\" vs \"n2\"".to_string())
    );
}

#[test]
fn verdicts_are_compared_on_the_nodes_both_engines_report() {
    let tried = observation("n1", "1");
    let mut every = observation("n1", "1");
    every
        .verdicts
        .insert("n2".into(), (Code::Success, String::new()));
    assert_eq!(
        observe::difference(std::slice::from_ref(&tried), std::slice::from_ref(&every)),
        None
    );
    every.verdicts.insert(
        "n1".into(),
        (Code::Unschedulable, "1/1 CardInsufficientMemory".into()),
    );
    assert!(
        observe::difference(&[tried], &[every])
            .is_some_and(|d| d.contains("CardInsufficientMemory")),
        "a node both report must agree"
    );
}

/// Every scenario, on the native engine, under `filterVerdicts: tried` and `all`: the same
/// decisions, and each verdict of `tried` is the one `all` gives. This is what lets `filter`
/// stop at the first fitting node: a vendor whose node rank is more than the score on existing
/// use but claims [`rank_is_use_only`] shows up here as a different node.
///
/// [`rank_is_use_only`]: hamr_guest::vendor::Vendor::rank_is_use_only
#[test]
fn conformance_filter_verdicts_modes_agree() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../conformance/scenarios");
    let paths = runner::find(&[root]).expect("the scenarios are listed");
    assert!(paths.len() > 300, "found {} scenarios", paths.len());
    let run = |s: &Scenario, mode: &str| -> Vec<Observation> {
        let mut s = s.clone();
        let mut config: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&s.config).expect("the scenario's config is an object");
        config.insert("filterVerdicts".into(), mode.into());
        s.config = serde_json::Value::Object(config).to_string();
        let mut engine = EngineKind::Native
            .start()
            .expect("the native engine starts");
        observe::run(&mut engine, &s)
            .unwrap_or_else(|e| panic!("{}: the run stopped: {e}", s.name))
            .observations
    };
    let mut tried_fewer = 0;
    for p in &paths {
        let s = scenario::read(&p.path).expect("the scenario reads");
        let (tried, all) = (run(&s, "tried"), run(&s, "all"));
        assert_eq!(tried.len(), all.len(), "{}", p.shown);
        for (t, a) in tried.iter().zip(&all) {
            let (t, a) = (t.comparable(), a.comparable());
            assert_eq!(
                (&t.denied, &t.node, &t.annotations, &t.error),
                (&a.denied, &a.node, &a.annotations, &a.error),
                "{}: pod {}",
                p.shown,
                t.pod
            );
            for (node, verdict) in &t.verdicts {
                assert_eq!(Some(verdict), a.verdicts.get(node), "{}: {node}", p.shown);
            }
            if a.node.is_none() {
                assert_eq!(t.verdicts, a.verdicts, "{}: pod {}", p.shown, t.pod);
            }
            tried_fewer += usize::from(t.verdicts.len() < a.verdicts.len());
        }
    }
    assert!(
        tried_fewer > 10,
        "tried stopped early for only {tried_fewer} pods"
    );
}

#[test]
fn the_summary_counts_scenario_engine_lines() {
    let dir = tempfile::tempdir().expect("a temp dir can be created");
    let good = dir.path().join("good.yaml");
    std::fs::write(
        &good,
        scenario_text(&pod("p1", P1), "- {pod: p1, node: gpu-node-1}\n"),
    )
    .expect("written");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "name: [unclosed\n").expect("written");
    let files = vec![
        ScenarioPath {
            path: good,
            shown: "good.yaml".into(),
        },
        ScenarioPath {
            path: bad,
            shown: "bad.yaml".into(),
        },
    ];
    let mut out = Vec::new();
    let summary = runner::run(&files, &[EngineKind::Native], &mut out).expect("writes");
    assert_eq!((summary.passed, summary.failed), (1, 1));
    let out = String::from_utf8(out).expect("utf-8");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert_eq!(lines[0], "PASS  native     good.yaml  test scenario");
    assert!(
        lines[1].starts_with("FAIL  native     bad.yaml  (unreadable): cannot read the scenario: ")
            && lines[1]
                .contains("bad.yaml: name: invalid type: sequence, expected a string at line 1"),
        "{}",
        lines[1]
    );
    assert_eq!(lines[2], "1 passed, 1 failed");
}

#[test]
fn the_wasm_extension_engine_runs_scenarios_and_skips_those_with_quotas() {
    let dir = tempfile::tempdir().expect("a temp dir can be created");
    let plain = dir.path().join("plain.yaml");
    std::fs::write(
        &plain,
        scenario_text(&pod("p1", P1), "- {pod: p1, node: gpu-node-1}\n"),
    )
    .expect("written");
    let quota = dir.path().join("quota.yaml");
    let with_quota = scenario_text(&pod("p1", P1), "- {pod: p1, node: gpu-node-1}\n")
        .replace(
            "schedule:\n",
            "quotas:\n- metadata: {name: q, namespace: default}\n  spec: {hard: {limits.nvidia.com/gpumem: '100000'}}\nschedule:\n",
        );
    std::fs::write(&quota, with_quota).expect("written");
    let files = vec![
        ScenarioPath {
            path: plain,
            shown: "plain.yaml".into(),
        },
        ScenarioPath {
            path: quota,
            shown: "quota.yaml".into(),
        },
    ];
    let mut out = Vec::new();
    let engines = [EngineKind::Native, EngineKind::WasmExtension];
    let summary = runner::run(&files, &engines, &mut out).expect("writes");
    let out = String::from_utf8(out).expect("utf-8");
    assert_eq!(
        (summary.passed, summary.failed, summary.skipped),
        (3, 0, 1),
        "{out}"
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[1], "PASS  wasm-extension plain.yaml  test scenario");
    assert_eq!(
        lines[3],
        "SKIP  wasm-extension quota.yaml  test scenario: ResourceQuotas are not visible to kube-scheduler-wasm-extension guests"
    );
    assert_eq!(lines[4], "3 passed, 0 failed, 1 skipped");
}

#[test]
fn folders_are_searched_recursively_for_yaml_files_in_sorted_order() {
    let dir = tempfile::tempdir().expect("a temp dir can be created");
    for f in ["b/z.yaml", "b/a.yml", "a.yaml", "notes.txt"] {
        let path = dir.path().join(f);
        std::fs::create_dir_all(path.parent().expect("has a parent")).expect("created");
        std::fs::write(path, "name: x\n").expect("written");
    }
    let found = runner::find(&[dir.path().to_path_buf()]).expect("found");
    let shown: Vec<&str> = found.iter().map(|f| f.shown.as_str()).collect();
    assert_eq!(shown, vec!["a.yaml", "b/a.yml", "b/z.yaml"]);
}
