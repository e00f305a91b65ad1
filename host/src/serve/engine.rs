//! The `http` engine: a real `hamr serve` on a loopback port, with its caches fed from the
//! caller instead of an API server and its writes kept in memory. `filter` and `admit` go over
//! HTTP as kube-scheduler and the API server would send them (`ExtenderArgs`,
//! `AdmissionReview`); the answers are read back into the contract's records from the wire
//! (`NodeNames`, `FailedNodes`, the pod patch, the JSON patch), so a scenario observes exactly
//! what a cluster would. The other calls go to the server's engine directly, as its caches do.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use hamr_guest::api::{self, Scheduler};
use serde_json::{Value, json};

use super::backend::{Backend, MemoryBackend};
use super::{Server, Settings, http};
use crate::engine::{Engine, EngineFault};
use crate::k8s;

/// A server on loopback and the runtime it runs on.
pub struct HttpEngine {
    server: Arc<Server>,
    addr: SocketAddr,
    _runtime: tokio::runtime::Runtime,
}

fn fault(e: impl std::fmt::Display) -> EngineFault {
    EngineFault(format!("http engine: {e}"))
}

/// One blocking HTTP/1.1 POST on a fresh connection; returns the status and the body.
///
/// The body is written from a second thread while this one reads, so that an answer the
/// server sends before reading the whole body (a body over its limit) is read before the
/// reset that its close causes; a reset after some of the answer ends the answer.
pub fn post(addr: SocketAddr, path: &str, body: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    let mut writer = stream.try_clone()?;
    let sent = std::thread::spawn(move || writer.write_all(&request));
    let mut raw = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset && !raw.is_empty() => break,
            Err(e) => return Err(e),
        }
    }
    // A body the server stopped reading fails to send; the answer says why.
    let sent = sent
        .join()
        .map_err(|_| std::io::Error::other("the writer thread panicked"))?;
    if raw.is_empty() {
        sent?;
    }
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("response without a header end"))?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line in {head:?}")))?;
    let mut body = raw[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    Ok((status, body))
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&data[..line_end]).trim(), 16)
            .unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = line_end + 2;
        let end = (start + size).min(data.len());
        out.extend_from_slice(&data[start..end]);
        data = &data[(end + 2).min(data.len())..];
    }
    out
}

impl HttpEngine {
    /// Starts a server around `engine` on an ephemeral loopback port.
    pub fn start(engine: Engine) -> Result<HttpEngine, EngineFault> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(fault)?;
        let server = Arc::new(Server::new(
            engine,
            Backend::Memory(MemoryBackend::default()),
            Settings::default(),
            true,
        ));
        server.set_synced();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .map_err(fault)?;
        let addr = listener.local_addr().map_err(fault)?;
        let router = http::router(server.clone());
        runtime.spawn(async move {
            if let Err(e) = http::serve(listener, router, None).await {
                tracing::error!(error = %e, "http engine listener");
            }
        });
        Ok(HttpEngine {
            server,
            addr,
            _runtime: runtime,
        })
    }

    pub fn server(&self) -> &Arc<Server> {
        &self.server
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn memory(&self) -> &MemoryBackend {
        match &self.server.backend {
            Backend::Memory(m) => m,
            Backend::Kube(_) => unreachable!("the http engine always writes to memory"),
        }
    }

    fn call(&self, path: &str, body: &Value) -> Result<Value, EngineFault> {
        let bytes = serde_json::to_vec(body).map_err(fault)?;
        let (status, body) = post(self.addr, path, &bytes).map_err(fault)?;
        if status != 200 {
            return Err(fault(format!(
                "POST {path} answered {status}: {}",
                String::from_utf8_lossy(&body).trim()
            )));
        }
        serde_json::from_slice(&body).map_err(fault)
    }
}

impl Scheduler for HttpEngine {
    type Fault = EngineFault;

    fn configure(&mut self, config: &str) -> Result<Result<(), api::Error>, EngineFault> {
        self.server.with_engine_now(|e| e.configure(config))
    }

    fn apply(&mut self, deltas: &[api::Delta]) -> Result<Vec<api::DeltaError>, EngineFault> {
        let memory = self.memory();
        for d in deltas {
            match d {
                api::Delta::PodUpsert(p) => memory.put(p),
                api::Delta::PodRemove(uid) => memory.remove(uid),
                api::Delta::NodeUpsert(n) => memory.put_node(n),
                api::Delta::NodeRemove(name) => memory.remove_node(name),
                _ => {}
            }
        }
        self.server.with_engine_now(|e| e.apply(deltas))
    }

    fn clear(&mut self) -> Result<(), EngineFault> {
        self.memory().clear();
        self.server.with_engine_now(|e| e.clear())
    }

    fn filter(
        &mut self,
        pod: &api::Pod,
        candidates: &[String],
        now: i64,
    ) -> Result<Result<api::FilterOutcome, api::Error>, EngineFault> {
        self.server.clock.set(now);
        let before = self.memory().patches().len();
        let answer = self.call(
            "/filter",
            &json!({"Pod": k8s::to_pod(pod), "NodeNames": candidates}),
        )?;
        let error = answer.get("Error").and_then(Value::as_str).unwrap_or("");
        if !error.is_empty() {
            return Ok(Err(api::Error::Other(error.to_string())));
        }
        let reasons = |key: &str| -> std::collections::BTreeMap<String, String> {
            answer
                .get(key)
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                        .collect()
                })
                .unwrap_or_default()
        };
        let failed = reasons("FailedNodes");
        let unresolvable = reasons("FailedAndUnresolvableNodes");
        let chosen: Vec<String> = answer
            .get("NodeNames")
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_default();
        let verdict = |node: &String| {
            let (code, reason) = if let Some(r) = unresolvable.get(node) {
                (api::Code::UnschedulableAndUnresolvable, r.clone())
            } else if let Some(r) = failed.get(node) {
                (api::Code::Unschedulable, r.clone())
            } else {
                (api::Code::Success, String::new())
            };
            api::NodeVerdict {
                node: node.clone(),
                code,
                reason,
                counts: Vec::new(),
                score: 0,
            }
        };
        // The extender's answer names the chosen node (every candidate for a pod without a
        // device request) and the failed ones; a candidate in neither was not evaluated.
        let verdicts: Vec<(usize, api::NodeVerdict)> = candidates
            .iter()
            .enumerate()
            .filter(|(_, n)| {
                chosen.contains(n) || failed.contains_key(*n) || unresolvable.contains_key(*n)
            })
            .map(|(i, n)| (i, verdict(n)))
            .collect();
        // The decision is what the server wrote onto the pod.
        let patches = self.memory().patches();
        let decision = patches.get(before..).and_then(|new| {
            new.iter()
                .rev()
                .find(|p| p.0 == pod.namespace && p.1 == pod.name)
                .map(|(_, _, annotations, labels)| api::Decision {
                    node: chosen.first().cloned().unwrap_or_default(),
                    annotations: annotations.clone(),
                    labels: labels.clone(),
                    grants: Vec::new(),
                })
        });
        let managed = decision.is_some() || !failed.is_empty() || !unresolvable.is_empty();
        let mut outcome = api::FilterOutcome::new(managed, decision);
        for (candidate, v) in verdicts {
            outcome.push_verdict(candidate, v);
        }
        Ok(Ok(outcome))
    }

    fn score(
        &mut self,
        pod: &api::Pod,
        nodes: &[String],
        now: i64,
    ) -> Result<Result<Vec<api::NodeScore>, api::Error>, EngineFault> {
        self.server.with_engine_now(|e| e.score(pod, nodes, now))
    }

    fn reserve(
        &mut self,
        pod: &api::Pod,
        node: &str,
        now: i64,
    ) -> Result<Result<api::Reservation, api::Error>, EngineFault> {
        self.server.with_engine_now(|e| e.reserve(pod, node, now))
    }

    fn unreserve(&mut self, pod_uid: &str) -> Result<(), EngineFault> {
        self.server.with_engine_now(|e| e.unreserve(pod_uid))
    }

    fn admit(&mut self, pod: &api::Pod) -> Result<Result<api::Admission, api::Error>, EngineFault> {
        let review = json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": format!("review-{}", pod.uid),
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "operation": "CREATE",
                "namespace": pod.namespace,
                "object": k8s::to_pod(pod),
            }
        });
        let answer = self.call("/webhook", &review)?;
        let response = answer
            .get("response")
            .ok_or_else(|| fault("AdmissionReview without a response"))?;
        let allowed = response
            .get("allowed")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if !allowed {
            let message = response
                .pointer("/status/message")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            return Ok(Ok(api::Admission {
                allowed: false,
                message,
                mutations: Vec::new(),
                managed: true,
            }));
        }
        let mutations = match response.get("patch").and_then(Value::as_str) {
            None => Vec::new(),
            Some(b64) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(fault)?;
                let ops: Vec<Value> = serde_json::from_slice(&bytes).map_err(fault)?;
                super::webhook::mutations_of(&ops).map_err(fault)?
            }
        };
        Ok(Ok(api::Admission {
            allowed: true,
            message: String::new(),
            managed: !mutations.is_empty(),
            mutations,
        }))
    }

    fn managed_resources(&mut self) -> Result<Vec<String>, EngineFault> {
        self.server.with_engine_now(|e| e.managed_resources())
    }

    fn explain(
        &mut self,
        pod: &api::Pod,
        nodes: &[String],
        now: i64,
    ) -> Result<Result<Vec<api::NodeExplanation>, api::Error>, EngineFault> {
        self.server.with_engine_now(|e| e.explain(pod, nodes, now))
    }

    fn usage(&mut self, nodes: &[String], now: i64) -> Result<Vec<api::NodeUsage>, EngineFault> {
        self.server.with_engine_now(|e| e.usage(nodes, now))
    }

    fn quotas(&mut self) -> Result<Vec<api::QuotaUsage>, EngineFault> {
        self.server.with_engine_now(|e| e.quotas())
    }

    fn handshakes(&mut self, now: i64) -> Result<Vec<api::NodeHandshake>, EngineFault> {
        self.server.with_engine_now(|e| e.handshakes(now))
    }
}
