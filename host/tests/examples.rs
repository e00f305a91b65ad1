//! The seed pods in `examples/pods/` land where `examples/pods/README.md` says, each placed on
//! its own against `examples/cluster.yaml` (the README works the expectations out from the
//! spec; this test holds the code to them). Also: the README's first command, on the folder.

use std::path::Path;
use std::process::Command;

fn simulate(pods: &str) -> serde_json::Value {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new(env!("CARGO_BIN_EXE_hamr"))
        .current_dir(&root)
        .args([
            "simulate",
            "--engine",
            "native",
            "--format",
            "json",
            "--now",
            "2026-11-28T12:00:00Z",
        ])
        .args(["--cluster", "examples/cluster.yaml", "--pods", pods])
        .output()
        .expect("hamr runs");
    assert!(
        out.status.success(),
        "{pods}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON output")
}

/// `(pod, node or None, card indexes in grant order)` for each pod of the file.
fn placements(pods: &str) -> Vec<(String, Option<String>, Vec<u64>)> {
    simulate(pods)["pods"]
        .as_array()
        .expect("a pod list")
        .iter()
        .map(|p| {
            (
                p["pod"].as_str().expect("pod").to_string(),
                p["node"].as_str().map(str::to_string),
                p["cards"]
                    .as_array()
                    .map(|c| {
                        c.iter()
                            .map(|c| c["index"].as_u64().expect("index"))
                            .collect()
                    })
                    .unwrap_or_default(),
            )
        })
        .collect()
}

fn on(pod: &str, node: &str, cards: &[u64]) -> (String, Option<String>, Vec<u64>) {
    (pod.to_string(), Some(node.to_string()), cards.to_vec())
}

#[test]
fn every_seed_pod_lands_where_the_examples_readme_says() {
    let table = [
        (
            "examples/pods/vgpu-share.yaml",
            vec![on("ml-team/vgpu-share", "gpu-a100-1", &[3])],
        ),
        (
            "examples/pods/whole-card.yaml",
            vec![on("ml-team/whole-card", "gpu-h100-1", &[7, 6])],
        ),
        (
            "examples/pods/percentage.yaml",
            vec![on("ml-team/percentage", "gpu-a100-1", &[3])],
        ),
        (
            "examples/pods/topology-aware.yaml",
            vec![on("ml-team/topology-aware", "gpu-a100-1", &[3, 2, 1, 0])],
        ),
        (
            "examples/pods/use-gputype.yaml",
            vec![on("ml-team/use-gputype", "gpu-h100-1", &[7])],
        ),
        (
            "examples/pods/quota.yaml",
            vec![
                on("research/train-a", "gpu-a100-1", &[3]),
                ("research/train-b".to_string(), None, vec![]),
            ],
        ),
        (
            "examples/pods/multi-container.yaml",
            vec![on("ml-team/multi-container", "gpu-a100-1", &[3, 3])],
        ),
        (
            "examples/pods/spread-pod.yaml",
            vec![on("ml-team/spread-pod", "gpu-v100-1", &[2])],
        ),
        (
            "examples/pods/volcano-mig.yaml",
            vec![on("ml-team/volcano-mig", "vc-a100-1", &[1])],
        ),
        (
            "examples/pods/metax-sgpu-qos.yaml",
            vec![on("ml-team/metax-sgpu-qos", "metax-1", &[3])],
        ),
        (
            "examples/pods/metax-binpack.yaml",
            vec![on("ml-team/metax-binpack", "metax-1", &[0])],
        ),
        (
            "examples/pods/kunlun-vxpu-uuid.yaml",
            vec![on("ml-team/kunlun-vxpu-uuid", "kunlun-1", &[5])],
        ),
        (
            "examples/pods/aws-neuron.yaml",
            vec![on("ml-team/aws-neuron", "neuron-1", &[11])],
        ),
        (
            "examples/pods/enflame-vgcu-uuid.yaml",
            vec![on("ml-team/enflame-vgcu-uuid", "enflame-1", &[2])],
        ),
    ];
    for (file, want) in table {
        assert_eq!(placements(file), want, "{file}");
    }
}

#[test]
fn the_readme_command_places_the_whole_folder() {
    let report = simulate("examples/pods");
    let pods = report["pods"].as_array().expect("a pod list");
    assert_eq!(pods.len(), 15, "every pod of every file");
    let refused: Vec<&str> = pods
        .iter()
        .filter(|p| p["node"].is_null())
        .map(|p| p["pod"].as_str().expect("pod"))
        .collect();
    assert_eq!(
        refused,
        vec!["research/train-b"],
        "only the quota example is refused"
    );
}

#[test]
fn the_volcano_seed_pod_is_charged_its_mig_slice() {
    let report = simulate("examples/pods/volcano-mig.yaml");
    let grant = &report["pods"][0]["cards"][0];
    assert_eq!(grant["vendor"], "VOLCANO", "{grant}");
    assert_eq!(
        grant["uuid"], "GPU-b81f2d64-3c7a-4e19-8d05-6f2a9c1e7b41",
        "{grant}"
    );
    // A 2g.10gb slice, not the 8000 MiB asked.
    assert_eq!(grant["memory_mib"], 10240, "{grant}");
}
