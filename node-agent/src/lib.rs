//! `hamr-node-agent`: the DaemonSet side of hamr (device discovery, registration, the kubelet
//! device plugin, dynamic MIG and health). Not built yet: this crate only reserves its place in
//! the workspace so that the layout of `DESIGN.md` holds from the start.
#![forbid(unsafe_code)]
