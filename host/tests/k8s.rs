//! Reading Kubernetes objects from files and converting them to the contract's records.

use hamr::input::{self, Kind, LoadError, Objects};
use hamr::k8s;
use hamr_guest::api::{self, Container, ContainerStatus, PodPhase};

fn parse(text: &str, default_kind: Option<Kind>) -> Objects {
    input::parse_objects(text, "test.yaml", default_kind).expect("the test input reads")
}

fn pairs(items: &[(&str, &str)]) -> api::Pairs {
    items
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

const LIST_DUMP: &str = r#"
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Node
  metadata:
    name: gpu-node-1
    labels: {kubernetes.io/hostname: gpu-node-1}
    annotations: {hami.io/node-nvidia-register: "[]"}
  status:
    allocatable: {cpu: "64", nvidia.com/gpu: "20"}
    capacity: {cpu: "64", memory: 512Gi}
- apiVersion: v1
  kind: Pod
  metadata: {name: p1, namespace: team-a, uid: 1111-2222}
  spec:
    containers:
    - name: main
      resources: {limits: {nvidia.com/gpu: "1"}}
- apiVersion: v1
  kind: Service
  metadata: {name: kubernetes, namespace: default}
metadata: {resourceVersion: ""}
"#;

#[test]
fn a_kind_list_dump_yields_its_nodes_and_pods_and_skips_other_kinds() {
    let o = parse(LIST_DUMP, None);
    assert_eq!(
        o.nodes,
        vec![api::Node {
            name: "gpu-node-1".into(),
            labels: pairs(&[("kubernetes.io/hostname", "gpu-node-1")]),
            annotations: pairs(&[("hami.io/node-nvidia-register", "[]")]),
            allocatable: pairs(&[("cpu", "64"), ("nvidia.com/gpu", "20")]),
            capacity: pairs(&[("cpu", "64"), ("memory", "512Gi")]),
        }]
    );
    let names: Vec<(&str, &str, &str)> = o
        .pods
        .iter()
        .map(|p| (p.namespace.as_str(), p.name.as_str(), p.uid.as_str()))
        .collect();
    assert_eq!(names, vec![("team-a", "p1", "1111-2222")]);
    assert_eq!(o.skipped, vec!["Service default/kubernetes".to_string()]);
}

#[test]
fn a_typed_list_from_the_api_server_reads_its_items_without_kinds() {
    let o = parse(
        r#"{"apiVersion":"v1","kind":"PodList","items":[{"metadata":{"name":"a"}},{"metadata":{"name":"b"}}]}"#,
        None,
    );
    let names: Vec<&str> = o.pods.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, vec!["a", "b"]);
}

#[test]
fn every_document_of_a_multi_document_file_is_read_in_order() {
    let o = parse(
        "kind: Node\nmetadata: {name: n1}\n---\nkind: Node\nmetadata: {name: n2}\n---\n\
         kind: ResourceQuota\nmetadata: {name: q}\nspec: {hard: {limits.nvidia.com/gpumem: '20000'}}\n---\n",
        None,
    );
    let nodes: Vec<&str> = o.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(nodes, vec!["n1", "n2"]);
    assert_eq!(
        o.quotas,
        vec![api::Quota {
            namespace: "default".into(),
            name: "q".into(),
            hard: pairs(&[("limits.nvidia.com/gpumem", "20000")]),
        }]
    );
}

#[test]
fn an_object_without_api_version_or_kind_reads_as_the_expected_kind() {
    let o = parse(
        "metadata: {name: p1}\nspec: {containers: [{name: c}]}\n",
        Some(Kind::Pod),
    );
    assert_eq!(o.pods.len(), 1);
    assert_eq!(o.pods[0].containers[0].name, "c");
}

#[test]
fn a_pod_without_uid_or_namespace_is_default_slash_name() {
    let o = parse(
        "metadata: {name: p1}\nspec: {containers: []}\n",
        Some(Kind::Pod),
    );
    assert_eq!(
        (o.pods[0].namespace.as_str(), o.pods[0].uid.as_str()),
        ("default", "default/p1")
    );
}

#[test]
fn a_pod_converts_field_by_field() {
    let o = parse(
        r#"
metadata:
  name: p1
  namespace: ml
  uid: u-1
  labels: {app: train}
  annotations: {nvidia.com/use-gputype: A100}
  deletionTimestamp: "2026-11-28T11:00:00Z"
spec:
  schedulerName: hamr-scheduler
  nodeName: ""
  runtimeClassName: nvidia
  initContainers:
  - name: fetch
    securityContext: {privileged: false}
  containers:
  - name: main
    securityContext: {privileged: true}
    env: [{name: A, value: "1"}, {name: B}]
    resources:
      limits: {nvidia.com/gpu: 2, nvidia.com/gpumem: 16Gi}
      requests: {cpu: 500m}
status:
  phase: Running
  initContainerStatuses:
  - {name: fetch, state: {terminated: {exitCode: 0}}}
  - {name: other, state: {running: {}}}
"#,
        Some(Kind::Pod),
    );
    let expected = api::Pod {
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
    };
    assert_eq!(o.pods, vec![expected]);
}

#[test]
fn a_pod_without_status_is_pending_and_an_unknown_phase_is_unknown() {
    let o = parse(
        "metadata: {name: a}\n---\nmetadata: {name: b}\nstatus: {phase: Lost}\n",
        Some(Kind::Pod),
    );
    let phases: Vec<PodPhase> = o.pods.iter().map(|p| p.phase).collect();
    assert_eq!(phases, vec![PodPhase::Pending, PodPhase::Unknown]);
}

#[test]
fn a_syntax_error_names_the_file_and_the_line() {
    let err = input::parse_objects("kind: Node\nmetadata: {name: n1\n", "c.yaml", None)
        .expect_err("an unclosed flow mapping is not YAML");
    let text = err.to_string();
    assert!(
        text.starts_with("c.yaml: ") && text.contains("line 3"),
        "{text}"
    );
}

#[test]
fn a_value_of_the_wrong_type_names_the_object_and_the_field() {
    let err = input::parse_objects(
        "metadata: {name: p1, annotations: {x: 1}}\n",
        "p.yaml",
        Some(Kind::Pod),
    )
    .expect_err("annotation values are strings");
    assert_eq!(
        err.to_string(),
        "p.yaml: pod/default/p1: metadata.annotations.x: invalid type: integer `1`, expected a string"
    );
}

#[test]
fn an_object_without_kind_where_none_is_implied_is_refused() {
    let err = input::parse_objects("metadata: {name: n1}\n", "c.yaml", None)
        .expect_err("a cluster file names its kinds");
    assert!(
        matches!(&err, LoadError::Object { object, field, .. } if object == "document 1" && field == "kind"),
        "{err}"
    );
}

#[test]
fn an_object_of_another_kind_where_a_kind_is_implied_is_refused() {
    let err = input::convert(
        serde_json::json!({"kind": "Pod", "metadata": {"name": "x"}}),
        Kind::Node,
        "s.yaml",
        "nodes[0]",
    )
    .expect_err("a Pod in a node list");
    assert_eq!(
        err.to_string(),
        "s.yaml: node/x: kind: expected Node (found \"Pod\")"
    );
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
    let placed = k8s::placed(&pod, &decision);
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
