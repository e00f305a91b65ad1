//! The mutating admission webhook: `admission.k8s.io/v1` `AdmissionReview` in, the guest's
//! `admit` decides, its mutations go back as a JSON patch (RFC 6902) against the pod as sent.

use base64::Engine as _;
use hamr_guest::api::{self, ContainerRef, Mutation};
use k8s_openapi::api::core::v1::Pod;
use serde::Serialize;
use serde_json::{Value, json};

use super::wire::{WireError, fold, object};

/// The part of an `AdmissionReview` request we read.
#[derive(Clone, Debug)]
pub struct Review {
    /// `apiVersion` as sent (echoed back).
    pub api_version: String,
    pub uid: String,
    pub operation: String,
    /// `request.namespace`: a pod being created often has no namespace of its own yet.
    pub namespace: Option<String>,
    pub pod: Option<Pod>,
}

impl Review {
    pub fn parse(body: &[u8]) -> Result<Review, WireError> {
        let top: Value =
            serde_json::from_slice(body).map_err(|e| WireError::Syntax(e.to_string()))?;
        let api_version = top
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("admission.k8s.io/v1")
            .to_string();
        let map = fold(body)?;
        let request = match map.get("request") {
            Some(Value::Object(r)) => r,
            Some(_) => {
                return Err(WireError::Field {
                    field: "request".into(),
                    message: "expected an object".into(),
                });
            }
            None => return Err(WireError::Missing("request")),
        };
        let uid = request
            .get("uid")
            .and_then(Value::as_str)
            .filter(|u| !u.is_empty())
            .ok_or(WireError::Missing("request.uid"))?
            .to_string();
        let operation = request
            .get("operation")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let namespace = request
            .get("namespace")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .map(str::to_string);
        let pod = match request.get("object") {
            None | Some(Value::Null) => None,
            Some(v) => Some(object::<Pod>(v, "request.object")?),
        };
        Ok(Review {
            api_version,
            uid,
            operation,
            namespace,
            pod,
        })
    }
}

/// `AdmissionReview` with its `response`.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ReviewResponse {
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    pub kind: &'static str,
    pub response: Response,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Response {
    pub uid: String,
    pub allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    #[serde(rename = "patchType", skip_serializing_if = "Option::is_none")]
    pub patch_type: Option<&'static str>,
    /// Base64 of the JSON patch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch: Option<String>,
}

/// `metav1.Status`, as much as a denial needs.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Status {
    pub code: u16,
    pub message: String,
}

impl ReviewResponse {
    pub fn allow(api_version: &str, uid: &str, patch: &[Value]) -> ReviewResponse {
        let (patch_type, patch) = if patch.is_empty() {
            (None, None)
        } else {
            let text = serde_json::to_vec(patch).unwrap_or_default();
            (
                Some("JSONPatch"),
                Some(base64::engine::general_purpose::STANDARD.encode(text)),
            )
        };
        ReviewResponse {
            api_version: api_version.to_string(),
            kind: "AdmissionReview",
            response: Response {
                uid: uid.to_string(),
                allowed: true,
                status: None,
                patch_type,
                patch,
            },
        }
    }

    pub fn deny(api_version: &str, uid: &str, code: u16, message: String) -> ReviewResponse {
        ReviewResponse {
            api_version: api_version.to_string(),
            kind: "AdmissionReview",
            response: Response {
                uid: uid.to_string(),
                allowed: false,
                status: Some(Status { code, message }),
                patch_type: None,
                patch: None,
            },
        }
    }
}

/// Escapes one JSON-pointer segment (`nvidia.com/gpu` -> `nvidia.com~1gpu`).
fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

fn container_path(c: ContainerRef) -> String {
    let list = if c.init {
        "initContainers"
    } else {
        "containers"
    };
    format!("/spec/{list}/{}", c.index)
}

/// The JSON patch that applies `mutations` to `pod`. Parents that do not exist yet
/// (`resources`, `resources.limits`, `env`) are created by the first operation that needs them;
/// a mutation naming a container the pod does not have is dropped (the guest never emits one).
pub fn json_patch(pod: &Pod, mutations: &[Mutation]) -> Vec<Value> {
    let mut pod = pod.clone();
    let mut ops = Vec::new();
    for m in mutations {
        match m {
            Mutation::SetSchedulerName(name) => {
                ops.push(json!({"op": "add", "path": "/spec/schedulerName", "value": name}));
                pod.spec.get_or_insert_default().scheduler_name = Some(name.clone());
            }
            Mutation::SetRuntimeClassName(name) => {
                ops.push(json!({"op": "add", "path": "/spec/runtimeClassName", "value": name}));
                pod.spec.get_or_insert_default().runtime_class_name = Some(name.clone());
            }
            Mutation::SetLimit(l) => {
                if let Some(op) = set_resource(&mut pod, l, "limits") {
                    ops.push(op);
                }
            }
            Mutation::SetRequest(r) => {
                if let Some(op) = set_resource(&mut pod, r, "requests") {
                    ops.push(op);
                }
            }
            Mutation::SetAnnotation((key, value)) => {
                let annotations = &mut pod.metadata.annotations;
                match annotations {
                    None => {
                        ops.push(json!({"op": "add", "path": "/metadata/annotations",
                            "value": {key: value}}));
                        *annotations = Some([(key.clone(), value.clone())].into());
                    }
                    Some(map) => {
                        ops.push(json!({"op": "add",
                            "path": format!("/metadata/annotations/{}", escape(key)),
                            "value": value}));
                        map.insert(key.clone(), value.clone());
                    }
                }
            }
            Mutation::AddEnv(e) => {
                let Some(c) = container(&mut pod, e.container) else {
                    continue;
                };
                let base = container_path(e.container);
                let var = k8s_openapi::api::core::v1::EnvVar {
                    name: e.name.clone(),
                    value: Some(e.value.clone()),
                    ..Default::default()
                };
                match c.env.as_mut() {
                    None => {
                        ops.push(json!({"op": "add", "path": format!("{base}/env"),
                            "value": [{"name": &e.name, "value": &e.value}]}));
                        c.env = Some(vec![var]);
                    }
                    Some(env) => {
                        ops.push(json!({"op": "add", "path": format!("{base}/env/-"),
                            "value": {"name": &e.name, "value": &e.value}}));
                        env.push(var);
                    }
                }
            }
        }
    }
    ops
}

/// The operation that sets `resources.<list>.<name>` (list = `limits` or `requests`) on a
/// container, creating `resources` or the list when absent; `None` for a missing container.
fn set_resource(pod: &mut Pod, l: &api::ContainerLimit, list: &str) -> Option<Value> {
    let c = container(pod, l.container)?;
    let base = container_path(l.container);
    let quantity = k8s_openapi::apimachinery::pkg::api::resource::Quantity(l.value.clone());
    if c.resources.is_none() {
        let mut r = k8s_openapi::api::core::v1::ResourceRequirements::default();
        let map = Some([(l.name.clone(), quantity)].into());
        if list == "limits" {
            r.limits = map;
        } else {
            r.requests = map;
        }
        c.resources = Some(r);
        return Some(json!({"op": "add", "path": format!("{base}/resources"),
            "value": {list: {&l.name: &l.value}}}));
    }
    let resources = c.resources.get_or_insert_default();
    let slot = if list == "limits" {
        &mut resources.limits
    } else {
        &mut resources.requests
    };
    let op = match slot {
        Some(map) => {
            map.insert(l.name.clone(), quantity);
            json!({"op": "add", "path": format!("{base}/resources/{list}/{}", escape(&l.name)),
                "value": &l.value})
        }
        None => {
            *slot = Some([(l.name.clone(), quantity)].into());
            json!({"op": "add", "path": format!("{base}/resources/{list}"),
                "value": {&l.name: &l.value}})
        }
    };
    Some(op)
}

fn container(pod: &mut Pod, c: ContainerRef) -> Option<&mut k8s_openapi::api::core::v1::Container> {
    let spec = pod.spec.as_mut()?;
    let list = if c.init {
        spec.init_containers.as_mut()?
    } else {
        &mut spec.containers
    };
    list.get_mut(c.index as usize)
}

/// The mutations a JSON patch of [`json_patch`]'s making carries, read back (the HTTP
/// conformance engine compares them with the other engines' mutations).
pub fn mutations_of(patch: &[Value]) -> Result<Vec<Mutation>, String> {
    let mut out = Vec::new();
    for op in patch {
        let path = op.get("path").and_then(Value::as_str).unwrap_or("");
        let value = op.get("value").cloned().unwrap_or(Value::Null);
        let parts: Vec<String> = path
            .split('/')
            .skip(1)
            .map(|s| s.replace("~1", "/").replace("~0", "~"))
            .collect();
        let text = |v: &Value| v.as_str().map(str::to_string).ok_or(format!("{op}"));
        match parts
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .as_slice()
        {
            ["spec", "schedulerName"] => out.push(Mutation::SetSchedulerName(text(&value)?)),
            ["spec", "runtimeClassName"] => out.push(Mutation::SetRuntimeClassName(text(&value)?)),
            ["metadata", "annotations"] => {
                for (k, v) in value.as_object().into_iter().flatten() {
                    out.push(Mutation::SetAnnotation((k.clone(), text(v)?)));
                }
            }
            ["metadata", "annotations", key] => {
                out.push(Mutation::SetAnnotation((key.to_string(), text(&value)?)));
            }
            ["spec", list, index, rest @ ..] => {
                let init = *list == "initContainers";
                let index: u32 = index.parse().map_err(|_| format!("{op}"))?;
                let container = ContainerRef { init, index };
                let resource = |list: &str, name: &str, v: &Value| -> Result<Mutation, String> {
                    let l = api::ContainerLimit {
                        container,
                        name: name.to_string(),
                        value: text(v)?,
                    };
                    Ok(if list == "requests" {
                        Mutation::SetRequest(l)
                    } else {
                        Mutation::SetLimit(l)
                    })
                };
                let env = |v: &Value| -> Result<Mutation, String> {
                    Ok(Mutation::AddEnv(api::ContainerEnv {
                        container,
                        name: v.get("name").map(text).ok_or(format!("{op}"))??,
                        value: v.get("value").map(text).ok_or(format!("{op}"))??,
                    }))
                };
                match rest {
                    ["resources"] => {
                        for list in ["limits", "requests"] {
                            let entries = value.get(list).and_then(Value::as_object);
                            for (k, v) in entries.into_iter().flatten() {
                                out.push(resource(list, k, v)?);
                            }
                        }
                    }
                    ["resources", list] => {
                        for (k, v) in value.as_object().into_iter().flatten() {
                            out.push(resource(list, k, v)?);
                        }
                    }
                    ["resources", list, name] => out.push(resource(list, name, &value)?),
                    ["env"] => {
                        for v in value.as_array().into_iter().flatten() {
                            out.push(env(v)?);
                        }
                    }
                    ["env", "-"] => out.push(env(&value)?),
                    _ => return Err(format!("unexpected patch operation {op}")),
                }
            }
            _ => return Err(format!("unexpected patch operation {op}")),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::{ContainerEnv, ContainerLimit};

    fn pod(json: Value) -> Pod {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn patch_creates_missing_parents_then_appends() {
        let p = pod(json!({"spec": {"containers": [
            {"name": "a"},
            {"name": "b", "resources": {"limits": {"nvidia.com/gpu": "1"}}, "env": [{"name": "X"}]}
        ]}}));
        let c0 = ContainerRef {
            init: false,
            index: 0,
        };
        let c1 = ContainerRef {
            init: false,
            index: 1,
        };
        let muts = vec![
            Mutation::SetSchedulerName("hamr-scheduler".into()),
            Mutation::SetLimit(ContainerLimit {
                container: c0,
                name: "nvidia.com/gpu".into(),
                value: "1".into(),
            }),
            Mutation::SetLimit(ContainerLimit {
                container: c0,
                name: "nvidia.com/gpumem".into(),
                value: "1000".into(),
            }),
            Mutation::SetLimit(ContainerLimit {
                container: c1,
                name: "nvidia.com/gpucores".into(),
                value: "30".into(),
            }),
            Mutation::AddEnv(ContainerEnv {
                container: c0,
                name: "A".into(),
                value: "1".into(),
            }),
            Mutation::AddEnv(ContainerEnv {
                container: c1,
                name: "B".into(),
                value: "2".into(),
            }),
            // No such container: dropped.
            Mutation::AddEnv(ContainerEnv {
                container: ContainerRef {
                    init: true,
                    index: 0,
                },
                name: "C".into(),
                value: "3".into(),
            }),
        ];
        let patch = json_patch(&p, &muts);
        assert_eq!(
            Value::Array(patch.clone()),
            json!([
                {"op": "add", "path": "/spec/schedulerName", "value": "hamr-scheduler"},
                {"op": "add", "path": "/spec/containers/0/resources", "value": {"limits": {"nvidia.com/gpu": "1"}}},
                {"op": "add", "path": "/spec/containers/0/resources/limits/nvidia.com~1gpumem", "value": "1000"},
                {"op": "add", "path": "/spec/containers/1/resources/limits/nvidia.com~1gpucores", "value": "30"},
                {"op": "add", "path": "/spec/containers/0/env", "value": [{"name": "A", "value": "1"}]},
                {"op": "add", "path": "/spec/containers/1/env/-", "value": {"name": "B", "value": "2"}},
            ])
        );
        // Read back, the patch gives the mutations that were applied.
        assert_eq!(mutations_of(&patch).unwrap(), muts[..6].to_vec());
    }

    #[test]
    fn review_parse_names_the_field() {
        let e = Review::parse(br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#)
            .unwrap_err();
        assert_eq!(e.to_string(), "field request is missing");
        let e = Review::parse(br#"{"request":{"uid":"1","object":{"spec":{"containers":3}}}}"#)
            .unwrap_err();
        assert!(
            e.to_string().contains("request.object.spec.containers"),
            "{e}"
        );
        let r = Review::parse(
            br#"{"request":{"uid":"1","operation":"CREATE","namespace":"ns","object":{"metadata":{"name":"p"}}}}"#,
        )
        .unwrap();
        assert_eq!(r.namespace.as_deref(), Some("ns"));
        assert_eq!(r.operation, "CREATE");
    }

    #[test]
    fn responses_have_the_v1_shape() {
        let allow = ReviewResponse::allow("admission.k8s.io/v1", "u1", &[]);
        assert_eq!(
            serde_json::to_value(&allow).unwrap(),
            json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                   "response": {"uid": "u1", "allowed": true}})
        );
        let patch = vec![json!({"op": "add", "path": "/spec/schedulerName", "value": "s"})];
        let allow = ReviewResponse::allow("admission.k8s.io/v1", "u1", &patch);
        let encoded = allow.response.patch.clone().unwrap();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&decoded).unwrap(),
            Value::Array(patch)
        );
        assert_eq!(allow.response.patch_type, Some("JSONPatch"));
        let deny = ReviewResponse::deny("admission.k8s.io/v1", "u2", 403, "no".into());
        assert_eq!(
            serde_json::to_value(&deny).unwrap(),
            json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                   "response": {"uid": "u2", "allowed": false, "status": {"code": 403, "message": "no"}}})
        );
    }
}
