use std::sync::Arc;

use hamr_guest::api::Code;
use http::Method;
use serde_json::{Value, json};

use super::*;
use crate::config::CompleteConfig;
use crate::mock_api::{self, json_response, next_request, pod_list, watch_response};
use crate::pods::{KubePods, MemoryPods, pod_info};

const NODE: &str = "node1";
const NOW: i64 = 1_795_867_200;
const SCHEDULER: &str = "hamr-scheduler";
/// The scheduler's guestConfig in examples/deploy/kube-scheduler-wasm-extension.yaml.
const GUEST_CONFIG: &str = r#"{"nodeSchedulerPolicy": "binpack", "gpuSchedulerPolicy": "spread", "nvidia": {"defaultMemory": 0, "memoryFactor": 1}}"#;

fn registration() -> BTreeMap<String, String> {
    BTreeMap::from([(
        "hami.io/node-nvidia-register".to_string(),
        r#"[{"id":"GPU-a","count":10,"devmem":40960,"devcore":100,"type":"NVIDIA A100-SXM4-40GB","mode":"hami-core","health":true},{"id":"GPU-b","index":1,"count":10,"devmem":40960,"devcore":100,"type":"NVIDIA A100-SXM4-40GB","mode":"hami-core","health":true}]"#.to_string(),
    )])
}

/// A pod bound to node1 by `scheduler`, asking one card of `mem` MiB and 30% cores, with
/// `annotations`.
fn pod_json(name: &str, scheduler: &str, mem: u32, annotations: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "namespace": "default", "uid": format!("uid-{name}"),
            "resourceVersion": "1", "annotations": annotations
        },
        "spec": {
            "schedulerName": scheduler,
            "nodeName": NODE,
            "containers": [{"name": "main", "resources": {"limits": {
                "nvidia.com/gpu": "1", "nvidia.com/gpumem": mem.to_string(),
                "nvidia.com/gpucores": "30"
            }}}]
        },
        "status": {"phase": "Pending"}
    })
}

fn info(value: Value) -> PodInfo {
    pod_info(&serde_json::from_value::<Pod>(value).expect("a pod"))
}

/// The decision of an independent run: the guest's filter on node1 holding `placed`.
fn filtered(placed: &[&PodInfo], pod: &PodInfo) -> api::FilterOutcome {
    let mut engine = Engine::new();
    engine.configure(GUEST_CONFIG).expect("config");
    let node = api::Node {
        name: NODE.into(),
        annotations: registration().into_iter().collect(),
        ..api::Node::default()
    };
    let mut deltas = vec![Delta::NodeUpsert(node)];
    deltas.extend(placed.iter().map(|p| Delta::PodUpsert(p.record.clone())));
    assert_eq!(engine.apply(&deltas), vec![]);
    engine
        .filter(&pod.record, &[NODE.to_string()], NOW)
        .expect("filter")
}

fn completer<P: PodSource>(pods: P, wait_seconds: u64) -> Completer<P> {
    let config = CompleteConfig {
        scheduler_names: vec![SCHEDULER.to_string()],
        guest_config: GUEST_CONFIG.to_string(),
        wait_seconds,
    };
    let registered = watch::Sender::new(registration());
    Completer::new(NODE, &config, registered.subscribe(), pods)
        .expect("valid config")
        .with_clock(|| NOW)
}

/// A pod on card GPU-a, already decided by an extender.
fn decided_on_a() -> PodInfo {
    let list = "GPU-a,NVIDIA,20000,30:;";
    info(pod_json(
        "p0",
        SCHEDULER,
        20000,
        json!({
            "hami.io/vgpu-node": NODE,
            "hami.io/vgpu-devices-allocated": list,
            "hami.io/vgpu-devices-to-allocate": list,
            "hami.io/bind-phase": "allocating",
        }),
    ))
}

#[tokio::test]
async fn a_bound_pod_without_a_decision_gets_exactly_one_patch_with_the_guests_decision() {
    let pods = MemoryPods::default();
    let p0 = decided_on_a();
    let p1 = info(pod_json("p1", SCHEDULER, 10240, json!({})));
    pods.insert(NODE, p0.clone());
    pods.insert(NODE, p1.clone());
    let decision = filtered(&[&p0], &p1).decision.expect("p1 fits");
    // Spread: the empty card.
    assert!(
        decision.annotations.contains(&(
            "hami.io/vgpu-devices-allocated".into(),
            "GPU-b,NVIDIA,10240,30:;".into()
        )),
        "{decision:?}"
    );
    let mut expected: BTreeMap<String, String> = decision.annotations.iter().cloned().collect();
    expected.insert("hami.io/bind-phase".into(), "allocating".into());
    expected.insert("hami.io/bind-time".into(), NOW.to_string());

    let completer = completer(pods.clone(), 0);
    let outcomes = completer.complete().await.expect("completed");
    assert_eq!(
        outcomes,
        vec![Outcome::Completed("default/p1".into(), decision.clone())]
    );
    assert_eq!(
        pods.patches(),
        vec![(
            "default/p1".to_string(),
            MetaPatch {
                annotations: expected,
                labels: BTreeMap::from([("hami.io/vgpu-node".into(), NODE.into())]),
            }
        )]
    );

    // The echo (the pod now carries its decision) completes nothing more.
    assert_eq!(completer.complete().await.expect("ran"), vec![]);
    assert_eq!(pods.patches().len(), 1, "one patch in all");
    assert!(pods.warnings().is_empty());
}

#[tokio::test]
async fn a_second_pod_that_no_longer_fits_is_marked_failed_with_the_guests_reason() {
    let pods = MemoryPods::default();
    let p0 = decided_on_a();
    let p1 = info(pod_json("p1", SCHEDULER, 30000, json!({})));
    let p2 = info(pod_json("p2", SCHEDULER, 30000, json!({})));
    for p in [&p0, &p1, &p2] {
        pods.insert(NODE, p.clone());
    }
    // The independent run: p1 takes GPU-b; with it placed, p2 fits no card.
    let decision = filtered(&[&p0], &p1).decision.expect("p1 fits");
    let placed = info(pod_json(
        "p1",
        SCHEDULER,
        30000,
        json!(
            decision
                .annotations
                .iter()
                .cloned()
                .collect::<BTreeMap<_, _>>()
        ),
    ));
    let refused = filtered(&[&p0, &placed], &p2);
    assert_eq!(refused.decision, None);
    let verdict = refused.node_verdicts(&[NODE]).remove(0);
    assert_eq!(verdict.code, Code::Unschedulable);

    let completer = completer(pods.clone(), 0);
    let outcomes = completer.complete().await.expect("ran");
    assert_eq!(
        outcomes,
        vec![
            Outcome::Completed("default/p1".into(), decision),
            Outcome::Failed("default/p2".into(), verdict.reason.clone()),
        ]
    );
    let patches = pods.patches();
    assert_eq!(patches.len(), 2);
    assert_eq!(
        patches[1],
        (
            "default/p2".to_string(),
            MetaPatch {
                annotations: BTreeMap::from([("hami.io/bind-phase".into(), "failed".into())]),
                labels: BTreeMap::new(),
            }
        )
    );
    assert_eq!(
        pods.warnings(),
        vec![PodWarning {
            namespace: "default".into(),
            name: "p2".into(),
            uid: "uid-p2".into(),
            reason: FAILED_REASON.into(),
            message: format!(
                "node {NODE} cannot hold the pod's devices: {}",
                verdict.reason
            ),
        }]
    );
    // Neither is tried again.
    assert_eq!(completer.complete().await.expect("ran"), vec![]);
    assert_eq!(pods.patches().len(), 2);
}

#[tokio::test]
async fn decided_running_cpu_only_and_other_schedulers_pods_are_left_alone() {
    let pods = MemoryPods::default();
    pods.insert(NODE, decided_on_a());
    pods.insert(
        NODE,
        info(pod_json("other", "default-scheduler", 1000, json!({}))),
    );
    let mut cpu_only = pod_json("cpu", SCHEDULER, 0, json!({}));
    cpu_only["spec"]["containers"][0]["resources"] = json!({"limits": {"cpu": "1"}});
    pods.insert(NODE, info(cpu_only.clone()));
    let mut running = pod_json("running", SCHEDULER, 1000, json!({}));
    running["status"]["phase"] = json!("Running");
    pods.insert(NODE, info(running.clone()));
    let completer = completer(pods.clone(), 0);
    assert!(!completer.candidate(&decided_on_a().record).await);
    assert!(!completer.candidate(&info(cpu_only).record).await);
    assert!(!completer.candidate(&info(running).record).await);
    let undecided = info(pod_json("new", SCHEDULER, 1000, json!({})));
    assert!(completer.candidate(&undecided.record).await);
    assert_eq!(completer.complete().await.expect("ran"), vec![]);
    assert_eq!(pods.patches(), vec![]);
    assert_eq!(pods.warnings(), vec![]);
}

#[tokio::test]
async fn a_malformed_request_fails_the_pod_with_the_field_named() {
    let pods = MemoryPods::default();
    let mut bad = pod_json("bad", SCHEDULER, 1000, json!({}));
    bad["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpumem"] = json!("lots");
    pods.insert(NODE, info(bad));
    let completer = completer(pods.clone(), 0);
    let outcomes = completer.complete().await.expect("ran");
    let [Outcome::Failed(pod, reason)] = outcomes.as_slice() else {
        panic!("{outcomes:?}");
    };
    assert_eq!(pod, "default/bad");
    assert!(
        reason.contains("nvidia.com/gpumem") && reason.contains("lots"),
        "{reason}"
    );
    assert_eq!(
        pods.get("default", "bad")
            .and_then(|p| p.annotation("hami.io/bind-phase").map(str::to_string)),
        Some("failed".to_string())
    );
}

#[test]
fn a_guest_config_the_guest_refuses_is_an_error() {
    let config = CompleteConfig {
        guest_config: "{\"nodeSchedulerPolicy\": 1}".into(),
        ..CompleteConfig::default()
    };
    let registered = watch::Sender::new(registration());
    let err = Completer::new(NODE, &config, registered.subscribe(), MemoryPods::default())
        .err()
        .expect("refused");
    assert!(
        err.to_string()
            .starts_with("completeDecisions.guestConfig: invalid config: "),
        "{err}"
    );
}

/// Over the API server: the watch sees the bound pod, the completer lists the node's pods and
/// sends one merge patch, exactly the decision; the watch's echo of it starts nothing.
#[tokio::test]
async fn the_watch_completes_a_bound_pod_with_one_merge_patch_and_ignores_the_echo() {
    let (client, mut handle) = mock_api::client();
    let bound = pod_json("p1", SCHEDULER, 10240, json!({}));
    let decision = filtered(&[], &info(bound.clone())).decision.expect("fits");
    let completer = Arc::new(completer(KubePods::new(client.clone()).on_node(NODE), 0));
    let task = tokio::spawn({
        let completer = completer.clone();
        async move { completer.run(client).await }
    });

    // 1. The watch's first list shows the bound pod.
    let (method, uri, _, respond) = next_request(&mut handle).await;
    assert_eq!(method, Method::GET);
    assert!(uri.contains("fieldSelector=spec.nodeName%3Dnode1"), "{uri}");
    respond.send_response(json_response(&pod_list(vec![bound.clone()])));

    // 2. The completer lists the node's pods afresh.
    let (method, uri, _, respond) = next_request(&mut handle).await;
    assert_eq!(method, Method::GET);
    assert!(
        uri.starts_with("/api/v1/pods?") && !uri.contains("watch=true"),
        "{uri}"
    );
    respond.send_response(json_response(&pod_list(vec![bound.clone()])));

    // 3. One merge patch: the decision, bind-phase and bind-time, and the node label.
    let (method, uri, body, respond) = next_request(&mut handle).await;
    assert_eq!(
        (method, uri.as_str()),
        (Method::PATCH, "/api/v1/namespaces/default/pods/p1?")
    );
    let mut annotations: serde_json::Map<String, Value> = decision
        .annotations
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    annotations.insert("hami.io/bind-phase".into(), json!("allocating"));
    annotations.insert("hami.io/bind-time".into(), json!(NOW.to_string()));
    let expected = json!({"metadata": {
        "annotations": annotations,
        "labels": {"hami.io/vgpu-node": NODE},
    }});
    assert_eq!(
        serde_json::from_str::<Value>(&body).expect("json"),
        expected
    );
    let mut echo = bound.clone();
    echo["metadata"]["annotations"] = expected["metadata"]["annotations"].clone();
    echo["metadata"]["labels"] = expected["metadata"]["labels"].clone();
    echo["metadata"]["resourceVersion"] = json!("11");
    respond.send_response(json_response(&echo));

    // 4. The watch reports the echo: no list, no patch follows.
    let (method, uri, _, respond) = next_request(&mut handle).await;
    assert_eq!(method, Method::GET);
    assert!(uri.contains("watch=true"), "{uri}");
    let event = json!({"type": "MODIFIED", "object": echo});
    respond.send_response(watch_response(&event));
    let after = tokio::time::timeout(Duration::from_millis(500), handle.next_request()).await;
    if let Ok(Some((request, _))) = &after {
        let uri = request.uri().to_string();
        assert!(
            request.method() == Method::GET && uri.contains("watch=true"),
            "only the watch may continue: {} {uri}",
            request.method()
        );
    }
    task.abort();
}

/// A source whose list lags: it answers `snapshot` whatever was patched (a watch cache that
/// has not seen our patch yet), and writes to `inner`.
#[derive(Clone)]
struct StaleList {
    snapshot: Arc<std::sync::Mutex<Vec<PodInfo>>>,
    inner: MemoryPods,
}

impl PodSource for StaleList {
    async fn pods_on(&self, _node: &str) -> Result<Vec<PodInfo>, PodSourceError> {
        Ok(self.snapshot.lock().expect("snapshot").clone())
    }

    async fn patch(
        &self,
        namespace: &str,
        name: &str,
        patch: MetaPatch,
    ) -> Result<(), PodSourceError> {
        self.inner.patch(namespace, name, patch).await
    }

    async fn warn(&self, warning: PodWarning) {
        self.inner.warn(warning).await;
    }

    async fn pod(&self, namespace: &str, name: &str) -> Result<Option<PodInfo>, PodSourceError> {
        self.inner.pod(namespace, name).await
    }

    async fn node_lock(&self, node: &str) -> Result<crate::lock::NodeLockState, PodSourceError> {
        self.inner.node_lock(node).await
    }

    async fn remove_node_lock(&self, node: &str, version: &str) -> Result<(), PodSourceError> {
        self.inner.remove_node_lock(node, version).await
    }
}

#[tokio::test]
async fn a_list_that_does_not_show_a_completion_yet_neither_repeats_it_nor_frees_its_share() {
    let inner = MemoryPods::default();
    let p1 = info(pod_json("p1", SCHEDULER, 30000, json!({})));
    inner.insert(NODE, p1.clone());
    let snapshot = Arc::new(std::sync::Mutex::new(vec![p1.clone()]));
    let pods = StaleList {
        snapshot: snapshot.clone(),
        inner: inner.clone(),
    };
    let completer = completer(pods, 0);
    let first = completer.complete().await.expect("ran");
    let [Outcome::Completed(_, decision)] = first.as_slice() else {
        panic!("{first:?}");
    };
    let card = |d: &Decision| d.grants[0].uuid.clone();
    let taken = card(decision);

    // The same stale list: p1 is not completed twice.
    assert_eq!(completer.complete().await.expect("ran"), vec![]);
    assert_eq!(inner.patches().len(), 1);

    // A second pod of 30000 MiB arrives while the list still shows p1 undecided: it must get
    // the other card, never p1's share of the first.
    for name in ["p2", "p3"] {
        let p = info(pod_json(name, SCHEDULER, 30000, json!({})));
        inner.insert(NODE, p.clone());
        snapshot.lock().expect("snapshot").push(p);
    }
    let outcomes = completer.complete().await.expect("ran");
    let [Outcome::Completed(p2, d2), Outcome::Failed(p3, _)] = outcomes.as_slice() else {
        panic!("{outcomes:?}");
    };
    assert_eq!((p2.as_str(), p3.as_str()), ("default/p2", "default/p3"));
    assert_ne!(card(d2), taken, "p2 got p1's card");
}

#[tokio::test]
async fn allocate_serves_a_pod_it_completes_from_the_completers_own_list() {
    let root = tempfile::tempdir().expect("temp dir");
    let pods = MemoryPods::default();
    pods.insert(NODE, info(pod_json("p1", SCHEDULER, 10240, json!({}))));
    let allocator = crate::allocate::Allocator::new(
        NODE,
        crate::allocate::tests::config(root.path()),
        pods.clone(),
    )
    .with_completer(Arc::new(completer(pods.clone(), 0)));

    let response = allocator
        .allocate(&crate::allocate::tests::request(&["GPU-a-0"]))
        .await
        .expect("served");

    assert_eq!(
        response.container_responses[0].envs["CUDA_DEVICE_MEMORY_LIMIT_0"],
        "10240m"
    );
    // One list finds no decided pod, the completer's list is the second: none is repeated.
    assert_eq!(pods.lists(), 2);
    let p1 = pods.get("default", "p1").expect("p1");
    assert_eq!(p1.annotation("hami.io/bind-phase"), Some("success"));
}
