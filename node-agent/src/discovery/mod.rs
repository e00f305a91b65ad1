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
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// The vendor key of NVIDIA cards (the one the registration and Allocate serve).
pub const NVIDIA: &str = "NVIDIA";

/// One physical device as discovery sees it.
#[derive(Clone, Debug, Default, PartialEq)]
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
    /// Whether MIG mode is enabled after the next GPU reset (differs from `mig_enabled` while
    /// a mode change waits for a reset).
    pub mig_pending: bool,
    /// NVIDIA only: the card's GPU-instance profiles (empty without MIG, or when MIG mode is
    /// off and the driver does not report them then).
    pub mig_profiles: Vec<crate::mig::GiProfile>,
    /// Vendor facts the generic fields do not cover (link zone, wing, NetworkID, instance type).
    pub extras: BTreeMap<String, String>,
    /// The sharing slots the vendor's device plugin registers for this device (`count`);
    /// `None` uses `deviceSplitCount`. NVML leaves it `None`.
    pub count: Option<u32>,
    /// NVIDIA only: what is known of the path to each other card, by its id (pair scores).
    pub links: BTreeMap<String, crate::topology::Link>,
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

/// The latest scan, shared with ListAndWatch and the registrar, with the health marks of XID
/// events laid over it: a marked card is published unhealthy whatever the scan says, until its
/// mark expires (`recovery` after the last event; never when `recovery` is `None`).
#[derive(Clone)]
pub struct Inventory {
    discovery: Arc<dyn Discovery>,
    devices: watch::Sender<Vec<Device>>,
    state: Arc<Mutex<State>>,
    recovery: Option<Duration>,
}

struct State {
    scanned: Vec<Device>,
    marks: BTreeMap<String, Mark>,
}

/// Why and since when a card is held unhealthy.
#[derive(Clone, Debug)]
struct Mark {
    since: Instant,
    reason: String,
}

impl Inventory {
    /// Scans once; fails when the first scan fails (the agent should not start blind). Marks
    /// never expire until [`Inventory::with_recovery`] says otherwise.
    pub fn new(discovery: Arc<dyn Discovery>) -> Result<Inventory, DiscoveryError> {
        let devices = discovery.scan()?;
        Ok(Inventory {
            discovery,
            devices: watch::Sender::new(devices.clone()),
            state: Arc::new(Mutex::new(State {
                scanned: devices,
                marks: BTreeMap::new(),
            })),
            recovery: None,
        })
    }

    /// Health marks expire `after` the last event on their card (`None`: never).
    pub fn with_recovery(mut self, after: Option<Duration>) -> Inventory {
        self.recovery = after;
        self
    }

    /// Follows the device list: the current value, then every change.
    pub fn subscribe(&self) -> watch::Receiver<Vec<Device>> {
        self.devices.subscribe()
    }

    /// The current device list.
    pub fn current(&self) -> Vec<Device> {
        self.devices.borrow().clone()
    }

    /// The ids of the cards scanned last.
    pub fn ids(&self) -> Vec<String> {
        self.lock().scanned.iter().map(|d| d.id.clone()).collect()
    }

    /// Re-scans and publishes the result if it differs. Returns whether anything changed. A
    /// failed scan leaves the last list in place.
    pub fn refresh(&self) -> Result<bool, DiscoveryError> {
        self.refresh_at(Instant::now())
    }

    /// [`Inventory::refresh`] at `now` (expired marks are lifted first).
    pub fn refresh_at(&self, now: Instant) -> Result<bool, DiscoveryError> {
        let scanned = self.discovery.scan()?;
        let mut state = self.lock();
        state.scanned = scanned;
        if let Some(recovery) = self.recovery {
            state.marks.retain(|id, mark| {
                let keep = now.saturating_duration_since(mark.since) < recovery;
                if !keep {
                    tracing::info!(card = %id, reason = %mark.reason, "card healthy again: no new event");
                }
                keep
            });
        }
        Ok(self.publish(&state))
    }

    /// Holds card `id` unhealthy for `reason`, from now; publishes at once. Returns whether
    /// the published list changed.
    pub fn mark_unhealthy(&self, id: &str, reason: &str) -> bool {
        self.mark_unhealthy_at(id, reason, Instant::now())
    }

    /// [`Inventory::mark_unhealthy`] at `now`.
    pub fn mark_unhealthy_at(&self, id: &str, reason: &str, now: Instant) -> bool {
        let mut state = self.lock();
        tracing::warn!(card = %id, %reason, "card unhealthy");
        state.marks.insert(
            id.to_string(),
            Mark {
                since: now,
                reason: reason.to_string(),
            },
        );
        self.publish(&state)
    }

    /// Holds every scanned card unhealthy for `reason`.
    pub fn mark_all_unhealthy(&self, reason: &str) -> bool {
        let now = Instant::now();
        let mut state = self.lock();
        tracing::warn!(%reason, "every card unhealthy");
        let ids: Vec<String> = state.scanned.iter().map(|d| d.id.clone()).collect();
        for id in ids {
            state.marks.insert(
                id,
                Mark {
                    since: now,
                    reason: reason.to_string(),
                },
            );
        }
        self.publish(&state)
    }

    fn publish(&self, state: &State) -> bool {
        let mut devices = state.scanned.clone();
        for d in &mut devices {
            if state.marks.contains_key(&d.id) {
                d.healthy = false;
            }
        }
        self.devices.send_if_modified(|current| {
            if *current == devices {
                false
            } else {
                *current = devices;
                true
            }
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock means a panic elsewhere; the list itself is still consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(Vec<Device>);

    impl Discovery for Fixed {
        fn scan(&self) -> Result<Vec<Device>, DiscoveryError> {
            Ok(self.0.clone())
        }
    }

    fn card(id: &str) -> Device {
        Device {
            id: id.into(),
            vendor: NVIDIA.into(),
            index: 0,
            model: "NVIDIA A100".into(),
            memory_mib: 40960,
            cores: 100,
            numa: 0,
            healthy: true,
            pci_bus_id: None,
            mig_enabled: false,
            extras: BTreeMap::new(),
            count: None,
            links: BTreeMap::new(),
            mig_pending: false,
            mig_profiles: Vec::new(),
        }
    }

    fn health(inventory: &Inventory) -> Vec<bool> {
        inventory.current().iter().map(|d| d.healthy).collect()
    }

    #[test]
    fn a_marked_card_is_unhealthy_until_no_event_came_for_the_recovery_time() {
        let inventory = Inventory::new(Arc::new(Fixed(vec![card("GPU-a"), card("GPU-b")])))
            .expect("scan")
            .with_recovery(Some(Duration::from_secs(300)));
        let t0 = Instant::now();
        assert!(
            inventory.mark_unhealthy_at("GPU-b", "XID 79", t0),
            "published at once"
        );
        assert_eq!(health(&inventory), [true, false]);
        inventory
            .refresh_at(t0 + Duration::from_secs(200))
            .expect("scan");
        assert_eq!(
            health(&inventory),
            [true, false],
            "a scan does not clear it"
        );
        // A second event restarts the clock.
        inventory.mark_unhealthy_at("GPU-b", "XID 79", t0 + Duration::from_secs(250));
        inventory
            .refresh_at(t0 + Duration::from_secs(400))
            .expect("scan");
        assert_eq!(health(&inventory), [true, false]);
        assert!(
            inventory
                .refresh_at(t0 + Duration::from_secs(550))
                .expect("scan")
        );
        assert_eq!(health(&inventory), [true, true], "recovered");
    }

    #[test]
    fn without_a_recovery_time_a_mark_stays_as_in_hami() {
        let inventory = Inventory::new(Arc::new(Fixed(vec![card("GPU-a")]))).expect("scan");
        let t0 = Instant::now();
        inventory.mark_all_unhealthy("waiting for NVML events: Unknown");
        inventory
            .refresh_at(t0 + Duration::from_secs(86_400))
            .expect("scan");
        assert_eq!(health(&inventory), [false]);
    }
}
