//! MetaX (spec hami-vendors.md §2): the whole-card backend `Metax-GPU` and the shared sGPU
//! backend `Metax-SGPU` with QoS labels, online/offline app classes and MetaXLink topology.

pub mod gpu;
pub mod sgpu;

#[cfg(test)]
mod tests;

pub use gpu::MetaxGpu;
pub use sgpu::MetaxSgpu;

/// Whole-card vendor key and resource.
pub const GPU_VENDOR: &str = "Metax-GPU";
pub const GPU_RESOURCE: &str = "metax-tech.com/gpu";
pub const GPU_TO_ALLOCATE: &str = "hami.io/metax-gpu-devices-to-allocate";
pub const GPU_ALLOCATED: &str = "hami.io/metax-gpu-devices-allocated";
pub const TOPOLOGY_LOSSES: &str = "metax-tech.com/gpu.topology.losses";
pub const TOPOLOGY_SCORES: &str = "metax-tech.com/gpu.topology.scores";

/// sGPU vendor key, resources and annotations.
pub const SGPU_VENDOR: &str = "Metax-SGPU";
pub const SGPU_RESOURCE: &str = "metax-tech.com/sgpu";
pub const VCORE_RESOURCE: &str = "metax-tech.com/vcore";
pub const VMEMORY_RESOURCE: &str = "metax-tech.com/vmemory";
pub const REGISTER: &str = "metax-tech.com/node-gpu-devices";
pub const SGPU_TO_ALLOCATE: &str = "hami.io/metax-sgpu-devices-to-allocate";
pub const SGPU_ALLOCATED: &str = "hami.io/metax-sgpu-devices-allocated";
pub const GPU_DEVICES_ALLOCATED: &str = "metax-tech.com/gpu-devices-allocated";
pub const PREDICATE_TIME: &str = "metax-tech.com/predicate-time";
pub const QOS_POLICY: &str = "metax-tech.com/sgpu-qos-policy";
pub const APP_CLASS: &str = "metax-tech.com/sgpu-app-class";
pub const TOPOLOGY_AWARE: &str = "metax-tech.com/sgpu-topology-aware";
pub const USE_UUID: &str = "metax-tech.com/use-gpuuuid";
pub const NOUSE_UUID: &str = "metax-tech.com/nouse-gpuuuid";

/// The QoS values, the first being the admission default.
pub const QOS_VALUES: [&str; 3] = ["best-effort", "fixed-share", "burst-share"];

pub const CARD_UNHEALTHY: &str = "CardUnhealthy";
pub const CARD_QOS_POLICY_MISMATCH: &str = "CardQosPolicyMismatch";
pub const CARD_APP_CLASS_MISMATCH: &str = "CardAppClassMismatch";
