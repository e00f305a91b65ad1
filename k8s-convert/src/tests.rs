//! The mapping field by field, its defaults, and the way back (moved from the host's tests).

use hamr_guest::api::{self, Container, ContainerStatus, PodPhase};
use k8s_openapi::api::core::v1::{Node, Pod, ResourceQuota};
use serde_json::json;

use super::*;

fn pairs(items: &[(&str, &str)]) -> api::Pairs {
    items
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn k8s_pod(value: serde_json::Value) -> Pod {
    serde_json::from_value(value).expect("a Pod")
}

/// The record of the pod in [`a_pod_converts_field_by_field`].
fn train() -> api::Pod {
    api::Pod {
        uid: "u-1".into(),
        namespace: "ml".into(),
        name: "p1".into(),
        labels: pairs(&[("app", "train")]),
        annotations: pairs(&[("nvidia.com/use-gputype", "A100")]),
        scheduler_name: Some("hamr-scheduler".into()),
        node_name: None,
        runtime_class_name: Some("nvidia".into()),
        phase: PodPhase::Running,
        deleting: true,
        init_containers: vec![Container {
            name: "fetch".into(),
            ..Container::default()
        }],
        containers: vec![Container {
            name: "main".into(),
            limits: pairs(&[("nvidia.com/gpu", "2"), ("nvidia.com/gpumem", "16Gi")]),
            requests: pairs(&[("cpu", "500m")]),
            privileged: true,
            env_names: vec!["A".into(), "B".into()],
        }],
        init_container_statuses: vec![
            ContainerStatus {
                name: "fetch".into(),
                terminated_exit_code: Some(0),
            },
            ContainerStatus {
                name: "other".into(),
                terminated_exit_code: None,
            },
        ],
    }
}

#[test]
fn a_pod_converts_field_by_field() {
    let p = k8s_pod(json!({
        "metadata": {
            "name": "p1", "namespace": "ml", "uid": "u-1",
            "labels": {"app": "train"},
            "annotations": {"nvidia.com/use-gputype": "A100"},
            "deletionTimestamp": "2026-11-28T11:00:00Z"
        },
        "spec": {
            "schedulerName": "hamr-scheduler",
            "nodeName": "",
            "runtimeClassName": "nvidia",
            "initContainers": [{"name": "fetch", "securityContext": {"privileged": false}}],
            "containers": [{
                "name": "main",
                "securityContext": {"privileged": true},
                "env": [{"name": "A", "value": "1"}, {"name": "B"}],
                "resources": {
                    "limits": {"nvidia.com/gpu": 2, "nvidia.com/gpumem": "16Gi"},
                    "requests": {"cpu": "500m"}
                }
            }]
        },
        "status": {
            "phase": "Running",
            "initContainerStatuses": [
                {"name": "fetch", "state": {"terminated": {"exitCode": 0}},
                 "image": "", "imageID": "", "ready": true, "restartCount": 0},
                {"name": "other", "state": {"running": {}},
                 "image": "", "imageID": "", "ready": false, "restartCount": 0}
            ]
        }
    }));
    assert_eq!(pod(&p), train());
}

#[test]
fn a_pod_without_uid_namespace_or_status_is_default_slash_name_and_pending() {
    let record = pod(&k8s_pod(json!({"metadata": {"name": "p1"}})));
    assert_eq!(
        (record.namespace.as_str(), record.uid.as_str(), record.phase),
        ("default", "default/p1", PodPhase::Pending)
    );
    let lost = pod(&k8s_pod(
        json!({"metadata": {"name": "b"}, "status": {"phase": "Lost"}}),
    ));
    assert_eq!(lost.phase, PodPhase::Unknown);
}

#[test]
fn a_node_keeps_labels_annotations_allocatable_and_capacity() {
    let n: Node = serde_json::from_value(json!({
        "metadata": {"name": "gpu-node-1", "labels": {"gpu": "on"},
                     "annotations": {"hami.io/node-nvidia-register": "[]"}},
        "status": {"allocatable": {"nvidia.com/gpu": "20"}, "capacity": {"memory": "512Gi"}}
    }))
    .expect("a Node");
    assert_eq!(
        node(&n),
        api::Node {
            name: "gpu-node-1".into(),
            labels: pairs(&[("gpu", "on")]),
            annotations: pairs(&[("hami.io/node-nvidia-register", "[]")]),
            allocatable: pairs(&[("nvidia.com/gpu", "20")]),
            capacity: pairs(&[("memory", "512Gi")]),
        }
    );
}

#[test]
fn a_quota_keeps_its_hard_limits() {
    let q: ResourceQuota = serde_json::from_value(json!({
        "metadata": {"name": "gpu"},
        "spec": {"hard": {"limits.nvidia.com/gpumem": "4096"}}
    }))
    .expect("a ResourceQuota");
    assert_eq!(
        quota(&q),
        api::Quota {
            namespace: "default".into(),
            name: "gpu".into(),
            hard: pairs(&[("limits.nvidia.com/gpumem", "4096")]),
        }
    );
}

#[test]
fn to_pod_is_the_inverse_of_pod_on_every_field_a_record_carries() {
    let mut record = train();
    assert_eq!(pod(&to_pod(&record)), record);
    record.node_name = Some("n1".into());
    record.phase = PodPhase::Failed;
    record.deleting = false;
    assert_eq!(pod(&to_pod(&record)), record);
}

#[test]
fn placing_merges_the_decision_and_sets_node_and_phase() {
    let pod = api::Pod {
        uid: "u".into(),
        namespace: "default".into(),
        name: "p".into(),
        annotations: pairs(&[("keep", "1"), ("hami.io/vgpu-node", "old")]),
        ..api::Pod::default()
    };
    let decision = api::Decision {
        node: "n1".into(),
        annotations: pairs(&[("hami.io/vgpu-node", "n1"), ("hami.io/vgpu-time", "9")]),
        labels: pairs(&[("hami.io/vgpu-node", "n1")]),
        grants: Vec::new(),
    };
    let placed = placed(&pod, &decision);
    assert_eq!(
        placed.annotations,
        pairs(&[
            ("keep", "1"),
            ("hami.io/vgpu-node", "n1"),
            ("hami.io/vgpu-time", "9")
        ])
    );
    assert_eq!(placed.labels, pairs(&[("hami.io/vgpu-node", "n1")]));
    assert_eq!(
        (placed.node_name.as_deref(), placed.phase),
        (Some("n1"), PodPhase::Running)
    );
}

#[test]
fn a_node_agents_warning_is_a_core_v1_event_about_the_pod() {
    let now: k8s_openapi::jiff::Timestamp = "2026-11-29T12:00:00Z".parse().unwrap();
    let event = pod_event(
        &PodEventText {
            namespace: "ml",
            pod: "train",
            uid: "",
            kind: "Warning",
            reason: "HamrDeviceDecisionFailed",
            message: "1/1 CardInsufficientMemory",
            action: "Allocate",
            component: "hamr-node-agent",
            host: Some("gpu-1"),
            instance: Some("gpu-1"),
        },
        now,
    );
    let body = serde_json::to_value(&event).unwrap();
    assert_eq!(
        body["metadata"],
        json!({"generateName": "train.", "namespace": "ml"})
    );
    // An empty UID is left out rather than written empty.
    assert_eq!(
        body["involvedObject"],
        json!({"apiVersion": "v1", "kind": "Pod", "name": "train", "namespace": "ml"})
    );
    assert_eq!(body["type"], "Warning");
    assert_eq!(body["action"], "Allocate");
    assert_eq!(
        body["source"],
        json!({"component": "hamr-node-agent", "host": "gpu-1"})
    );
    assert_eq!(body["reportingComponent"], "hamr-node-agent");
    assert_eq!(body["reportingInstance"], "gpu-1");
    assert_eq!(body["count"], 1);
    assert_eq!(body["firstTimestamp"], "2026-11-29T12:00:00Z");
}
