//! A test host for the kube-scheduler-wasm-extension core module (`wasm-extension/`), written
//! from the ABI in the spec (`interfaces.md` §1), and the `wasm-extension` engine built on it.
//!
//! The host side, as the real (wazero) host does it:
//!
//! - **Loading** ([`Hooks::check`]): the module must export `memory`, every hook it exports
//!   must have the hook's exact signature, and the main hooks {filter, score, reserve, permit,
//!   bind} must form one of the 23 accepted combinations; riders (`prefilter`, `addpod`,
//!   `removepod`, `postfilter` with filter; `prescore`, `normalizescore` with score; `prebind`,
//!   `postbind` with bind) need their main hook, except a module exporting only `prefilter`;
//!   `unreserve` alone counts as reserve. Imports resolve against `k8s.io/api`,
//!   `k8s.io/scheduler`, `k8s.io/klog` and a few WASI functions (an unknown import or a wrong
//!   signature fails instantiation); `_start` runs at instantiation, and a trap there fails it
//!   with the guest's stderr appended.
//! - **Memory**: the guest owns it. Reads are `buf, limit -> len` (the value is written only
//!   when it fits, the full length is always returned); results are `(ptr, len)` ranges copied
//!   during the call. A range outside memory traps the call.
//! - **Objects**: `v1.Pod` / `v1.Node` / `v1.NodeList` as bare protobuf messages; node names,
//!   config and reasons as UTF-8; `filteredNodeList` a JSON array; score maps JSON objects.
//! - **Results**: status codes 0–5; `score` packs `(score << 32) | status`, `permit`
//!   `(status << 32) | timeout_ms`; a reason set by `result.status_reason` belongs to the call.
//!
//! The engine ([`WasmExtensionScheduler`]) runs one scheduling cycle per `filter`: `prefilter`
//! → `filter` per node → (more than one feasible node) `prescore` → `score` per node →
//! `normalizescore` → the highest score (the first in candidate order on a tie, where the
//! framework picks at random) → `reserve`. Like the real host it shows the guest only nodes, so
//! the pods on them reach the guest as a node agent would publish them: each node carries
//! `hamr.io/node-device-usage`, computed by the library from the pods the engine was fed, and
//! its resourceVersion changes whenever the node's bytes do. The decision (the annotations
//! HAMi's device plugin reads) comes back as the reservation's event. Admission, `explain`,
//! `usage`, `quotas` and `handshakes` are not hooks of this host: they are answered by the
//! library (the webhook, the CLI and `hamr serve` run it natively).

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use hamr_guest::api::{self, Scheduler};
use hamr_guest::usage_annotation::{self, NODE_DEVICE_USAGE};
use hamr_wasm_extension::plugin::{DECISION_EVENT_REASON, DecisionNote};
use hamr_wasm_extension::proto;
use prost::Message;
use wasmtime::{
    Caller, Engine, Extern, FuncType, Instance, Linker, Memory, Module, Store, ValType,
};

/// The core module built from `wasm-extension/` at build time (see `build.rs`).
pub static EMBEDDED: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/wasm_extension.wasm"));

/// Status codes of the scheduling framework (spec §1.8).
pub mod code {
    pub const SUCCESS: i32 = 0;
    pub const ERROR: i32 = 1;
    pub const UNSCHEDULABLE: i32 = 2;
    pub const UNSCHEDULABLE_AND_UNRESOLVABLE: i32 = 3;
    pub const WAIT: i32 = 4;
    pub const SKIP: i32 = 5;
}

/// `score`'s result: low 32 bits the status, high 32 bits the score (both signed).
pub fn unpack_score(v: i64) -> (i32, i32) {
    (v as i32, (v >> 32) as i32)
}

/// `permit`'s result: high 32 bits the status, low 32 bits the timeout in ms (unsigned).
pub fn unpack_permit(v: i64) -> (i32, u32) {
    ((v >> 32) as i32, v as u32)
}

/// `postfilter`'s result: low 32 bits the status, high 32 bits the nominating mode.
pub fn unpack_postfilter(v: i64) -> (i32, i32) {
    (v as i32, (v >> 32) as i32)
}

/// Why a module cannot be loaded, as the real host refuses it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    #[error("cannot compile the module: {0}")]
    Compile(String),
    #[error("guest doesn't export memory")]
    NoMemory,
    #[error("guest does not export any plugin functions")]
    NotPlugin,
    #[error("guest exports {name} with the wrong signature: {found}, expected {expected}")]
    WrongSignature {
        name: String,
        expected: String,
        found: String,
    },
    #[error("guest exports {rider} without {needs}")]
    RiderWithoutHook { rider: String, needs: String },
    #[error("filter, score, reserve, permit or bind must be exported (got {0})")]
    Combination(String),
    #[error("cannot instantiate the guest: {0}")]
    Instantiate(String),
}

/// The hooks a module exports (after [`Hooks::check`], all with the right signatures).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hooks {
    pub enqueue: bool,
    pub prefilter: bool,
    pub addpod: bool,
    pub removepod: bool,
    pub filter: bool,
    pub postfilter: bool,
    pub prescore: bool,
    pub score: bool,
    pub normalizescore: bool,
    pub reserve: bool,
    pub unreserve: bool,
    pub permit: bool,
    pub prebind: bool,
    pub bind: bool,
    pub postbind: bool,
}

/// `(params, results)` of a hook; every hook takes no parameters.
const SIGNATURES: &[(&str, &[ValType])] = &[
    ("enqueue", &[]),
    ("prefilter", &[ValType::I32]),
    ("addpod", &[ValType::I32]),
    ("removepod", &[ValType::I32]),
    ("filter", &[ValType::I32]),
    ("postfilter", &[ValType::I64]),
    ("prescore", &[ValType::I32]),
    ("score", &[ValType::I64]),
    ("normalizescore", &[ValType::I32]),
    ("reserve", &[ValType::I32]),
    ("unreserve", &[]),
    ("permit", &[ValType::I64]),
    ("prebind", &[ValType::I32]),
    ("bind", &[ValType::I32]),
    ("postbind", &[]),
];

/// The accepted sets of main hooks (F filter, S score, R reserve, P permit, B bind).
const COMBINATIONS: &[&str] = &[
    "F", "S", "R", "P", "B", "FS", "FR", "FP", "FB", "SR", "SP", "SB", "RB", "PB", "FSR", "FSP",
    "FSB", "SRB", "SPB", "RPB", "FSRB", "FSPB", "FSRPB",
];

fn shown(results: &[ValType]) -> String {
    let r: Vec<String> = results.iter().map(|t| format!("{t}")).collect();
    format!("() -> ({})", r.join(", "))
}

fn same(a: &[ValType], b: &[ValType]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            matches!(
                (x, y),
                (ValType::I32, ValType::I32) | (ValType::I64, ValType::I64)
            )
        })
}

impl Hooks {
    /// Checks a module's exports as the real host does (see the module comment).
    pub fn check(module: &Module) -> Result<Hooks, LoadError> {
        let mut memory = false;
        let mut h = Hooks::default();
        for export in module.exports() {
            let name = export.name();
            if name == "memory" {
                memory = matches!(export.ty(), wasmtime::ExternType::Memory(_));
                continue;
            }
            let Some((_, results)) = SIGNATURES.iter().find(|(n, _)| *n == name) else {
                continue;
            };
            let ok = match export.ty() {
                wasmtime::ExternType::Func(f) => {
                    let params: Vec<ValType> = f.params().collect();
                    let res: Vec<ValType> = f.results().collect();
                    if params.is_empty() && same(&res, results) {
                        true
                    } else {
                        return Err(LoadError::WrongSignature {
                            name: name.to_string(),
                            expected: shown(results),
                            found: signature(&f),
                        });
                    }
                }
                _ => {
                    return Err(LoadError::WrongSignature {
                        name: name.to_string(),
                        expected: shown(results),
                        found: "not a function".to_string(),
                    });
                }
            };
            let slot = match name {
                "enqueue" => &mut h.enqueue,
                "prefilter" => &mut h.prefilter,
                "addpod" => &mut h.addpod,
                "removepod" => &mut h.removepod,
                "filter" => &mut h.filter,
                "postfilter" => &mut h.postfilter,
                "prescore" => &mut h.prescore,
                "score" => &mut h.score,
                "normalizescore" => &mut h.normalizescore,
                "reserve" => &mut h.reserve,
                "unreserve" => &mut h.unreserve,
                "permit" => &mut h.permit,
                "prebind" => &mut h.prebind,
                "bind" => &mut h.bind,
                _ => &mut h.postbind,
            };
            *slot = ok;
        }
        if !memory {
            return Err(LoadError::NoMemory);
        }
        let main = h.main();
        let riders = [
            (h.addpod, "addpod", h.filter, "filter"),
            (h.removepod, "removepod", h.filter, "filter"),
            (h.postfilter, "postfilter", h.filter, "filter"),
            (h.prescore, "prescore", h.score, "score"),
            (h.normalizescore, "normalizescore", h.score, "score"),
            (h.prebind, "prebind", h.bind, "bind"),
            (h.postbind, "postbind", h.bind, "bind"),
        ];
        if main.is_empty() {
            let any_rider = riders.iter().any(|r| r.0);
            return match (h.prefilter, any_rider, h.enqueue) {
                // The one special case: a PreFilter-only plugin.
                (true, false, _) => Ok(h),
                (false, false, false) => Err(LoadError::NotPlugin),
                _ => Err(LoadError::Combination("no main hook".to_string())),
            };
        }
        for (present, rider, main_present, needs) in riders {
            if present && !main_present {
                return Err(LoadError::RiderWithoutHook {
                    rider: rider.to_string(),
                    needs: needs.to_string(),
                });
            }
        }
        if h.prefilter && !h.filter {
            return Err(LoadError::RiderWithoutHook {
                rider: "prefilter".to_string(),
                needs: "filter".to_string(),
            });
        }
        if !COMBINATIONS.contains(&main.as_str()) {
            return Err(LoadError::Combination(main));
        }
        Ok(h)
    }

    /// The main hooks as letters, in the order F S R P B.
    pub fn main(&self) -> String {
        [
            (self.filter, 'F'),
            (self.score, 'S'),
            (self.reserve || self.unreserve, 'R'),
            (self.permit, 'P'),
            (self.bind, 'B'),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, c)| *c)
        .collect()
    }
}

fn signature(f: &FuncType) -> String {
    let p: Vec<String> = f.params().map(|t| format!("{t}")).collect();
    let r: Vec<String> = f.results().map(|t| format!("{t}")).collect();
    format!("({}) -> ({})", p.join(", "), r.join(", "))
}

/// What the host shows the guest, and what the guest handed back during the current call.
#[derive(Default)]
pub struct HostState {
    /// `guestConfig`.
    pub config: String,
    /// The configured klog severity (0 info .. 3 fatal).
    pub log_severity: i32,
    /// Protobuf `v1.Node` per node name (the scheduler snapshot).
    pub nodes: BTreeMap<String, Vec<u8>>,
    /// Protobuf `v1.Pod` of the pod being scheduled.
    pub current_pod: Vec<u8>,
    /// Protobuf `v1.Pod` for AddPod/RemovePod.
    pub target_pod: Vec<u8>,
    pub current_node: String,
    /// JSON array of node names (PreScore's input).
    pub filtered_node_list: String,
    /// JSON object node -> score (NormalizeScore's input).
    pub node_score_list: String,
    /// The wall clock the guest reads, ns since the Unix epoch.
    pub now_ns: u64,
    /// The current call's reason (`result.status_reason`).
    pub status_reason: Option<String>,
    /// `result.normalized_score_list`, as given.
    pub normalized_score_list: Option<String>,
    /// `result.node_names`, decoded.
    pub node_names: Option<Vec<String>>,
    /// `handle.eventrecorder.eventf` payloads, in order.
    pub events: Vec<String>,
    /// `k8s.io/klog` messages kept (severity, text).
    pub logs: Vec<(i32, String)>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// State of `random_get` (deterministic).
    random: u64,
}

fn memory(caller: &mut Caller<'_, HostState>) -> wasmtime::Result<Memory> {
    match caller.get_export("memory") {
        Some(Extern::Memory(m)) => Ok(m),
        _ => Err(wasmtime::Error::msg("guest doesn't export memory")),
    }
}

/// The bytes of `[ptr, ptr + len)`; a range outside memory traps the call.
fn read(
    caller: &mut Caller<'_, HostState>,
    ptr: u32,
    len: u32,
    what: &str,
) -> wasmtime::Result<Vec<u8>> {
    let m = memory(caller)?;
    let data = m.data(&*caller);
    let (start, end) = (ptr as usize, ptr as usize + len as usize);
    data.get(start..end)
        .map(<[u8]>::to_vec)
        .ok_or_else(|| wasmtime::Error::msg(format!("out of memory reading {what}")))
}

fn write(
    caller: &mut Caller<'_, HostState>,
    ptr: u32,
    bytes: &[u8],
    what: &str,
) -> wasmtime::Result<()> {
    let m = memory(caller)?;
    m.write(&mut *caller, ptr as usize, bytes)
        .map_err(|_| wasmtime::Error::msg(format!("out of memory writing {what}")))
}

/// The `buf, limit -> len` protocol: written only when it fits; the length always returned.
fn give(
    caller: &mut Caller<'_, HostState>,
    buf: u32,
    limit: u32,
    value: &[u8],
    what: &str,
) -> wasmtime::Result<u32> {
    let len = u32::try_from(value.len()).map_err(|_| wasmtime::Error::msg("value over 4 GiB"))?;
    if len > 0 && len <= limit {
        write(caller, buf, value, what)?;
    }
    Ok(len)
}

fn text(
    caller: &mut Caller<'_, HostState>,
    ptr: u32,
    len: u32,
    what: &str,
) -> wasmtime::Result<String> {
    Ok(String::from_utf8_lossy(&read(caller, ptr, len, what)?).into_owned())
}

/// Defines every import of the real host (spec §1.5) and the WASI functions a Rust guest uses.
fn link(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    type C<'a> = Caller<'a, HostState>;
    // k8s.io/api
    linker.func_wrap(
        "k8s.io/api",
        "node",
        |mut c: C, name_ptr: u32, name_len: u32, buf: u32, limit: u32| {
            let name = text(&mut c, name_ptr, name_len, "node name")?;
            let value = c.data().nodes.get(&name).cloned().unwrap_or_default();
            give(&mut c, buf, limit, &value, "node")
        },
    )?;
    linker.func_wrap(
        "k8s.io/api",
        "nodeList",
        |mut c: C, buf: u32, limit: u32| {
            let items = c
                .data()
                .nodes
                .values()
                .filter_map(|b| proto::Node::decode(b.as_slice()).ok())
                .collect();
            let value = proto::NodeList { items }.encode_to_vec();
            give(&mut c, buf, limit, &value, "nodeList")
        },
    )?;
    // k8s.io/scheduler: reads
    macro_rules! getter {
        ($name:literal, |$s:ident| $value:expr) => {
            linker.func_wrap(
                "k8s.io/scheduler",
                $name,
                |mut c: C, buf: u32, limit: u32| {
                    let $s = c.data();
                    let value: Vec<u8> = $value;
                    give(&mut c, buf, limit, &value, $name)
                },
            )?;
        };
    }
    getter!("get_config", |s| s.config.as_bytes().to_vec());
    getter!("currentPod", |s| s.current_pod.clone());
    getter!("targetPod", |s| s.target_pod.clone());
    getter!("currentNodeName", |s| s.current_node.as_bytes().to_vec());
    getter!("filteredNodeList", |s| s
        .filtered_node_list
        .as_bytes()
        .to_vec());
    getter!("nodeScoreList", |s| s.node_score_list.as_bytes().to_vec());
    getter!("nodeToStatusMap", |s| {
        let _ = s;
        b"{}".to_vec()
    });
    linker.func_wrap(
        "k8s.io/scheduler",
        "nodeImageStates",
        |mut c: C, name_ptr: u32, name_len: u32, buf: u32, limit: u32| {
            let _ = text(&mut c, name_ptr, name_len, "node name")?;
            give(&mut c, buf, limit, b"{}", "nodeImageStates")
        },
    )?;
    // k8s.io/scheduler: results
    linker.func_wrap(
        "k8s.io/scheduler",
        "result.status_reason",
        |mut c: C, ptr: u32, len: u32| -> wasmtime::Result<()> {
            let reason = text(&mut c, ptr, len, "status_reason")?;
            c.data_mut().status_reason = Some(reason);
            Ok(())
        },
    )?;
    linker.func_wrap(
        "k8s.io/scheduler",
        "result.node_names",
        |mut c: C, ptr: u32, len: u32| -> wasmtime::Result<()> {
            let bytes = read(&mut c, ptr, len, "node_names")?;
            // Every entry ends with a NUL; a trailing entry without one is dropped; empty ones skipped.
            let mut names = Vec::new();
            let mut rest = bytes.as_slice();
            while let Some(end) = rest.iter().position(|b| *b == 0) {
                if end > 0 {
                    names.push(String::from_utf8_lossy(&rest[..end]).into_owned());
                }
                rest = &rest[end + 1..];
            }
            c.data_mut().node_names = Some(names);
            Ok(())
        },
    )?;
    linker.func_wrap(
        "k8s.io/scheduler",
        "result.nominated_node_name",
        |mut c: C, ptr: u32, len: u32| text(&mut c, ptr, len, "nominated_node_name").map(|_| ()),
    )?;
    linker.func_wrap(
        "k8s.io/scheduler",
        "result.cluster_events",
        |mut c: C, ptr: u32, len: u32| read(&mut c, ptr, len, "cluster_events").map(|_| ()),
    )?;
    linker.func_wrap(
        "k8s.io/scheduler",
        "result.normalized_score_list",
        |mut c: C, ptr: u32, len: u32| -> wasmtime::Result<()> {
            let json = text(&mut c, ptr, len, "normalized_score_list")?;
            c.data_mut().normalized_score_list = Some(json);
            Ok(())
        },
    )?;
    linker.func_wrap(
        "k8s.io/scheduler",
        "handle.eventrecorder.eventf",
        |mut c: C, ptr: u32, len: u32| -> wasmtime::Result<()> {
            let json = text(&mut c, ptr, len, "event")?;
            c.data_mut().events.push(json);
            Ok(())
        },
    )?;
    linker.func_wrap(
        "k8s.io/scheduler",
        "handle.reject_waiting_pod",
        |mut c: C, uid_ptr: u32, uid_len: u32, out: u32, limit: u32| -> wasmtime::Result<()> {
            let _ = read(&mut c, uid_ptr, uid_len, "uid")?;
            if limit >= 8 {
                write(&mut c, out, &0u64.to_le_bytes(), "reject_waiting_pod")?;
            }
            Ok(())
        },
    )?;
    linker.func_wrap(
        "k8s.io/scheduler",
        "handle.get_waiting_pod",
        |mut c: C, uid_ptr: u32, uid_len: u32, _out: u32, _limit: u32| {
            read(&mut c, uid_ptr, uid_len, "uid").map(|_| ())
        },
    )?;
    // k8s.io/klog
    linker.func_wrap(
        "k8s.io/klog",
        "log",
        |mut c: C, severity: i32, ptr: u32, len: u32| -> wasmtime::Result<()> {
            let msg = text(&mut c, ptr, len, "log message")?;
            if severity <= c.data().log_severity || severity >= 2 {
                c.data_mut().logs.push((severity, msg));
            }
            Ok(())
        },
    )?;
    linker.func_wrap(
        "k8s.io/klog",
        "logs",
        |mut c: C,
         severity: i32,
         ptr: u32,
         len: u32,
         kvs_ptr: u32,
         kvs_len: u32|
         -> wasmtime::Result<()> {
            let mut msg = text(&mut c, ptr, len, "log message")?;
            let kvs = read(&mut c, kvs_ptr, kvs_len, "log key/values")?;
            for kv in kvs.split(|b| *b == 0).filter(|s| !s.is_empty()) {
                msg.push(' ');
                msg.push_str(&String::from_utf8_lossy(kv));
            }
            c.data_mut().logs.push((severity, msg));
            Ok(())
        },
    )?;
    linker.func_wrap("k8s.io/klog", "severity", |c: C| c.data().log_severity)?;
    // WASI (the functions a Rust wasip1 guest imports; no files, environment or arguments).
    let wasi = "wasi_snapshot_preview1";
    linker.func_wrap(
        wasi,
        "fd_write",
        |mut c: C, fd: i32, iovs: u32, count: u32, written: u32| -> wasmtime::Result<i32> {
            let raw = read(&mut c, iovs, count.saturating_mul(8), "iovecs")?;
            let mut out = Vec::new();
            for iov in raw.chunks_exact(8) {
                let ptr = u32::from_le_bytes([iov[0], iov[1], iov[2], iov[3]]);
                let len = u32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]]);
                out.extend(read(&mut c, ptr, len, "fd_write data")?);
            }
            let n = out.len() as u32;
            match fd {
                1 => c.data_mut().stdout.extend(out),
                2 => c.data_mut().stderr.extend(out),
                _ => return Ok(8), // EBADF
            }
            write(&mut c, written, &n.to_le_bytes(), "nwritten")?;
            Ok(0)
        },
    )?;
    linker.func_wrap(
        wasi,
        "clock_time_get",
        |mut c: C, _id: i32, _precision: i64, out: u32| -> wasmtime::Result<i32> {
            let now = c.data().now_ns;
            write(&mut c, out, &now.to_le_bytes(), "clock_time_get")?;
            Ok(0i32)
        },
    )?;
    linker.func_wrap(
        wasi,
        "random_get",
        |mut c: C, buf: u32, len: u32| -> wasmtime::Result<i32> {
            let mut bytes = Vec::with_capacity(len as usize);
            let mut x = c.data().random | 1;
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                bytes.push(x as u8);
            }
            c.data_mut().random = x;
            write(&mut c, buf, &bytes, "random_get")?;
            Ok(0i32)
        },
    )?;
    linker.func_wrap(
        wasi,
        "environ_sizes_get",
        |mut c: C, count: u32, size: u32| -> wasmtime::Result<i32> {
            write(&mut c, count, &0u32.to_le_bytes(), "environ count")?;
            write(&mut c, size, &0u32.to_le_bytes(), "environ size")?;
            Ok(0i32)
        },
    )?;
    linker.func_wrap(wasi, "environ_get", |_c: C, _environ: u32, _buf: u32| 0i32)?;
    linker.func_wrap(
        wasi,
        "args_sizes_get",
        |mut c: C, count: u32, size: u32| -> wasmtime::Result<i32> {
            write(&mut c, count, &0u32.to_le_bytes(), "args count")?;
            write(&mut c, size, &0u32.to_le_bytes(), "args size")?;
            Ok(0i32)
        },
    )?;
    linker.func_wrap(wasi, "args_get", |_c: C, _argv: u32, _buf: u32| 0i32)?;
    linker.func_wrap(
        wasi,
        "proc_exit",
        |_c: C, code: i32| -> wasmtime::Result<()> {
            Err(wasmtime::Error::msg(format!(
                "module closed with exit_code({code})"
            )))
        },
    )?;
    Ok(())
}

/// A compiled module: the engine, the module, its hooks and the linker with the host's imports.
pub struct Compiled {
    engine: Engine,
    module: Module,
    linker: Linker<HostState>,
    pub hooks: Hooks,
}

impl Compiled {
    /// Compiles and checks a module (binary or, for tests, text is not accepted: bytes only).
    pub fn new(bytes: &[u8]) -> Result<Arc<Compiled>, LoadError> {
        let engine = Engine::default();
        let module =
            Module::new(&engine, bytes).map_err(|e| LoadError::Compile(format!("{e:#}")))?;
        let hooks = Hooks::check(&module)?;
        let mut linker = Linker::new(&engine);
        link(&mut linker).map_err(|e| LoadError::Compile(format!("{e:#}")))?;
        Ok(Arc::new(Compiled {
            engine,
            module,
            linker,
            hooks,
        }))
    }

    /// The module's imports, as (module, name).
    pub fn imports(&self) -> Vec<(String, String)> {
        self.module
            .imports()
            .map(|i| (i.module().to_string(), i.name().to_string()))
            .collect()
    }

    /// The embedded module, compiled once per process.
    pub fn embedded() -> Result<Arc<Compiled>, LoadError> {
        static ONCE: OnceLock<Result<Arc<Compiled>, LoadError>> = OnceLock::new();
        ONCE.get_or_init(|| Compiled::new(EMBEDDED)).clone()
    }

    /// A new instance with `guest_config`; runs `_start` when exported.
    pub fn instantiate(self: &Arc<Self>, guest_config: &str) -> Result<Guest, LoadError> {
        let state = HostState {
            config: guest_config.to_string(),
            random: 0x9e37_79b9_7f4a_7c15,
            ..HostState::default()
        };
        let mut store = Store::new(&self.engine, state);
        let instance = self
            .linker
            .instantiate(&mut store, &self.module)
            .map_err(|e| LoadError::Instantiate(format!("{e:#}")))?;
        if let Some(start) = instance.get_func(&mut store, "_start") {
            let start = start
                .typed::<(), ()>(&store)
                .map_err(|e| LoadError::Instantiate(format!("_start: {e:#}")))?;
            if let Err(e) = start.call(&mut store, ()) {
                let stderr = String::from_utf8_lossy(&store.data().stderr)
                    .trim()
                    .to_string();
                return Err(LoadError::Instantiate(format!("_start: {e:#}: {stderr}")));
            }
        }
        Ok(Guest {
            compiled: Arc::clone(self),
            store,
            instance,
        })
    }
}

/// A trap (or a hook the module does not export) in one call.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("guest fault in {call}: {message}")]
pub struct Fault {
    pub call: String,
    pub message: String,
}

/// One guest instance.
pub struct Guest {
    compiled: Arc<Compiled>,
    pub store: Store<HostState>,
    instance: Instance,
}

impl Guest {
    pub fn hooks(&self) -> &Hooks {
        &self.compiled.hooks
    }

    pub fn state(&mut self) -> &mut HostState {
        self.store.data_mut()
    }

    fn fault(&self, call: &str, e: impl std::fmt::Display) -> Fault {
        let stderr = String::from_utf8_lossy(&self.store.data().stderr)
            .trim()
            .to_string();
        Fault {
            call: call.to_string(),
            message: if stderr.is_empty() {
                e.to_string()
            } else {
                format!("{e}: {stderr}")
            },
        }
    }

    fn call<R: wasmtime::WasmResults>(&mut self, name: &str) -> Result<R, Fault> {
        let store = &mut self.store;
        store.data_mut().status_reason = None;
        let f = self
            .instance
            .get_typed_func::<(), R>(&mut *store, name)
            .map_err(|e| Fault {
                call: name.to_string(),
                message: format!("{e:#}"),
            })?;
        let out = f.call(&mut self.store, ());
        out.map_err(|e| self.fault(name, format!("{e:#}")))
    }

    /// Calls a `() -> i32` hook: the status and the reason set during the call.
    pub fn status(&mut self, name: &str) -> Result<(i32, String), Fault> {
        let code = self.call::<i32>(name)?;
        let reason = self
            .store
            .data_mut()
            .status_reason
            .take()
            .unwrap_or_default();
        Ok((code, reason))
    }

    /// Calls a `() -> i64` hook: the raw value and the reason.
    pub fn wide(&mut self, name: &str) -> Result<(i64, String), Fault> {
        let v = self.call::<i64>(name)?;
        let reason = self
            .store
            .data_mut()
            .status_reason
            .take()
            .unwrap_or_default();
        Ok((v, reason))
    }

    /// Sets an exported mutable global (tests drive hooks this way, as the upstream
    /// `*_from_global.wat` modules do).
    pub fn set_global(&mut self, name: &str, value: wasmtime::Val) -> Result<(), Fault> {
        let fault = |message: String| Fault {
            call: name.to_string(),
            message,
        };
        let g = self
            .instance
            .get_global(&mut self.store, name)
            .ok_or_else(|| fault("no such global".to_string()))?;
        g.set(&mut self.store, value)
            .map_err(|e| fault(format!("{e:#}")))
    }

    /// Calls a `() -> ()` hook.
    pub fn unit(&mut self, name: &str) -> Result<(), Fault> {
        self.call::<()>(name)
    }
}

/// The `wasm-extension` engine (see the module comment).
pub struct WasmExtensionScheduler {
    compiled: Arc<Compiled>,
    guest: Guest,
    /// The library, fed every delta: the node agent's view (pods on nodes) that the published
    /// usage is computed from, and the answers to what this host has no hook for.
    agent: hamr_guest::Engine,
    /// Nodes in the order first given.
    nodes: Vec<api::Node>,
    /// Node -> (resourceVersion, protobuf bytes) as last shown.
    shown: BTreeMap<String, (u64, Vec<u8>)>,
}

/// A cycle up to Reserve: the verdicts, whether the plugin manages the pod, the chosen node.
type CycleOutcome = (Vec<api::NodeVerdict>, bool, Option<String>);

/// Whether a verdict code from the guest is one of the framework's.
fn verdict_code(code: i32) -> Option<api::Code> {
    match code {
        code::SUCCESS => Some(api::Code::Success),
        code::UNSCHEDULABLE => Some(api::Code::Unschedulable),
        code::UNSCHEDULABLE_AND_UNRESOLVABLE => Some(api::Code::UnschedulableAndUnresolvable),
        _ => None,
    }
}

impl WasmExtensionScheduler {
    /// The embedded module with an empty configuration.
    pub fn load() -> Result<WasmExtensionScheduler, LoadError> {
        Self::with(Compiled::embedded()?)
    }

    pub fn with(compiled: Arc<Compiled>) -> Result<WasmExtensionScheduler, LoadError> {
        let guest = compiled.instantiate("")?;
        Ok(WasmExtensionScheduler {
            compiled,
            guest,
            agent: hamr_guest::Engine::new(),
            nodes: Vec::new(),
            shown: BTreeMap::new(),
        })
    }

    /// The guest instance (tests read its logs and events).
    pub fn guest(&mut self) -> &mut Guest {
        &mut self.guest
    }

    /// Shows every node with its published usage; a node whose bytes change gets a new
    /// resourceVersion, as the API server would give it.
    fn publish(&mut self) {
        let mut snapshot = BTreeMap::new();
        for n in &self.nodes {
            let mut node = n.clone();
            node.annotations.retain(|(k, _)| k != NODE_DEVICE_USAGE);
            let usage = usage_annotation::from_ledger(self.agent.ledger(), &node.name);
            node.annotations
                .push((NODE_DEVICE_USAGE.to_string(), usage.encode()));
            let (version, previous) = self.shown.get(&n.name).cloned().unwrap_or_default();
            let unversioned = proto::Node::from_api(&node, "").encode_to_vec();
            let (version, bytes) = if previous == unversioned {
                (version, previous)
            } else {
                (version + 1, unversioned)
            };
            self.shown.insert(n.name.clone(), (version, bytes));
            let versioned = proto::Node::from_api(&node, &version.to_string()).encode_to_vec();
            snapshot.insert(n.name.clone(), versioned);
        }
        self.shown.retain(|name, _| snapshot.contains_key(name));
        self.guest.state().nodes = snapshot;
    }

    fn begin(&mut self, pod: &api::Pod, now: i64) {
        let s = self.guest.state();
        s.current_pod = proto::Pod::from_api(pod).encode_to_vec();
        s.now_ns = u64::try_from(now)
            .unwrap_or(0)
            .saturating_mul(1_000_000_000);
        s.events.clear();
        s.normalized_score_list = None;
        s.node_names = None;
    }

    /// Starts a cycle for `pod` at `now`: `prefilter`'s status and reason.
    pub fn begin_cycle(&mut self, pod: &api::Pod, now: i64) -> Result<(i32, String), Fault> {
        self.begin(pod, now);
        self.guest.status("prefilter")
    }

    /// `filter` on one node of the current cycle.
    pub fn filter_node(&mut self, node: &str) -> Result<(i32, String), Fault> {
        self.guest.state().current_node = node.to_string();
        self.guest.status("filter")
    }

    /// `score` on one node of the current cycle: status, score and reason.
    pub fn score_node(&mut self, node: &str) -> Result<(i32, i32, String), Fault> {
        self.guest.state().current_node = node.to_string();
        let (v, reason) = self.guest.wide("score")?;
        let (c, score) = unpack_score(v);
        Ok((c, score, reason))
    }

    /// One scheduling cycle up to (not including) Reserve: the verdicts, whether the plugin
    /// manages the pod, and the chosen node. `Err` carries an Error status's reason.
    fn cycle(
        &mut self,
        pod: &api::Pod,
        candidates: &[String],
        now: i64,
    ) -> Result<Result<CycleOutcome, api::Error>, Fault> {
        let success = |n: &String| api::NodeVerdict {
            node: n.clone(),
            code: api::Code::Success,
            reason: String::new(),
            counts: Vec::new(),
            score: 0,
        };
        let (code, reason) = self.begin_cycle(pod, now)?;
        match code {
            code::SUCCESS => {}
            code::SKIP => return Ok(Ok((candidates.iter().map(success).collect(), false, None))),
            c => {
                if let Some(
                    c @ (api::Code::Unschedulable | api::Code::UnschedulableAndUnresolvable),
                ) = verdict_code(c)
                {
                    let verdicts = candidates
                        .iter()
                        .map(|n| api::NodeVerdict {
                            code: c,
                            reason: reason.clone(),
                            ..success(n)
                        })
                        .collect();
                    return Ok(Ok((verdicts, true, None)));
                }
                return Ok(Err(api::Error::Other(reason)));
            }
        }
        let mut verdicts = Vec::with_capacity(candidates.len());
        for n in candidates {
            let (c, reason) = self.filter_node(n)?;
            match verdict_code(c) {
                Some(code) => verdicts.push(api::NodeVerdict {
                    code,
                    reason,
                    ..success(n)
                }),
                None => return Ok(Err(api::Error::Other(reason))),
            }
        }
        let feasible: Vec<String> = verdicts
            .iter()
            .filter(|v| v.code == api::Code::Success)
            .map(|v| v.node.clone())
            .collect();
        // The framework skips scoring when one node is feasible.
        if feasible.len() <= 1 {
            return Ok(Ok((verdicts, true, feasible.into_iter().next())));
        }
        self.guest.state().filtered_node_list =
            serde_json::to_string(&feasible).unwrap_or_default();
        let (c, reason) = self.guest.status("prescore")?;
        let mut scores: BTreeMap<String, i64> = BTreeMap::new();
        match c {
            code::SUCCESS => {
                for n in &feasible {
                    let (c, score, reason) = self.score_node(n)?;
                    if c != code::SUCCESS {
                        return Ok(Err(api::Error::Other(reason)));
                    }
                    scores.insert(n.clone(), i64::from(score));
                    if let Some(v) = verdicts.iter_mut().find(|v| &v.node == n) {
                        v.score = u32::try_from(score).unwrap_or(0);
                    }
                }
                self.guest.state().node_score_list =
                    serde_json::to_string(&scores).unwrap_or_default();
                let (c, reason) = self.guest.status("normalizescore")?;
                if c != code::SUCCESS {
                    return Ok(Err(api::Error::Other(reason)));
                }
                if let Some(json) = self.guest.state().normalized_score_list.take() {
                    let new: BTreeMap<String, i64> =
                        serde_json::from_str(&json).map_err(|e| Fault {
                            call: "normalizescore".into(),
                            message: format!("normalized_score_list is not a JSON score map: {e}"),
                        })?;
                    if new.len() != scores.len() || !scores.keys().all(|k| new.contains_key(k)) {
                        // The real host panics here.
                        return Err(Fault {
                            call: "normalizescore".into(),
                            message: "normalized_score_list must hold every scored node".into(),
                        });
                    }
                    scores = new;
                }
            }
            code::SKIP => {}
            _ => return Ok(Err(api::Error::Other(reason))),
        }
        let top = feasible
            .iter()
            .map(|n| scores.get(n).copied().unwrap_or(0))
            .max()
            .unwrap_or(0);
        let chosen = feasible
            .into_iter()
            .find(|n| scores.get(n).copied().unwrap_or(0) == top);
        Ok(Ok((verdicts, true, chosen)))
    }

    /// Reserve on `node`: the decision from the reservation's event, or the rejecting verdict.
    fn reserve_on(
        &mut self,
        pod: &api::Pod,
        node: &str,
    ) -> Result<Result<api::Reservation, api::Error>, Fault> {
        self.guest.state().current_node = node.to_string();
        self.guest.state().events.clear();
        let (c, reason) = self.guest.status("reserve")?;
        match c {
            code::SUCCESS => {}
            code::ERROR => return Ok(Err(api::Error::Other(reason))),
            other => {
                self.guest.unit("unreserve")?;
                let code = verdict_code(other).unwrap_or(api::Code::Unschedulable);
                return Ok(Ok(api::Reservation::Rejected(api::NodeVerdict {
                    node: node.to_string(),
                    code,
                    reason,
                    counts: Vec::new(),
                    score: 0,
                })));
            }
        }
        let note = self
            .guest
            .state()
            .events
            .iter()
            .filter_map(|e| serde_json::from_str::<serde_json::Value>(e).ok())
            .filter(|e| {
                e["Reason"] == DECISION_EVENT_REASON
                    && e["RegardingReference"]["UID"] == pod.uid.as_str()
            })
            .filter_map(|e| {
                e["Note"]
                    .as_str()
                    .and_then(|n| serde_json::from_str::<DecisionNote>(n).ok())
            })
            .next_back();
        let decision = match note {
            Some(n) => api::Decision {
                node: n.node,
                annotations: n.annotations.into_iter().collect(),
                labels: n.labels.into_iter().collect(),
                grants: Vec::new(),
            },
            None => api::Decision {
                node: node.to_string(),
                annotations: Vec::new(),
                labels: Vec::new(),
                grants: Vec::new(),
            },
        };
        Ok(Ok(api::Reservation::Reserved(decision)))
    }
}

impl Scheduler for WasmExtensionScheduler {
    type Fault = Fault;

    fn configure(&mut self, config: &str) -> Result<Result<(), api::Error>, Fault> {
        let library = self.agent.configure(config);
        match (self.compiled.instantiate(config), library) {
            (Ok(guest), Ok(())) => {
                self.guest = guest;
                self.publish();
                Ok(Ok(()))
            }
            (Err(_), Err(e)) => Ok(Err(e)),
            (Ok(_), Err(e)) => Err(Fault {
                call: "_start".into(),
                message: format!("the guest accepted a configuration the library refuses: {e}"),
            }),
            (Err(e), Ok(())) => Err(Fault {
                call: "_start".into(),
                message: e.to_string(),
            }),
        }
    }

    fn apply(&mut self, deltas: &[api::Delta]) -> Result<Vec<api::DeltaError>, Fault> {
        let errors = self.agent.apply(deltas);
        for d in deltas {
            match d {
                api::Delta::NodeUpsert(n) => match self.nodes.iter_mut().find(|x| x.name == n.name)
                {
                    Some(slot) => *slot = n.clone(),
                    None => self.nodes.push(n.clone()),
                },
                api::Delta::NodeRemove(name) => self.nodes.retain(|x| &x.name != name),
                _ => {}
            }
        }
        self.publish();
        Ok(errors)
    }

    fn clear(&mut self) -> Result<(), Fault> {
        self.agent.clear();
        self.nodes.clear();
        let config = self.guest.state().config.clone();
        self.guest = self.compiled.instantiate(&config).map_err(|e| Fault {
            call: "_start".into(),
            message: e.to_string(),
        })?;
        self.publish();
        Ok(())
    }

    fn filter(
        &mut self,
        pod: &api::Pod,
        candidates: &[String],
        now: i64,
    ) -> Result<Result<api::FilterOutcome, api::Error>, Fault> {
        let (verdicts, managed, chosen) = match self.cycle(pod, candidates, now)? {
            Ok(c) => c,
            Err(e) => return Ok(Err(e)),
        };
        let decision = match chosen {
            Some(node) if managed => match self.reserve_on(pod, &node)? {
                Ok(api::Reservation::Reserved(d)) => Some(d),
                Ok(api::Reservation::Rejected(_)) => None,
                Err(e) => return Ok(Err(e)),
            },
            _ => None,
        };
        let mut outcome = api::FilterOutcome::new(managed, decision);
        for (candidate, v) in verdicts.into_iter().enumerate() {
            outcome.push_verdict(candidate, v);
        }
        Ok(Ok(outcome))
    }

    fn score(
        &mut self,
        pod: &api::Pod,
        nodes: &[String],
        now: i64,
    ) -> Result<Result<Vec<api::NodeScore>, api::Error>, Fault> {
        self.begin(pod, now);
        let (c, reason) = self.guest.status("prefilter")?;
        if c == code::SKIP {
            return Ok(Ok(nodes
                .iter()
                .map(|n| api::NodeScore {
                    node: n.clone(),
                    score: 0,
                })
                .collect()));
        }
        if c != code::SUCCESS {
            return Ok(Err(api::Error::Other(reason)));
        }
        let mut out = Vec::new();
        for n in nodes {
            self.guest.state().current_node = n.clone();
            let (v, reason) = self.guest.wide("score")?;
            let (c, score) = unpack_score(v);
            if c != code::SUCCESS {
                return Ok(Err(api::Error::Other(reason)));
            }
            out.push(api::NodeScore {
                node: n.clone(),
                score: u32::try_from(score).unwrap_or(0),
            });
        }
        Ok(Ok(out))
    }

    fn reserve(
        &mut self,
        pod: &api::Pod,
        node: &str,
        now: i64,
    ) -> Result<Result<api::Reservation, api::Error>, Fault> {
        self.begin(pod, now);
        let (c, reason) = self.guest.status("prefilter")?;
        if c != code::SUCCESS && c != code::SKIP {
            return Ok(Err(api::Error::Other(reason)));
        }
        self.reserve_on(pod, node)
    }

    fn unreserve(&mut self, pod_uid: &str) -> Result<(), Fault> {
        let pod = api::Pod {
            uid: pod_uid.to_string(),
            ..api::Pod::default()
        };
        self.guest.state().current_pod = proto::Pod::from_api(&pod).encode_to_vec();
        self.guest.unit("unreserve")
    }

    fn admit(&mut self, pod: &api::Pod) -> Result<Result<api::Admission, api::Error>, Fault> {
        Ok(self.agent.admit(pod))
    }

    fn managed_resources(&mut self) -> Result<Vec<String>, Fault> {
        Ok(self.agent.managed_resources())
    }

    fn explain(
        &mut self,
        pod: &api::Pod,
        nodes: &[String],
        now: i64,
    ) -> Result<Result<Vec<api::NodeExplanation>, api::Error>, Fault> {
        Ok(self.agent.explain(pod, nodes, now))
    }

    fn usage(&mut self, nodes: &[String], now: i64) -> Result<Vec<api::NodeUsage>, Fault> {
        Ok(self.agent.usage(nodes, now))
    }

    fn quotas(&mut self) -> Result<Vec<api::QuotaUsage>, Fault> {
        Ok(self.agent.quotas())
    }

    fn handshakes(&mut self, now: i64) -> Result<Vec<api::NodeHandshake>, Fault> {
        Ok(self.agent.handshakes(now))
    }
}
