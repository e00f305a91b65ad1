//! `hamr`: the host. It knows Kubernetes; the guest knows devices.
#![forbid(unsafe_code)]

pub mod runtime;
