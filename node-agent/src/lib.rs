//! `hamr-node-agent`: the DaemonSet side of hamr. It discovers the node's devices
//! ([`discovery`]), publishes them in HAMi's registration annotation ([`register`]), and serves
//! kubelet's device plugin API ([`plugin`]), answering `Allocate` from the scheduler's decision
//! annotations ([`allocate`]).
//!
//! Start reading at [`discovery::Discovery`], then [`register::encode_register`], then
//! [`allocate::Allocator::allocate`].
// Unsafe code is denied everywhere but `mig::nvml`, the raw NVML MIG calls (STYLE.md: one FFI
// file per crate), which allows it with a reason.
#![deny(unsafe_code)]

pub mod allocate;
pub mod annotate;
pub mod complete;
pub mod config;
pub mod discovery;
pub mod filter;
pub mod health;
pub mod kubelet;
pub mod lock;
pub mod mig;
#[cfg(test)]
mod mock_api;
pub mod plugin;
pub mod pods;
pub mod register;
pub mod topology;
pub mod usage;

/// The kubelet device plugin API v1beta1, generated from `proto/deviceplugin.proto`.
pub mod api {
    #![allow(clippy::all, missing_docs)] // generated code
    tonic::include_proto!("v1beta1");
}
