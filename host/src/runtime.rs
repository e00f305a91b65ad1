//! The wasmtime runtime around the guest component.
//!
//! `Engine`, `Linker` and `InstancePre` are built once; the instance lives in a long-lived
//! `Store` with a memory limit (`StoreLimits`) and a time limit per call (epoch interruption,
//! ticked by a background thread). A trap or a timeout is logged and counted, the instance is
//! dropped and rebuilt from the host's cache of everything it was fed, and the caller gets a
//! [`Fault`]: never a crash.

use std::collections::{BTreeMap, HashMap};
use std::marker::PhantomData;
use std::path::Path;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use anyhow::Context as _;
use hamr_guest::api::{self, Scheduler};
use hamr_guest::convert::Cv;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, ResourceLimiter, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "hamr",
    });
}

use bindings::exports::hamr::scheduler::scheduler as ws;
use bindings::hamr::scheduler::types as w;

hamr_guest::cv_contract!(crate::runtime::w, crate::runtime::ws);

/// The component built from `guest/` at build time (see `build.rs`).
pub static EMBEDDED: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/guest.wasm"));

/// Deltas per guest call when a rebuild replays the cache.
const REPLAY_BATCH: usize = 1024;

/// Epoch tick of the time limit.
const TICK: Duration = Duration::from_millis(10);

/// A fault of the component engine: the guest trapped, or ran out of time or memory. The
/// instance has already been rebuilt when the caller sees this.
#[derive(Debug, thiserror::Error)]
#[error("guest fault in {call}: {message}")]
pub struct Fault {
    pub call: &'static str,
    pub message: String,
}

/// Limits of one instance.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Linear memory the guest may grow to.
    pub memory_bytes: usize,
    /// Wall-clock time one call may take.
    pub call_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 1 << 30,
            call_timeout: Duration::from_secs(10),
        }
    }
}

/// Per-store state: WASI (an empty context: no environment, files or network) and limits.
struct State {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: Limiter,
}

/// wasmtime's [`StoreLimits`], counting the linear memory it lets the guest have. Linear
/// memory never shrinks, so this is also the instance's high-water mark.
struct Limiter {
    limits: StoreLimits,
    memory_bytes: usize,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        if allowed {
            self.memory_bytes += desired.saturating_sub(current);
        }
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Everything the guest was fed, to rebuild a fresh instance after a fault.
///
/// Nodes and pods are kept packed (postcard): they are read back only by a rebuild, and a
/// pod's dozen small strings cost three times as much as live Rust values (issue #6: 5,000
/// nodes and 50,000 pods took 83 MiB unpacked).
#[derive(Default)]
struct Cache {
    config: Option<String>,
    nodes: BTreeMap<String, Packed<api::Node>>,
    pods: HashMap<String, Packed<api::Pod>>,
    quotas: BTreeMap<(String, String), api::Quota>,
    /// Pods assumed by `filter`/`reserve` and not yet seen carrying their decision: the pod as
    /// it was sent to the guest, and the decision annotations (replayed as a placed pod after a
    /// rebuild). The host compares them as opaque pairs; it never parses them. The pod is the
    /// copy already made for the call, so a decision copies it once.
    assumed: BTreeMap<String, (w::Pod, api::Pairs)>,
}

/// A value serialised with postcard.
struct Packed<T> {
    bytes: Box<[u8]>,
    of: PhantomData<T>,
}

impl<T: serde::Serialize + serde::de::DeserializeOwned> Packed<T> {
    fn new(value: &T) -> Packed<T> {
        let bytes = postcard::to_allocvec(value)
            // The api types are plain structs, enums, strings and sequences of known length:
            // postcard encodes every value of them (the round-trip test covers each).
            .expect("postcard encodes the api types")
            .into_boxed_slice();
        Packed {
            bytes,
            of: PhantomData,
        }
    }

    fn get(&self) -> T {
        postcard::from_bytes(&self.bytes)
            // Only `new` writes the bytes, from a value of the same type.
            .expect("postcard decodes what it encoded")
    }
}

impl Cache {
    /// Records the deltas the guest applied. A refused delta is not recorded, so a replay
    /// rebuilds what the guest holds: for a node with a malformed registration, its previous
    /// cards (the guest keeps them too).
    fn record(&mut self, deltas: &[api::Delta], refused: &[u32]) {
        for (i, d) in deltas.iter().enumerate() {
            if refused.contains(&(i as u32)) {
                continue;
            }
            match d {
                api::Delta::NodeUpsert(n) => {
                    self.nodes.insert(n.name.clone(), Packed::new(n));
                }
                api::Delta::NodeRemove(name) => {
                    self.nodes.remove(name);
                }
                api::Delta::PodUpsert(p) => {
                    // The watch now shows the decision: the assumption is confirmed.
                    if self.assumed.get(&p.uid).is_some_and(|(_, decision)| {
                        decision.iter().all(|kv| p.annotations.contains(kv))
                    }) {
                        self.assumed.remove(&p.uid);
                    }
                    self.pods.insert(p.uid.clone(), Packed::new(p));
                }
                api::Delta::PodRemove(uid) => {
                    self.pods.remove(uid);
                    self.assumed.remove(uid);
                }
                api::Delta::QuotaUpsert(q) => {
                    self.quotas
                        .insert((q.namespace.clone(), q.name.clone()), q.clone());
                }
                api::Delta::QuotaRemove(key) => {
                    self.quotas.remove(key);
                }
            }
        }
    }

    fn assume(&mut self, sent: w::Pod, decision: &api::Decision) {
        self.assumed
            .insert(sent.uid.clone(), (sent, decision.annotations.clone()));
    }

    /// The deltas that recreate the ledger: quotas, nodes, pods, then assumed placements (which
    /// override the cached objects that do not show their decision yet). Unpacked one at a
    /// time, so that a rebuild feeds them in batches without holding them all.
    fn replay(&self) -> impl Iterator<Item = api::Delta> + '_ {
        let quotas = self.quotas.values().cloned().map(api::Delta::QuotaUpsert);
        let nodes = self.nodes.values().map(|n| api::Delta::NodeUpsert(n.get()));
        let pods = self.pods.values().map(|p| api::Delta::PodUpsert(p.get()));
        let assumed = self.assumed.values().map(|(sent, patch)| {
            let mut placed: api::Pod = sent.clone().cv();
            for (k, v) in patch {
                placed.annotations.retain(|(key, _)| key != k);
                placed.annotations.push((k.clone(), v.clone()));
            }
            api::Delta::PodUpsert(placed)
        });
        quotas.chain(nodes).chain(pods).chain(assumed)
    }
}

/// Counters a caller may export as metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Calls that trapped (including timeouts and memory exhaustion).
    pub traps: u64,
    /// Fresh instances built after a fault.
    pub rebuilds: u64,
}

/// A compiled component: the engine (with its epoch ticker) and the pre-linked instance.
/// Compiling costs tens of milliseconds (seconds in a debug build); instantiating from here
/// costs microseconds, so every scheduler of the embedded component shares one.
struct Compiled {
    engine: Engine,
    pre: bindings::HamrPre<State>,
}

impl Compiled {
    fn new(bytes: &[u8]) -> anyhow::Result<Arc<Compiled>> {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        config.concurrency_support(false);
        // One compiling thread: parallel compilation leaves freed working memory in a malloc
        // arena per thread, which `malloc_trim` does not fully return (`hamr serve` held
        // 148-152 MiB at 5,000 nodes instead of 137; startup is ~1.2 s longer on 2 cores).
        config.parallel_compilation(false);
        // `HAMR_PERFMAP=1` writes /tmp/perf-<pid>.map, so that `perf report` names the guest's
        // functions (BENCHMARKS.md, "Profiling the component").
        if std::env::var_os("HAMR_PERFMAP").is_some() {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&config).wt("creating the wasmtime engine")?;
        let component = Component::new(&engine, bytes).wt("compiling the guest component")?;
        let mut linker: Linker<State> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).wt("linking WASI")?;
        let pre = bindings::HamrPre::new(
            linker
                .instantiate_pre(&component)
                .wt("resolving the component's imports")?,
        )
        .wt("checking the component's exports against wit/scheduler.wit")?;
        let compiled = Arc::new(Compiled { engine, pre });
        release_freed_memory();
        // The ticker ends once the last scheduler using this component is gone.
        let weak: Weak<Compiled> = Arc::downgrade(&compiled);
        std::thread::Builder::new()
            .name("hamr-epoch".into())
            .spawn(move || {
                while let Some(c) = weak.upgrade() {
                    c.engine.increment_epoch();
                    drop(c);
                    std::thread::sleep(TICK);
                }
            })
            .context("starting the epoch ticker")?;
        Ok(compiled)
    }

    /// The embedded component, compiled once per process.
    fn embedded() -> anyhow::Result<Arc<Compiled>> {
        static COMPILED: OnceLock<Result<Arc<Compiled>, String>> = OnceLock::new();
        COMPILED
            .get_or_init(|| Compiled::new(EMBEDDED).map_err(|e| format!("{e:#}")))
            .clone()
            .map_err(|e| anyhow::anyhow!(e))
    }
}

/// The guest component, instantiated in wasmtime.
pub struct ComponentScheduler {
    compiled: Arc<Compiled>,
    store: Store<State>,
    guest: bindings::Hamr,
    limits: Limits,
    cache: Cache,
    stats: Stats,
    /// The candidate text this instance's last `filter` was given: the next call with the same
    /// text sends `as-before` instead (forgotten with the instance, and on `clear`).
    sent: Option<String>,
}

impl ComponentScheduler {
    /// `filter` with the candidates as WIT's `node-names` text; the decision is remembered
    /// for a rebuild.
    fn filter_text(
        &mut self,
        pod: &api::Pod,
        names: &str,
        now: i64,
    ) -> Result<Result<api::FilterOutcome, api::Error>, Fault> {
        let wire: w::Pod = pod.clone().cv();
        let mut candidates = if self.sent.as_deref() == Some(names) {
            w::Candidates::AsBefore
        } else {
            w::Candidates::Names(names.to_string())
        };
        let mut r = self.call("filter", |g, s| {
            g.hamr_scheduler_scheduler()
                .call_filter(s, &wire, &candidates, now)
        })?;
        if matches!(candidates, w::Candidates::AsBefore) && matches!(r, Err(w::Error::NotFound(_)))
        {
            // The instance holds no list after all: send it.
            candidates = w::Candidates::Names(names.to_string());
            r = self.call("filter", |g, s| {
                g.hamr_scheduler_scheduler()
                    .call_filter(s, &wire, &candidates, now)
            })?;
        }
        if let w::Candidates::Names(text) = candidates {
            self.sent = Some(text);
        }
        let r: Result<api::FilterOutcome, api::Error> = r.map(Cv::cv).map_err(Cv::cv);
        if let Ok(outcome) = &r {
            self.cache.assumed.remove(&pod.uid);
            if let Some(d) = &outcome.decision {
                self.cache.assume(wire, d);
            }
        }
        Ok(r)
    }

    /// Loads the component from `path`, or the one embedded in the binary when `None`
    /// (compiled once per process and shared).
    pub fn load(path: Option<&Path>) -> anyhow::Result<ComponentScheduler> {
        Self::with_limits(path, Limits::default())
    }

    /// Loads with explicit limits.
    pub fn with_limits(path: Option<&Path>, limits: Limits) -> anyhow::Result<ComponentScheduler> {
        let compiled = match path {
            Some(p) => {
                let bytes = std::fs::read(p)
                    .with_context(|| format!("reading component {}", p.display()))?;
                Compiled::new(&bytes)?
            }
            None => Compiled::embedded()?,
        };
        Self::start(compiled, limits)
    }

    /// Compiles and instantiates a component from its bytes.
    pub fn from_bytes(bytes: &[u8], limits: Limits) -> anyhow::Result<ComponentScheduler> {
        Self::start(Compiled::new(bytes)?, limits)
    }

    fn start(compiled: Arc<Compiled>, limits: Limits) -> anyhow::Result<ComponentScheduler> {
        let (store, guest) = instantiate(&compiled, limits)?;
        Ok(ComponentScheduler {
            compiled,
            store,
            guest,
            limits,
            cache: Cache::default(),
            stats: Stats::default(),
            sent: None,
        })
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The guest's linear memory, in bytes (all of its memories; they never shrink).
    pub fn guest_memory_bytes(&self) -> usize {
        self.store.data().limits.memory_bytes
    }

    /// Runs one guest call under the time limit; on a fault, rebuilds and reports it.
    fn call<T>(
        &mut self,
        name: &'static str,
        f: impl FnOnce(&bindings::Hamr, &mut Store<State>) -> wasmtime::Result<T>,
    ) -> Result<T, Fault> {
        let ticks = (self.limits.call_timeout.as_millis() / TICK.as_millis()).max(1) as u64;
        self.store.set_epoch_deadline(ticks);
        match f(&self.guest, &mut self.store) {
            Ok(v) => Ok(v),
            Err(e) => {
                self.stats.traps += 1;
                let message = format!("{e:#}");
                tracing::error!(call = name, error = %message, "guest trapped; rebuilding the instance");
                if let Err(rebuild) = self.rebuild() {
                    tracing::error!(error = %format!("{rebuild:#}"), "rebuilding the guest instance failed");
                }
                Err(Fault {
                    call: name,
                    message,
                })
            }
        }
    }

    /// A fresh instance fed from the cache.
    fn rebuild(&mut self) -> anyhow::Result<()> {
        let (mut store, guest) = instantiate(&self.compiled, self.limits)?;
        let ticks = (self.limits.call_timeout.as_millis() / TICK.as_millis()).max(1) as u64;
        store.set_epoch_deadline(ticks * 10);
        if let Some(config) = &self.cache.config {
            guest
                .hamr_scheduler_ledger()
                .call_configure(&mut store, config)
                .wt("replaying the configuration")?
                .map_err(|e| anyhow::anyhow!("replaying the configuration: {:?}", e))?;
        }
        // In batches, as the watchers feed a live instance: the guest's linear memory grows
        // to the largest batch, and the host holds one batch unpacked.
        let mut replay = self.cache.replay().peekable();
        while replay.peek().is_some() {
            let batch: Vec<api::Delta> = replay.by_ref().take(REPLAY_BATCH).collect();
            let batch: Vec<w::Delta> = batch.cv();
            guest
                .hamr_scheduler_ledger()
                .call_apply(&mut store, &batch)
                .wt("replaying the cache")?;
        }
        self.store = store;
        self.guest = guest;
        self.sent = None;
        self.stats.rebuilds += 1;
        Ok(())
    }
}

/// Hands the heap that compiling freed back to the system. Cranelift's working memory (tens of
/// MiB) is freed when compiling ends, but glibc keeps freed pages resident until told
/// otherwise; `hamr serve` would carry them for its whole life (issue #6's memory figure).
#[allow(unsafe_code)]
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` only returns free pages of glibc's own arenas to the kernel; it
    // touches no memory the program holds and is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// wasmtime's own error type is not a `std::error::Error`; carry its text into anyhow.
trait Wt<T> {
    fn wt(self, what: &str) -> anyhow::Result<T>;
}

impl<T> Wt<T> for wasmtime::Result<T> {
    fn wt(self, what: &str) -> anyhow::Result<T> {
        self.map_err(|e| anyhow::anyhow!("{what}: {e:#}"))
    }
}

fn instantiate(
    compiled: &Compiled,
    limits: Limits,
) -> anyhow::Result<(Store<State>, bindings::Hamr)> {
    let state = State {
        wasi: WasiCtx::builder().build(),
        table: ResourceTable::new(),
        limits: Limiter {
            limits: StoreLimitsBuilder::new()
                .memory_size(limits.memory_bytes)
                .instances(16)
                .build(),
            memory_bytes: 0,
        },
    };
    let mut store = Store::new(&compiled.engine, state);
    store.limiter(|s| &mut s.limits);
    store.set_epoch_deadline(u64::MAX / 2);
    let guest = compiled
        .pre
        .instantiate(&mut store)
        .wt("instantiating the guest component")?;
    Ok((store, guest))
}

impl Scheduler for ComponentScheduler {
    type Fault = Fault;

    fn configure(&mut self, config: &str) -> Result<Result<(), api::Error>, Fault> {
        let r = self.call("configure", |g, s| {
            g.hamr_scheduler_ledger().call_configure(s, config)
        })?;
        if r.is_ok() {
            self.cache.config = Some(config.to_string());
        }
        Ok(r.map_err(Cv::cv))
    }

    fn apply(&mut self, deltas: &[api::Delta]) -> Result<Vec<api::DeltaError>, Fault> {
        let wire: Vec<w::Delta> = deltas.to_vec().cv();
        let r = self.call("apply", |g, s| {
            g.hamr_scheduler_ledger().call_apply(s, &wire)
        })?;
        let refused: Vec<u32> = r.iter().map(|e| e.index).collect();
        self.cache.record(deltas, &refused);
        Ok(r.cv())
    }

    fn clear(&mut self) -> Result<(), Fault> {
        self.call("clear", |g, s| g.hamr_scheduler_ledger().call_clear(s))?;
        self.sent = None;
        let config = self.cache.config.take();
        self.cache = Cache {
            config,
            ..Cache::default()
        };
        Ok(())
    }

    fn filter(
        &mut self,
        pod: &api::Pod,
        candidates: &[String],
        now: i64,
    ) -> Result<Result<api::FilterOutcome, api::Error>, Fault> {
        let names = match hamr_guest::join_node_names(candidates) {
            Ok(names) => names,
            Err(e) => return Ok(Err(e)),
        };
        let mut r = self.filter_text(pod, &names, now)?;
        // The text skips empty names: its positions count the others.
        if let Ok(outcome) = &mut r
            && candidates.iter().any(String::is_empty)
        {
            let listed: Vec<u32> = (0..candidates.len() as u32)
                .filter(|&i| !candidates[i as usize].is_empty())
                .collect();
            for v in &mut outcome.verdicts {
                v.candidate = listed
                    .get(v.candidate as usize)
                    .copied()
                    .unwrap_or(u32::MAX);
            }
        }
        Ok(r)
    }

    fn filter_lines(
        &mut self,
        pod: &api::Pod,
        names: &str,
        now: i64,
    ) -> Result<Result<api::FilterOutcome, api::Error>, Fault> {
        self.filter_text(pod, names, now)
    }

    fn score(
        &mut self,
        pod: &api::Pod,
        nodes: &[String],
        now: i64,
    ) -> Result<Result<Vec<api::NodeScore>, api::Error>, Fault> {
        let names = match hamr_guest::join_node_names(nodes) {
            Ok(names) => names,
            Err(e) => return Ok(Err(e)),
        };
        let wire: w::Pod = pod.clone().cv();
        let r = self.call("score", |g, s| {
            g.hamr_scheduler_scheduler()
                .call_score(s, &wire, &names, now)
        })?;
        Ok(r.map(Cv::cv).map_err(Cv::cv))
    }

    fn reserve(
        &mut self,
        pod: &api::Pod,
        node: &str,
        now: i64,
    ) -> Result<Result<api::Reservation, api::Error>, Fault> {
        let wire: w::Pod = pod.clone().cv();
        let r = self.call("reserve", |g, s| {
            g.hamr_scheduler_scheduler()
                .call_reserve(s, &wire, node, now)
        })?;
        let r: Result<api::Reservation, api::Error> = r.map(Cv::cv).map_err(Cv::cv);
        if let Ok(api::Reservation::Reserved(d)) = &r
            && !d.grants.is_empty()
        {
            self.cache.assume(wire, d);
        }
        Ok(r)
    }

    fn unreserve(&mut self, pod_uid: &str) -> Result<(), Fault> {
        self.call("unreserve", |g, s| {
            g.hamr_scheduler_scheduler().call_unreserve(s, pod_uid)
        })?;
        self.cache.assumed.remove(pod_uid);
        Ok(())
    }

    fn admit(&mut self, pod: &api::Pod) -> Result<Result<api::Admission, api::Error>, Fault> {
        let wire: w::Pod = pod.clone().cv();
        let r = self.call("admit", |g, s| {
            g.hamr_scheduler_scheduler().call_admit(s, &wire)
        })?;
        Ok(r.map(Cv::cv).map_err(Cv::cv))
    }

    fn managed_resources(&mut self) -> Result<Vec<String>, Fault> {
        self.call("managed-resources", |g, s| {
            g.hamr_scheduler_scheduler().call_managed_resources(s)
        })
    }

    fn explain(
        &mut self,
        pod: &api::Pod,
        nodes: &[String],
        now: i64,
    ) -> Result<Result<Vec<api::NodeExplanation>, api::Error>, Fault> {
        let wire: w::Pod = pod.clone().cv();
        let r = self.call("explain", |g, s| {
            g.hamr_scheduler_scheduler()
                .call_explain(s, &wire, nodes, now)
        })?;
        Ok(r.map(Cv::cv).map_err(Cv::cv))
    }

    fn usage(&mut self, nodes: &[String], now: i64) -> Result<Vec<api::NodeUsage>, Fault> {
        let r = self.call("usage", |g, s| {
            g.hamr_scheduler_scheduler().call_usage(s, nodes, now)
        })?;
        Ok(r.cv())
    }

    fn quotas(&mut self) -> Result<Vec<api::QuotaUsage>, Fault> {
        let r = self.call("quotas", |g, s| g.hamr_scheduler_scheduler().call_quotas(s))?;
        Ok(r.cv())
    }

    fn handshakes(&mut self, now: i64) -> Result<Vec<api::NodeHandshake>, Fault> {
        let r = self.call("handshakes", |g, s| {
            g.hamr_scheduler_scheduler().call_handshakes(s, now)
        })?;
        Ok(r.cv())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(&str, &str)]) -> api::Pairs {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn packed_objects_come_back_equal_with_every_field_set() {
        let container = |name: &str| api::Container {
            name: name.into(),
            limits: pairs(&[("nvidia.com/gpu", "1"), ("nvidia.com/gpumem", "3000")]),
            requests: pairs(&[("cpu", "500m")]),
            privileged: true,
            env_names: vec!["CUDA_DISABLE_CONTROL".into()],
        };
        let pod = api::Pod {
            uid: "u-1".into(),
            namespace: "ns".into(),
            name: "p".into(),
            labels: pairs(&[("app", "x")]),
            annotations: pairs(&[("hami.io/vgpu-node", "n1"), ("empty", "")]),
            scheduler_name: Some("hamr-scheduler".into()),
            node_name: Some("n1".into()),
            runtime_class_name: None,
            phase: api::PodPhase::Running,
            deleting: true,
            init_containers: vec![container("init")],
            containers: vec![container("main"), container("side")],
            init_container_statuses: vec![api::ContainerStatus {
                name: "init".into(),
                terminated_exit_code: Some(-1),
            }],
        };
        assert_eq!(Packed::new(&pod).get(), pod);
        let node = api::Node {
            name: "n1".into(),
            labels: pairs(&[("gpu", "on")]),
            annotations: pairs(&[("hami.io/node-nvidia-register", "[{\"id\":\"GPU-ü\"}]")]),
            allocatable: pairs(&[("nvidia.com/gpu", "10")]),
            capacity: vec![],
        };
        assert_eq!(Packed::new(&node).get(), node);
    }
}
