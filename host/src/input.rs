//! Reading Kubernetes objects from files, as users have them.
//!
//! A file is JSON (when it starts with `{` or `[`) or YAML with one or more documents. Each
//! document is a single object, or a list (`kind: List` or `NodeList`, `PodList`, ... with
//! `items`), so `kubectl get nodes,pods -A -o yaml > cluster.yaml` reads as it is. Nodes, Pods
//! and ResourceQuotas are converted ([`crate::k8s`]); objects of other kinds are skipped and
//! reported in [`Objects::skipped`]. An object may omit `apiVersion` and `kind` where the
//! reader knows what it must be (a `--pods` file, a scenario's `nodes:` list): they are filled
//! in before the object is read into its k8s-openapi type.
//!
//! Errors name the file and, for syntax, the line; for an object, the object and the field
//! (`pods.yaml: pod/default/p1: spec.containers[0].resources.limits.nvidia.com/gpu: ...`).

use std::path::Path;

use hamr_guest::api;
use k8s_openapi::api::core::v1::{Node, Pod, ResourceQuota};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::k8s;

/// Why a file could not be read into objects. Every variant displays as one line.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be opened or is not UTF-8. Check the path.
    #[error("{file}: {message}")]
    Io { file: String, message: String },
    /// The text is not valid YAML or JSON; the message carries the line and column.
    #[error("{file}: {message}")]
    Syntax { file: String, message: String },
    /// An object does not read as its kind: `field` is the path to the offending value.
    #[error("{file}: {object}: {field}: {message}")]
    Object {
        file: String,
        object: String,
        field: String,
        message: String,
    },
}

/// The kinds the host converts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Node,
    Pod,
    ResourceQuota,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Node => "Node",
            Kind::Pod => "Pod",
            Kind::ResourceQuota => "ResourceQuota",
        }
    }

    fn from_name(name: &str) -> Option<Kind> {
        match name {
            "Node" => Some(Kind::Node),
            "Pod" => Some(Kind::Pod),
            "ResourceQuota" => Some(Kind::ResourceQuota),
            _ => None,
        }
    }
}

/// One converted object.
#[derive(Clone, Debug, PartialEq)]
pub enum Object {
    Node(api::Node),
    Pod(api::Pod),
    Quota(api::Quota),
}

/// The objects of one or more files, in file order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Objects {
    pub nodes: Vec<api::Node>,
    pub pods: Vec<api::Pod>,
    pub quotas: Vec<api::Quota>,
    /// Objects of other kinds, as `Kind namespace/name` (`Service default/kubernetes`).
    pub skipped: Vec<String>,
}

impl Objects {
    fn push(&mut self, object: Object) {
        match object {
            Object::Node(n) => self.nodes.push(n),
            Object::Pod(p) => self.pods.push(p),
            Object::Quota(q) => self.quotas.push(q),
        }
    }

    /// Appends another file's objects.
    pub fn extend(&mut self, other: Objects) {
        self.nodes.extend(other.nodes);
        self.pods.extend(other.pods);
        self.quotas.extend(other.quotas);
        self.skipped.extend(other.skipped);
    }
}

/// Reads a file's text; the error names the file.
pub fn read_text(path: &Path) -> Result<String, LoadError> {
    std::fs::read_to_string(path).map_err(|e| LoadError::Io {
        file: path.display().to_string(),
        message: e.to_string(),
    })
}

/// Reads every object of a file, or of every `*.yaml`, `*.yml` and `*.json` file directly in a
/// folder (in name order). Objects without a `kind` are taken as `default_kind`; with none, a
/// missing kind is an error.
pub fn read_objects(path: &Path, default_kind: Option<Kind>) -> Result<Objects, LoadError> {
    if path.is_dir() {
        let io = |e: std::io::Error| LoadError::Io {
            file: path.display().to_string(),
            message: e.to_string(),
        };
        let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(path)
            .map_err(io)?
            .map(|entry| entry.map(|e| e.path()))
            .collect::<Result<_, _>>()
            .map_err(io)?;
        files.retain(|f| {
            f.is_file()
                && f.extension()
                    .is_some_and(|x| x == "yaml" || x == "yml" || x == "json")
        });
        files.sort();
        let mut out = Objects::default();
        for f in files {
            out.extend(read_objects(&f, default_kind)?);
        }
        return Ok(out);
    }
    let text = read_text(path)?;
    parse_objects(&text, &path.display().to_string(), default_kind)
}

/// [`read_objects`] over text; `file` names it in errors.
pub fn parse_objects(
    text: &str,
    file: &str,
    default_kind: Option<Kind>,
) -> Result<Objects, LoadError> {
    let mut out = Objects::default();
    for (i, doc) in documents(text, file)?.into_iter().enumerate() {
        collect(
            doc,
            file,
            &format!("document {}", i + 1),
            default_kind,
            &mut out,
        )?;
    }
    Ok(out)
}

/// The documents of a YAML or JSON text, as JSON values; empty documents are dropped.
pub fn documents(text: &str, file: &str) -> Result<Vec<Value>, LoadError> {
    let syntax = |message: String| LoadError::Syntax {
        file: file.to_string(),
        message,
    };
    if text.trim_start().starts_with(['{', '[']) {
        let v: Value = serde_json::from_str(text).map_err(|e| syntax(e.to_string()))?;
        return Ok(vec![v]);
    }
    let mut out = Vec::new();
    for doc in serde_norway::Deserializer::from_str(text) {
        let v: Value = serde::Deserialize::deserialize(doc).map_err(|e| syntax(e.to_string()))?;
        if !v.is_null() {
            out.push(v);
        }
    }
    Ok(out)
}

/// Reads a single-document file (a config) as a JSON value; an empty file is `{}`.
pub fn read_value(path: &Path) -> Result<Value, LoadError> {
    let file = path.display().to_string();
    let mut docs = documents(&read_text(path)?, &file)?;
    match docs.len() {
        0 => Ok(Value::Object(Default::default())),
        1 => Ok(docs.remove(0)),
        n => Err(LoadError::Syntax {
            file,
            message: format!("expected one document, found {n}"),
        }),
    }
}

fn collect(
    doc: Value,
    file: &str,
    at: &str,
    default_kind: Option<Kind>,
    out: &mut Objects,
) -> Result<(), LoadError> {
    let kind = doc.get("kind").and_then(Value::as_str).map(str::to_string);
    match kind.as_deref() {
        Some(k) if k == "List" || (k.ends_with("List") && doc.get("items").is_some()) => {
            let item_kind = Kind::from_name(k.trim_end_matches("List")).or(default_kind);
            let items = match doc {
                Value::Object(mut map) => map.remove("items").unwrap_or(Value::Null),
                _ => Value::Null,
            };
            let items = match items {
                Value::Array(items) => items,
                Value::Null => Vec::new(),
                other => {
                    return Err(object_error(file, at, "items", "must be a list", &other));
                }
            };
            for (i, item) in items.into_iter().enumerate() {
                collect(item, file, &format!("{at} items[{i}]"), item_kind, out)?;
            }
            Ok(())
        }
        Some(k) => match Kind::from_name(k) {
            Some(kind) => {
                out.push(convert(doc, kind, file, at)?);
                Ok(())
            }
            None => {
                out.skipped.push(format!("{k} {}", display_name(&doc)));
                Ok(())
            }
        },
        None => match default_kind {
            Some(kind) => {
                out.push(convert(doc, kind, file, at)?);
                Ok(())
            }
            None => Err(object_error(
                file,
                at,
                "kind",
                "missing; expected Node, Pod, ResourceQuota or List",
                &doc,
            )),
        },
    }
}

fn display_name(doc: &Value) -> String {
    let meta = doc.get("metadata");
    let name = meta
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("(unnamed)");
    match meta
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str)
    {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_string(),
    }
}

/// The object's name in the guest's style (`node/n1`, `pod/default/p1`), or `at` when the
/// object has no name.
fn object_name(doc: &Value, kind: Kind, at: &str) -> String {
    let meta = doc.get("metadata");
    let Some(name) = meta.and_then(|m| m.get("name")).and_then(Value::as_str) else {
        return format!("{at} ({})", kind.name());
    };
    let ns = meta
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or(k8s::DEFAULT_NAMESPACE);
    match kind {
        Kind::Node => format!("node/{name}"),
        Kind::Pod => format!("pod/{ns}/{name}"),
        Kind::ResourceQuota => format!("quota/{ns}/{name}"),
    }
}

fn object_error(file: &str, object: &str, field: &str, message: &str, value: &Value) -> LoadError {
    let mut shown = value.to_string();
    if shown.len() > 80 {
        let mut end = 80;
        while !shown.is_char_boundary(end) {
            end -= 1;
        }
        shown.truncate(end);
        shown.push_str("...");
    }
    LoadError::Object {
        file: file.to_string(),
        object: object.to_string(),
        field: field.to_string(),
        message: format!("{message} (found {shown})"),
    }
}

/// Reads one object as `kind`: fills in a missing `apiVersion` (`v1`) and `kind`, refuses a
/// different kind, checks the name, and converts. `at` locates the object in errors when it
/// has no name.
pub fn convert(mut doc: Value, kind: Kind, file: &str, at: &str) -> Result<Object, LoadError> {
    let object = object_name(&doc, kind, at);
    let Value::Object(map) = &mut doc else {
        return Err(object_error(
            file,
            at,
            "(object)",
            "must be a mapping",
            &doc,
        ));
    };
    match map.get("kind") {
        None => {
            map.insert("kind".into(), Value::String(kind.name().into()));
        }
        Some(Value::String(k)) if k == kind.name() => {}
        Some(other) => {
            let message = format!("expected {}", kind.name());
            return Err(object_error(file, &object, "kind", &message, other));
        }
    }
    map.entry("apiVersion")
        .or_insert_with(|| Value::String("v1".into()));
    let named = doc
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty());
    if !named {
        let name = doc
            .pointer("/metadata/name")
            .cloned()
            .unwrap_or(Value::Null);
        return Err(object_error(
            file,
            &object,
            "metadata.name",
            "missing or empty",
            &name,
        ));
    }
    let converted = match kind {
        Kind::Node => Object::Node(k8s::node(&typed::<Node>(doc, file, &object)?)),
        Kind::Pod => Object::Pod(k8s::pod(&typed::<Pod>(doc, file, &object)?)),
        Kind::ResourceQuota => {
            Object::Quota(k8s::quota(&typed::<ResourceQuota>(doc, file, &object)?))
        }
    };
    Ok(converted)
}

fn typed<T: DeserializeOwned>(doc: Value, file: &str, object: &str) -> Result<T, LoadError> {
    serde_path_to_error::deserialize(doc).map_err(|e| LoadError::Object {
        file: file.to_string(),
        object: object.to_string(),
        field: e.path().to_string(),
        message: e.inner().to_string(),
    })
}
