use http::Method;
use serde_json::{Value, json};

use super::*;
use crate::mock_api::{client, json_response, next_request, watch_response};

const REGISTER: &str = "hami.io/node-nvidia-register";
const NODE: &str = "node1";

fn registration() -> BTreeMap<String, String> {
    BTreeMap::from([(
        REGISTER.to_string(),
        r#"[{"id":"GPU-a","count":10,"devmem":40960,"devcore":100,"type":"NVIDIA A100-SXM4-40GB","mode":"hami-core","health":true},{"id":"GPU-b","index":1,"count":10,"devmem":40960,"devcore":100,"type":"NVIDIA A100-SXM4-40GB","mode":"hami-core","health":true}]"#.to_string(),
    )])
}

/// A pod bound to node1 with HAMi's decision annotations.
fn pod_json(uid: &str, devices: &str, phase: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": uid, "namespace": "default", "uid": uid, "resourceVersion": "1",
            "annotations": {
                "hami.io/vgpu-node": NODE,
                "hami.io/vgpu-devices-allocated": devices,
                "hami.io/vgpu-devices-to-allocate": devices,
            }
        },
        "spec": {"nodeName": NODE, "containers": [{"name": "main"}]},
        "status": {"phase": phase}
    })
}

fn pod(uid: &str, devices: &str, phase: &str) -> api::Pod {
    let p: Pod = serde_json::from_value(pod_json(uid, devices, phase)).expect("a pod");
    hamr_k8s_convert::pod(&p)
}

#[test]
fn the_value_sums_each_cards_use_by_the_pods_still_holding_it() {
    let pods = [
        pod("p1", "GPU-a,NVIDIA,1000,30:;", "Running"),
        pod("p2", "GPU-a,NVIDIA,2000,20:GPU-a,NVIDIA,500,0:;", "Pending"),
        pod("p3", "GPU-b,NVIDIA,4000,10:;", "Succeeded"),
    ];
    let (value, skipped) = usage(NODE, &registration(), &pods);
    assert_eq!(skipped, Vec::<String>::new());
    assert_eq!(
        value.encode(),
        r#"{"pods":["p1","p2"],"cards":[{"vendor":"NVIDIA","uuid":"GPU-a","slots":3,"memoryMiB":3500,"cores":50}]}"#
    );
}

#[test]
fn a_pod_with_a_malformed_decision_is_left_out_and_named() {
    let pods = [
        pod("p1", "GPU-a,NVIDIA,1000,30:;", "Running"),
        pod("bad", "GPU-a,NVIDIA,lots,30:;", "Running"),
    ];
    let (value, skipped) = usage(NODE, &registration(), &pods);
    assert_eq!(value.pods, ["p1"]);
    assert_eq!(skipped.len(), 1);
    assert!(skipped[0].starts_with("default/bad: "), "{skipped:?}");
}

#[test]
fn a_relist_replaces_the_pods_only_when_complete() {
    let mut pods = NodePods::default();
    let p = |uid: &str| -> Pod {
        serde_json::from_value(pod_json(uid, "GPU-a,NVIDIA,1,1:;", "Running")).expect("pod")
    };
    assert!(pods.apply(Event::Apply(p("old"))));
    assert!(!pods.apply(Event::Init));
    assert!(!pods.apply(Event::InitApply(p("new"))));
    let uids =
        |pods: &NodePods| -> Vec<String> { pods.pods().into_iter().map(|p| p.uid).collect() };
    assert_eq!(uids(&pods), ["old"], "unchanged until the list is complete");
    assert!(pods.apply(Event::InitDone));
    assert_eq!(uids(&pods), ["new"]);
    assert!(pods.apply(Event::Delete(p("new"))));
    assert_eq!(uids(&pods), Vec::<String>::new());
}

#[tokio::test]
async fn the_publisher_patches_after_the_list_and_again_when_a_pod_arrives() {
    let (client, mut handle) = client();
    let registered = watch::Sender::new(registration());
    let publisher = UsagePublisher::new(client, NODE, registered.subscribe());
    let task = tokio::spawn(publisher.run());

    // 1. The watch starts with a list of the node's pods.
    let (method, uri, _, respond) = next_request(&mut handle).await;
    assert_eq!(method, Method::GET);
    assert!(uri.starts_with("/api/v1/pods?"), "{uri}");
    assert!(uri.contains("fieldSelector=spec.nodeName%3Dnode1"), "{uri}");
    respond.send_response(json_response(&json!({
        "apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "10"},
        "items": [pod_json("p1", "GPU-a,NVIDIA,1000,30:;", "Running")]
    })));

    // 2. The first value is patched on the node.
    let (method, uri, body, respond) = next_request(&mut handle).await;
    assert_eq!(
        (method, uri.as_str()),
        (Method::PATCH, "/api/v1/nodes/node1?")
    );
    assert_eq!(
        body,
        r#"{"metadata":{"annotations":{"hamr.io/node-device-usage":"{\"pods\":[\"p1\"],\"cards\":[{\"vendor\":\"NVIDIA\",\"uuid\":\"GPU-a\",\"slots\":1,\"memoryMiB\":1000,\"cores\":30}]}"}}}"#
    );
    respond.send_response(json_response(
        &json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE}}),
    ));

    // 3. The watch reports a second pod on card b.
    let (method, uri, _, respond) = next_request(&mut handle).await;
    assert_eq!(method, Method::GET);
    assert!(uri.contains("watch=true"), "{uri}");
    let event =
        json!({"type": "ADDED", "object": pod_json("p2", "GPU-b,NVIDIA,2000,0:;", "Pending")});
    respond.send_response(watch_response(&event));

    // 4. The new value is patched.
    let (method, _, body, respond) = next_request(&mut handle).await;
    assert_eq!(method, Method::PATCH);
    assert!(
        body.contains(r#"\"pods\":[\"p1\",\"p2\"]"#)
            && body.contains(r#"\"uuid\":\"GPU-b\",\"slots\":1,\"memoryMiB\":2000,\"cores\":0"#),
        "{body}"
    );
    respond.send_response(json_response(
        &json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE}}),
    ));

    // 5. Re-sending the same registration changes nothing: no patch follows.
    registered.send_modify(|_| {});
    let after = tokio::time::timeout(Duration::from_millis(300), handle.next_request()).await;
    if let Ok(Some((request, _))) = &after {
        assert_ne!(
            request.method(),
            Method::PATCH,
            "an unchanged value was patched"
        );
    }
    task.abort();
}
