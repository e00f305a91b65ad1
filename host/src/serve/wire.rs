//! The wire types of `k8s.io/kube-scheduler/extender/v1` and of `admission.k8s.io/v1`.
//!
//! The extender's Go types carry no JSON tags, so kube-scheduler writes the Go field names
//! (`Pod`, `NodeNames`, `FailedNodes`, ...) and Go's decoder matches keys case-insensitively.
//! We emit the exact Go names and accept any case on input, as Go would: [`fold`] lower-cases
//! the keys of an object before the fields are picked. The `Pod` and `Node` values inside are
//! ordinary Kubernetes JSON and go through k8s-openapi's own (case-sensitive) decoding.
//!
//! Every decoder returns a [`WireError`] that names the field and the value, never panics.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use serde::Serialize;
use serde_json::{Map, Value};

/// Malformed request JSON: which field, and what was wrong with it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("request body is not JSON: {0}")]
    Syntax(String),
    #[error("field {field}: {message}")]
    Field { field: String, message: String },
    #[error("field {0} is missing")]
    Missing(&'static str),
}

impl WireError {
    fn field(field: &str, message: impl std::fmt::Display) -> WireError {
        WireError::Field {
            field: field.to_string(),
            message: message.to_string(),
        }
    }
}

/// Parses a body into a JSON object with lower-cased keys (Go's case-insensitive matching).
pub fn fold(body: &[u8]) -> Result<Map<String, Value>, WireError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| WireError::Syntax(e.to_string()))?;
    fold_value(value, "body")
}

fn fold_value(value: Value, field: &str) -> Result<Map<String, Value>, WireError> {
    match value {
        Value::Object(map) => Ok(map
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect()),
        other => Err(WireError::field(
            field,
            format!("expected an object, got {}", kind(&other)),
        )),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A field that may be absent or null.
fn optional<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    map.get(key).filter(|v| !v.is_null())
}

fn string(map: &Map<String, Value>, key: &'static str) -> Result<String, WireError> {
    match optional(map, key) {
        None => Err(WireError::Missing(key)),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(WireError::field(
            key,
            format!("expected a string, got {}", kind(other)),
        )),
    }
}

/// Decodes a Kubernetes object, naming the field path inside it when it is malformed.
pub fn object<T: serde::de::DeserializeOwned>(value: &Value, field: &str) -> Result<T, WireError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let at = if path == "." || path.is_empty() {
            field.to_string()
        } else {
            format!("{field}.{path}")
        };
        WireError::field(&at, e.inner())
    })
}

/// `ExtenderArgs`, the request of `filter` and `prioritize`.
#[derive(Clone, Debug)]
pub struct ExtenderArgs {
    pub pod: Pod,
    /// `NodeNames` (nodeCacheCapable) or the names of `Nodes.items`.
    pub node_names: Vec<String>,
    /// True when the scheduler sent full `Nodes` (not nodeCacheCapable).
    pub full_nodes: Option<Vec<Value>>,
}

impl ExtenderArgs {
    pub fn parse(body: &[u8]) -> Result<ExtenderArgs, WireError> {
        let mut map = fold(body)?;
        let pod = match optional(&map, "pod") {
            None => return Err(WireError::Missing("Pod")),
            Some(v) => object::<Pod>(v, "Pod")?,
        };
        if let Some(names) = map.remove("nodenames").filter(|v| !v.is_null()) {
            // Moved out of the parsed body, not copied: thousands of names per request.
            let names = match names {
                Value::Array(items) => items
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| match v {
                        Value::String(name) => Ok(name),
                        other => Err(WireError::field(
                            &format!("NodeNames[{i}]"),
                            format!("expected a string, got {}", kind(&other)),
                        )),
                    })
                    .collect::<Result<Vec<String>, WireError>>()?,
                other => {
                    return Err(WireError::field(
                        "NodeNames",
                        format!("expected an array, got {}", kind(&other)),
                    ));
                }
            };
            return Ok(ExtenderArgs {
                pod,
                node_names: names,
                full_nodes: None,
            });
        }
        if let Some(nodes) = optional(&map, "nodes") {
            let list = fold_value(nodes.clone(), "Nodes")?;
            let items = match optional(&list, "items") {
                None => Vec::new(),
                Some(Value::Array(items)) => items.clone(),
                Some(other) => {
                    return Err(WireError::field(
                        "Nodes.items",
                        format!("expected an array, got {}", kind(other)),
                    ));
                }
            };
            let mut names = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let name = item
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .filter(|n| !n.is_empty())
                    .ok_or_else(|| {
                        WireError::field(&format!("Nodes.items[{i}].metadata.name"), "missing")
                    })?;
                names.push(name.to_string());
            }
            return Ok(ExtenderArgs {
                pod,
                node_names: names,
                full_nodes: Some(items),
            });
        }
        Err(WireError::Missing("NodeNames"))
    }
}

/// `ExtenderFilterResult`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct FilterResult {
    #[serde(rename = "Nodes", skip_serializing_if = "Option::is_none")]
    pub nodes: Option<NodeList>,
    #[serde(rename = "NodeNames", skip_serializing_if = "Option::is_none")]
    pub node_names: Option<Vec<String>>,
    #[serde(rename = "FailedNodes")]
    pub failed_nodes: BTreeMap<String, String>,
    #[serde(rename = "FailedAndUnresolvableNodes")]
    pub failed_and_unresolvable_nodes: BTreeMap<String, String>,
    #[serde(rename = "Error")]
    pub error: String,
}

impl FilterResult {
    pub fn error(message: impl Into<String>) -> FilterResult {
        FilterResult {
            error: message.into(),
            ..FilterResult::default()
        }
    }
}

/// A `v1.NodeList` echoed back when the scheduler is not nodeCacheCapable.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct NodeList {
    #[serde(rename = "apiVersion")]
    pub api_version: &'static str,
    pub kind: &'static str,
    pub metadata: Map<String, Value>,
    pub items: Vec<Value>,
}

impl NodeList {
    pub fn new(items: Vec<Value>) -> NodeList {
        NodeList {
            api_version: "v1",
            kind: "NodeList",
            metadata: Map::new(),
            items,
        }
    }
}

/// One `HostPriority` of the `prioritize` answer (a JSON array of these).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HostPriority {
    #[serde(rename = "Host")]
    pub host: String,
    #[serde(rename = "Score")]
    pub score: i64,
}

/// `MaxExtenderPriority`.
pub const MAX_EXTENDER_PRIORITY: i64 = 10;

/// `ExtenderBindingArgs`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindingArgs {
    pub pod_name: String,
    pub pod_namespace: String,
    pub pod_uid: String,
    pub node: String,
}

impl BindingArgs {
    pub fn parse(body: &[u8]) -> Result<BindingArgs, WireError> {
        let map = fold(body)?;
        let args = BindingArgs {
            pod_name: string(&map, "podname").map_err(|e| rename(e, "PodName"))?,
            pod_namespace: string(&map, "podnamespace").map_err(|e| rename(e, "PodNamespace"))?,
            pod_uid: string(&map, "poduid").map_err(|e| rename(e, "PodUID"))?,
            node: string(&map, "node").map_err(|e| rename(e, "Node"))?,
        };
        for (field, value) in [
            ("PodName", &args.pod_name),
            ("PodUID", &args.pod_uid),
            ("Node", &args.node),
        ] {
            if value.is_empty() {
                return Err(WireError::field(field, "must not be empty"));
            }
        }
        Ok(args)
    }
}

/// Error messages name the Go field, whatever case the key had on the wire.
fn rename(e: WireError, go: &'static str) -> WireError {
    match e {
        WireError::Missing(_) => WireError::Missing(go),
        WireError::Field { message, .. } => WireError::Field {
            field: go.to_string(),
            message,
        },
        other => other,
    }
}

/// `ExtenderBindingResult`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct BindingResult {
    #[serde(rename = "Error")]
    pub error: String,
}

/// `ExtenderPreemptionArgs`, reduced to what we answer from: the pod and the meta victims.
#[derive(Clone, Debug)]
pub struct PreemptionArgs {
    pub pod: Pod,
    /// node -> victim pod UIDs (from `NodeNameToMetaVictims`, or from `NodeNameToVictims`).
    pub victims: BTreeMap<String, MetaVictims>,
}

/// `MetaVictims`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MetaVictims {
    #[serde(rename = "Pods")]
    pub pods: Vec<MetaPod>,
    #[serde(rename = "NumPDBViolations")]
    pub num_pdb_violations: i64,
}

/// `MetaPod`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MetaPod {
    #[serde(rename = "UID")]
    pub uid: String,
}

/// `ExtenderPreemptionResult`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PreemptionResult {
    #[serde(rename = "NodeNameToMetaVictims")]
    pub node_name_to_meta_victims: BTreeMap<String, MetaVictims>,
}

impl PreemptionArgs {
    pub fn parse(body: &[u8]) -> Result<PreemptionArgs, WireError> {
        let map = fold(body)?;
        let pod = match optional(&map, "pod") {
            None => return Err(WireError::Missing("Pod")),
            Some(v) => object::<Pod>(v, "Pod")?,
        };
        let mut victims = BTreeMap::new();
        if let Some(meta) = optional(&map, "nodenametometavictims") {
            // Keys are node names, so they are not folded.
            let Value::Object(meta) = meta else {
                return Err(WireError::field(
                    "NodeNameToMetaVictims",
                    "expected an object",
                ));
            };
            for (node, v) in meta {
                let field = format!("NodeNameToMetaVictims.{node}");
                let v = fold_value(v.clone(), &field)?;
                let mut out = MetaVictims::default();
                if let Some(n) = optional(&v, "numpdbviolations") {
                    out.num_pdb_violations = object(n, &format!("{field}.NumPDBViolations"))?;
                }
                if let Some(Value::Array(pods)) = optional(&v, "pods") {
                    for (i, p) in pods.iter().enumerate() {
                        let p = fold_value(p.clone(), &format!("{field}.Pods[{i}]"))?;
                        let uid = string(&p, "uid").map_err(|e| rename(e, "UID"))?;
                        out.pods.push(MetaPod { uid });
                    }
                }
                victims.insert(node.clone(), out);
            }
        } else if let Some(full) = optional(&map, "nodenametovictims") {
            // Keys are node names, so they are not folded.
            let Value::Object(full) = full else {
                return Err(WireError::field("NodeNameToVictims", "expected an object"));
            };
            for (node, v) in full {
                let field = format!("NodeNameToVictims.{node}");
                let v = fold_value(v.clone(), &field)?;
                let mut out = MetaVictims::default();
                if let Some(n) = optional(&v, "numpdbviolations") {
                    out.num_pdb_violations = object(n, &format!("{field}.NumPDBViolations"))?;
                }
                if let Some(Value::Array(pods)) = optional(&v, "pods") {
                    for (i, p) in pods.iter().enumerate() {
                        let pod: Pod = object(p, &format!("{field}.Pods[{i}]"))?;
                        let uid = pod.metadata.uid.unwrap_or_default();
                        out.pods.push(MetaPod { uid });
                    }
                }
                victims.insert(node.clone(), out);
            }
        }
        Ok(PreemptionArgs { pod, victims })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_case_insensitively_like_go() {
        for body in [
            r#"{"Pod":{"metadata":{"name":"p"}},"NodeNames":["a","b"]}"#,
            r#"{"pod":{"metadata":{"name":"p"}},"nodenames":["a","b"]}"#,
            r#"{"POD":{"metadata":{"name":"p"}},"nodeNames":["a","b"],"Nodes":null}"#,
        ] {
            let args = ExtenderArgs::parse(body.as_bytes()).unwrap();
            assert_eq!(args.pod.metadata.name.as_deref(), Some("p"));
            assert_eq!(args.node_names, ["a", "b"]);
            assert!(args.full_nodes.is_none());
        }
    }

    #[test]
    fn full_nodes_give_their_names() {
        let body = r#"{"Pod":{},"Nodes":{"items":[{"metadata":{"name":"n1"}},{"metadata":{"name":"n2"}}]}}"#;
        let args = ExtenderArgs::parse(body.as_bytes()).unwrap();
        assert_eq!(args.node_names, ["n1", "n2"]);
        assert_eq!(args.full_nodes.unwrap().len(), 2);
    }

    #[test]
    fn bad_input_names_the_field() {
        let cases: &[(&str, &str)] = &[
            (
                r#"{"Pod":{"metadata":{"name":"p"}},"NodeNames":["a""#,
                "not JSON",
            ),
            (r#"[]"#, "field body: expected an object, got an array"),
            (r#"{"NodeNames":["a"]}"#, "field Pod is missing"),
            (r#"{"Pod":{}}"#, "field NodeNames is missing"),
            (
                r#"{"Pod":{},"NodeNames":"a"}"#,
                "field NodeNames: expected an array, got a string",
            ),
            (
                r#"{"Pod":{},"NodeNames":["a",7]}"#,
                "field NodeNames[1]: expected a string, got a number",
            ),
            (
                r#"{"Pod":{"spec":{"containers":"x"}},"NodeNames":[]}"#,
                "field Pod.spec.containers",
            ),
            (
                r#"{"Pod":{},"Nodes":{"items":[{"metadata":{}}]}}"#,
                "Nodes.items[0].metadata.name",
            ),
        ];
        for (body, want) in cases {
            let err = ExtenderArgs::parse(body.as_bytes())
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{body}: {err}");
        }
    }

    #[test]
    fn binding_args_accept_any_case_and_name_go_fields() {
        let a =
            BindingArgs::parse(br#"{"podname":"p","PodNamespace":"ns","PODUID":"u","Node":"n"}"#)
                .unwrap();
        assert_eq!(
            a,
            BindingArgs {
                pod_name: "p".into(),
                pod_namespace: "ns".into(),
                pod_uid: "u".into(),
                node: "n".into()
            }
        );
        let e =
            BindingArgs::parse(br#"{"PodName":"p","PodNamespace":"ns","PodUID":"u"}"#).unwrap_err();
        assert_eq!(e.to_string(), "field Node is missing");
        let e = BindingArgs::parse(br#"{"PodName":1,"PodNamespace":"ns","PodUID":"u","Node":"n"}"#)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "field PodName: expected a string, got a number"
        );
    }

    #[test]
    fn results_use_the_go_field_names() {
        let mut r = FilterResult {
            node_names: Some(vec!["n1".into()]),
            ..FilterResult::default()
        };
        r.failed_nodes
            .insert("n2".into(), "1/4 CardInsufficientMemory".into());
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"NodeNames":["n1"],"FailedNodes":{"n2":"1/4 CardInsufficientMemory"},"FailedAndUnresolvableNodes":{},"Error":""}"#
        );
        let p = vec![HostPriority {
            host: "n1".into(),
            score: 7,
        }];
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            r#"[{"Host":"n1","Score":7}]"#
        );
        assert_eq!(
            serde_json::to_string(&BindingResult::default()).unwrap(),
            r#"{"Error":""}"#
        );
    }

    #[test]
    fn preemption_args_read_meta_and_full_victims() {
        let a = PreemptionArgs::parse(
            br#"{"Pod":{},"NodeNameToMetaVictims":{"N1":{"Pods":[{"UID":"u1"}],"NumPDBViolations":1}}}"#,
        )
        .unwrap();
        assert_eq!(a.victims["N1"].pods, [MetaPod { uid: "u1".into() }]);
        assert_eq!(a.victims["N1"].num_pdb_violations, 1);
        let a = PreemptionArgs::parse(
            br#"{"Pod":{},"NodeNameToVictims":{"N1":{"Pods":[{"metadata":{"uid":"u2"}}]}}}"#,
        )
        .unwrap();
        assert_eq!(a.victims["N1"].pods, [MetaPod { uid: "u2".into() }]);
    }
}
