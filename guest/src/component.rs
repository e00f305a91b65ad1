//! The WebAssembly component face: `wit/scheduler.wit`'s world `hamr`, exported by the one
//! [`Engine`] this instance holds. Built with `cargo build --target wasm32-wasip2`.
//!
//! A panic here aborts the instance (a trap); the host counts it, drops the instance and
//! rebuilds a fresh one from its cache.

use std::cell::RefCell;

use crate::Engine;
use crate::convert::Cv;

wit_bindgen::generate!({
    path: "../wit",
    world: "hamr",
});

use exports::hamr::scheduler::{ledger, scheduler};
use hamr::scheduler::types as w;

crate::cv_contract!(
    crate::component::hamr::scheduler::types,
    crate::component::exports::hamr::scheduler::scheduler
);

thread_local! {
    /// The instance's state. A component instance is single-threaded.
    static ENGINE: RefCell<Engine> = RefCell::new(Engine::new());
}

fn with<T>(f: impl FnOnce(&mut Engine) -> T) -> T {
    ENGINE.with(|e| f(&mut e.borrow_mut()))
}

struct Component;

impl ledger::Guest for Component {
    fn configure(config: String) -> Result<(), w::Error> {
        with(|e| e.configure(&config)).map_err(Cv::cv)
    }

    fn apply(deltas: Vec<w::Delta>) -> Vec<w::DeltaError> {
        let deltas: Vec<crate::api::Delta> = deltas.cv();
        with(|e| e.apply(&deltas)).cv()
    }

    fn clear() {
        with(Engine::clear);
    }
}

impl scheduler::Guest for Component {
    fn filter(
        pod: w::Pod,
        candidates: w::Candidates,
        now: i64,
    ) -> Result<w::FilterOutcome, w::Error> {
        let pod: crate::api::Pod = pod.cv();
        with(|e| match &candidates {
            w::Candidates::Names(names) => e.filter_lines(&pod, names, now),
            w::Candidates::AsBefore => e.filter_as_before(&pod, now),
        })
        .map(Cv::cv)
        .map_err(Cv::cv)
    }

    fn score(pod: w::Pod, nodes: String, now: i64) -> Result<Vec<w::NodeScore>, w::Error> {
        let pod: crate::api::Pod = pod.cv();
        with(|e| e.score_lines(&pod, &nodes, now))
            .map(Cv::cv)
            .map_err(Cv::cv)
    }

    fn reserve(pod: w::Pod, node: String, now: i64) -> Result<scheduler::Reservation, w::Error> {
        let pod: crate::api::Pod = pod.cv();
        with(|e| e.reserve(&pod, &node, now))
            .map(Cv::cv)
            .map_err(Cv::cv)
    }

    fn unreserve(pod_uid: String) {
        with(|e| e.unreserve(&pod_uid));
    }

    fn admit(pod: w::Pod) -> Result<w::Admission, w::Error> {
        let pod: crate::api::Pod = pod.cv();
        with(|e| e.admit(&pod)).map(Cv::cv).map_err(Cv::cv)
    }

    fn managed_resources() -> Vec<String> {
        with(|e| e.managed_resources())
    }

    fn explain(
        pod: w::Pod,
        nodes: Vec<String>,
        now: i64,
    ) -> Result<Vec<w::NodeExplanation>, w::Error> {
        let pod: crate::api::Pod = pod.cv();
        with(|e| e.explain(&pod, &nodes, now))
            .map(Cv::cv)
            .map_err(Cv::cv)
    }

    fn usage(nodes: Vec<String>, now: i64) -> Vec<w::NodeUsage> {
        with(|e| e.usage(&nodes, now)).cv()
    }

    fn quotas() -> Vec<w::QuotaUsage> {
        with(|e| e.quotas()).cv()
    }

    fn handshakes(now: i64) -> Vec<w::NodeHandshake> {
        with(|e| e.handshakes(now)).cv()
    }
}

export!(Component);
