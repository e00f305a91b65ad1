//! A stand-in API server for unit tests: `tower_test`'s mock service behind a `kube::Client`,
//! with helpers to read each request and answer it.

use std::time::Duration;

use http::{Method, Request, Response};
use kube::client::Body;
use serde_json::Value;

pub type Mock = tower_test::mock::Handle<Request<Body>, Response<Body>>;
pub type Respond = tower_test::mock::SendResponse<Response<Body>>;

/// A client whose requests arrive at the returned handle.
pub fn client() -> (kube::Client, Mock) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (kube::Client::new(service, "default"), handle)
}

/// The next request (within 5 s): method, URI, body as text, and where to answer it.
pub async fn next_request(handle: &mut Mock) -> (Method, String, String, Respond) {
    let (request, respond) = tokio::time::timeout(Duration::from_secs(5), handle.next_request())
        .await
        .expect("a request within 5 s")
        .expect("a request");
    let method = request.method().clone();
    let uri = request.uri().to_string();
    let body = request.into_body().collect_bytes().await.expect("body");
    (
        method,
        uri,
        String::from_utf8(body.to_vec()).expect("utf-8"),
        respond,
    )
}

/// An answer with `value` as its JSON body.
/// A core/v1 PodList of `items` (what a list of a node's pods returns).
pub fn pod_list(items: Vec<Value>) -> Value {
    serde_json::json!({"apiVersion": "v1", "kind": "PodList",
                       "metadata": {"resourceVersion": "10"}, "items": items})
}

pub fn json_response(value: &Value) -> Response<Body> {
    Response::builder()
        .body(Body::from(serde_json::to_vec(value).expect("json")))
        .expect("response")
}

/// A watch answer carrying one event (`{"type": ..., "object": ...}`).
pub fn watch_response(event: &Value) -> Response<Body> {
    Response::builder()
        .body(Body::from(format!("{event}\n").into_bytes()))
        .expect("response")
}

/// A failure answer: HTTP `code` with the API server's `Status` body.
pub fn status_response(code: u16, reason: &str, message: &str) -> Response<Body> {
    let status = serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code,
    });
    Response::builder()
        .status(code)
        .body(Body::from(serde_json::to_vec(&status).expect("json")))
        .expect("response")
}
