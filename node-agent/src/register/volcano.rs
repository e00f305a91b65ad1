//! Volcano's registration `volcano.sh/node-vgpu-register` (interfaces.md §3.6), written next to
//! HAMi's when `volcano.register` is set: per NVIDIA card
//! `UUID,SplitCount,MemoryMiB,Type,Health,Mode` followed by `:`, in index order.
//!
//! - SplitCount is `deviceSplitCount`.
//! - MemoryMiB is the card's MiB ÷ `volcano.gpuMemoryFactor` (truncated), then × `deviceMemoryScaling`
//!   as in HAMi's registration (unscaled in MIG mode).
//! - Type is `NVIDIA-<NVML name>`: Volcano always prefixes, so `NVIDIA A100 80GB PCIe` registers
//!   as `NVIDIA-NVIDIA A100 80GB PCIe`, and HAMi's `NVIDIA-Tesla V100` (already prefixed by HAMi's
//!   rule) stays as it is.
//! - Health is Go's `true` / `false`; Mode is `operatingMode`.
//!
//! The guest's parser (`hamr_guest::vendor::volcano::register::parse`) is the reference; the
//! tests round-trip through it.

use crate::config::Config;
use crate::discovery::{Device, NVIDIA};

/// Volcano's device type for a model registered by HAMi's rule.
pub fn volcano_type(model: &str) -> String {
    if model.starts_with("NVIDIA-") {
        model.to_string()
    } else {
        format!("NVIDIA-{model}")
    }
}

/// The value of `volcano.sh/node-vgpu-register` for the node's NVIDIA cards.
///
/// ```
/// # use hamr_node_agent::{config::Config, discovery::Device, register::volcano::encode};
/// let card = Device { id: "GPU-a".into(), vendor: "NVIDIA".into(), index: 0,
///     model: "NVIDIA A100 80GB PCIe".into(), memory_mib: 81920, cores: 100, numa: 0,
///     healthy: true, pci_bus_id: None, mig_enabled: false, extras: Default::default(), count: None, links: Default::default(),
///     mig_pending: false, mig_profiles: vec![] };
/// assert_eq!(encode(&[card], &Config::default()),
///     "GPU-a,10,81920,NVIDIA-NVIDIA A100 80GB PCIe,true,hami-core:");
/// ```
pub fn encode(devices: &[Device], config: &Config) -> String {
    let mut cards: Vec<&Device> = devices.iter().filter(|d| d.vendor == NVIDIA).collect();
    cards.sort_by_key(|d| d.index);
    cards
        .iter()
        .map(|d| {
            let memory = registered_memory(d, config);
            format!(
                "{},{},{},{},{},{}:",
                d.id,
                config.device_split_count,
                memory,
                volcano_type(&d.model),
                d.healthy,
                config.operating_mode
            )
        })
        .collect()
}

/// A card's registered memory in Volcano's units: MiB ÷ `gpuMemoryFactor` (truncated), then
/// × `deviceMemoryScaling` outside MIG mode, at most `i32::MAX`. Also the number of
/// `volcano.sh/vgpu-memory` units the card adds to the node's allocatable.
pub fn registered_memory(d: &Device, config: &Config) -> i64 {
    let factor = u64::from(config.volcano.gpu_memory_factor.max(1));
    let mut memory = (d.memory_mib / factor) as f64;
    if config.operating_mode != "mig" {
        memory *= config.device_memory_scaling;
    }
    memory.min(f64::from(i32::MAX)) as i64
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use hamr_guest::vendor::volcano::register::{REGISTER, parse};

    use super::*;

    fn card(id: &str, index: u32, model: &str, healthy: bool) -> Device {
        Device {
            id: id.into(),
            vendor: NVIDIA.into(),
            index,
            model: model.into(),
            memory_mib: 40960,
            cores: 100,
            numa: 0,
            healthy,
            pci_bus_id: None,
            mig_enabled: false,
            extras: BTreeMap::new(),
            count: None,
            links: BTreeMap::new(),
            mig_pending: false,
            mig_profiles: Vec::new(),
        }
    }

    #[test]
    fn cards_are_listed_in_index_order_with_the_memory_factor_applied() {
        let mut config = Config::default();
        config.volcano.gpu_memory_factor = 1024;
        config.device_split_count = 4;
        let value = encode(
            &[
                card("GPU-b", 1, "NVIDIA-Tesla V100-PCIE-32GB", false),
                card("GPU-a", 0, "NVIDIA A100-SXM4-40GB", true),
            ],
            &config,
        );
        assert_eq!(
            value,
            "GPU-a,4,40,NVIDIA-NVIDIA A100-SXM4-40GB,true,hami-core:\
             GPU-b,4,40,NVIDIA-Tesla V100-PCIE-32GB,false,hami-core:"
        );
    }

    #[test]
    fn the_encoding_is_what_the_guest_parses() {
        let config = Config::default();
        let value = encode(
            &[
                card("GPU-a", 0, "NVIDIA A100-SXM4-40GB", true),
                card("GPU-b", 1, "NVIDIA A100-SXM4-40GB", false),
            ],
            &config,
        );
        let node = hamr_guest::api::Node {
            name: "n1".into(),
            annotations: vec![(REGISTER.to_string(), value)],
            ..Default::default()
        };
        let cards = parse(&node, &hamr_guest::config::Config::default())
            .expect("the guest accepts it")
            .expect("two cards");
        let seen: Vec<(&str, u32, i64, i64, &str, bool, &str)> = cards
            .iter()
            .map(|c| {
                (
                    c.id.as_str(),
                    c.index,
                    c.count,
                    c.devmem,
                    c.model.as_str(),
                    c.health,
                    c.mode.as_str(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                (
                    "GPU-a",
                    0,
                    10,
                    40960,
                    "NVIDIA-NVIDIA A100-SXM4-40GB",
                    true,
                    "hami-core"
                ),
                (
                    "GPU-b",
                    1,
                    10,
                    40960,
                    "NVIDIA-NVIDIA A100-SXM4-40GB",
                    false,
                    "hami-core"
                ),
            ]
        );
    }
}
