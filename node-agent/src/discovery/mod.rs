//! Device discovery behind one trait. Two backends: [`fake`] (devices described in a YAML file,
//! any vendor) and [`nvml`] (NVIDIA cards through NVML, loaded at run time).
//!
//! Discovery is re-run periodically; [`Inventory`] holds the latest scan in a watch channel that
//! ListAndWatch and the registrar both follow, so a health change reaches kubelet and the
//! registration annotation from the same scan.

pub mod fake;
pub mod nvml;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;

/// The vendor key of NVIDIA cards (the one the registration and Allocate serve).
pub const NVIDIA: &str = "NVIDIA";

/// One physical device as discovery sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Device {
    /// The vendor's unique id (for NVIDIA the UUID, `GPU-...`).
    pub id: String,
    /// The vendor key, e.g. `NVIDIA`.
    pub vendor: String,
    /// The enumeration index (NVML index).
    pub index: u32,
    /// The model string as registered, e.g. `NVIDIA A100-SXM4-40GB`.
    pub model: String,
    /// Total memory, MiB.
    pub memory_mib: u64,
    /// Compute, percent of one whole device (100 unless a file says otherwise).
    pub cores: u32,
    /// NUMA node of the device's PCI slot (0 when unknown).
    pub numa: u32,
    /// Whether the device is healthy right now.
    pub healthy: bool,
    /// PCI bus id (`0000:3b:00.0`), when known.
    pub pci_bus_id: Option<String>,
    /// Whether MIG mode is currently enabled on the card.
    pub mig_enabled: bool,
    /// Vendor facts the generic fields do not cover (link zone, wing, NetworkID, instance type).
    pub extras: BTreeMap<String, String>,
}

/// Why discovery failed.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// The fake device file could not be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The fake device file is not the expected YAML; `field` is the dotted path of the bad key.
    #[error("{path}: {field}: {message}")]
    Parse {
        path: PathBuf,
        field: String,
        message: String,
    },
    /// A device in the fake file parsed but cannot be served (duplicate id, zero memory, ...).
    #[error("{path}: {field}: {message}")]
    Invalid {
        path: PathBuf,
        field: String,
        message: String,
    },
    /// The NVML library could not be loaded: the node has no NVIDIA driver, or the agent's
    /// container does not see it (check the driver root mount).
    #[error("cannot load the NVIDIA management library {library}: {reason}")]
    LibraryMissing {
        library: &'static str,
        reason: String,
    },
    /// An NVML call failed on a card.
    #[error("NVML {call} failed for device {index}: {reason}")]
    Nvml {
        call: &'static str,
        index: u32,
        reason: String,
    },
}

/// A source of the node's devices. `scan` is called at start and then periodically; it must be
/// cheap enough for every few seconds and must not panic on bad input.
pub trait Discovery: Send + Sync {
    /// The devices present now, in index order.
    fn scan(&self) -> Result<Vec<Device>, DiscoveryError>;
}

/// The latest scan, shared with ListAndWatch and the registrar.
#[derive(Clone)]
pub struct Inventory {
    discovery: Arc<dyn Discovery>,
    devices: watch::Sender<Vec<Device>>,
}

impl Inventory {
    /// Scans once; fails when the first scan fails (the agent should not start blind).
    pub fn new(discovery: Arc<dyn Discovery>) -> Result<Inventory, DiscoveryError> {
        let devices = discovery.scan()?;
        Ok(Inventory {
            discovery,
            devices: watch::Sender::new(devices),
        })
    }

    /// Follows the device list: the current value, then every change.
    pub fn subscribe(&self) -> watch::Receiver<Vec<Device>> {
        self.devices.subscribe()
    }

    /// The current device list.
    pub fn current(&self) -> Vec<Device> {
        self.devices.borrow().clone()
    }

    /// Re-scans and publishes the result if it differs. Returns whether anything changed. A
    /// failed scan leaves the last list in place.
    pub fn refresh(&self) -> Result<bool, DiscoveryError> {
        let scanned = self.discovery.scan()?;
        Ok(self.devices.send_if_modified(|devices| {
            if *devices == scanned {
                false
            } else {
                *devices = scanned;
                true
            }
        }))
    }
}
