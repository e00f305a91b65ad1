//! Enflame GCU (spec hami-vendors.md §4): whole cards (`GCU`) and shared cards (`Enflame`),
//! the latter both as DRS profile slicing (HEAD, §4.2) and as the v2.7 vGCU percentage slicing
//! (§4.3). A node registers one shared form or the other; a request says which it wants.

pub mod drs;
pub mod gcu;
pub mod shared;

#[cfg(test)]
mod tests;

pub use gcu::EnflameGcu;
pub use shared::EnflameShared;

/// Whole-card vendor key, resource and annotations.
pub const GCU_VENDOR: &str = "GCU";
pub const GCU_RESOURCE: &str = "enflame.com/gcu";
pub const GCU_TO_ALLOCATE: &str = "hami.io/enflame-gcu-devices-to-allocate";
pub const GCU_ALLOCATED: &str = "hami.io/enflame-gcu-devices-allocated";

/// Shared vendor key and the DRS resources and registration.
pub const SHARED_VENDOR: &str = "Enflame";
pub const DRS_RESOURCE: &str = "enflame.com/drs-gcu";
pub const GCU_MEMORY: &str = "enflame.com/gcu-memory";
pub const GCU_CORE: &str = "enflame.com/gcu-core";
pub const DRS_CAPACITY: &str = "enflame.com/gcu-drs-capacity";

/// The v2.7 vGCU resources and node capacities.
pub const VGCU_RESOURCE: &str = "enflame.com/vgcu";
pub const VGCU_PERCENTAGE: &str = "enflame.com/vgcu-percentage";
pub const GCU_COUNT: &str = "enflame.com/gcu-count";
pub const SHARED_GCU: &str = "enflame.com/shared-gcu";

/// Annotations written for shared cards.
pub const VGPU_ALLOCATED: &str = "hami.io/enflame-vgpu-devices-allocated";
pub const ASSIGNED: &str = "enflame.com/gcu-assigned";
pub const ASSIGNED_TIME: &str = "enflame.com/gcu-assigned-time";
pub const ASSIGNED_INDEX: &str = "enflame.com/gcu-assigned-index";
pub const ASSIGNED_ID: &str = "enflame.com/gcu-assigned-id";
pub const ASSIGNED_MINOR: &str = "enflame.com/gcu-assigned-minor";
pub const REQUEST_SIZE: &str = "enflame.com/gcu-request-size";
pub const ASSIGNED_CONTAINERS: &str = "assigned-containers";

/// UUID lists of the shared backend.
pub const USE_UUID: &str = "enflame.com/use-gpuuuid";
pub const NOUSE_UUID: &str = "enflame.com/nouse-gpuuuid";

/// `MemPercentagereq` values that say which shared mode a request is in (spec §1.2: Enflame
/// reuses the field as a mode flag): DRS by profile size, DRS by memory/core spec, and the
/// v2.7 percentage slices (101, "no percentage", so the device score reads `Memreq`).
pub const MODE_DRS_DIRECT: i64 = 0;
pub const MODE_DRS_SPEC: i64 = -1;
pub const MODE_VGCU: i64 = 101;

/// `custom` keys of shared cards.
pub const KIND: &str = "kind";
pub const KIND_DRS: &str = "drs";
pub const KIND_VGCU: &str = "vgcu";
/// v2.7 cards: the slices per card the node registered (`shared-gcu / gcu-count`).
pub const SLICES: &str = "slices";

/// No DRS profile matches the request.
pub const MODE_NOT_FIT: &str = "ModeNotFit";
