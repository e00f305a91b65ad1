//! The `hamr` binary, run as a user would, on the native engine.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const NOW: &str = "2026-11-28T12:00:00Z";

/// One A100-40GB (GPU-a) on gpu-node-1; cpu-node has no GPU.
const CLUSTER: &str = r#"
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Node
  metadata:
    name: gpu-node-1
    annotations:
      hami.io/node-nvidia-register: '[{"id":"GPU-a","index":0,"count":10,"devmem":40960,"devcore":100,"type":"NVIDIA A100-SXM4-40GB","numa":0,"mode":"hami-core","health":true}]'
- apiVersion: v1
  kind: Node
  metadata: {name: cpu-node}
"#;

/// p1 takes 8000 MiB and 30 cores of GPU-a; p2 asks 40000 MiB of the 32960 left.
const PODS: &str = r#"
metadata: {name: p1}
spec:
  containers:
  - name: main
    resources:
      limits: {nvidia.com/gpu: 1, nvidia.com/gpumem: 8000, nvidia.com/gpucores: 30}
---
metadata: {name: p2, namespace: team-a}
spec:
  containers:
  - name: main
    resources:
      limits: {nvidia.com/gpu: '1', nvidia.com/gpumem: '40000'}
"#;

struct Dir(tempfile::TempDir);

impl Dir {
    fn new() -> Dir {
        Dir(tempfile::tempdir().expect("a temp dir can be created"))
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.path().join(name);
        std::fs::write(&path, text).expect("the temp file can be written");
        path
    }
}

fn hamr(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hamr"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("the hamr binary runs")
}

fn simulate(dir: &Dir, cluster: &str, pods: &str, extra: &[&str]) -> Output {
    dir.file("cluster.yaml", cluster);
    dir.file("pods.yaml", pods);
    let mut args = vec![
        "simulate",
        "--cluster",
        "cluster.yaml",
        "--pods",
        "pods.yaml",
        "--engine",
        "native",
        "--now",
        NOW,
    ];
    args.extend_from_slice(extra);
    hamr(&args, dir.0.path())
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Exit code 2 and exactly one stderr line, which is returned.
fn one_line_error(out: &Output) -> String {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line expected: {stderr}");
    stderr.trim_end().to_string()
}

#[test]
fn simulate_prints_each_placement_and_the_card_table() {
    let dir = Dir::new();
    let out = simulate(&dir, CLUSTER, PODS, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "default/p1 -> gpu-node-1\n\
         \x20   container 0: GPU-a (index 0, NVIDIA A100-SXM4-40GB) 8000 MiB, 30% cores\n\
         team-a/p2 -> no node fits\n\
         \x20   gpu-node-1: 1/1 CardInsufficientMemory\n\
         \x20   cpu-node: node unregistered\n\
         \n\
         1 placed, 1 not placed\n\
         \n\
         NODE        INDEX  MODEL                  SLOTS  MEMORY MiB  CORES %  HEALTH\n\
         gpu-node-1  0      NVIDIA A100-SXM4-40GB  1/10   8000/40960  30/100   healthy\n"
    );
}

#[test]
fn simulate_json_is_one_document_with_the_same_content() {
    let dir = Dir::new();
    let out = simulate(&dir, CLUSTER, PODS, &["--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    assert_eq!(v["now"], 1_795_867_200);
    assert_eq!(v["pods"][0]["pod"], "default/p1");
    assert_eq!(v["pods"][0]["node"], "gpu-node-1");
    assert_eq!(v["pods"][0]["cards"][0]["uuid"], "GPU-a");
    assert_eq!(v["pods"][0]["cards"][0]["memory_mib"], 8000);
    assert_eq!(v["pods"][1]["outcome"], "unschedulable");
    assert_eq!(
        v["pods"][1]["reasons"][0]["reason"],
        "1/1 CardInsufficientMemory"
    );
    assert_eq!(v["cards"][0]["used_memory_mib"], 8000);
    assert_eq!(v["cards"][0]["health"], "healthy");
    assert_eq!(
        (v["placed"].clone(), v["unplaced"].clone()),
        (1.into(), 1.into())
    );
}

#[test]
fn a_yaml_syntax_error_exits_2_naming_the_file_and_line() {
    let dir = Dir::new();
    let out = simulate(&dir, "kind: Node\nmetadata: {name: n1\n", PODS, &[]);
    let line = one_line_error(&out);
    assert!(
        line.starts_with("error: cluster.yaml: ") && line.contains("line 3"),
        "{line}"
    );
}

#[test]
fn a_registration_with_three_fields_exits_2_naming_node_and_annotation() {
    let dir = Dir::new();
    let cluster = "kind: Node\nmetadata:\n  name: gpu-node-1\n  annotations:\n    \
                   hami.io/node-nvidia-register: 'GPU-a,10,7680:'\n";
    let line = one_line_error(&simulate(&dir, cluster, PODS, &[]));
    assert!(
        line.starts_with(
            "error: node/gpu-node-1: hami.io/node-nvidia-register \"GPU-a,10,7680:\": "
        ) && line.contains("3 fields"),
        "{line}"
    );
}

#[test]
fn gpumem_written_as_16gi_exits_2_naming_pod_and_limit() {
    let dir = Dir::new();
    let pods = "metadata: {name: big}\nspec:\n  containers:\n  - name: main\n    resources:\n      \
                limits: {nvidia.com/gpu: 1, nvidia.com/gpumem: 16Gi}\n";
    let line = one_line_error(&simulate(&dir, CLUSTER, pods, &[]));
    assert!(
        line.starts_with(
            "error: pod/default/big: containers[0].limits[nvidia.com/gpumem] \"16Gi\": "
        ),
        "{line}"
    );
}

#[test]
fn a_negative_percentage_exits_2_naming_pod_and_limit() {
    let dir = Dir::new();
    let pods = "metadata: {name: neg}\nspec:\n  containers:\n  - name: main\n    resources:\n      \
                limits: {nvidia.com/gpu: 1, nvidia.com/gpumem-percentage: '-10'}\n";
    let line = one_line_error(&simulate(&dir, CLUSTER, pods, &[]));
    assert!(
        line.starts_with(
            "error: pod/default/neg: containers[0].limits[nvidia.com/gpumem-percentage] \"-10\": "
        ),
        "{line}"
    );
}

#[test]
fn a_refused_config_exits_2_naming_the_config_file_and_key() {
    let dir = Dir::new();
    dir.file("config.yaml", "nodeSchedulerPolicy: random\n");
    let line = one_line_error(&simulate(&dir, CLUSTER, PODS, &["--config", "config.yaml"]));
    assert_eq!(
        line,
        "error: config.yaml: invalid config: config: nodeSchedulerPolicy \"random\": must be binpack or spread"
    );
}

#[test]
fn explain_reports_the_verdict_and_each_card_of_each_node() {
    let dir = Dir::new();
    dir.file("cluster.yaml", CLUSTER);
    dir.file(
        "pod.yaml",
        "metadata: {name: p2}\nspec:\n  containers:\n  - name: main\n    resources:\n      \
         limits: {nvidia.com/gpu: '1', nvidia.com/gpumem: '50000'}\n",
    );
    let args = [
        "explain",
        "--cluster",
        "cluster.yaml",
        "--pod",
        "pod.yaml",
        "--engine",
        "native",
        "--now",
        NOW,
    ];
    let out = hamr(&args, dir.0.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "pod default/p2\n\
         gpu-node-1: does not fit: 1/1 CardInsufficientMemory\n\
         \x20   container 0, card 0 GPU-a: CardInsufficientMemory: asked 50000 MiB, free 40960 of 40960 MiB\n\
         cpu-node: does not fit: node unregistered\n"
    );
}

#[test]
fn conformance_prints_a_line_per_scenario_and_the_summary_and_exits_1_on_failure() {
    let dir = Dir::new();
    std::fs::create_dir(dir.0.path().join("s")).expect("a folder can be created");
    let scenario = |name: &str, node: &str| {
        format!(
            "name: {name}\nnodes:\n- metadata:\n    name: gpu-node-1\n    annotations:\n      \
             hami.io/node-nvidia-register: '[{{\"id\":\"GPU-a\",\"index\":0,\"count\":10,\"devmem\":40960,\
             \"devcore\":100,\"type\":\"NVIDIA A100-SXM4-40GB\",\"numa\":0,\"mode\":\"hami-core\",\"health\":true}}]'\n\
             schedule:\n- metadata: {{name: p1}}\n  spec:\n    containers:\n    - name: main\n      resources:\n        \
             limits: {{nvidia.com/gpu: '1', nvidia.com/gpumem: '1000'}}\nexpect:\n- {{pod: p1, node: {node}}}\n"
        )
    };
    dir.file("s/a.yaml", &scenario("placed", "gpu-node-1"));
    dir.file("s/b.yml", &scenario("not placed", "null"));
    let out = hamr(&["conformance", "s", "--engine", "native"], dir.0.path());
    assert_eq!(
        text(&out.stdout),
        "PASS  native     a.yaml  placed\n\
         FAIL  native     b.yml  not placed: pod p1: node: expected null, got \"gpu-node-1\"\n\
         1 passed, 1 failed\n"
    );
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn conformance_on_a_missing_path_exits_2() {
    let dir = Dir::new();
    let out = hamr(
        &["conformance", "nowhere", "--engine", "native"],
        dir.0.path(),
    );
    let line = one_line_error(&out);
    assert!(line.starts_with("error: nowhere: "), "{line}");
}
