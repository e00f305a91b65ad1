//! The kube-scheduler-wasm-extension ABI (spec §1.4–1.8): the hooks exported with the exact
//! signatures the host checks, and the host's imports. The guest owns all memory: values come
//! in through a buffer the guest offers (`buf, limit -> len`, retried with a larger buffer when
//! `len > limit`) and go out as `(ptr, len)` ranges the host copies during the call.

use std::cell::RefCell;

use crate::plugin::{Host, Plugin};

#[link(wasm_import_module = "k8s.io/api")]
unsafe extern "C" {
    #[link_name = "node"]
    fn k8s_node(name_ptr: *const u8, name_len: u32, buf: *mut u8, limit: u32) -> u32;
}

#[link(wasm_import_module = "k8s.io/scheduler")]
unsafe extern "C" {
    #[link_name = "get_config"]
    fn k8s_get_config(buf: *mut u8, limit: u32) -> u32;
    #[link_name = "currentPod"]
    fn k8s_current_pod(buf: *mut u8, limit: u32) -> u32;
    #[link_name = "currentNodeName"]
    fn k8s_current_node_name(buf: *mut u8, limit: u32) -> u32;
    #[link_name = "nodeScoreList"]
    fn k8s_node_score_list(buf: *mut u8, limit: u32) -> u32;
    #[link_name = "result.status_reason"]
    fn k8s_status_reason(ptr: *const u8, len: u32);
    #[link_name = "result.normalized_score_list"]
    fn k8s_normalized_score_list(ptr: *const u8, len: u32);
    #[link_name = "handle.eventrecorder.eventf"]
    fn k8s_eventf(ptr: *const u8, len: u32);
}

#[link(wasm_import_module = "k8s.io/klog")]
unsafe extern "C" {
    #[link_name = "log"]
    fn klog_log(severity: i32, ptr: *const u8, len: u32);
}

thread_local! {
    /// The plugin, created on the first call (or by `_start`).
    static PLUGIN: RefCell<Option<Plugin>> = const { RefCell::new(None) };
    /// The size of the largest value read so far: the next read offers at least this much.
    static READ_HINT: RefCell<usize> = const { RefCell::new(2048) };
}

/// Reads a value with the `buf, limit -> len` protocol.
fn read(mut call: impl FnMut(*mut u8, u32) -> u32) -> Vec<u8> {
    let mut buf = vec![0u8; READ_HINT.with(|h| *h.borrow())];
    loop {
        let limit = u32::try_from(buf.len()).unwrap_or(u32::MAX);
        let len = call(buf.as_mut_ptr(), limit) as usize;
        if len <= buf.len() {
            buf.truncate(len);
            return buf;
        }
        READ_HINT.with(|h| *h.borrow_mut() = len);
        buf.resize(len, 0);
    }
}

fn len32(s: &[u8]) -> u32 {
    u32::try_from(s.len()).unwrap_or(u32::MAX)
}

/// The imports, as the plugin's [`Host`].
struct Imports;

impl Host for Imports {
    fn config(&mut self) -> Vec<u8> {
        read(|b, l| unsafe { k8s_get_config(b, l) })
    }
    fn current_pod(&mut self) -> Vec<u8> {
        read(|b, l| unsafe { k8s_current_pod(b, l) })
    }
    fn current_node_name(&mut self) -> Vec<u8> {
        read(|b, l| unsafe { k8s_current_node_name(b, l) })
    }
    fn node(&mut self, name: &str) -> Vec<u8> {
        let n = name.as_bytes();
        read(|b, l| unsafe { k8s_node(n.as_ptr(), len32(n), b, l) })
    }
    fn node_score_list(&mut self) -> Vec<u8> {
        read(|b, l| unsafe { k8s_node_score_list(b, l) })
    }
    fn set_status_reason(&mut self, reason: &str) {
        unsafe { k8s_status_reason(reason.as_ptr(), len32(reason.as_bytes())) }
    }
    fn set_normalized_score_list(&mut self, json: &str) {
        unsafe { k8s_normalized_score_list(json.as_ptr(), len32(json.as_bytes())) }
    }
    fn event(&mut self, json: &str) {
        unsafe { k8s_eventf(json.as_ptr(), len32(json.as_bytes())) }
    }
    fn log(&mut self, severity: i32, message: &str) {
        unsafe { klog_log(severity, message.as_ptr(), len32(message.as_bytes())) }
    }
    fn now(&mut self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }
}

/// Runs `f` on the plugin, creating it (reading `guestConfig`) on first use.
fn with<T>(f: impl FnOnce(&mut Plugin, &mut Imports) -> T) -> T {
    PLUGIN.with(|cell| {
        let mut slot = cell.borrow_mut();
        let plugin = slot.get_or_insert_with(|| Plugin::new(&mut Imports));
        f(plugin, &mut Imports)
    })
}

/// Run by the host when it instantiates the module: reads `guestConfig` and fails (a trap,
/// with the reason on stderr, which the host appends to its error) when it is refused, so a
/// bad configuration stops the scheduler at start-up.
#[unsafe(no_mangle)]
pub extern "C" fn _start() {
    if let Some(e) = with(|p, _| p.config_error().map(str::to_string)) {
        eprintln!("hamr: guestConfig refused: {e}");
        core::arch::wasm32::unreachable();
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn prefilter() -> u32 {
    with(|p, h| p.prefilter(h)) as u32
}

#[unsafe(no_mangle)]
pub extern "C" fn filter() -> u32 {
    with(|p, h| p.filter(h)) as u32
}

#[unsafe(no_mangle)]
pub extern "C" fn prescore() -> u32 {
    with(|p, h| p.prescore(h)) as u32
}

/// Low 32 bits: status; high 32 bits: score (the TinyGo SDK's `(score << 32) | status`).
#[unsafe(no_mangle)]
pub extern "C" fn score() -> u64 {
    let (code, score) = with(|p, h| p.score(h));
    (u64::from(score as u32) << 32) | u64::from(code as u32)
}

#[unsafe(no_mangle)]
pub extern "C" fn normalizescore() -> u32 {
    with(|p, h| p.normalize_score(h)) as u32
}

#[unsafe(no_mangle)]
pub extern "C" fn reserve() -> u32 {
    with(|p, h| p.reserve(h)) as u32
}

#[unsafe(no_mangle)]
pub extern "C" fn unreserve() {
    with(|p, h| p.unreserve(h))
}
