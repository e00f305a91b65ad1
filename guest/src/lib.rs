//! `hamr-guest`: hamr's scheduling logic for every accelerator, as a plain library.
//!
//! The same code is compiled three ways: natively (tested here, and linked by the host as the
//! `native` engine), as the WebAssembly component of `wit/scheduler.wit` (`wasm32-wasip2`, see
//! `component.rs`), and later as the kube-scheduler-wasm-extension core module.
//!
//! Start reading at [`Engine`], the one type that implements the contract ([`api::Scheduler`]);
//! then [`ledger`] (the state fed by deltas), [`schedule`] (filter, score, reserve), and
//! [`vendor::nvidia`] (HAMi's NVIDIA protocol). The guest does no I/O and reads no clock.
// Only the generated component bindings (wit-bindgen's exports), the WebAssembly `memcmp`
// (`memcmp.rs`) and the WebAssembly allocator (`pool.rs`) need `unsafe`; everything else the
// project writes is safe code.
#![cfg_attr(not(target_arch = "wasm32"), forbid(unsafe_code))]
#![cfg_attr(target_arch = "wasm32", deny(unsafe_code))]

pub mod admission;
pub mod api;
pub mod completion;
pub mod config;
pub mod convert;
pub mod device;
pub mod handshake;
pub mod ledger;
pub mod order;
pub mod policy;
pub mod quantity;
pub mod reason;
pub mod schedule;
pub mod summary;
pub mod usage_annotation;
pub mod vendor;

#[cfg(test)]
mod testing;

// Only the component build (wasm32-wasip2) carries the WIT exports; the core module of
// kube-scheduler-wasm-extension (wasm32-wasip1, `wasm-extension/`) links this library without them.
#[cfg(all(target_arch = "wasm32", target_env = "p2"))]
#[allow(unsafe_code)] // wit-bindgen's generated export glue; the module's own code is safe
mod component;

// In both WebAssembly builds, a word-at-a-time `memcmp` in place of wasi-libc's byte loop.
pub mod memcmp;

// In both WebAssembly builds, small blocks by size class in place of wasi-libc's `malloc`.
pub mod pool;

use std::convert::Infallible;

use api::{
    Admission, Delta, DeltaError, Error, FilterOutcome, NodeExplanation, NodeHandshake, NodeScore,
    NodeUsage, Pod, QuotaUsage, Reservation,
};
use config::Config;
use ledger::Ledger;

/// The names in WIT's `node-names`: one per line, empty lines ignored.
///
/// ```
/// assert_eq!(hamr_guest::node_names("a\n\nb\n"), ["a", "b"]);
/// assert!(hamr_guest::node_names("").is_empty());
/// ```
pub fn node_names(text: &str) -> Vec<&str> {
    text.split('\n').filter(|n| !n.is_empty()).collect()
}

/// Refuses a candidate name holding a line break: no Kubernetes node is named so, and WIT's
/// `node-names` could not carry it. Every engine gives this same error.
pub fn check_node_names<N: AsRef<str>>(names: &[N]) -> Result<(), Error> {
    match names.iter().find(|n| n.as_ref().contains('\n')) {
        Some(bad) => Err(Error::InvalidInput(api::Invalid::new(
            "request",
            "candidates",
            bad.as_ref(),
            "a node name cannot hold a line break",
        ))),
        None => Ok(()),
    }
}

/// Joins names into WIT's `node-names`, the inverse of [`node_names`]; a name with a line
/// break is refused ([`check_node_names`]).
pub fn join_node_names<N: AsRef<str>>(names: &[N]) -> Result<String, Error> {
    check_node_names(names)?;
    let mut out = String::with_capacity(names.iter().map(|n| n.as_ref().len() + 1).sum());
    for (i, n) in names.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(n.as_ref());
    }
    Ok(out)
}

/// The scheduler: a ledger plus the decisions made over it. Natively it never faults.
#[derive(Clone, Debug, Default)]
pub struct Engine {
    ledger: Ledger,
}

impl Engine {
    pub fn new() -> Engine {
        Engine::default()
    }

    /// Read access to the state, for tests and reports.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    pub fn configure(&mut self, config: &str) -> Result<(), Error> {
        let c = Config::from_json(config).map_err(Error::InvalidConfig)?;
        self.ledger.configure(c);
        Ok(())
    }

    pub fn apply(&mut self, deltas: &[Delta]) -> Vec<DeltaError> {
        self.ledger.apply(deltas)
    }

    pub fn clear(&mut self) {
        self.ledger.clear();
    }

    pub fn filter<N: AsRef<str>>(
        &mut self,
        pod: &Pod,
        candidates: &[N],
        now: i64,
    ) -> Result<FilterOutcome, Error> {
        check_node_names(candidates)?;
        schedule::filter(&mut self.ledger, pod, candidates, now)
    }

    pub fn score<N: AsRef<str>>(
        &self,
        pod: &Pod,
        nodes: &[N],
        now: i64,
    ) -> Result<Vec<NodeScore>, Error> {
        check_node_names(nodes)?;
        schedule::score(&self.ledger, pod, nodes, now)
    }

    /// [`Engine::filter`] on WIT's `node-names` text (one name per line), which can hold no
    /// name with a line break: nothing to check.
    pub fn filter_lines(
        &mut self,
        pod: &Pod,
        candidates: &str,
        now: i64,
    ) -> Result<FilterOutcome, Error> {
        schedule::filter_text(&mut self.ledger, pod, candidates, now)
    }

    /// [`Engine::filter`] on the candidates of this engine's previous `filter` (WIT's
    /// `as-before`; `not-found` when there was none since it was made or cleared). Meant for
    /// text the host sent: a list with empty names is resolved again without them.
    pub fn filter_as_before(&mut self, pod: &Pod, now: i64) -> Result<FilterOutcome, Error> {
        schedule::filter_as_before(&mut self.ledger, pod, now)
    }

    /// [`Engine::score`] on WIT's `node-names` text.
    pub fn score_lines(&self, pod: &Pod, nodes: &str, now: i64) -> Result<Vec<NodeScore>, Error> {
        schedule::score(&self.ledger, pod, &node_names(nodes), now)
    }

    pub fn reserve(&mut self, pod: &Pod, node: &str, now: i64) -> Result<Reservation, Error> {
        schedule::reserve(&mut self.ledger, pod, node, now)
    }

    pub fn unreserve(&mut self, uid: &str) {
        schedule::unreserve(&mut self.ledger, uid);
    }

    pub fn admit(&self, pod: &Pod) -> Result<Admission, Error> {
        admission::admit(&self.ledger, pod)
    }

    pub fn managed_resources(&self) -> Vec<String> {
        vendor::VENDORS
            .iter()
            .flat_map(|v| v.managed_resources(&self.ledger.config))
            .collect()
    }

    pub fn explain(
        &self,
        pod: &Pod,
        nodes: &[String],
        now: i64,
    ) -> Result<Vec<NodeExplanation>, Error> {
        schedule::explain(&self.ledger, pod, nodes, now)
    }

    pub fn usage(&self, nodes: &[String], now: i64) -> Vec<NodeUsage> {
        schedule::usage(&self.ledger, nodes, now)
    }

    pub fn quotas(&self) -> Vec<QuotaUsage> {
        self.ledger.quotas.report()
    }

    pub fn handshakes(&self, now: i64) -> Vec<NodeHandshake> {
        handshake::handshakes(&self.ledger, now)
    }
}

impl api::Scheduler for Engine {
    type Fault = Infallible;

    fn configure(&mut self, config: &str) -> Result<Result<(), Error>, Infallible> {
        Ok(Engine::configure(self, config))
    }
    fn apply(&mut self, deltas: &[Delta]) -> Result<Vec<DeltaError>, Infallible> {
        Ok(Engine::apply(self, deltas))
    }
    fn clear(&mut self) -> Result<(), Infallible> {
        Engine::clear(self);
        Ok(())
    }
    fn filter(
        &mut self,
        pod: &Pod,
        candidates: &[String],
        now: i64,
    ) -> Result<Result<FilterOutcome, Error>, Infallible> {
        Ok(Engine::filter(self, pod, candidates, now))
    }
    fn filter_lines(
        &mut self,
        pod: &Pod,
        candidates: &str,
        now: i64,
    ) -> Result<Result<FilterOutcome, Error>, Infallible> {
        Ok(Engine::filter_lines(self, pod, candidates, now))
    }
    fn score(
        &mut self,
        pod: &Pod,
        nodes: &[String],
        now: i64,
    ) -> Result<Result<Vec<NodeScore>, Error>, Infallible> {
        Ok(Engine::score(self, pod, nodes, now))
    }
    fn reserve(
        &mut self,
        pod: &Pod,
        node: &str,
        now: i64,
    ) -> Result<Result<Reservation, Error>, Infallible> {
        Ok(Engine::reserve(self, pod, node, now))
    }
    fn unreserve(&mut self, pod_uid: &str) -> Result<(), Infallible> {
        Engine::unreserve(self, pod_uid);
        Ok(())
    }
    fn admit(&mut self, pod: &Pod) -> Result<Result<Admission, Error>, Infallible> {
        Ok(Engine::admit(self, pod))
    }
    fn managed_resources(&mut self) -> Result<Vec<String>, Infallible> {
        Ok(Engine::managed_resources(self))
    }
    fn explain(
        &mut self,
        pod: &Pod,
        nodes: &[String],
        now: i64,
    ) -> Result<Result<Vec<NodeExplanation>, Error>, Infallible> {
        Ok(Engine::explain(self, pod, nodes, now))
    }
    fn usage(&mut self, nodes: &[String], now: i64) -> Result<Vec<NodeUsage>, Infallible> {
        Ok(Engine::usage(self, nodes, now))
    }
    fn quotas(&mut self) -> Result<Vec<QuotaUsage>, Infallible> {
        Ok(Engine::quotas(self))
    }
    fn handshakes(&mut self, now: i64) -> Result<Vec<NodeHandshake>, Infallible> {
        Ok(Engine::handshakes(self, now))
    }
}
