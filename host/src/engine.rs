//! The engines one command can run: the native library or the guest component, behind one
//! type so that the CLI and the conformance runner are written once against
//! [`Scheduler`].

use std::path::PathBuf;

use hamr_guest::api::{self, Scheduler};

use crate::runtime::ComponentScheduler;
use crate::serve::engine::HttpEngine;
use crate::wasm_extension::WasmExtensionScheduler;

/// Which engine to start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EngineKind {
    /// `hamr_guest::Engine`, linked into the binary.
    Native,
    /// The WebAssembly component in wasmtime: the one embedded in the binary, or a file.
    Component(Option<PathBuf>),
    /// A `hamr serve` on loopback around the given engine, driven over HTTP.
    Http(Box<EngineKind>),
    /// The kube-scheduler-wasm-extension core module, embedded in the binary, under hamr's
    /// test host of that ABI.
    WasmExtension,
}

impl EngineKind {
    /// `native` or `component`, as the CLI spells it.
    pub fn label(&self) -> &'static str {
        match self {
            EngineKind::Native => "native",
            EngineKind::Component(_) => "component",
            EngineKind::Http(_) => "http",
            EngineKind::WasmExtension => "wasm-extension",
        }
    }

    /// Why this engine cannot run `scenario`, if it cannot: the kube-scheduler-wasm-extension
    /// host shows its guest nodes only, so filter-time quota checks are out of its reach
    /// (admission, which checks quotas too, runs in the webhook).
    pub fn cannot_show(
        &self,
        scenario: &crate::conformance::scenario::Scenario,
    ) -> Option<&'static str> {
        match self {
            EngineKind::WasmExtension if !scenario.quotas.is_empty() => {
                Some("ResourceQuotas are not visible to kube-scheduler-wasm-extension guests")
            }
            _ => None,
        }
    }

    /// A fresh engine with an empty ledger and the default configuration.
    pub fn start(&self) -> Result<Engine, EngineFault> {
        match self {
            EngineKind::Native => Ok(Engine::Native(Box::default())),
            EngineKind::Component(path) => ComponentScheduler::load(path.as_deref())
                .map(|c| Engine::Component(Box::new(c)))
                .map_err(|e| EngineFault(format!("cannot load the component: {e:#}"))),
            EngineKind::Http(inner) => {
                let inner = inner.start()?;
                HttpEngine::start(inner).map(|h| Engine::Http(Box::new(h)))
            }
            EngineKind::WasmExtension => WasmExtensionScheduler::load()
                .map(|w| Engine::WasmExtension(Box::new(w)))
                .map_err(|e| EngineFault(format!("cannot load the wasm-extension module: {e}"))),
        }
    }
}

/// A fault of an engine (a trap in the component, or a component that could not load): a bug
/// or a broken installation, never a verdict about the input.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EngineFault(pub String);

impl EngineFault {
    fn from_display(fault: impl std::fmt::Display) -> EngineFault {
        EngineFault(fault.to_string())
    }
}

/// One started engine.
pub enum Engine {
    Native(Box<hamr_guest::Engine>),
    Component(Box<ComponentScheduler>),
    Http(Box<HttpEngine>),
    WasmExtension(Box<WasmExtensionScheduler>),
}

/// Calls the same [`Scheduler`] method on whichever engine this is.
macro_rules! dispatch {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {
        match $self {
            Engine::Native(e) => Scheduler::$method(e.as_mut(), $($arg),*).map_err(EngineFault::from_display),
            Engine::Component(c) => {
                Scheduler::$method(c.as_mut(), $($arg),*).map_err(EngineFault::from_display)
            }
            Engine::Http(h) => Scheduler::$method(h.as_mut(), $($arg),*),
            Engine::WasmExtension(w) => {
                Scheduler::$method(w.as_mut(), $($arg),*).map_err(EngineFault::from_display)
            }
        }
    };
}

impl Scheduler for Engine {
    type Fault = EngineFault;

    fn configure(&mut self, config: &str) -> Result<Result<(), api::Error>, EngineFault> {
        dispatch!(self.configure(config))
    }
    fn apply(&mut self, deltas: &[api::Delta]) -> Result<Vec<api::DeltaError>, EngineFault> {
        dispatch!(self.apply(deltas))
    }
    fn clear(&mut self) -> Result<(), EngineFault> {
        dispatch!(self.clear())
    }
    fn filter(
        &mut self,
        pod: &api::Pod,
        candidates: &[String],
        now: i64,
    ) -> Result<Result<api::FilterOutcome, api::Error>, EngineFault> {
        dispatch!(self.filter(pod, candidates, now))
    }
    fn filter_lines(
        &mut self,
        pod: &api::Pod,
        candidates: &str,
        now: i64,
    ) -> Result<Result<api::FilterOutcome, api::Error>, EngineFault> {
        dispatch!(self.filter_lines(pod, candidates, now))
    }
    fn score(
        &mut self,
        pod: &api::Pod,
        nodes: &[String],
        now: i64,
    ) -> Result<Result<Vec<api::NodeScore>, api::Error>, EngineFault> {
        dispatch!(self.score(pod, nodes, now))
    }
    fn reserve(
        &mut self,
        pod: &api::Pod,
        node: &str,
        now: i64,
    ) -> Result<Result<api::Reservation, api::Error>, EngineFault> {
        dispatch!(self.reserve(pod, node, now))
    }
    fn unreserve(&mut self, pod_uid: &str) -> Result<(), EngineFault> {
        dispatch!(self.unreserve(pod_uid))
    }
    fn admit(&mut self, pod: &api::Pod) -> Result<Result<api::Admission, api::Error>, EngineFault> {
        dispatch!(self.admit(pod))
    }
    fn managed_resources(&mut self) -> Result<Vec<String>, EngineFault> {
        dispatch!(self.managed_resources())
    }
    fn explain(
        &mut self,
        pod: &api::Pod,
        nodes: &[String],
        now: i64,
    ) -> Result<Result<Vec<api::NodeExplanation>, api::Error>, EngineFault> {
        dispatch!(self.explain(pod, nodes, now))
    }
    fn usage(&mut self, nodes: &[String], now: i64) -> Result<Vec<api::NodeUsage>, EngineFault> {
        dispatch!(self.usage(nodes, now))
    }
    fn quotas(&mut self) -> Result<Vec<api::QuotaUsage>, EngineFault> {
        dispatch!(self.quotas())
    }
    fn handshakes(&mut self, now: i64) -> Result<Vec<api::NodeHandshake>, EngineFault> {
        dispatch!(self.handshakes(now))
    }
}
