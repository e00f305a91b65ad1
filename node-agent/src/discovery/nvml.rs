//! The `nvml` backend: NVIDIA cards through NVML (`nvml-wrapper`), loaded at run time. A node
//! without the driver gets [`DiscoveryError::LibraryMissing`], never a panic.
//!
//! Per card (node-side.md §2.3): UUID, index, model name with HAMi's `NVIDIA-` prefix rule, total
//! memory in MiB, PCI bus id, NUMA node from sysfs, and whether MIG mode is on.

use std::path::{Path, PathBuf};

use nvml_wrapper::Nvml;
use nvml_wrapper::error::NvmlError;

use super::{Device, Discovery, DiscoveryError, NVIDIA};

/// The library NVML is loaded from (`nvml-wrapper`'s default on Linux).
pub const LIBRARY: &str = "libnvidia-ml.so.1";

const MIB: u64 = 1024 * 1024;

/// NVIDIA cards through one long-lived NVML handle.
pub struct NvmlDiscovery {
    nvml: Nvml,
    sysfs_pci: PathBuf,
}

impl NvmlDiscovery {
    /// Loads `libnvidia-ml.so.1` and initialises NVML.
    pub fn init() -> Result<NvmlDiscovery, DiscoveryError> {
        let nvml = Nvml::init().map_err(|e| DiscoveryError::LibraryMissing {
            library: LIBRARY,
            reason: init_reason(&e),
        })?;
        Ok(NvmlDiscovery {
            nvml,
            sysfs_pci: PathBuf::from("/sys/bus/pci/devices"),
        })
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
        let mig_enabled = device.mig_mode().is_ok_and(|m| m.current == 1);
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
            extras: Default::default(),
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
        (0..count).map(|i| self.card(i)).collect()
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
        }
    }
}
