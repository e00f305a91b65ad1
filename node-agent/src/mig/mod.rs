//! Dynamic MIG (node-side.md §6): what a card can be cut into, and the GPU/compute instances
//! created for the slices the scheduler reserved (`hami.io/vgpu-mig-allocations`, or Volcano's
//! `UUID[<group>-<position>]` in `volcano.sh/vgpu-ids-new`).
//!
//! - [`GiProfile`]: one GPU-instance profile of a card as NVML reports it (discovery fills
//!   `Device::mig_profiles`); [`profiles::registered`] turns them into HAMi's `migProfiles`
//!   through `migProfileAllowlist`.
//! - [`MigControl`]: the card operations (mode, create, destroy, enumerate, processes) behind
//!   one trait, with an in-memory backend ([`fake`]) and NVML ([`nvml`], the crate's only
//!   `unsafe` code).
//! - [`MigManager`]: the policy over a backend: realise a container's reservations at
//!   Allocate (all or nothing), destroy instances whose pod is gone, reset idle cards and adopt
//!   recorded instances at start. It never repartitions under a running process.
//! - [`volcano`]: Volcano's slices `UUID[<group>-<position>]` turned into reservations, by a
//!   fixed layout of each geometry group on the card.
//!
//! Start reading at [`MigManager::realise`].

pub mod fake;
pub mod manager;
pub mod nvml;
pub mod profiles;
pub mod volcano;

#[cfg(test)]
pub(crate) mod tests;

use hamr_guest::device::Placement;

pub use manager::MigManager;

/// A GPU-instance profile a card offers (`nvmlDeviceGetGpuInstanceProfileInfo` and
/// `nvmlDeviceGetGpuInstancePossiblePlacements`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GiProfile {
    /// NVML's profile id (`NVML_GPU_INSTANCE_PROFILE_1_SLICE` = 0, ...; see [`profile_id`]).
    /// Not read from a devices file: it follows from `slice_count`.
    #[serde(skip)]
    pub id: u32,
    /// Compute slices (the `N` of `Ng.<memory>`).
    pub slice_count: u32,
    /// How many instances of this profile fit on the card at once.
    pub instance_count: u32,
    /// Streaming multiprocessors of one instance.
    pub multiprocessors: u32,
    /// Memory of one instance, MiB (NVML's `memorySizeMB`).
    #[serde(rename = "memoryMiB")]
    pub memory_mib: u64,
    /// Where an instance may start, in memory slices.
    pub placements: Vec<Placement>,
}

/// NVML's GPU-instance profile id for an `Ng` slice count (`NVML_GPU_INSTANCE_PROFILE_N_SLICE`):
/// 1→0, 2→1, 3→2, 4→3, 7→4, 8→5, 6→6. The REV/`+me` variants (7..) are not named by HAMi's
/// profile strings and are not used.
pub fn profile_id(slices: u32) -> Option<u32> {
    match slices {
        1 => Some(0),
        2 => Some(1),
        3 => Some(2),
        4 => Some(3),
        7 => Some(4),
        8 => Some(5),
        6 => Some(6),
        _ => None,
    }
}

/// The GPU-instance profile ids HAMi reads (the base 1..8-slice profiles).
pub const BASE_PROFILES: [u32; 7] = [0, 1, 2, 3, 4, 5, 6];

/// The slice count of a HAMi profile name: `2g.20gb` → 2. `None` when the name is not
/// `<N>g.<something>`.
pub fn slices_of(name: &str) -> Option<u32> {
    let (head, rest) = name.split_once('.')?;
    if rest.is_empty() {
        return None;
    }
    head.strip_suffix('g')?.parse().ok().filter(|n| *n > 0)
}

/// A GPU instance with its compute instance, as created on (or found on) a card.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instance {
    /// The parent card's UUID.
    pub gpu: String,
    /// The GPU-instance profile id.
    pub profile_id: u32,
    pub placement: Placement,
    /// GPU-instance id.
    pub gi: u32,
    /// Compute-instance id.
    pub ci: u32,
    /// The MIG device's UUID (`MIG-...`), what the container runtime is given.
    pub uuid: String,
}

/// A process running on a card; `gi` is the GPU instance it runs in (`None`: on the whole card,
/// or unknown).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Process {
    pub pid: u32,
    pub gi: Option<u32>,
}

/// MIG mode of a card (`nvmlDeviceGetMigMode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mode {
    pub current: bool,
    pub pending: bool,
}

/// Why a MIG operation failed. Every variant names the card.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MigError {
    /// No card with this UUID on the node (the reservation names another node's card, or the
    /// card fell off the bus).
    #[error("card {gpu}: not on this node")]
    UnknownCard { gpu: String },
    /// The card cannot run MIG at all.
    #[error("card {gpu}: MIG is not supported")]
    NotSupported { gpu: String },
    /// MIG mode changes only after a GPU reset; the operator must reset the card.
    #[error(
        "card {gpu}: a MIG mode change is pending (current {current}, pending {pending}); reset the GPU"
    )]
    PendingModeChange {
        gpu: String,
        current: bool,
        pending: bool,
    },
    /// Processes run where the operation would cut: nothing was changed.
    #[error("card {gpu}: refusing to repartition: processes {pids:?} are running on it")]
    Busy { gpu: String, pids: Vec<u32> },
    /// The reserved profile is not one the card offers (or not a `<N>g.<memory>` name).
    #[error("card {gpu}: no MIG profile {profile:?}")]
    UnknownProfile { gpu: String, profile: String },
    /// The reserved placement is not legal for the profile; another is never tried.
    #[error("card {gpu}: profile {profile:?} cannot start at slice {start} (size {size})")]
    BadPlacement {
        gpu: String,
        profile: String,
        start: u32,
        size: u32,
    },
    /// The slices are taken by an instance this agent did not create for this reservation.
    #[error("card {gpu}: slices {start}..{end} are taken by GPU instance {gi}")]
    Occupied {
        gpu: String,
        start: u32,
        end: u32,
        gi: u32,
    },
    /// The instance tracked for these slices belongs to another pod (deleted, or finished)
    /// whose process still runs in it; it is handed over once the process ends.
    #[error(
        "card {gpu}: GPU instance {gi} still belongs to pod {owner}: processes {pids:?} run in it"
    )]
    HeldBy {
        gpu: String,
        gi: u32,
        owner: String,
        pids: Vec<u32>,
    },
    /// A Volcano slice `UUID[<group>-<position>]` has no place on the card: the group is not
    /// one of the card model's `knownMigGeometries`, the position is past its slices, or its
    /// slices cannot fit the card together.
    #[error("card {gpu}: Volcano MIG geometry group {group:?}: {reason}")]
    Geometry {
        gpu: String,
        group: String,
        reason: String,
    },
    /// A recorded instance (reservation runtime ids) does not match the hardware.
    #[error("card {gpu}: recorded instance {what} does not match the card")]
    Mismatch { gpu: String, what: String },
    /// An NVML call failed.
    #[error("card {gpu}: NVML {call} failed: {reason}")]
    Nvml {
        gpu: String,
        call: &'static str,
        reason: String,
    },
}

/// The operations dynamic MIG needs from a card, addressed by the card's UUID. Implementations
/// do exactly what is asked; the policy (busy checks, idempotence, rollback) is
/// [`MigManager`]'s.
pub trait MigControl: Send + Sync {
    /// The UUIDs of the cards that support MIG.
    fn cards(&self) -> Result<Vec<String>, MigError>;
    /// The card's MIG mode.
    fn mode(&self, gpu: &str) -> Result<Mode, MigError>;
    /// Turns MIG mode on; fails with [`MigError::PendingModeChange`] when it needs a reset.
    fn enable(&self, gpu: &str) -> Result<(), MigError>;
    /// The card's GPU-instance profiles (the base 1..8-slice ones it supports).
    fn profiles(&self, gpu: &str) -> Result<Vec<GiProfile>, MigError>;
    /// Every GPU instance on the card with its first compute instance (an instance without a
    /// compute instance is listed with `ci` = `u32::MAX` and an empty `uuid`).
    fn instances(&self, gpu: &str) -> Result<Vec<Instance>, MigError>;
    /// Creates a GPU instance of `profile_id` at exactly `placement`, and a compute instance
    /// spanning it; destroys what it created when a later step fails.
    fn create(
        &self,
        gpu: &str,
        profile_id: u32,
        placement: Placement,
    ) -> Result<Instance, MigError>;
    /// Destroys GPU instance `gi` and its compute instances; an instance already gone is not
    /// an error.
    fn destroy(&self, gpu: &str, gi: u32) -> Result<(), MigError>;
    /// The processes running on the card (or any of its MIG devices).
    fn processes(&self, gpu: &str) -> Result<Vec<Process>, MigError>;
}
