//! Reading Kubernetes objects from files into the contract's records. The conversion itself is
//! tested in `k8s-convert/`.

use hamr::input::{self, Kind, LoadError, Objects};
use hamr_guest::api;

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
