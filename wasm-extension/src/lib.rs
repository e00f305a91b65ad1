//! `hamr-wasm-extension`: hamr's guest as a core WebAssembly module for
//! [kube-scheduler-wasm-extension](https://github.com/kubernetes-sigs/kube-scheduler-wasm-extension),
//! whose runtime (wazero) cannot load components.
//!
//! Built for `wasm32-wasip1` (profile `guest`), the module exports `memory` and the hooks
//! `prefilter`, `filter`, `prescore`, `score`, `normalizescore`, `reserve` and `unreserve`
//! (filter + score + reserve, one of the shapes the host accepts that parks no instance), plus
//! `_start`, which the host runs at instantiation and which fails when `guestConfig` is
//! refused. It imports only `k8s.io/api.node`, a few `k8s.io/scheduler` functions, `k8s.io/klog.log`
//! and WASI's clock (and `fd_write` for the start-up error).
//!
//! [`proto`] holds the protobuf subset of `v1.Pod` / `v1.Node`; [`plugin`] the hooks, written
//! against a [`plugin::Host`] so they run natively too; `abi` (wasm32 only) the exports and
//! imports. Natively this crate is a library (hamr's test host uses [`proto`]).
#![cfg_attr(not(target_arch = "wasm32"), forbid(unsafe_code))]

pub mod plugin;
pub mod proto;

#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)] // the ABI: raw imports and exports over the module's own memory
mod abi;
