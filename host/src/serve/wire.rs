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
    pub node_names: NodeNames,
    /// True when the scheduler sent full `Nodes` (not nodeCacheCapable).
    pub full_nodes: Option<Vec<Value>>,
}

/// Candidate node names as WIT's `node-names` text, one per line, read straight off the
/// request: thousands of names per call become one string, not one allocation each. Empty
/// names are skipped (no node has one).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeNames {
    text: String,
    count: usize,
    /// The first name holding a line break, which no node has and the text cannot carry.
    line_break: Option<String>,
}

impl NodeNames {
    pub fn from_names<N: AsRef<str>>(names: &[N]) -> NodeNames {
        let mut out = NodeNames::default();
        for n in names {
            out.push(n.as_ref());
        }
        out
    }

    fn push(&mut self, name: &str) {
        if name.is_empty() {
            return;
        }
        if name.contains('\n') {
            self.line_break.get_or_insert_with(|| name.to_string());
            return;
        }
        if self.count > 0 {
            self.text.push('\n');
        }
        self.text.push_str(name);
        self.count += 1;
    }

    /// The names, one per line.
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.text.split('\n').filter(|n| !n.is_empty())
    }

    pub fn to_vec(&self) -> Vec<String> {
        self.iter().map(str::to_string).collect()
    }

    /// Refuses the list when a name holds a line break, with the error every engine gives
    /// for one ([`hamr_guest::check_node_names`]).
    pub fn check(&self) -> Result<(), hamr_guest::api::Error> {
        match &self.line_break {
            Some(bad) => hamr_guest::check_node_names(&[bad]),
            None => Ok(()),
        }
    }
}

/// The top level of an `ExtenderArgs` body, keys matched case-insensitively (the last of equal
/// keys wins, as in [`fold`]), `NodeNames` read into [`NodeNames`] as it streams by.
#[derive(Default)]
struct ArgsBody {
    /// Set when the body is not an object: what it is.
    not_object: Option<&'static str>,
    pod: Option<Value>,
    names: Option<NamesField>,
    nodes: Option<Value>,
}

/// `NodeNames` as found: null, not an array, an array with an item that is not a string, or
/// the names.
enum NamesField {
    Null,
    NotArray(&'static str),
    BadItem(usize, &'static str),
    Names(NodeNames),
}

impl<'de> serde::Deserialize<'de> for ArgsBody {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<ArgsBody, D::Error> {
        d.deserialize_any(BodyVisitor)
    }
}

/// The `visit_*` arms of a visitor for the JSON kinds it does not take, each answering
/// `Ok($other(kind))` with the kind in words (as [`kind`] names it). Arrays and objects are
/// read to their end.
macro_rules! other_kinds {
    ($other:expr; $($arm:ident),*) => {
        $(other_kinds!(@arm $arm, $other);)*
    };
    (@arm null, $other:expr) => {
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok($other("null"))
        }
    };
    (@arm scalars, $other:expr) => {
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok($other("a boolean"))
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok($other("a number"))
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok($other("a number"))
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok($other("a number"))
        }
    };
    (@arm string, $other:expr) => {
        fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
            Ok($other("a string"))
        }
    };
    (@arm array, $other:expr) => {
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
            Ok($other("an array"))
        }
    };
    (@arm object, $other:expr) => {
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            while map
                .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                .is_some()
            {}
            Ok($other("an object"))
        }
    };
}

struct BodyVisitor;

impl BodyVisitor {
    fn not(kind: &'static str) -> ArgsBody {
        ArgsBody {
            not_object: Some(kind),
            ..ArgsBody::default()
        }
    }
}

impl<'de> serde::de::Visitor<'de> for BodyVisitor {
    type Value = ArgsBody;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an ExtenderArgs object")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<ArgsBody, A::Error> {
        let mut body = ArgsBody::default();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.to_ascii_lowercase().as_str() {
                "pod" => body.pod = Some(map.next_value()?),
                "nodenames" => body.names = Some(map.next_value::<NamesField>()?),
                "nodes" => body.nodes = Some(map.next_value()?),
                _ => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(body)
    }
    other_kinds!(BodyVisitor::not; null, scalars, string, array);
}

impl<'de> serde::Deserialize<'de> for NamesField {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<NamesField, D::Error> {
        d.deserialize_any(NamesVisitor)
    }
}

struct NamesVisitor;

impl<'de> serde::de::Visitor<'de> for NamesVisitor {
    type Value = NamesField;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an array of node names")
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<NamesField, A::Error> {
        let mut names = NodeNames::default();
        let mut bad = None;
        let mut index = 0;
        while let Some(item) = seq.next_element::<NameItem<'de>>()? {
            match item {
                NameItem::Name(name) => names.push(&name),
                NameItem::Not(kind) => {
                    bad.get_or_insert((index, kind));
                }
            }
            index += 1;
        }
        Ok(match bad {
            Some((i, kind)) => NamesField::BadItem(i, kind),
            None => NamesField::Names(names),
        })
    }
    fn visit_unit<E>(self) -> Result<NamesField, E> {
        Ok(NamesField::Null)
    }
    fn visit_none<E>(self) -> Result<NamesField, E> {
        Ok(NamesField::Null)
    }
    other_kinds!(NamesField::NotArray; scalars, string, object);
}

/// One item of `NodeNames`: a name (borrowed from the body unless it had escapes), or what it
/// was instead.
enum NameItem<'de> {
    Name(std::borrow::Cow<'de, str>),
    Not(&'static str),
}

impl<'de> serde::Deserialize<'de> for NameItem<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<NameItem<'de>, D::Error> {
        d.deserialize_any(ItemVisitor)
    }
}

struct ItemVisitor;

impl<'de> serde::de::Visitor<'de> for ItemVisitor {
    type Value = NameItem<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a node name")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<NameItem<'de>, E> {
        Ok(NameItem::Name(std::borrow::Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<NameItem<'de>, E> {
        Ok(NameItem::Name(std::borrow::Cow::Owned(v.to_string())))
    }
    fn visit_string<E>(self, v: String) -> Result<NameItem<'de>, E> {
        Ok(NameItem::Name(std::borrow::Cow::Owned(v)))
    }
    other_kinds!(NameItem::Not; null, scalars, array, object);
}

impl ExtenderArgs {
    pub fn parse(body: &[u8]) -> Result<ExtenderArgs, WireError> {
        let body: ArgsBody =
            serde_json::from_slice(body).map_err(|e| WireError::Syntax(e.to_string()))?;
        if let Some(kind) = body.not_object {
            return Err(WireError::field(
                "body",
                format!("expected an object, got {kind}"),
            ));
        }
        let pod = match body.pod.filter(|v| !v.is_null()) {
            None => return Err(WireError::Missing("Pod")),
            Some(v) => object::<Pod>(&v, "Pod")?,
        };
        match body.names {
            Some(NamesField::Names(names)) => {
                return Ok(ExtenderArgs {
                    pod,
                    node_names: names,
                    full_nodes: None,
                });
            }
            Some(NamesField::NotArray(kind)) => {
                return Err(WireError::field(
                    "NodeNames",
                    format!("expected an array, got {kind}"),
                ));
            }
            Some(NamesField::BadItem(i, kind)) => {
                return Err(WireError::field(
                    &format!("NodeNames[{i}]"),
                    format!("expected a string, got {kind}"),
                ));
            }
            Some(NamesField::Null) | None => {}
        }
        if let Some(nodes) = body.nodes.filter(|v| !v.is_null()) {
            let list = fold_value(nodes, "Nodes")?;
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
                names.push(name);
            }
            let node_names = NodeNames::from_names(&names);
            return Ok(ExtenderArgs {
                pod,
                node_names,
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
            assert_eq!(args.node_names.to_vec(), ["a", "b"]);
            assert!(args.full_nodes.is_none());
        }
    }

    #[test]
    fn node_names_become_one_text_with_escapes_read_and_empty_names_skipped() {
        let body =
            r#"{"Pod":{},"NodeNames":["gpu-1","","gpu\u002d2","gpu-3"],"Extra":[1,{"a":2}]}"#;
        let args = ExtenderArgs::parse(body.as_bytes()).unwrap();
        assert_eq!(args.node_names.text(), "gpu-1\ngpu-2\ngpu-3");
        assert_eq!(args.node_names.len(), 3);
        assert_eq!(args.node_names.check(), Ok(()));
        // A name no node can have is kept aside, for filter to refuse with the engines' error.
        let body = r#"{"Pod":{},"NodeNames":["a","b\nc","d"]}"#;
        let args = ExtenderArgs::parse(body.as_bytes()).unwrap();
        assert_eq!(args.node_names.to_vec(), ["a", "d"]);
        assert_eq!(
            args.node_names.check().unwrap_err().to_string(),
            "invalid input: request: candidates \"b\\nc\": a node name cannot hold a line break"
        );
    }

    #[test]
    fn full_nodes_give_their_names() {
        let body = r#"{"Pod":{},"Nodes":{"items":[{"metadata":{"name":"n1"}},{"metadata":{"name":"n2"}}]}}"#;
        let args = ExtenderArgs::parse(body.as_bytes()).unwrap();
        assert_eq!(args.node_names.to_vec(), ["n1", "n2"]);
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
