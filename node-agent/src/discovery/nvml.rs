//! The `nvml` backend: NVIDIA cards through NVML (`nvml-wrapper`), loaded at run time. A node
//! without the driver gets [`DiscoveryError::LibraryMissing`], never a panic.
//!
//! Per card (node-side.md §2.3): UUID, index, model name with HAMi's `NVIDIA-` prefix rule, total
//! memory in MiB, PCI bus id, NUMA node from sysfs, MIG mode (current and pending) and the
//! card's GPU-instance profiles (read only; the mode is never changed by a scan), and, with
//! [`NvmlDiscovery::with_topology`], the PCIe/NVLink path to every other card (§2.6).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use nvml_wrapper::bitmasks::event::EventTypes;
use nvml_wrapper::enums::event::XidError;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::{EventSet, Nvml};

use nvml_wrapper::enum_wrappers::device::TopologyLevel;

use super::{Device, Discovery, DiscoveryError, Inventory, NVIDIA};
use crate::health::{HealthEvent, Verdict, XidPolicy, judge};
use crate::topology::{Level, Link, MAX_NVLINKS, RemoteLink, nvlinks};

/// The library NVML is loaded from (`nvml-wrapper`'s default on Linux).
pub const LIBRARY: &str = "libnvidia-ml.so.1";

const MIB: u64 = 1024 * 1024;

/// NVIDIA cards through one long-lived NVML handle.
pub struct NvmlDiscovery {
    nvml: Arc<Nvml>,
    sysfs_pci: PathBuf,
    topology: bool,
}

impl NvmlDiscovery {
    /// Loads `libnvidia-ml.so.1` and initialises NVML.
    pub fn init() -> Result<NvmlDiscovery, DiscoveryError> {
        let nvml = Nvml::init().map_err(|e| DiscoveryError::LibraryMissing {
            library: LIBRARY,
            reason: init_reason(&e),
        })?;
        Ok(NvmlDiscovery {
            nvml: Arc::new(nvml),
            sysfs_pci: PathBuf::from("/sys/bus/pci/devices"),
            topology: false,
        })
    }

    /// Also reads the links between cards on every scan (for `hami.io/node-nvidia-score`).
    pub fn with_topology(mut self, on: bool) -> NvmlDiscovery {
        self.topology = on;
        self
    }

    /// Dynamic MIG over the same NVML handle.
    pub fn mig_control(&self) -> crate::mig::nvml::NvmlMig {
        crate::mig::nvml::NvmlMig::new(self.nvml.clone())
    }

    /// The active NVLinks of card `index`: far-end bus id and whether it is an NVSwitch.
    /// Links answering `NOT_SUPPORTED` or `INVALID_ARGUMENT` are skipped.
    fn remote_links(&self, index: u32) -> Vec<RemoteLink> {
        let Ok(device) = self.nvml.device_by_index(index) else {
            return Vec::new();
        };
        (0..MAX_NVLINKS)
            .filter_map(|link| {
                let wrapper = device.link_wrapper_for(link);
                if !wrapper.is_active().ok()? {
                    return None;
                }
                let bus_id = normalise_bus_id(&wrapper.remote_pci_info().ok()?.bus_id);
                let switch = matches!(
                    wrapper.remote_device_type(link),
                    Ok(nvml_wrapper::enum_wrappers::nv_link::IntDeviceType::Switch)
                );
                Some(RemoteLink { bus_id, switch })
            })
            .collect()
    }

    /// Fills `links` of every card: the PCIe common ancestor and the NVLink count to each
    /// other card. A pair NVML cannot place is left out (scored 0 by the scheduler).
    fn read_links(&self, cards: &mut [Device]) {
        let remote: Vec<Vec<RemoteLink>> =
            cards.iter().map(|c| self.remote_links(c.index)).collect();
        for i in 0..cards.len() {
            for j in 0..cards.len() {
                if i == j {
                    continue;
                }
                let (Ok(a), Ok(b)) = (
                    self.nvml.device_by_index(cards[i].index),
                    self.nvml.device_by_index(cards[j].index),
                ) else {
                    continue;
                };
                let Ok(level) = a.topology_common_ancestor(b) else {
                    continue;
                };
                let to_bus = cards[j].pci_bus_id.clone().unwrap_or_default();
                let link = Link {
                    pcie: level_of(level),
                    nvlinks: nvlinks(&remote[i], &remote[j], &to_bus),
                };
                let other = cards[j].id.clone();
                cards[i].links.insert(other, link);
            }
        }
    }

    /// The XID event loop over the same NVML handle.
    pub fn xid_watcher(&self) -> XidWatcher {
        XidWatcher {
            nvml: self.nvml.clone(),
        }
    }

    fn card(&self, index: u32) -> Result<Device, DiscoveryError> {
        let fail = |call: &'static str| {
            move |e: NvmlError| DiscoveryError::Nvml {
                call,
                index,
                reason: e.to_string(),
            }
        };
        let device = self
            .nvml
            .device_by_index(index)
            .map_err(fail("nvmlDeviceGetHandleByIndex"))?;
        let id = device.uuid().map_err(fail("nvmlDeviceGetUUID"))?;
        let name = device.name().map_err(fail("nvmlDeviceGetName"))?;
        let memory = device
            .memory_info()
            .map_err(fail("nvmlDeviceGetMemoryInfo"))?;
        let bus_id = device.pci_info().ok().map(|p| normalise_bus_id(&p.bus_id));
        // Cards without MIG answer NOT_SUPPORTED: that is "MIG off", not a failure.
        let mode = device.mig_mode().ok();
        let mig_enabled = mode.as_ref().is_some_and(|m| m.current == 1);
        let mig_pending = mode.as_ref().is_some_and(|m| m.pending == 1);
        let mig_profiles = if mig_enabled {
            crate::mig::nvml::gi_profiles(&device)
        } else {
            Vec::new()
        };
        let numa = bus_id
            .as_deref()
            .map_or(0, |bus| read_numa(&self.sysfs_pci, bus));
        Ok(Device {
            id,
            vendor: NVIDIA.to_string(),
            index: device.index().unwrap_or(index),
            model: model_name(&name),
            memory_mib: memory.total / MIB,
            cores: 100,
            numa,
            healthy: true,
            pci_bus_id: bus_id,
            mig_enabled,
            mig_pending,
            mig_profiles,
            extras: Default::default(),
            count: None,
            links: Default::default(),
        })
    }
}

impl Discovery for NvmlDiscovery {
    fn scan(&self) -> Result<Vec<Device>, DiscoveryError> {
        let count = self.nvml.device_count().map_err(|e| DiscoveryError::Nvml {
            call: "nvmlDeviceGetCount",
            index: 0,
            reason: e.to_string(),
        })?;
        let mut cards = (0..count)
            .map(|i| self.card(i))
            .collect::<Result<Vec<_>, _>>()?;
        if self.topology {
            self.read_links(&mut cards);
        }
        Ok(cards)
    }
}

/// NVML's XID events (node-side.md §7.1). `nvmlEventSetWait` blocks, so [`XidWatcher::run`]
/// belongs on a thread of its own.
pub struct XidWatcher {
    nvml: Arc<Nvml>,
}

/// How long one wait for events lasts (HAMi: 5 s); `stop` is checked between waits.
const WAIT_MS: u32 = 5000;

impl XidWatcher {
    /// Registers every card for critical XID and ECC events and marks cards in `inventory` as
    /// [`judge`] decides, until `stop` is set. A card whose events cannot be registered is
    /// unhealthy at once (`NOT_SUPPORTED`, an old card, only logs a warning).
    pub fn run(self, policy: XidPolicy, inventory: Inventory, stop: Arc<AtomicBool>) {
        if policy.disabled {
            tracing::info!("XID health checks are disabled");
            return;
        }
        let Some(set) = self.register(&inventory) else {
            return;
        };
        while !stop.load(Ordering::Relaxed) {
            let event = match set.wait(WAIT_MS) {
                Ok(data) => {
                    if data.event_type.contains(EventTypes::CRITICAL_XID_ERROR) {
                        HealthEvent::Xid {
                            card: data.device.uuid().ok(),
                            xid: match data.event_data {
                                Some(XidError::Value(x)) => Some(x),
                                Some(XidError::Unknown) | None => None,
                            },
                        }
                    } else {
                        tracing::info!(event = ?data.event_type, "NVML event without health effect");
                        HealthEvent::Other
                    }
                }
                Err(NvmlError::Timeout) => continue,
                Err(e) => HealthEvent::WaitFailed(e.to_string()),
            };
            match judge(&policy, &event, &inventory.ids()) {
                Verdict::Ignore => {}
                Verdict::Card(uuid, reason) => {
                    inventory.mark_unhealthy(&uuid, &reason);
                }
                Verdict::All(reason) => {
                    inventory.mark_all_unhealthy(&reason);
                    // A failing wait fails again at once: do not spin.
                    std::thread::sleep(std::time::Duration::from_millis(u64::from(WAIT_MS)));
                }
            }
        }
    }

    /// One event set with every card that accepts registration. The wrapper frees the set when
    /// a registration fails, so the set is rebuilt without the failing card.
    fn register(&self, inventory: &Inventory) -> Option<EventSet<'_>> {
        let nvml = &*self.nvml;
        let wanted = EventTypes::CRITICAL_XID_ERROR
            | EventTypes::DOUBLE_BIT_ECC_ERROR
            | EventTypes::SINGLE_BIT_ECC_ERROR;
        let count = match nvml.device_count() {
            Ok(n) => n,
            Err(e) => {
                inventory.mark_all_unhealthy(&format!("nvmlDeviceGetCount: {e}"));
                return None;
            }
        };
        let mut accepted: Vec<(u32, EventTypes)> = Vec::new();
        let mut skipped: Vec<u32> = Vec::new();
        'rebuild: loop {
            let mut set = match nvml.create_event_set() {
                Ok(set) => set,
                Err(e) => {
                    inventory.mark_all_unhealthy(&format!("nvmlEventSetCreate: {e}"));
                    return None;
                }
            };
            for (index, types) in &accepted {
                match nvml
                    .device_by_index(*index)
                    .map_err(Into::into)
                    .and_then(|d| d.register_events(*types, set))
                {
                    Ok(s) => set = s,
                    Err(e) => {
                        tracing::warn!(index, error = %e.error, "re-registering events failed");
                        let index = *index;
                        accepted.retain(|(i, _)| *i != index);
                        skipped.push(index);
                        continue 'rebuild;
                    }
                }
            }
            for index in 0..count {
                if accepted.iter().any(|(i, _)| *i == index) || skipped.contains(&index) {
                    continue;
                }
                let device = match nvml.device_by_index(index) {
                    Ok(d) => d,
                    Err(e) => {
                        tracing::warn!(index, error = %e, "no handle for events");
                        continue;
                    }
                };
                let uuid = device.uuid().unwrap_or_default();
                let types = match device.supported_event_types() {
                    Ok(t) => t & wanted,
                    Err(e) => {
                        inventory.mark_unhealthy(
                            &uuid,
                            &format!("nvmlDeviceGetSupportedEventTypes: {e}"),
                        );
                        continue;
                    }
                };
                match device.register_events(types, set) {
                    Ok(s) => {
                        set = s;
                        accepted.push((index, types));
                    }
                    Err(e) => {
                        if matches!(e.error, NvmlError::NotSupported) {
                            tracing::warn!(card = %uuid, "this card cannot report XID events");
                        } else {
                            inventory.mark_unhealthy(
                                &uuid,
                                &format!("nvmlDeviceRegisterEvents: {}", e.error),
                            );
                        }
                        // The failed registration freed the set: rebuild it without this card.
                        skipped.push(index);
                        continue 'rebuild;
                    }
                }
            }
            return Some(set);
        }
    }
}

/// NVML's topology level as ours.
fn level_of(level: TopologyLevel) -> Level {
    match level {
        TopologyLevel::Internal => Level::Internal,
        TopologyLevel::Single => Level::Single,
        TopologyLevel::Multiple => Level::Multiple,
        TopologyLevel::HostBridge => Level::HostBridge,
        TopologyLevel::Node => Level::Node,
        TopologyLevel::System => Level::System,
    }
}

/// Why `Nvml::init` failed, in one line.
fn init_reason(e: &NvmlError) -> String {
    match e {
        NvmlError::LibloadingError(inner) => format!("library not loadable ({inner})"),
        other => other.to_string(),
    }
    .replace('\n', " ")
}

/// HAMi's model rule: names that do not start with `NVIDIA` get the prefix `NVIDIA-`.
///
/// `Tesla V100-PCIE-32GB` → `NVIDIA-Tesla V100-PCIE-32GB`; `NVIDIA H200` stays.
pub fn model_name(nvml_name: &str) -> String {
    if nvml_name.starts_with("NVIDIA") {
        nvml_name.to_string()
    } else {
        format!("NVIDIA-{nvml_name}")
    }
}

/// NVML's bus id (`00000000:3B:00.0`, 8-digit domain) to sysfs form (`0000:3b:00.0`):
/// lower-cased, a leading `0000` of the 8-digit domain removed.
pub fn normalise_bus_id(bus_id: &str) -> String {
    let lower = bus_id.trim().to_ascii_lowercase();
    match lower.split_once(':') {
        Some((domain, rest)) if domain.len() == 8 && domain.starts_with("0000") => {
            format!("{}:{rest}", &domain[4..])
        }
        _ => lower,
    }
}

/// The NUMA node of a PCI device from `<sysfs_pci>/<bus>/numa_node`; negative (`-1`, no NUMA)
/// or unreadable reads as 0.
pub fn read_numa(sysfs_pci: &Path, bus_id: &str) -> u32 {
    std::fs::read_to_string(sysfs_pci.join(bus_id).join("numa_node"))
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_without_the_nvidia_prefix_get_it() {
        assert_eq!(
            model_name("Tesla V100-PCIE-32GB"),
            "NVIDIA-Tesla V100-PCIE-32GB"
        );
        assert_eq!(model_name("NVIDIA A100-SXM4-40GB"), "NVIDIA A100-SXM4-40GB");
    }

    #[test]
    fn bus_ids_lose_the_leading_zeros_of_the_domain_and_their_case() {
        assert_eq!(normalise_bus_id("00000000:3B:00.0"), "0000:3b:00.0");
        assert_eq!(normalise_bus_id("0000:3b:00.0"), "0000:3b:00.0");
    }

    #[test]
    fn numa_is_read_from_sysfs_and_negative_means_zero() {
        let dir = tempfile::tempdir().expect("temp dir");
        for (bus, value) in [("0000:3b:00.0", "1\n"), ("0000:af:00.0", "-1\n")] {
            std::fs::create_dir_all(dir.path().join(bus)).expect("mkdir");
            std::fs::write(dir.path().join(bus).join("numa_node"), value).expect("write");
        }
        assert_eq!(read_numa(dir.path(), "0000:3b:00.0"), 1);
        assert_eq!(read_numa(dir.path(), "0000:af:00.0"), 0);
        assert_eq!(read_numa(dir.path(), "0000:00:00.0"), 0, "unreadable");
    }

    #[test]
    fn a_node_without_the_driver_gets_one_line_naming_the_library() {
        // On a machine with the driver this test has nothing to check.
        if let Err(err) = NvmlDiscovery::init() {
            let text = err.to_string();
            assert!(
                text.starts_with("cannot load the NVIDIA management library libnvidia-ml.so.1: "),
                "{text}"
            );
            assert!(!text.contains('\n'), "{text}");
        }
    }

    #[test]
    #[ignore = "needs GPU"]
    fn the_xid_watcher_registers_every_card_and_marks_none_on_a_quiet_machine() {
        let nvml = NvmlDiscovery::init().expect("NVML loads on a GPU machine");
        let watcher = nvml.xid_watcher();
        let inventory = Inventory::new(Arc::new(nvml)).expect("scan");
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (inventory, stop) = (inventory.clone(), stop.clone());
            std::thread::spawn(move || watcher.run(XidPolicy::default(), inventory, stop))
        };
        std::thread::sleep(std::time::Duration::from_secs(6));
        stop.store(true, Ordering::Relaxed);
        thread.join().expect("the watcher returns");
        assert!(
            inventory.current().iter().all(|d| d.healthy),
            "{:?}",
            inventory.current()
        );
    }

    #[test]
    #[ignore = "needs GPU"]
    fn every_pair_of_real_cards_has_a_pcie_level_both_ways() {
        let nvml = NvmlDiscovery::init()
            .expect("NVML loads on a GPU machine")
            .with_topology(true);
        let cards = nvml.scan().expect("scan succeeds");
        for card in &cards {
            println!("{} {:?}", card.id, card.links);
            for other in cards.iter().filter(|o| o.id != card.id) {
                let there = card
                    .links
                    .get(&other.id)
                    .expect("a link to every other card");
                let back = other.links.get(&card.id).expect("and back");
                assert_eq!(there.pcie, back.pcie, "{} <-> {}", card.id, other.id);
            }
            assert!(!card.links.contains_key(&card.id), "no link to itself");
        }
        let scores = crate::topology::encode_scores(&cards);
        assert_eq!(scores.is_some(), cards.len() > 1, "{scores:?}");
    }

    #[test]
    #[ignore = "needs GPU"]
    fn a_real_card_is_discovered_with_uuid_model_and_memory() {
        let nvml = NvmlDiscovery::init().expect("NVML loads on a GPU machine");
        let cards = nvml.scan().expect("scan succeeds");
        assert!(!cards.is_empty(), "a GPU machine has at least one card");
        for card in &cards {
            println!("{card:?}");
            assert!(card.id.starts_with("GPU-"), "{card:?}");
            assert!(card.model.starts_with("NVIDIA"), "{card:?}");
            assert!(card.memory_mib > 1024, "{card:?}");
            assert!(card.pci_bus_id.is_some(), "{card:?}");
            // Profiles are read only while MIG is on (NVML's placements are not the card's
            // otherwise).
            assert_eq!(card.mig_profiles.is_empty(), !card.mig_enabled, "{card:?}");
        }
    }
}
