//! The server's API calls against a `tower_test` mock API server that checks each request's
//! method, path, content type and body: the decision patch, the Binding, the events and the
//! Lease. The same flows against a real cluster are the `needs cluster` tests at the end.

use http::{Request, Response, StatusCode};
use k8s_openapi::jiff::Timestamp;
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock;

use hamr::serve::backend::{Backend, EventType, KubeBackend, PodEvent};
use hamr::serve::leader::Election;

type Handle = mock::Handle<Request<Body>, Response<Body>>;

fn client() -> (kube::Client, Handle) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    (kube::Client::new(service, "default"), handle)
}

/// Takes the next request, checks method and path, returns its JSON body (or Null) and the
/// content type, answering with `status` and `answer`.
async fn expect(
    handle: &mut Handle,
    method: &str,
    path: &str,
    status: StatusCode,
    answer: Value,
) -> (Value, String) {
    let (request, send) = handle.next_request().await.expect("a request");
    assert_eq!(request.method().as_str(), method, "{}", request.uri());
    assert_eq!(request.uri().path(), path);
    let content_type = request
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let bytes = request.into_body().collect_bytes().await.unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    send.send_response(
        Response::builder()
            .status(status)
            .body(Body::from(serde_json::to_vec(&answer).unwrap()))
            .unwrap(),
    );
    (body, content_type)
}

fn backend(client: kube::Client) -> Backend {
    Backend::Kube(KubeBackend {
        client,
        component: "hamr-scheduler".into(),
        instance: "hamr-scheduler-0".into(),
    })
}

fn pod_json(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "ml"}})
}

#[tokio::test]
async fn decision_patch_binding_and_event() {
    let (client, mut handle) = client();
    let backend = backend(client);
    let api = tokio::spawn(async move {
        let (body, ct) = expect(
            &mut handle,
            "PATCH",
            "/api/v1/namespaces/ml/pods/train",
            StatusCode::OK,
            pod_json("train"),
        )
        .await;
        assert_eq!(ct, "application/merge-patch+json");
        assert_eq!(
            body,
            json!({"metadata": {"annotations": {
                "hami.io/vgpu-node": "n1", "hami.io/vgpu-time": null}}})
        );
        let (body, _) = expect(
            &mut handle,
            "POST",
            "/api/v1/namespaces/ml/pods/train/binding",
            StatusCode::CREATED,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
        )
        .await;
        assert_eq!(
            body,
            json!({"apiVersion": "v1", "kind": "Binding",
                   "metadata": {"name": "train", "namespace": "ml", "uid": "u-1"},
                   "target": {"apiVersion": "v1", "kind": "Node", "name": "n1"}})
        );
        let (body, _) = expect(
            &mut handle,
            "POST",
            "/api/v1/namespaces/ml/events",
            StatusCode::CREATED,
            json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "train.1"},
                   "involvedObject": {}}),
        )
        .await;
        assert_eq!(body["reason"], "BindingSucceed");
        assert_eq!(body["type"], "Normal");
        assert_eq!(
            body["message"],
            "Successfully binding node [n1] to ml/train"
        );
        assert_eq!(
            body["involvedObject"],
            json!({"apiVersion": "v1", "kind": "Pod", "name": "train", "namespace": "ml", "uid": "u-1"})
        );
        assert_eq!(body["source"]["component"], "hamr-scheduler");
        assert_eq!(body["reportingComponent"], "hamr-scheduler");
        assert_eq!(body["reportingInstance"], "hamr-scheduler-0");
        assert_eq!(body["metadata"]["generateName"], "train.");
        // A failed write names the object and the API's message.
        expect(
            &mut handle,
            "PATCH",
            "/api/v1/namespaces/ml/pods/gone",
            StatusCode::NOT_FOUND,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                   "message": "pods \"gone\" not found", "reason": "NotFound", "code": 404}),
        )
        .await;
    });
    backend
        .patch_pod(
            "ml",
            "train",
            &vec![
                ("hami.io/vgpu-node".into(), Some("n1".into())),
                ("hami.io/vgpu-time".into(), None),
            ],
            &vec![],
        )
        .await
        .unwrap();
    backend.bind("ml", "train", "u-1", "n1").await.unwrap();
    backend
        .event(PodEvent {
            namespace: "ml".into(),
            pod: "train".into(),
            uid: "u-1".into(),
            kind: EventType::Normal,
            reason: "BindingSucceed",
            message: "Successfully binding node [n1] to ml/train".into(),
        })
        .await;
    let err = backend
        .patch_pod("ml", "gone", &vec![("a".into(), Some("b".into()))], &vec![])
        .await
        .unwrap_err();
    assert!(err.to_string().starts_with("patch pod ml/gone: "), "{err}");
    assert!(err.to_string().contains("not found"), "{err}");
    api.await.unwrap();
}

#[tokio::test]
async fn handshake_stamp_is_a_merge_patch_of_the_node() {
    let (client, mut handle) = client();
    let backend = backend(client);
    let api = tokio::spawn(async move {
        let (body, ct) = expect(
            &mut handle,
            "PATCH",
            "/api/v1/nodes/gpu-1",
            StatusCode::OK,
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "gpu-1"}}),
        )
        .await;
        assert_eq!(ct, "application/merge-patch+json");
        assert_eq!(
            body,
            json!({"metadata": {"annotations": {
                "hami.io/node-handshake": "Requesting_2026-11-28 12:00:00",
                "hami.io/node-handshake-dcu": "Requesting_2026-11-28 12:00:00"}}})
        );
        expect(
            &mut handle,
            "PATCH",
            "/api/v1/nodes/gone",
            StatusCode::FORBIDDEN,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                   "message": "nodes \"gone\" is forbidden", "reason": "Forbidden", "code": 403}),
        )
        .await;
    });
    let stamp = |k: &str| {
        (
            k.to_string(),
            Some("Requesting_2026-11-28 12:00:00".to_string()),
        )
    };
    let echo = backend
        .patch_node(
            "gpu-1",
            &vec![
                stamp("hami.io/node-handshake"),
                stamp("hami.io/node-handshake-dcu"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        echo, None,
        "the watch, not the write, feeds the change back"
    );
    let err = backend
        .patch_node("gone", &vec![stamp("hami.io/node-handshake")])
        .await
        .unwrap_err();
    assert!(err.to_string().starts_with("patch node gone: "), "{err}");
    api.await.unwrap();
}

fn lease(holder: &str, renewed: &str, transitions: i32) -> Value {
    json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
           "metadata": {"name": "hamr-scheduler", "namespace": "kube-system", "resourceVersion": "41"},
           "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15,
                    "acquireTime": "2026-11-29T10:00:00.000000Z", "renewTime": renewed,
                    "leaseTransitions": transitions}})
}

fn election(client: kube::Client, me: &str) -> Election {
    Election {
        leases: kube::Api::namespaced(client, "kube-system"),
        name: "hamr-scheduler".into(),
        identity: me.into(),
        lease_duration: std::time::Duration::from_secs(15),
        renew_every: std::time::Duration::from_secs(5),
        pod: None,
    }
}

const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/hamr-scheduler";

#[tokio::test]
async fn lease_is_created_renewed_respected_and_taken_over() {
    let (client, mut handle) = client();
    let me = election(client, "replica-a");
    let now: Timestamp = "2026-11-29T10:00:10Z".parse().unwrap();
    let api = tokio::spawn(async move {
        // 1. No lease: created with us as holder.
        expect(&mut handle, "GET", LEASE, StatusCode::NOT_FOUND,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404})).await;
        let (body, _) = expect(
            &mut handle,
            "POST",
            "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases",
            StatusCode::CREATED,
            lease("replica-a", "2026-11-29T10:00:10.000000Z", 0),
        )
        .await;
        assert_eq!(body["spec"]["holderIdentity"], "replica-a");
        assert_eq!(body["spec"]["leaseDurationSeconds"], 15);
        assert_eq!(body["spec"]["leaseTransitions"], 0);
        // 2. Held by another replica, renewed 5 s ago: we do not take it.
        expect(
            &mut handle,
            "GET",
            LEASE,
            StatusCode::OK,
            lease("replica-b", "2026-11-29T10:00:05.000000Z", 3),
        )
        .await;
        // 3. Held by another replica, renewed 20 s ago (> 15 s): taken over, with the
        //    resourceVersion read and one more transition.
        expect(
            &mut handle,
            "GET",
            LEASE,
            StatusCode::OK,
            lease("replica-b", "2026-11-29T09:59:50.000000Z", 3),
        )
        .await;
        let (body, _) = expect(
            &mut handle,
            "PUT",
            LEASE,
            StatusCode::OK,
            lease("replica-a", "2026-11-29T10:00:10.000000Z", 4),
        )
        .await;
        assert_eq!(body["metadata"]["resourceVersion"], "41");
        assert_eq!(body["spec"]["holderIdentity"], "replica-a");
        assert_eq!(body["spec"]["leaseTransitions"], 4);
        assert_eq!(body["spec"]["renewTime"], "2026-11-29T10:00:10.000000Z");
        // 4. Someone else wrote first: 409 means we are not the leader.
        expect(
            &mut handle,
            "GET",
            LEASE,
            StatusCode::OK,
            lease("replica-b", "2026-11-29T09:59:50.000000Z", 3),
        )
        .await;
        expect(&mut handle, "PUT", LEASE, StatusCode::CONFLICT,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict", "code": 409})).await;
        // 5. Ours: renewed, transitions unchanged.
        expect(
            &mut handle,
            "GET",
            LEASE,
            StatusCode::OK,
            lease("replica-a", "2026-11-29T10:00:01.000000Z", 4),
        )
        .await;
        let (body, _) = expect(
            &mut handle,
            "PUT",
            LEASE,
            StatusCode::OK,
            lease("replica-a", "2026-11-29T10:00:10.000000Z", 4),
        )
        .await;
        assert_eq!(body["spec"]["leaseTransitions"], 4);
        assert_eq!(body["spec"]["acquireTime"], "2026-11-29T10:00:00.000000Z");
        // 6. Release on shutdown: holder cleared.
        expect(
            &mut handle,
            "GET",
            LEASE,
            StatusCode::OK,
            lease("replica-a", "2026-11-29T10:00:10.000000Z", 4),
        )
        .await;
        let (body, _) = expect(
            &mut handle,
            "PUT",
            LEASE,
            StatusCode::OK,
            lease("", "2026-11-29T10:00:10.000000Z", 4),
        )
        .await;
        assert!(body["spec"].get("holderIdentity").is_none(), "{body}");
    });
    assert!(me.round(now).await.unwrap());
    assert!(!me.round(now).await.unwrap());
    assert!(me.round(now).await.unwrap());
    assert!(!me.round(now).await.unwrap());
    assert!(me.round(now).await.unwrap());
    me.release().await.unwrap();
    api.await.unwrap();
}

/// Against a real cluster (`KUBECONFIG`): creates a Lease in `default` and takes it.
#[tokio::test]
#[ignore = "needs cluster"]
async fn lease_on_a_real_cluster() {
    let client = kube::Client::try_default().await.unwrap();
    let e = Election {
        leases: kube::Api::namespaced(client, "default"),
        name: "hamr-test-lease".into(),
        identity: "hamr-test".into(),
        lease_duration: std::time::Duration::from_secs(15),
        renew_every: std::time::Duration::from_secs(5),
        pod: None,
    };
    assert!(e.round(Timestamp::now()).await.unwrap());
    assert!(e.round(Timestamp::now()).await.unwrap());
    e.release().await.unwrap();
}
