use std::sync::Arc;

use http::Method;
use serde_json::{Value, json};

use super::*;
use crate::allocate::Allocator;
use crate::allocate::tests::{config, request};
use crate::api::{AllocateRequest, ContainerAllocateRequest};
use crate::mock_api::{self, Mock, json_response, next_request, pod_list, status_response};
use crate::pods::{KubePods, MemoryPods, pod_info};

const NODE: &str = "node1";
const TIME: &str = "2026-11-29T10:00:00Z";

#[test]
fn a_lock_names_its_pod_and_a_bare_time_names_none() {
    assert_eq!(
        parse(&format!("{TIME},team-a,train-0")),
        Ok(Holder::Pod {
            namespace: "team-a".into(),
            name: "train-0".into()
        })
    );
    assert_eq!(parse("2026-11-29T10:00:00+01:00"), Ok(Holder::Unnamed));
}

#[test]
fn a_malformed_lock_is_an_error_naming_the_value() {
    let cases = [
        (
            "yesterday,default,p1",
            r#"hami.io/mutex.lock: "yesterday,default,p1": the time "yesterday" is not RFC 3339"#,
        ),
        (
            "2026-11-29T10:00:00Z,default",
            r#"hami.io/mutex.lock: "2026-11-29T10:00:00Z,default": expected <RFC3339 time>,<namespace>,<name>, found 2 comma-separated fields"#,
        ),
        (
            "2026-11-29T10:00:00Z,,p1",
            r#"hami.io/mutex.lock: "2026-11-29T10:00:00Z,,p1": the pod namespace and name must not be empty"#,
        ),
        ("", r#"hami.io/mutex.lock: "": the time "" is not RFC 3339"#),
    ];
    for (value, expected) in cases {
        let error = parse(value).expect_err(value).to_string();
        assert!(error.starts_with(expected), "{value}: {error}");
    }
}

#[test]
fn the_default_retry_doubles_from_100_ms_with_up_to_half_again() {
    let b = Backoff::DEFAULT_RETRY;
    assert_eq!(b.steps, 5);
    for (i, base) in [100u64, 200, 400, 800].into_iter().enumerate() {
        let d = b.delay(i as u32);
        let base = Duration::from_millis(base);
        assert!(d >= base && d <= base.mul_f64(1.5), "try {i}: {d:?}");
    }
}

/// A pod as HAMi's scheduler leaves it at bind: decided on card GPU-a for each of
/// `containers`.
fn pod_json(name: &str, containers: &[&str]) -> Value {
    let list: String = containers
        .iter()
        .map(|_| "GPU-a,NVIDIA,1000,10:;")
        .collect();
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "namespace": "default", "uid": format!("uid-{name}"),
            "resourceVersion": "3",
            "annotations": {
                "hami.io/vgpu-node": NODE,
                "hami.io/vgpu-devices-to-allocate": list,
                "hami.io/vgpu-devices-allocated": list,
                "hami.io/bind-phase": "allocating",
                "hami.io/bind-time": "1795867200",
            }
        },
        "spec": {
            "nodeName": NODE,
            "containers": containers.iter().map(|c| json!({"name": c})).collect::<Vec<_>>(),
        },
        "status": {"phase": "Pending"}
    })
}

fn node_json(lock: Option<&str>, resource_version: &str) -> Value {
    let mut annotations = serde_json::Map::new();
    if let Some(lock) = lock {
        annotations.insert(NODE_LOCK.into(), json!(lock));
    }
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": NODE, "resourceVersion": resource_version,
                     "annotations": annotations},
    })
}

/// Allocate over the mock API server, in a task; its result comes back through the handle.
fn allocate_over_api(
    root: &std::path::Path,
    ids: &[&str],
) -> (
    tokio::task::JoinHandle<Result<crate::api::AllocateResponse, String>>,
    Mock,
) {
    let (client, handle) = mock_api::client();
    let allocator = Arc::new(Allocator::new(
        NODE,
        config(root),
        KubePods::new(client).on_node(NODE),
    ));
    let request = request(ids);
    let task = tokio::spawn(async move {
        allocator
            .allocate(&request)
            .await
            .map_err(|e| e.to_string())
    });
    (task, handle)
}

/// Asserts the next request's method and URI, and answers it.
async fn expect(
    handle: &mut Mock,
    method: Method,
    uri: &str,
    answer: http::Response<kube::client::Body>,
) -> String {
    let (m, u, body, respond) = next_request(handle).await;
    assert_eq!((m, u.as_str()), (method, uri), "request body: {body}");
    respond.send_response(answer);
    body
}

/// The pod patch that serves p1's only container.
async fn expect_served(handle: &mut Mock, pod: &Value) {
    let body = expect(
        handle,
        Method::PATCH,
        "/api/v1/namespaces/default/pods/p1?",
        json_response(pod),
    )
    .await;
    assert_eq!(
        serde_json::from_str::<Value>(&body).expect("json"),
        json!({"metadata": {"annotations": {
            "hami.io/vgpu-devices-to-allocate": ";",
            "hami.io/bind-phase": "success",
        }}})
    );
}

/// Allocate's answer, once it has asked nothing more of the API server than the test
/// answered; an unexpected request fails the test (Allocate would wait on it forever).
async fn finished(
    task: tokio::task::JoinHandle<Result<crate::api::AllocateResponse, String>>,
    handle: &mut Mock,
) -> Result<crate::api::AllocateResponse, String> {
    let result = tokio::select! {
        result = task => result.expect("allocate task"),
        Some((request, _)) = handle.next_request() => {
            panic!("unexpected request {} {}", request.method(), request.uri())
        }
    };
    let more = tokio::time::timeout(Duration::from_millis(200), handle.next_request()).await;
    if let Ok(Some((request, _))) = more {
        panic!("unexpected request {} {}", request.method(), request.uri());
    }
    result
}

const NODE_URI: &str = "/api/v1/nodes/node1";

/// The node patch that removes the lock at `rv`.
fn lock_removed(rv: &str) -> Value {
    json!({"metadata": {"annotations": {NODE_LOCK: null}, "resourceVersion": rv}})
}

#[tokio::test]
async fn a_lock_held_for_the_pod_finds_it_without_a_list_and_is_removed_at_its_resource_version() {
    let root = tempfile::tempdir().expect("temp dir");
    let (task, mut handle) = allocate_over_api(root.path(), &["GPU-a-0"]);
    let lock = format!("{TIME},default,p1");
    let pod = pod_json("p1", &["main"]);

    expect(
        &mut handle,
        Method::GET,
        NODE_URI,
        json_response(&node_json(Some(&lock), "5")),
    )
    .await;
    expect(
        &mut handle,
        Method::GET,
        "/api/v1/namespaces/default/pods/p1",
        json_response(&pod),
    )
    .await;
    expect_served(&mut handle, &pod).await;
    expect(
        &mut handle,
        Method::GET,
        NODE_URI,
        json_response(&node_json(Some(&lock), "7")),
    )
    .await;
    let body = expect(
        &mut handle,
        Method::PATCH,
        "/api/v1/nodes/node1?",
        json_response(&node_json(None, "8")),
    )
    .await;
    assert_eq!(
        serde_json::from_str::<Value>(&body).expect("json"),
        lock_removed("7")
    );

    let response = finished(task, &mut handle).await.expect("served");
    assert_eq!(
        response.container_responses[0].envs["NVIDIA_VISIBLE_DEVICES"],
        "GPU-a"
    );
}

#[tokio::test]
async fn a_lock_taken_for_another_pod_before_release_is_left_in_place() {
    let root = tempfile::tempdir().expect("temp dir");
    let (task, mut handle) = allocate_over_api(root.path(), &["GPU-a-0"]);
    let pod = pod_json("p1", &["main"]);

    let ours = format!("{TIME},default,p1");
    expect(
        &mut handle,
        Method::GET,
        NODE_URI,
        json_response(&node_json(Some(&ours), "5")),
    )
    .await;
    expect(
        &mut handle,
        Method::GET,
        "/api/v1/namespaces/default/pods/p1",
        json_response(&pod),
    )
    .await;
    expect_served(&mut handle, &pod).await;
    // The scheduler took the lock again for p2 meanwhile: no node patch follows.
    let theirs = "2026-11-29T10:05:01Z,default,p2";
    expect(
        &mut handle,
        Method::GET,
        NODE_URI,
        json_response(&node_json(Some(theirs), "9")),
    )
    .await;

    finished(task, &mut handle).await.expect("served");
}

#[tokio::test]
async fn a_lock_held_for_another_pod_that_is_gone_falls_back_to_the_list_and_is_not_touched() {
    let root = tempfile::tempdir().expect("temp dir");
    let (task, mut handle) = allocate_over_api(root.path(), &["GPU-a-0"]);
    let pod = pod_json("p1", &["main"]);

    let theirs = format!("{TIME},default,p2");
    expect(
        &mut handle,
        Method::GET,
        NODE_URI,
        json_response(&node_json(Some(&theirs), "5")),
    )
    .await;
    expect(
        &mut handle,
        Method::GET,
        "/api/v1/namespaces/default/pods/p2",
        status_response(404, "NotFound", "pods \"p2\" not found"),
    )
    .await;
    expect(
        &mut handle,
        Method::GET,
        "/api/v1/pods?&fieldSelector=spec.nodeName%3Dnode1",
        json_response(&pod_list(vec![pod.clone()])),
    )
    .await;
    expect_served(&mut handle, &pod).await;

    finished(task, &mut handle).await.expect("served");
}

#[tokio::test]
async fn a_conflict_rereads_the_node_and_retries_at_the_new_resource_version() {
    let root = tempfile::tempdir().expect("temp dir");
    let (task, mut handle) = allocate_over_api(root.path(), &["GPU-a-0"]);
    let lock = format!("{TIME},default,p1");
    let pod = pod_json("p1", &["main"]);

    expect(
        &mut handle,
        Method::GET,
        NODE_URI,
        json_response(&node_json(Some(&lock), "5")),
    )
    .await;
    expect(
        &mut handle,
        Method::GET,
        "/api/v1/namespaces/default/pods/p1",
        json_response(&pod),
    )
    .await;
    expect_served(&mut handle, &pod).await;
    expect(
        &mut handle,
        Method::GET,
        NODE_URI,
        json_response(&node_json(Some(&lock), "7")),
    )
    .await;
    let conflict = status_response(
        409,
        "Conflict",
        "Operation cannot be fulfilled on nodes \"node1\": the object has been modified",
    );
    let first = expect(&mut handle, Method::PATCH, "/api/v1/nodes/node1?", conflict).await;
    assert_eq!(
        serde_json::from_str::<Value>(&first).expect("json"),
        lock_removed("7")
    );
    // Another writer changed the Node (the registration, say); the lock is still p1's.
    expect(
        &mut handle,
        Method::GET,
        NODE_URI,
        json_response(&node_json(Some(&lock), "8")),
    )
    .await;
    let second = expect(
        &mut handle,
        Method::PATCH,
        "/api/v1/nodes/node1?",
        json_response(&node_json(None, "9")),
    )
    .await;
    assert_eq!(
        serde_json::from_str::<Value>(&second).expect("json"),
        lock_removed("8")
    );

    finished(task, &mut handle).await.expect("served");
}

#[tokio::test]
async fn a_malformed_lock_falls_back_to_the_bind_phase_and_is_left_alone() {
    let root = tempfile::tempdir().expect("temp dir");
    let (task, mut handle) = allocate_over_api(root.path(), &["GPU-a-0"]);
    let pod = pod_json("p1", &["main"]);

    let malformed = "yesterday,default,p1";
    expect(
        &mut handle,
        Method::GET,
        NODE_URI,
        json_response(&node_json(Some(malformed), "5")),
    )
    .await;
    expect(
        &mut handle,
        Method::GET,
        "/api/v1/pods?&fieldSelector=spec.nodeName%3Dnode1",
        json_response(&pod_list(vec![pod.clone()])),
    )
    .await;
    expect_served(&mut handle, &pod).await;

    finished(task, &mut handle).await.expect("served");
}

/// In memory: p1 and p2 both wait on the node; the lock decides, and is released once p1's
/// last container is served, not before.
#[tokio::test]
async fn the_locked_pod_wins_over_an_older_one_and_keeps_the_lock_until_its_last_container() {
    let root = tempfile::tempdir().expect("temp dir");
    let pods = MemoryPods::default();
    let older = json!({"hami.io/bind-time": "1795867000"});
    let mut p0 = pod_json("p0", &["main"]);
    p0["metadata"]["annotations"]["hami.io/bind-time"] = older["hami.io/bind-time"].clone();
    pods.insert(NODE, pod_info(&serde_json::from_value(p0).expect("pod")));
    let p1 = pod_json("p1", &["first", "second"]);
    pods.insert(NODE, pod_info(&serde_json::from_value(p1).expect("pod")));
    let lock = format!("{TIME},default,p1");
    pods.set_node_lock(NODE, Some(&lock));
    let allocator = Allocator::new(NODE, config(root.path()), pods.clone());

    allocator
        .allocate(&request(&["GPU-a-0"]))
        .await
        .expect("first");
    let held = pods.node_lock(NODE).await.expect("node");
    assert_eq!(
        held.value.as_deref(),
        Some(lock.as_str()),
        "released too early"
    );
    let p1 = pods.get("default", "p1").expect("p1");
    assert_eq!(
        p1.annotation("hami.io/vgpu-devices-to-allocate"),
        Some(";GPU-a,NVIDIA,1000,10:;")
    );

    allocator
        .allocate(&request(&["GPU-a-1"]))
        .await
        .expect("second");
    assert_eq!(pods.node_lock(NODE).await.expect("node").value, None);
    let p0 = pods.get("default", "p0").expect("p0");
    assert_eq!(
        p0.annotation("hami.io/bind-phase"),
        Some("allocating"),
        "p0 untouched"
    );
}

#[tokio::test]
async fn a_bare_time_lock_is_released_only_while_unchanged() {
    let root = tempfile::tempdir().expect("temp dir");
    let pods = MemoryPods::default();
    pods.insert(
        NODE,
        pod_info(&serde_json::from_value(pod_json("p1", &["main"])).expect("pod")),
    );
    pods.set_node_lock(NODE, Some(TIME));
    let allocator = Allocator::new(NODE, config(root.path()), pods.clone());
    allocator
        .allocate(&request(&["GPU-a-0"]))
        .await
        .expect("served");
    assert_eq!(pods.node_lock(NODE).await.expect("node").value, None);

    // A bare time rewritten between the read and the release is another bind's.
    let held = HeldLock {
        value: TIME.into(),
        holder: Holder::Unnamed,
    };
    pods.set_node_lock(NODE, Some("2026-11-29T10:05:01Z"));
    let released = release(&pods, NODE, &held, Backoff::DEFAULT_RETRY).await;
    assert_eq!(
        released.expect("read"),
        Released::NotOurs("2026-11-29T10:05:01Z".into())
    );
}

#[tokio::test]
async fn a_failed_pod_releases_its_lock() {
    let root = tempfile::tempdir().expect("temp dir");
    let pods = MemoryPods::default();
    // An entry for a container the pod does not have: Allocate fails the pod.
    let mut p1 = pod_json("p1", &["main"]);
    p1["metadata"]["annotations"]["hami.io/vgpu-devices-to-allocate"] =
        json!(";GPU-a,NVIDIA,1000,10:;");
    pods.insert(NODE, pod_info(&serde_json::from_value(p1).expect("pod")));
    pods.set_node_lock(NODE, Some(&format!("{TIME},default,p1")));
    let allocator = Allocator::new(NODE, config(root.path()), pods.clone());

    allocator
        .allocate(&request(&["GPU-a-0"]))
        .await
        .expect_err("no such container");

    let p1 = pods.get("default", "p1").expect("p1");
    assert_eq!(p1.annotation("hami.io/bind-phase"), Some("failed"));
    assert_eq!(pods.node_lock(NODE).await.expect("node").value, None);
}

/// Two containers' requests, the first for card GPU-b's replicas: the locked pod p1 (on GPU-a)
/// is served first all the same, as HAMi serves the locked pod without further checks; the
/// other pod, whose cards match, gets the second request.
#[tokio::test]
async fn the_locked_pod_is_served_before_one_whose_cards_match_kubelets_replicas() {
    let root = tempfile::tempdir().expect("temp dir");
    let pods = MemoryPods::default();
    let mut p0 = pod_json("p0", &["main"]);
    p0["metadata"]["annotations"]["hami.io/vgpu-devices-to-allocate"] =
        json!("GPU-b,NVIDIA,2000,20:;");
    pods.insert(NODE, pod_info(&serde_json::from_value(p0).expect("pod")));
    let p1 = pod_json("p1", &["main"]);
    pods.insert(NODE, pod_info(&serde_json::from_value(p1).expect("pod")));
    pods.set_node_lock(NODE, Some(&format!("{TIME},default,p1")));
    let allocator = Allocator::new(NODE, config(root.path()), pods.clone());
    let container = |ids: &[&str]| ContainerAllocateRequest {
        devices_ids: ids.iter().map(|s| s.to_string()).collect(),
    };
    let request = AllocateRequest {
        container_requests: vec![container(&["GPU-b-0"]), container(&["GPU-b-1"])],
    };

    let response = allocator.allocate(&request).await.expect("served");

    let limits: Vec<&str> = response
        .container_responses
        .iter()
        .map(|r| r.envs["CUDA_DEVICE_MEMORY_LIMIT_0"].as_str())
        .collect();
    assert_eq!(limits, ["1000m", "2000m"], "p1 (locked) first, then p0");
    assert_eq!(pods.node_lock(NODE).await.expect("node").value, None);
}
