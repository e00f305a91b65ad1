//! `hamr`: the host. It knows Kubernetes; the guest knows devices.
//!
//! Start reading at [`place`], the one loop every command shares (configure, feed the cluster
//! as deltas, then admit, filter and place pods in order), written against
//! [`hamr_guest::api::Scheduler`] so that every engine ([`engine`]: the native library or the
//! component in [`runtime`], or the kube-scheduler-wasm-extension core module in
//! [`wasm_extension`]) runs the same code. [`input`] reads Kubernetes objects from files
//! and [`k8s`] converts them to the contract's records. The commands: [`simulate`],
//! [`explain`] and [`conformance`].
// One `unsafe` block, audited: `runtime::release_freed_memory` (glibc's `malloc_trim`).
#![deny(unsafe_code)]

pub mod conformance;
pub mod deploy;
pub mod engine;
pub mod explain;
pub mod input;
/// Kubernetes objects to the contract's records and back (the `hamr-k8s-convert` crate, shared
/// with the node agent).
pub use hamr_k8s_convert as k8s;
pub mod place;
pub mod runtime;
pub mod serve;
pub mod simulate;
pub mod table;
pub mod wasm_extension;
