//! `hamr serve` over real loopback HTTP, fed from the example cluster (the `--snapshot` path):
//! the extender verbs and the webhook with upstream wire shapes, events, release of unbound
//! reservations, bad input, and many concurrent pods never over-committing a card.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use hamr::engine::{Engine, EngineKind};
use hamr::serve::backend::{Backend, EventType, MemoryBackend};
use hamr::serve::engine::{HttpEngine, post};
use hamr::serve::{Server, Settings};
use hamr_guest::api::{self, Scheduler};
use serde_json::{Value, json};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A server on loopback (native engine) holding the example cluster.
fn example_server(settings: Settings) -> (HttpEngine, Arc<Server>) {
    let objects = hamr::input::read_objects(&root().join("examples/cluster.yaml"), None).unwrap();
    let mut engine = EngineKind::Native.start().unwrap();
    engine.configure("{}").unwrap().unwrap();
    let h = HttpEngine::start(engine).unwrap();
    let server = h.server().clone();
    let mut deltas = Vec::new();
    deltas.extend(objects.nodes.iter().cloned().map(api::Delta::NodeUpsert));
    deltas.extend(objects.pods.iter().cloned().map(api::Delta::PodUpsert));
    deltas.extend(objects.quotas.iter().cloned().map(api::Delta::QuotaUpsert));
    let mut h = h;
    h.apply(&deltas).unwrap();
    let _ = settings;
    (h, server)
}

fn memory(server: &Server) -> &MemoryBackend {
    match &server.backend {
        Backend::Memory(m) => m,
        Backend::Kube(_) => panic!("not in memory"),
    }
}

fn call(h: &HttpEngine, path: &str, body: &Value) -> (u16, Value) {
    let (status, body) = post(h.addr(), path, body.to_string().as_bytes()).unwrap();
    let value = serde_json::from_slice(&body)
        .unwrap_or(Value::String(String::from_utf8_lossy(&body).to_string()));
    (status, value)
}

fn gpu_pod(name: &str, mem: &str, cores: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
        "spec": {"schedulerName": "hamr-scheduler", "containers": [{"name": "c", "image": "cuda",
            "resources": {"limits": {"nvidia.com/gpu": "1", "nvidia.com/gpumem": mem, "nvidia.com/gpucores": cores}}}]}
    })
}

const NODES: [&str; 4] = ["gpu-a100-1", "gpu-h100-1", "gpu-v100-1", "cpu-1"];

#[test]
fn filter_then_bind_follows_hami() {
    let (h, server) = example_server(Settings::default());
    let (status, answer) = call(
        &h,
        "/filter",
        &json!({"Pod": gpu_pod("share", "10240", "30"), "Nodes": null, "NodeNames": NODES}),
    );
    assert_eq!(status, 200);
    // The seed pod's placement (examples/pods/README.md): gpu-a100-1, card 3. The best node
    // fits at once (`filterVerdicts: tried`), so no other node is evaluated or reported; HAMi
    // reports none on success either.
    assert_eq!(
        answer,
        json!({"NodeNames": ["gpu-a100-1"],
               "FailedNodes": {},
               "FailedAndUnresolvableNodes": {},
               "Error": ""})
    );
    let pod = memory(&server).pod("default", "share").unwrap();
    let annotation = |k: &str| {
        pod.annotations
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(
        annotation("hami.io/vgpu-node").as_deref(),
        Some("gpu-a100-1")
    );
    assert_eq!(
        annotation("hami.io/vgpu-devices-to-allocate").as_deref(),
        Some("GPU-83eeeee7-68b8-1c8d-a1f7-3c12a3140947,NVIDIA,10240,30:;")
    );
    assert_eq!(server.pending().len(), 1);

    // Bind, with lower-case keys as Go would accept them.
    let (status, answer) = call(
        &h,
        "/bind",
        &json!({"podName": "share", "podNamespace": "default", "podUID": "uid-share", "node": "gpu-a100-1"}),
    );
    assert_eq!((status, answer), (200, json!({"Error": ""})));
    let pod = memory(&server).pod("default", "share").unwrap();
    assert_eq!(pod.node_name.as_deref(), Some("gpu-a100-1"));
    assert!(
        pod.annotations
            .contains(&("hami.io/bind-phase".into(), "allocating".into()))
    );
    assert!(
        pod.annotations
            .iter()
            .any(|(k, _)| k == "hami.io/bind-time")
    );
    assert!(server.pending().is_empty());
    let events = memory(&server).events();
    let last = events.last().unwrap();
    assert_eq!(
        (last.reason, last.kind, last.message.as_str()),
        (
            "BindingSucceed",
            EventType::Normal,
            "Successfully binding node [gpu-a100-1] to default/share"
        )
    );

    // A second bind of the same pod fails: an Error, a BindingFailed event, and the
    // allocation is released.
    let (status, answer) = call(
        &h,
        "/bind",
        &json!({"PodName": "share", "PodNamespace": "default", "PodUID": "uid-share", "Node": "gpu-h100-1"}),
    );
    assert_eq!(status, 200);
    assert!(
        answer["Error"]
            .as_str()
            .unwrap()
            .contains("already assigned to node \"gpu-a100-1\""),
        "{answer}"
    );
    assert_eq!(
        memory(&server).events().last().unwrap().reason,
        "ReservationReleased"
    );
}

#[test]
fn a_pod_that_fits_nowhere_gets_reasons_and_one_event() {
    let (h, server) = example_server(Settings::default());
    let (status, answer) = call(
        &h,
        "/filter",
        &json!({"Pod": gpu_pod("huge", "200000", "10"), "NodeNames": NODES}),
    );
    assert_eq!(status, 200);
    assert_eq!(answer["NodeNames"], json!([]));
    assert_eq!(answer["Error"], "");
    assert_eq!(
        answer["FailedNodes"]["gpu-a100-1"],
        "4/4 CardInsufficientMemory"
    );
    assert_eq!(
        answer["FailedNodes"]["gpu-v100-1"],
        "1/4 CardNotHealth, 3/4 CardInsufficientMemory"
    );
    assert_eq!(
        answer["FailedAndUnresolvableNodes"]["cpu-1"],
        "node unregistered"
    );
    let events = memory(&server).events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].reason, "FilteringFailed");
    assert_eq!(events[0].kind, EventType::Warning);
    assert_eq!(
        events[0].message,
        "no available node, 4 nodes do not meet; \
         3 nodes CardInsufficientMemory(gpu-a100-1,gpu-h100-1,gpu-v100-1); \
         1 nodes CardNotHealth(gpu-v100-1); 1 nodes node unregistered(cpu-1)"
    );
    assert!(server.pending().is_empty());
}

#[test]
fn unbound_reservations_expire_and_deleted_pods_release() {
    let objects = hamr::input::read_objects(&root().join("examples/cluster.yaml"), None).unwrap();
    let mut engine = EngineKind::Native.start().unwrap();
    engine.configure("{}").unwrap().unwrap();
    let server = Arc::new(Server::new(
        engine,
        Backend::Memory(MemoryBackend::default()),
        Settings {
            bind_timeout: Duration::ZERO,
            ..Settings::default()
        },
        true,
    ));
    let mut deltas = Vec::new();
    deltas.extend(objects.nodes.iter().cloned().map(api::Delta::NodeUpsert));
    deltas.extend(objects.pods.iter().cloned().map(api::Delta::PodUpsert));
    server.apply_now(&deltas);
    server.set_synced();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let used = |server: &Server| -> u64 {
        server
            .with_engine_now(|e| e.usage(&["gpu-a100-1".to_string()], 0))
            .unwrap()[0]
            .cards
            .iter()
            .map(|c| c.used_memory_mib)
            .sum()
    };
    let before = used(&server);
    rt.block_on(async {
        let args = hamr::serve::wire::ExtenderArgs::parse(
            json!({"Pod": gpu_pod("late", "10240", "30"), "NodeNames": NODES})
                .to_string()
                .as_bytes(),
        )
        .unwrap();
        let r = server.filter(args).await;
        assert_eq!(
            r.node_names.as_deref(),
            Some(&["gpu-a100-1".to_string()][..])
        );
        assert_eq!(used(&server), before + 10240);
        assert_eq!(server.expire().await, 1);
    });
    // Released: the guest gave the memory back and the decision is off the pod.
    assert_eq!(used(&server), before);
    let pod = memory(&server).pod("default", "late").unwrap();
    assert!(
        !pod.annotations
            .iter()
            .any(|(k, _)| k.starts_with("hami.io/vgpu")),
        "{:?}",
        pod.annotations
    );
    let event = memory(&server).events().pop().unwrap();
    assert_eq!(event.reason, "ReservationReleased");
    assert_eq!(
        event.message,
        "released the devices assumed on node gpu-a100-1: not bound within 0s"
    );
    assert!(
        server
            .metrics
            .encode()
            .contains("hamr_reservations_released_total{cause=\"timeout\"} 1")
    );

    // Deleted before binding.
    rt.block_on(async {
        let args = hamr::serve::wire::ExtenderArgs::parse(
            json!({"Pod": gpu_pod("gone", "10240", "30"), "NodeNames": NODES})
                .to_string()
                .as_bytes(),
        )
        .unwrap();
        server.filter(args).await;
        assert_eq!(used(&server), before + 10240);
        let pod = memory(&server).pod("default", "gone").unwrap();
        server.pod_changed(pod, true).await;
    });
    assert_eq!(used(&server), before);
    assert!(server.pending().is_empty());
    assert!(
        server
            .metrics
            .encode()
            .contains("hamr_reservations_released_total{cause=\"deleted\"} 1")
    );
}

#[test]
fn prioritize_scales_scores_to_ten() {
    let (h, _server) = example_server(Settings::default());
    let (status, answer) = call(
        &h,
        "/prioritize",
        &json!({"Pod": gpu_pod("p", "1024", "10"), "NodeNames": ["gpu-a100-1", "gpu-v100-1"]}),
    );
    assert_eq!(status, 200);
    let list = answer.as_array().unwrap();
    assert_eq!(list.len(), 2);
    for item in list {
        assert_eq!(item.as_object().unwrap().len(), 2, "{item}");
        let score = item["Score"].as_i64().unwrap();
        assert!((0..=10).contains(&score), "{item}");
    }
    assert_eq!(list[0]["Host"], "gpu-a100-1");
}

#[test]
fn webhook_mutates_device_pods_and_denies_bad_ones() {
    let (h, _server) = example_server(Settings::default());
    let review = |object: Value| {
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
               "request": {"uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
                           "kind": {"group": "", "version": "v1", "kind": "Pod"},
                           "resource": {"group": "", "version": "v1", "resource": "pods"},
                           "operation": "CREATE", "namespace": "default", "object": object}})
    };
    let pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [
        {"name": "c", "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}});
    let (status, answer) = call(&h, "/webhook", &review(pod));
    assert_eq!(status, 200);
    assert_eq!(answer["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(answer["kind"], "AdmissionReview");
    assert_eq!(
        answer["response"]["uid"],
        "705ab4f5-6393-11e8-b7cc-42010a800002"
    );
    assert_eq!(answer["response"]["allowed"], true);
    assert_eq!(answer["response"]["patchType"], "JSONPatch");
    let patch: Value = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(answer["response"]["patch"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert!(
        patch.as_array().unwrap().contains(
            &json!({"op": "add", "path": "/spec/schedulerName", "value": "hamr-scheduler"})
        ),
        "{patch}"
    );

    // A pod asking for no device is left alone.
    let plain = json!({"metadata": {"name": "web"}, "spec": {"containers": [{"name": "c"}]}});
    let (_, answer) = call(&h, "/webhook", &review(plain));
    assert_eq!(
        answer["response"],
        json!({"uid": "705ab4f5-6393-11e8-b7cc-42010a800002", "allowed": true})
    );

    // A privileged device pod is denied with a message.
    let privileged = json!({"metadata": {"name": "p"}, "spec": {"containers": [
        {"name": "c", "securityContext": {"privileged": true},
         "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}});
    let (_, answer) = call(&h, "/webhook", &review(privileged));
    assert_eq!(answer["response"]["allowed"], false);
    assert_eq!(answer["response"]["status"]["code"], 403);
    assert!(
        !answer["response"]["status"]["message"]
            .as_str()
            .unwrap()
            .is_empty()
    );
}

#[test]
fn bad_input_gets_400_and_the_server_keeps_serving() {
    let (h, _server) = example_server(Settings::default());
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "/filter",
            br#"{"Pod": {"metadata": {"name": "p"}}, "NodeNames": ["#.to_vec(),
            "not JSON",
        ),
        (
            "/filter",
            br#"{"NodeNames": []}"#.to_vec(),
            "field Pod is missing",
        ),
        (
            "/filter",
            br#"{"Pod": {"spec": {"containers": 1}}, "NodeNames": []}"#.to_vec(),
            "Pod.spec.containers",
        ),
        (
            "/bind",
            br#"{"PodName": "p"}"#.to_vec(),
            "field PodNamespace is missing",
        ),
        ("/webhook", br#"{"request": {}}"#.to_vec(), "request.uid"),
        ("/filter", vec![b' '; 10 << 20], "larger than"),
    ];
    for (path, body, want) in cases {
        let (status, answer) = post(h.addr(), path, &body).unwrap();
        let text = String::from_utf8_lossy(&answer);
        assert_eq!(status, 400, "{path}: {text}");
        assert!(text.contains(want), "{path}: {text}");
    }
    // Unknown nodes and a pod with no containers are verdicts, not errors.
    let (status, answer) = call(
        &h,
        "/filter",
        &json!({"Pod": gpu_pod("p", "1024", "10"), "NodeNames": ["no-such-node"]}),
    );
    assert_eq!(status, 200);
    assert_eq!(
        answer["FailedAndUnresolvableNodes"]["no-such-node"],
        "node unregistered"
    );
    // A name no node can have fails the call with the engines' own error.
    let (status, answer) = call(
        &h,
        "/filter",
        &json!({"Pod": gpu_pod("p", "1024", "10"), "NodeNames": ["gpu-a100-1", "a\nb"]}),
    );
    assert_eq!(status, 200);
    assert_eq!(
        answer["Error"],
        "invalid input: request: candidates \"a\\nb\": a node name cannot hold a line break"
    );
    let (status, answer) = call(
        &h,
        "/filter",
        &json!({"Pod": {"metadata": {"name": "empty"}, "spec": {"containers": []}}, "NodeNames": ["gpu-a100-1"]}),
    );
    assert_eq!(
        (status, &answer["NodeNames"]),
        (200, &json!(["gpu-a100-1"]))
    );
    // Still serving.
    let (status, _) = call(
        &h,
        "/filter",
        &json!({"Pod": gpu_pod("ok", "1024", "10"), "NodeNames": NODES}),
    );
    assert_eq!(status, 200);
}

#[test]
fn metrics_and_readiness() {
    let (h, server) = example_server(Settings::default());
    call(
        &h,
        "/filter",
        &json!({"Pod": gpu_pod("m", "1024", "10"), "NodeNames": NODES}),
    );
    let text = server.metrics.encode();
    assert!(
        text.contains("hamr_filter_duration_seconds_count{result=\"ok\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("hamr_decisions_total{result=\"placed\",reason=\"\"} 1"),
        "{text}"
    );
    assert!(text.contains("hamr_reservations_pending 1"), "{text}");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let text = rt.block_on(server.metrics_text());
    assert!(
        text.contains("hami_gpu_memory_limit_bytes{zone=\"vGPU\",node=\"gpu-a100-1\",device_uuid=\"GPU-d4cce389-fd14-aca7-7c50-f995f0424fa0\",device_index=\"0\",device_type=\"NVIDIA A100-SXM4-80GB\"} 85899345920"),
        "{text}"
    );
    server.set_leader(false);
    let (status, answer) = call(
        &h,
        "/filter",
        &json!({"Pod": gpu_pod("f", "1024", "10"), "NodeNames": NODES}),
    );
    assert_eq!(status, 200);
    assert!(answer["Error"].as_str().unwrap().contains("not the leader"));
}

/// 100 nodes × 8 cards of 16 GiB, 10 slots each; 1,000 pods of 6 GiB filtered and bound from
/// 16 threads at once. Each card holds at most 2 such pods by memory, so 1,600 fit in total by
/// memory but the scheduler must never put a third on a card.
#[test]
fn concurrent_pods_never_overcommit_a_card() {
    let mut engine = EngineKind::Native.start().unwrap();
    engine.configure("{}").unwrap().unwrap();
    let h = HttpEngine::start(engine).unwrap();
    let server = h.server().clone();
    let mut deltas = Vec::new();
    let mut names = Vec::new();
    for n in 0..100 {
        let cards: Vec<Value> = (0..8)
            .map(|i| json!({"id": format!("GPU-{n}-{i}"), "index": i, "count": 10, "devmem": 16384,
                "devcore": 100, "type": "NVIDIA A10", "numa": 0, "mode": "hami-core", "health": true}))
            .collect();
        let name = format!("node-{n:03}");
        names.push(name.clone());
        deltas.push(api::Delta::NodeUpsert(api::Node {
            name,
            labels: vec![],
            annotations: vec![
                (
                    "hami.io/node-nvidia-register".into(),
                    Value::Array(cards).to_string(),
                ),
                (
                    "hami.io/node-handshake".into(),
                    "Requesting_2026-11-28 11:59:41".into(),
                ),
            ],
            allocatable: vec![("nvidia.com/gpu".into(), "80".into())],
            capacity: vec![("nvidia.com/gpu".into(), "80".into())],
        }));
    }
    server.apply_now(&deltas);
    let addr = h.addr();
    let names = Arc::new(names);
    let outcomes: Vec<(bool, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..16)
            .map(|t| {
                let names = names.clone();
                s.spawn(move || {
                    let mut out = Vec::new();
                    for i in (t..1000).step_by(16) {
                        let name = format!("w-{i}");
                        let body =
                            json!({"Pod": gpu_pod(&name, "6144", "10"), "NodeNames": *names});
                        let (status, answer) =
                            post(addr, "/filter", body.to_string().as_bytes()).unwrap();
                        assert_eq!(status, 200);
                        let answer: Value = serde_json::from_slice(&answer).unwrap();
                        let Some(node) = answer["NodeNames"].get(0).and_then(Value::as_str) else {
                            out.push((false, answer["Error"].to_string()));
                            continue;
                        };
                        let bind = json!({"PodName": name, "PodNamespace": "default",
                            "PodUID": format!("uid-{name}"), "Node": node});
                        let (status, answer) =
                            post(addr, "/bind", bind.to_string().as_bytes()).unwrap();
                        assert_eq!(status, 200);
                        let answer: Value = serde_json::from_slice(&answer).unwrap();
                        out.push((answer["Error"] == "", node.to_string()));
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert_eq!(outcomes.len(), 1000);
    assert!(outcomes.iter().all(|(ok, _)| *ok), "every pod binds");
    let usage = server.with_engine_now(|e| e.usage(&[], 0)).unwrap();
    let mut cards = 0;
    let mut total_used = 0;
    for node in &usage {
        for c in &node.cards {
            cards += 1;
            total_used += c.used_memory_mib;
            assert!(
                c.used_memory_mib <= c.total_memory_mib,
                "{} card {} over-committed: {} > {}",
                node.node,
                c.index,
                c.used_memory_mib,
                c.total_memory_mib
            );
            assert!(c.used_slots <= c.total_slots);
        }
    }
    assert_eq!(cards, 800);
    assert_eq!(total_used, 1000 * 6144);
    // The books agree with the pods as written: every pod bound, with its decision.
    let bound = outcomes.iter().filter(|(ok, _)| *ok).count();
    assert_eq!(bound, 1000);
    let _ = Engine::Native;
}

#[test]
fn volcano_verbs_use_volcanos_shapes() {
    let (h, server) = example_server(Settings::default());
    let task = |node: &str| {
        json!({"UID": "t-1", "Name": "vc", "Namespace": "default", "NodeName": node,
               "Pod": gpu_pod("vc", "10240", "30"), "Resreq": {"MilliCPU": 0, "Memory": 0}})
    };
    // predicate: per (task, node); `status` carries the message, code 0 when it fits.
    let (status, answer) = call(
        &h,
        "/volcano/predicate",
        &json!({"task": task(""), "node": {"Name": "gpu-a100-1", "Node": {}}}),
    );
    assert_eq!((status, answer), (200, json!({"status": "", "code": 0})));
    let (_, answer) = call(
        &h,
        "/volcano/predicate",
        &json!({"task": task(""), "node": {"Name": "cpu-1"}}),
    );
    assert_eq!(answer, json!({"status": "node unregistered", "code": 3}));
    // prioritize: a batch of nodes.
    let (_, answer) = call(
        &h,
        "/volcano/prioritize",
        &json!({"task": task(""), "nodes": [{"Name": "gpu-a100-1"}, {"Name": "gpu-h100-1"}]}),
    );
    assert_eq!(answer["errorMessage"], "");
    assert!(
        answer["nodeScore"]["gpu-a100-1"].as_f64().unwrap() > 0.0,
        "{answer}"
    );
    // allocate on the node Volcano chose: the cards are reserved and the decision written.
    let (_, answer) = call(
        &h,
        "/volcano/allocate",
        &json!({"task": task("gpu-h100-1")}),
    );
    assert_eq!(answer, json!({"errorMessage": ""}));
    let pod = memory(&server).pod("default", "vc").unwrap();
    assert!(
        pod.annotations
            .contains(&("hami.io/vgpu-node".into(), "gpu-h100-1".into())),
        "{:?}",
        pod.annotations
    );
    assert_eq!(server.pending().len(), 1);
    // deallocate gives it back.
    let (_, answer) = call(
        &h,
        "/volcano/deallocate",
        &json!({"task": task("gpu-h100-1")}),
    );
    assert_eq!(answer, json!({"errorMessage": ""}));
    assert!(server.pending().is_empty());
    let pod = memory(&server).pod("default", "vc").unwrap();
    assert!(
        !pod.annotations
            .iter()
            .any(|(k, _)| k == "hami.io/vgpu-node")
    );
    // Session hooks answer 200; bad bodies 400.
    let (status, _) = call(
        &h,
        "/volcano/onSessionOpen",
        &json!({"Jobs": {}, "Nodes": {}}),
    );
    assert_eq!(status, 200);
    let (status, answer) = call(&h, "/volcano/predicate", &json!({"task": task("")}));
    assert_eq!(status, 400);
    assert!(
        answer.as_str().unwrap().contains("field node is missing"),
        "{answer}"
    );
}

/// One blocking HTTP/1.1 GET; returns the body as text.
fn get(addr: std::net::SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_string()
}

/// A server with the native engine, fed `yaml` (nodes, pods, quotas) as its watches would.
fn server_with(yaml: &str, settings: Settings) -> (tokio::runtime::Runtime, Arc<Server>) {
    let objects = hamr::input::parse_objects(yaml, "test cluster", None).unwrap();
    let mut engine = EngineKind::Native.start().unwrap();
    engine.configure("{}").unwrap().unwrap();
    let memory = MemoryBackend::default();
    for n in &objects.nodes {
        memory.put_node(n);
    }
    for p in &objects.pods {
        memory.put(p);
    }
    let server = Arc::new(Server::new(engine, Backend::Memory(memory), settings, true));
    let mut deltas = Vec::new();
    deltas.extend(objects.nodes.iter().cloned().map(api::Delta::NodeUpsert));
    deltas.extend(objects.pods.iter().cloned().map(api::Delta::PodUpsert));
    deltas.extend(objects.quotas.iter().cloned().map(api::Delta::QuotaUpsert));
    server.apply_now(&deltas);
    server.set_synced();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    (rt, server)
}

const QUOTA_CLUSTER: &str = r#"
apiVersion: v1
kind: Node
metadata:
  name: n1
  annotations:
    hami.io/node-nvidia-register: '[{"id":"GPU-a","index":0,"count":10,"devmem":40960,"devcore":100,"type":"NVIDIA A100-SXM4-40GB","numa":0,"mode":"hami-core","health":true}]'
status:
  allocatable: {nvidia.com/gpu: "10"}
---
apiVersion: v1
kind: Pod
metadata:
  name: train
  namespace: ml
  uid: uid-train
  annotations:
    hami.io/vgpu-node: n1
    hami.io/vgpu-devices-allocated: "GPU-a,NVIDIA,3000,30:;"
    hami.io/vgpu-devices-to-allocate: ";"
    hami.io/bind-phase: success
spec:
  schedulerName: hamr-scheduler
  nodeName: n1
  containers:
  - name: c
    image: cuda
    resources:
      limits: {nvidia.com/gpu: "1", nvidia.com/gpumem: "3000", nvidia.com/gpucores: "30"}
status: {phase: Running}
---
apiVersion: v1
kind: ResourceQuota
metadata: {name: gpu-memory, namespace: ml}
spec:
  hard: {limits.nvidia.com/gpumem: "8192", requests.cpu: "8"}
---
apiVersion: v1
kind: ResourceQuota
metadata: {name: gpu-cores, namespace: dev}
spec:
  hard: {limits.nvidia.com/gpucores: "50"}
"#;

#[test]
fn quota_metrics_show_each_namespaces_use_and_its_limits() {
    let objects = hamr::input::parse_objects(QUOTA_CLUSTER, "quota cluster", None).unwrap();
    let mut engine = EngineKind::Native.start().unwrap();
    engine.configure("{}").unwrap().unwrap();
    let mut h = HttpEngine::start(engine).unwrap();
    let mut deltas = Vec::new();
    deltas.extend(objects.nodes.iter().cloned().map(api::Delta::NodeUpsert));
    deltas.extend(objects.pods.iter().cloned().map(api::Delta::PodUpsert));
    deltas.extend(objects.quotas.iter().cloned().map(api::Delta::QuotaUpsert));
    assert_eq!(h.apply(&deltas).unwrap(), vec![]);

    let text = get(h.addr(), "/metrics");
    // Label sets within one metric come in no particular order.
    let mut lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("hami_resource_quota"))
        .collect();
    lines.sort_unstable();
    assert_eq!(
        lines,
        vec![
            r#"hami_resource_quota_limit{zone="vGPU",namespace="dev",quota_name="nvidia.com/gpucores"} 50"#,
            r#"hami_resource_quota_limit{zone="vGPU",namespace="ml",quota_name="nvidia.com/gpumem"} 8192"#,
            r#"hami_resource_quota_used{zone="vGPU",namespace="dev",quota_name="nvidia.com/gpucores",limit="50"} 0"#,
            r#"hami_resource_quota_used{zone="vGPU",namespace="ml",quota_name="nvidia.com/gpucores",limit="0"} 30"#,
            r#"hami_resource_quota_used{zone="vGPU",namespace="ml",quota_name="nvidia.com/gpumem",limit="8192"} 3000"#,
        ],
        "{text}"
    );

    // The pod finishes: its use is given back, the limits stay.
    let mut done = objects.pods[0].clone();
    done.phase = api::PodPhase::Succeeded;
    h.apply(&[api::Delta::PodUpsert(done)]).unwrap();
    let text = get(h.addr(), "/metrics");
    assert!(
        text.contains(r#"hami_resource_quota_used{zone="vGPU",namespace="ml",quota_name="nvidia.com/gpumem",limit="8192"} 0"#),
        "{text}"
    );
    assert!(
        !text.contains(r#"namespace="ml",quota_name="nvidia.com/gpucores""#),
        "a pair no quota limits and nothing uses is not reported: {text}"
    );
}

/// The handshake's node: one NVIDIA card, `allocatable` GPUs, and an optional handshake value.
fn handshake_node(name: &str, allocatable: &str, handshake: Option<&str>) -> api::Node {
    let mut annotations = vec![(
        "hami.io/node-nvidia-register".to_string(),
        r#"[{"id":"GPU-a","index":0,"count":10,"devmem":40960,"devcore":100,"type":"NVIDIA A100-SXM4-40GB","numa":0,"mode":"hami-core","health":true}]"#.to_string(),
    )];
    if let Some(h) = handshake {
        annotations.push(("hami.io/node-handshake".to_string(), h.to_string()));
    }
    api::Node {
        name: name.into(),
        annotations,
        allocatable: vec![("nvidia.com/gpu".into(), allocatable.into())],
        ..api::Node::default()
    }
}

/// A node change as the watch delivers it: in the in-memory cluster and in the guest.
fn node_changed(server: &Server, node: api::Node) {
    memory(server).put_node(&node);
    server.apply_now(&[api::Delta::NodeUpsert(node)]);
}

/// 2026-11-28 12:00:00 UTC.
const T0: i64 = 1_795_867_200;

#[test]
fn handshake_stamps_registered_nodes_at_most_once_per_interval() {
    let (rt, server) = server_with("", Settings::default());
    node_changed(&server, handshake_node("n1", "0", None));
    node_changed(
        &server,
        handshake_node("n2", "4", Some("Requesting_2026-11-28 11:59:50")),
    );
    node_changed(
        &server,
        api::Node {
            name: "cpu-1".into(),
            ..api::Node::default()
        },
    );
    server.clock.set(T0);
    assert_eq!(rt.block_on(server.handshake()), 1);
    let stamp = |t: &str| {
        (
            "n1".to_string(),
            vec![(
                "hami.io/node-handshake".to_string(),
                format!("Requesting_{t}"),
            )],
        )
    };
    assert_eq!(
        memory(&server).node_patches(),
        vec![stamp("2026-11-28 12:00:00")],
        "only n1 is registered and unstamped"
    );
    // The patch came back as the watch would show it: nothing more to write.
    assert_eq!(rt.block_on(server.handshake()), 0);

    // The device plugin answers; the next stamp waits for the interval (30 s).
    let mut answered = handshake_node("n1", "0", Some("Reported_2026-11-28 12:00:05"));
    node_changed(&server, answered.clone());
    server.clock.set(T0 + 10);
    assert_eq!(rt.block_on(server.handshake()), 0, "rate-limited");
    server.clock.set(T0 + 30);
    assert_eq!(rt.block_on(server.handshake()), 1);
    assert_eq!(
        memory(&server).node_patches().last(),
        Some(&stamp("2026-11-28 12:00:30"))
    );

    // Nobody answers within 60 s and n1 has no allocatable GPUs: its registration is stale.
    server.clock.set(T0 + 91);
    assert_eq!(rt.block_on(server.handshake()), 0);
    let text = rt.block_on(server.metrics_text());
    assert!(
        text.contains(r#"hamr_node_devices_stale{node="n1",vendor="NVIDIA"} 1"#),
        "{text}"
    );
    let usage = server
        .with_engine_now(|e| e.usage(&["n1".to_string()], T0 + 91))
        .unwrap();
    assert!(!usage[0].live, "a stale node offers no devices");
    assert!(
        text.contains(r#"hamr_node_handshake_writes_total{result="ok"} 2"#),
        "{text}"
    );

    // The plugin comes back with allocatable GPUs: live again, and no longer stale.
    answered.allocatable = vec![("nvidia.com/gpu".into(), "10".into())];
    answered
        .annotations
        .retain(|(k, _)| k != "hami.io/node-handshake");
    answered.annotations.push((
        "hami.io/node-handshake".into(),
        "Requesting_2026-11-28 12:00:30".into(),
    ));
    node_changed(&server, answered);
    assert_eq!(rt.block_on(server.handshake()), 0);
    let text = rt.block_on(server.metrics_text());
    assert!(!text.contains("hamr_node_devices_stale{"), "{text}");
}

#[test]
fn only_the_leader_stamps_and_a_zero_interval_turns_the_writer_off() {
    let (rt, server) = server_with("", Settings::default());
    node_changed(&server, handshake_node("n1", "0", None));
    server.clock.set(T0);
    server.set_leader(false);
    assert_eq!(rt.block_on(server.handshake()), 0);
    assert_eq!(memory(&server).node_patches(), vec![]);
    server.set_leader(true);
    assert_eq!(rt.block_on(server.handshake()), 1);

    let (rt, server) = server_with(
        "",
        Settings {
            handshake_interval: Duration::ZERO,
            ..Settings::default()
        },
    );
    node_changed(&server, handshake_node("n1", "0", None));
    server.clock.set(T0);
    assert_eq!(rt.block_on(server.handshake()), 0);
    assert_eq!(memory(&server).node_patches(), vec![]);
}

/// The calls the host makes outside scheduling answer the same on every engine.
#[test]
fn every_engine_reports_quota_use_and_handshakes_alike() {
    let objects = hamr::input::parse_objects(QUOTA_CLUSTER, "quota cluster", None).unwrap();
    let mut deltas = Vec::new();
    deltas.extend(objects.nodes.iter().cloned().map(api::Delta::NodeUpsert));
    deltas.push(api::Delta::NodeUpsert(handshake_node("n2", "0", None)));
    deltas.push(api::Delta::NodeUpsert(handshake_node(
        "n3",
        "0",
        Some("Requesting_2026-11-28 10:00:00"),
    )));
    deltas.extend(objects.pods.iter().cloned().map(api::Delta::PodUpsert));
    deltas.extend(objects.quotas.iter().cloned().map(api::Delta::QuotaUpsert));
    let mut answers = Vec::new();
    for kind in [
        EngineKind::Native,
        EngineKind::Component(None),
        EngineKind::Http(Box::new(EngineKind::Native)),
        EngineKind::WasmExtension,
    ] {
        let mut engine = kind.start().unwrap();
        engine.configure("{}").unwrap().unwrap();
        assert_eq!(engine.apply(&deltas).unwrap(), vec![], "{}", kind.label());
        answers.push((
            kind.label(),
            engine.quotas().unwrap(),
            engine.handshakes(T0).unwrap(),
        ));
    }
    let (_, quotas, handshakes) = &answers[0];
    assert_eq!(quotas.len(), 3, "{quotas:?}");
    assert_eq!(
        handshakes,
        &vec![
            api::NodeHandshake {
                node: "n1".into(),
                annotations: vec![(
                    "hami.io/node-handshake".into(),
                    "Requesting_2026-11-28 12:00:00".into()
                )],
                stale: vec![],
            },
            api::NodeHandshake {
                node: "n2".into(),
                annotations: vec![(
                    "hami.io/node-handshake".into(),
                    "Requesting_2026-11-28 12:00:00".into()
                )],
                stale: vec![],
            },
            api::NodeHandshake {
                node: "n3".into(),
                annotations: vec![],
                stale: vec!["NVIDIA".into()],
            },
        ]
    );
    for (label, q, hs) in &answers[1..] {
        assert_eq!(q, quotas, "{label}");
        assert_eq!(hs, handshakes, "{label}");
    }
}
