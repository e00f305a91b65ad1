//! Generated clusters for the benchmarks: `nodes` nodes × 8 cards with a realistic mix (half
//! the cards partly used, one in eight full, one in sixty-four unhealthy) and ten running pods
//! per node (50,000 pods at 5,000 nodes), as deltas.

// Each bench uses a part of this module.
#![allow(dead_code)]

use hamr_guest::api::{Container, Delta, Node, Pod, PodPhase, Scheduler};

pub const CARDS: usize = 8;
pub const CARD_MIB: u64 = 81920;

fn uuid(node: usize, card: usize) -> String {
    format!("GPU-{node:05}-{card}")
}

/// The node objects, with NVLink-style pair scores for topology-aware pods.
pub fn nodes(n: usize) -> Vec<Node> {
    (0..n).map(node).collect()
}

/// Node `i`.
pub fn node(i: usize) -> Node {
    let cards: Vec<String> = (0..CARDS)
        .map(|c| {
            let healthy = (i * CARDS + c) % 64 != 7;
            let health = if healthy { r#","health":true"# } else { "" };
            format!(
                r#"{{"id":"{}","index":{c},"count":10,"devmem":{CARD_MIB},"devcore":100,"type":"NVIDIA H100 80GB HBM3","numa":{},"mode":"hami-core"{health}}}"#,
                uuid(i, c),
                c / 4
            )
        })
        .collect();
    let scores: Vec<String> = (0..CARDS)
        .map(|a| {
            let pairs: Vec<String> = (0..CARDS)
                .filter(|b| *b != a)
                .map(|b| {
                    format!(
                        r#""{}":{}"#,
                        uuid(i, b),
                        if a / 4 == b / 4 { 400 } else { 100 }
                    )
                })
                .collect();
            format!(
                r#"{{"uuid":"{}","score":{{{}}}}}"#,
                uuid(i, a),
                pairs.join(",")
            )
        })
        .collect();
    Node {
        name: format!("node-{i:05}"),
        annotations: vec![
            (
                "hami.io/node-nvidia-register".into(),
                format!("[{}]", cards.join(",")),
            ),
            (
                "hami.io/node-nvidia-score".into(),
                format!("[{}]", scores.join(",")),
            ),
        ],
        allocatable: vec![("nvidia.com/gpu".into(), "80".into())],
        ..Node::default()
    }
}

/// A pod asking for `gpus` cards of `mem` MiB and `cores` percent each.
pub fn pod(name: &str, gpus: u32, mem: u64, cores: u32, annotations: &[(&str, &str)]) -> Pod {
    Pod {
        uid: format!("uid-{name}"),
        namespace: "bench".into(),
        name: name.into(),
        annotations: annotations
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        containers: vec![Container {
            name: "main".into(),
            limits: vec![
                ("nvidia.com/gpu".into(), gpus.to_string()),
                ("nvidia.com/gpumem".into(), mem.to_string()),
                ("nvidia.com/gpucores".into(), cores.to_string()),
            ],
            ..Container::default()
        }],
        ..Pod::default()
    }
}

/// Running pods, ten per node: card 0 is full, the odd cards hold two 20 GiB / 25% tasks,
/// card 2 one 10 GiB / 10% task, cards 4 and 6 are idle.
pub fn running(n: usize) -> Vec<Pod> {
    (0..n).flat_map(running_on).collect()
}

/// The running pods of node `i`.
pub fn running_on(i: usize) -> Vec<Pod> {
    let mut out = Vec::new();
    for c in 0..CARDS {
        let tasks: &[(u64, u32)] = match c {
            0 => &[(CARD_MIB, 100)],
            1 | 3 | 5 | 7 => &[(20480, 25), (20480, 25)],
            2 => &[(10240, 10)],
            _ => &[],
        };
        for (t, &(mem, cores)) in tasks.iter().enumerate() {
            let mut p = pod(&format!("run-{i}-{c}-{t}"), 1, mem, cores, &[]);
            p.phase = PodPhase::Running;
            p.node_name = Some(format!("node-{i:05}"));
            p.annotations = vec![
                ("hami.io/vgpu-node".into(), format!("node-{i:05}")),
                (
                    "hami.io/vgpu-devices-allocated".into(),
                    format!("{},NVIDIA,{mem},{cores}:;", uuid(i, c)),
                ),
            ];
            out.push(p);
        }
    }
    out
}

/// Everything as one batch of deltas.
pub fn deltas(n: usize) -> Vec<Delta> {
    generated(n).collect()
}

/// The deltas of the cluster, nodes first, then pods, each generated when it is taken.
fn generated(n: usize) -> impl Iterator<Item = Delta> {
    let nodes = (0..n).map(|i| Delta::NodeUpsert(node(i)));
    let pods = (0..n).flat_map(|i| running_on(i).into_iter().map(Delta::PodUpsert));
    nodes.chain(pods)
}

/// The same deltas in batches of at most `size`, generated as they are taken (nodes first, then
/// pods), so a caller that measures memory never holds the whole cluster twice.
pub fn batches(n: usize, size: usize) -> impl Iterator<Item = Vec<Delta>> {
    let mut all = generated(n).peekable();
    std::iter::from_fn(move || {
        all.peek()?;
        Some(all.by_ref().take(size).collect())
    })
}

pub fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("node-{i:05}")).collect()
}

/// `s` configured with the defaults and fed the cluster of `n` nodes in one batch.
pub fn loaded<S: Scheduler>(mut s: S, n: usize) -> S {
    s.configure("{}")
        .ok()
        .expect("no fault")
        .expect("valid config");
    let errors = s.apply(&deltas(n)).ok().expect("no fault");
    assert!(errors.is_empty(), "the generated cluster is valid");
    s
}
