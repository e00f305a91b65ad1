//! What of the discovered devices this node shares: the devices an administrator withholds
//! (`filterdevices` of the per-node configuration, node-side.md §2.1 step 5) are left out of
//! every scan, so they are neither registered for the scheduler nor advertised to kubelet; so
//! is a card whose memory discovery could not read (0 MiB, unified-memory parts) unless
//! `preConfiguredDeviceMemory` gives it one (§2.3).

use std::sync::Arc;

use serde::Deserialize;

use crate::discovery::{Device, Discovery, DiscoveryError, NVIDIA};

/// NVIDIA cards to leave out, by UUID or by NVML index. The per-node file is the NVIDIA
/// plugin's, so devices of other vendors are never filtered.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FilterDevices {
    pub uuid: Vec<String>,
    pub index: Vec<u32>,
}

impl FilterDevices {
    pub fn is_empty(&self) -> bool {
        self.uuid.is_empty() && self.index.is_empty()
    }

    /// Whether `device` is withheld.
    pub fn drops(&self, device: &Device) -> bool {
        device.vendor == NVIDIA
            && (self.uuid.contains(&device.id) || self.index.contains(&device.index))
    }
}

/// A discovery whose scans leave out the filtered devices, and give cards without a known
/// memory size `preconfigured_mib` (left out too when that is 0).
pub struct Filtered {
    inner: Arc<dyn Discovery>,
    filter: FilterDevices,
    preconfigured_mib: u64,
}

impl Filtered {
    pub fn new(
        inner: Arc<dyn Discovery>,
        filter: FilterDevices,
        preconfigured_mib: u64,
    ) -> Filtered {
        Filtered {
            inner,
            filter,
            preconfigured_mib,
        }
    }
}

impl Discovery for Filtered {
    fn scan(&self) -> Result<Vec<Device>, DiscoveryError> {
        let mut devices = self.inner.scan()?;
        devices.retain(|d| !self.filter.drops(d));
        for d in devices.iter_mut().filter(|d| d.memory_mib == 0) {
            d.memory_mib = self.preconfigured_mib;
        }
        devices.retain(|d| d.memory_mib > 0);
        Ok(devices)
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

    fn card(vendor: &str, id: &str, index: u32) -> Device {
        Device {
            id: id.into(),
            vendor: vendor.into(),
            index,
            model: "NVIDIA A100".into(),
            memory_mib: 40960,
            cores: 100,
            healthy: true,
            ..Device::default()
        }
    }

    fn ids(filter: FilterDevices) -> Vec<String> {
        let all = vec![
            card(NVIDIA, "GPU-a", 0),
            card(NVIDIA, "GPU-b", 1),
            card(NVIDIA, "GPU-c", 2),
            card("Cambricon", "MLU-x", 1),
        ];
        let scan = Filtered::new(Arc::new(Fixed(all)), filter, 0).scan();
        scan.expect("scan").into_iter().map(|d| d.id).collect()
    }

    #[test]
    fn a_card_named_by_uuid_is_left_out() {
        let filter = FilterDevices {
            uuid: vec!["GPU-b".into()],
            index: vec![],
        };
        assert_eq!(ids(filter), ["GPU-a", "GPU-c", "MLU-x"]);
    }

    #[test]
    fn a_card_named_by_index_is_left_out_and_other_vendors_are_kept() {
        let filter = FilterDevices {
            uuid: vec![],
            index: vec![1, 2],
        };
        assert_eq!(ids(filter), ["GPU-a", "MLU-x"]);
    }

    #[test]
    fn a_card_without_memory_gets_the_preconfigured_size_or_is_left_out() {
        let unified = Device {
            memory_mib: 0,
            ..card(NVIDIA, "GPU-gb10", 0)
        };
        let scan = |mib| {
            Filtered::new(
                Arc::new(Fixed(vec![unified.clone()])),
                FilterDevices::default(),
                mib,
            )
            .scan()
            .expect("scan")
            .iter()
            .map(|d| (d.id.clone(), d.memory_mib))
            .collect::<Vec<_>>()
        };
        assert_eq!(scan(122_880), [("GPU-gb10".to_string(), 122_880)]);
        assert_eq!(scan(0), []);
    }

    #[test]
    fn an_empty_filter_keeps_everything() {
        assert_eq!(
            ids(FilterDevices::default()),
            ["GPU-a", "GPU-b", "GPU-c", "MLU-x"]
        );
    }
}
