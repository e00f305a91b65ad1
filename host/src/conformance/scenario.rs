//! The scenario file format (see `hamr-conformance` for the semantics) and its reader.

use std::collections::BTreeMap;
use std::path::Path;

use hamr_guest::api;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::input::{self, Kind, LoadError, Object};

/// The time handed to the guest when a scenario names none.
pub const DEFAULT_NOW: &str = "2026-11-28T12:00:00Z";

/// One scenario, read and converted.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    pub name: String,
    /// The `config` map as JSON text (`{}` when absent), for `configure`.
    pub config: String,
    /// `now`, Unix seconds.
    pub now: i64,
    pub nodes: Vec<api::Node>,
    pub pods: Vec<api::Pod>,
    pub quotas: Vec<api::Quota>,
    /// The pods to place, in order.
    pub schedule: Vec<api::Pod>,
    pub expect: Vec<Expectation>,
}

/// What a user sees for one scheduled pod. Absent fields are not checked.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    /// `name` (namespace `default`) or `namespace/name`.
    pub pod: String,
    /// `Some(None)` for `node: null` (no node chosen), `None` when the key is absent.
    #[serde(default, deserialize_with = "present")]
    pub node: Option<Option<String>>,
    /// Exact values of these decision annotations.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// Node -> the exact aggregated reason text of its verdict.
    #[serde(default)]
    pub reasons: BTreeMap<String, String>,
    #[serde(default)]
    pub admission: Option<AdmissionExpectation>,
    /// What admission changed on the pod: these values must be there after the mutations.
    #[serde(default)]
    pub mutated: Option<MutatedExpectation>,
}

/// Values of the admitted pod (after the webhook's mutations); absent fields are not checked.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MutatedExpectation {
    /// Pod annotations, exact values.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// `spec.runtimeClassName`; `null` for none.
    #[serde(default, deserialize_with = "present")]
    pub runtime_class_name: Option<Option<String>>,
    /// Container name -> resource -> exact `resources.limits` value.
    #[serde(default)]
    pub limits: BTreeMap<String, BTreeMap<String, String>>,
    /// Container name -> resource -> exact `resources.requests` value.
    #[serde(default)]
    pub requests: BTreeMap<String, BTreeMap<String, String>>,
}

impl Expectation {
    /// The pod's `namespace/name`.
    pub fn pod_id(&self) -> String {
        if self.pod.contains('/') {
            self.pod.clone()
        } else {
            format!("{}/{}", crate::k8s::DEFAULT_NAMESPACE, self.pod)
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdmissionExpectation {
    Allowed,
    Denied,
}

/// Keeps `node: null` apart from an absent `node`.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// The file as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    name: String,
    #[serde(default)]
    config: Option<Value>,
    #[serde(default)]
    now: Option<String>,
    #[serde(default)]
    nodes: Vec<Value>,
    #[serde(default)]
    pods: Vec<Value>,
    #[serde(default)]
    quotas: Vec<Value>,
    #[serde(default)]
    schedule: Vec<Value>,
    #[serde(default)]
    expect: Vec<Expectation>,
}

/// Reads a scenario file.
pub fn read(path: &Path) -> Result<Scenario, LoadError> {
    parse(&input::read_text(path)?, &path.display().to_string())
}

/// Parses a scenario; `file` names it in errors.
pub fn parse(text: &str, file: &str) -> Result<Scenario, LoadError> {
    let f: File = serde_norway::from_str(text).map_err(|e| LoadError::Syntax {
        file: file.to_string(),
        message: e.to_string(),
    })?;
    let bad = |field: &str, message: String| LoadError::Object {
        file: file.to_string(),
        object: "scenario".to_string(),
        field: field.to_string(),
        message,
    };
    let config = match f.config {
        None | Some(Value::Null) => "{}".to_string(),
        Some(v @ Value::Object(_)) => v.to_string(),
        Some(other) => return Err(bad("config", format!("must be a mapping, found {other}"))),
    };
    let now_text = f.now.as_deref().unwrap_or(DEFAULT_NOW);
    let now = parse_time(now_text).map_err(|e| bad("now", e))?;
    let mut nodes = Vec::new();
    for (i, v) in f.nodes.into_iter().enumerate() {
        if let Object::Node(n) = input::convert(v, Kind::Node, file, &format!("nodes[{i}]"))? {
            nodes.push(n);
        }
    }
    let mut quotas = Vec::new();
    for (i, v) in f.quotas.into_iter().enumerate() {
        let at = format!("quotas[{i}]");
        if let Object::Quota(q) = input::convert(v, Kind::ResourceQuota, file, &at)? {
            quotas.push(q);
        }
    }
    Ok(Scenario {
        name: f.name,
        config,
        now,
        nodes,
        pods: pods(f.pods, file, "pods")?,
        quotas,
        schedule: pods(f.schedule, file, "schedule")?,
        expect: f.expect,
    })
}

fn pods(values: Vec<Value>, file: &str, list: &str) -> Result<Vec<api::Pod>, LoadError> {
    let mut out = Vec::new();
    for (i, v) in values.into_iter().enumerate() {
        if let Object::Pod(p) = input::convert(v, Kind::Pod, file, &format!("{list}[{i}]"))? {
            out.push(p);
        }
    }
    Ok(out)
}

/// RFC 3339 to Unix seconds (`2026-11-28T12:00:00Z` -> 1795867200).
pub fn parse_time(text: &str) -> Result<i64, String> {
    text.parse::<k8s_openapi::jiff::Timestamp>()
        .map(|t| t.as_second())
        .map_err(|e| format!("{text:?} is not an RFC 3339 time: {e}"))
}
