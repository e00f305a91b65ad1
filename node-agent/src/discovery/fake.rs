//! The `fake` backend: devices of any vendor described in a YAML file. The file is re-read on
//! every scan, so editing it (for example `healthy: false`) drives health changes in a demo or a
//! test exactly as a failing card would.
//!
//! ```yaml
//! devices:
//!   - id: GPU-a                 # required, unique
//!     vendor: NVIDIA            # required
//!     model: NVIDIA A100-SXM4-40GB
//!     memoryMiB: 40960          # required, above 0
//!     cores: 100                # default 100
//!     numa: 0                   # default 0
//!     index: 0                  # default: position in the list
//!     healthy: true             # default true
//!     count: 4                  # slots registered; default deviceSplitCount (not for NVIDIA)
//!     extras: { linkZone: "1" } # vendor facts, free-form strings
//!     migEnabled: false         # MIG mode now (NVIDIA)
//!     mig:                      # a MIG-capable card (NVIDIA): its GPU-instance profiles
//!       pending: false          # MIG mode after the next reset; default: migEnabled
//!       profiles:
//!         - {sliceCount: 1, instanceCount: 7, multiprocessors: 14, memoryMiB: 4864,
//!            placements: [{start: 0, size: 1}, {start: 1, size: 1}]}
//! ```
//!
//! `vendor` is one of the guest's vendor keys (`NVIDIA`, `Ascend910B3`, `DCU`, `MR-V100`,
//! `Biren`, `AMD`, `Vastai`, `Metax-SGPU`, `XPU`, `Enflame`, `MLU`, ...). A file whose devices
//! cannot be registered in their vendor's format (see [`crate::register::vendors`]) is refused
//! with the device and field named.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use hamr_guest::vendor::volcano::VENDOR as VOLCANO;

use super::{Device, Discovery, DiscoveryError, NVIDIA};
use crate::config::Config;
use crate::register::vendors::registrations;

/// The file's top level.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FakeFile {
    devices: Vec<FakeDevice>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FakeDevice {
    id: String,
    vendor: String,
    #[serde(default)]
    model: String,
    #[serde(rename = "memoryMiB")]
    memory_mib: u64,
    #[serde(default = "whole")]
    cores: u32,
    #[serde(default)]
    numa: u32,
    index: Option<u32>,
    #[serde(default = "yes")]
    healthy: bool,
    pci_bus_id: Option<String>,
    #[serde(default)]
    mig_enabled: bool,
    #[serde(default)]
    extras: BTreeMap<String, String>,
    count: Option<u32>,
    #[serde(default)]
    links: BTreeMap<String, crate::topology::Link>,
    mig: Option<FakeMigCard>,
}

/// A MIG-capable card's `mig:` block: its GPU-instance profiles as NVML would report them.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FakeMigCard {
    /// MIG mode after the next reset; default: as `migEnabled`.
    pending: Option<bool>,
    /// NVML's profile facts as [`crate::mig::GiProfile`]; the id follows from the slices.
    profiles: Vec<crate::mig::GiProfile>,
}

fn whole() -> u32 {
    100
}

fn yes() -> bool {
    true
}

/// Devices read from a YAML file on every scan.
pub struct FakeDiscovery {
    path: PathBuf,
}

impl FakeDiscovery {
    /// A backend reading `path`. Nothing is read until the first scan.
    pub fn new(path: impl Into<PathBuf>) -> FakeDiscovery {
        FakeDiscovery { path: path.into() }
    }
}

impl Discovery for FakeDiscovery {
    fn scan(&self) -> Result<Vec<Device>, DiscoveryError> {
        let text = std::fs::read_to_string(&self.path).map_err(|source| DiscoveryError::Read {
            path: self.path.clone(),
            source,
        })?;
        parse(&self.path, &text)
    }
}

/// Parses a fake device file; `path` only names the source in errors.
pub fn parse(path: &Path, text: &str) -> Result<Vec<Device>, DiscoveryError> {
    let file: FakeFile =
        crate::config::from_yaml(text).map_err(|(field, message)| DiscoveryError::Parse {
            path: path.to_path_buf(),
            field,
            message,
        })?;
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(file.devices.len());
    for (i, d) in file.devices.into_iter().enumerate() {
        let invalid = |field: &str, message: String| DiscoveryError::Invalid {
            path: path.to_path_buf(),
            field: format!("devices[{i}].{field}"),
            message,
        };
        if d.id.trim().is_empty() {
            return Err(invalid("id", "must not be empty".to_string()));
        }
        if !seen.insert(d.id.clone()) {
            return Err(invalid("id", format!("{:?} appears twice", d.id)));
        }
        if d.vendor.trim().is_empty() {
            return Err(invalid("vendor", "must not be empty".to_string()));
        }
        if d.vendor == VOLCANO || hamr_guest::vendor::by_key(&d.vendor).is_none() {
            return Err(invalid(
                "vendor",
                format!(
                    "{:?} is not a vendor key ({})",
                    d.vendor,
                    hamr_guest::vendor::VENDORS
                        .iter()
                        .map(|v| v.key())
                        .filter(|k| *k != VOLCANO)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        if d.vendor == NVIDIA && d.count.is_some() {
            return Err(invalid(
                "count",
                "NVIDIA cards register deviceSplitCount from the configuration".to_string(),
            ));
        }
        if d.count == Some(0) {
            return Err(invalid("count", "must be above 0".to_string()));
        }
        if d.memory_mib == 0 {
            return Err(invalid("memoryMiB", "must be above 0".to_string()));
        }
        let mut mig_profiles = Vec::new();
        if let Some(mig) = &d.mig {
            if d.vendor != NVIDIA {
                return Err(invalid("mig", "only NVIDIA cards have MIG".to_string()));
            }
            for (j, p) in mig.profiles.iter().enumerate() {
                let field = |f: &str| format!("mig.profiles[{j}].{f}");
                let Some(id) = crate::mig::profile_id(p.slice_count) else {
                    return Err(invalid(
                        &field("sliceCount"),
                        format!("{} is not 1, 2, 3, 4, 6, 7 or 8", p.slice_count),
                    ));
                };
                if mig_profiles
                    .iter()
                    .any(|q: &crate::mig::GiProfile| q.id == id)
                {
                    return Err(invalid(
                        &field("sliceCount"),
                        format!("a second {}-slice profile", p.slice_count),
                    ));
                }
                if p.memory_mib == 0 || p.instance_count == 0 || p.multiprocessors == 0 {
                    return Err(invalid(
                        &field("memoryMiB"),
                        "memoryMiB, instanceCount and multiprocessors must be above 0".to_string(),
                    ));
                }
                if let Some(bad) = p.placements.iter().find(|pl| pl.size == 0) {
                    return Err(invalid(
                        &field("placements"),
                        format!("the placement at {} has size 0", bad.start),
                    ));
                }
                mig_profiles.push(crate::mig::GiProfile { id, ..p.clone() });
            }
        }
        let mig_pending = d
            .mig
            .as_ref()
            .and_then(|m| m.pending)
            .unwrap_or(d.mig_enabled);
        let index = match d.index {
            Some(index) => index,
            None => u32::try_from(i).map_err(|_| invalid("index", "too many devices".into()))?,
        };
        out.push(Device {
            id: d.id,
            vendor: d.vendor,
            index,
            model: d.model,
            memory_mib: d.memory_mib,
            cores: d.cores,
            numa: d.numa,
            healthy: d.healthy,
            pci_bus_id: d.pci_bus_id,
            mig_enabled: d.mig_enabled,
            extras: d.extras,
            count: d.count,
            links: d.links,
            mig_pending,
            mig_profiles,
        });
    }
    for (i, d) in out.iter().enumerate() {
        for other in d.links.keys() {
            let field = format!("devices[{i}].links.{other}");
            let target = out.iter().find(|o| &o.id == other);
            let message = if d.vendor != NVIDIA {
                Some("only NVIDIA cards have pair links".to_string())
            } else if other == &d.id {
                Some("a card has no link to itself".to_string())
            } else if target.is_none_or(|o| o.vendor != NVIDIA) {
                Some(format!("{other:?} is not an NVIDIA card of this file"))
            } else {
                None
            };
            if let Some(message) = message {
                return Err(DiscoveryError::Invalid {
                    path: path.to_path_buf(),
                    field,
                    message,
                });
            }
        }
    }
    // Every vendor's registration must be writable: refuse the file now, naming the device,
    // rather than leave a vendor out of the registration later.
    if let Err(e) = registrations(&out, &Config::default()) {
        let i = out.iter().position(|d| d.id == e.id).unwrap_or(0);
        return Err(DiscoveryError::Invalid {
            path: path.to_path_buf(),
            field: format!("devices[{i}].{}", e.field),
            message: format!("{:?} {}", e.value, e.message),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> Result<Vec<Device>, DiscoveryError> {
        parse(Path::new("devices.yaml"), text)
    }

    #[test]
    fn defaults_fill_cores_numa_index_and_health() {
        let d = parse_text(
            "devices:\n\
             - {id: GPU-a, vendor: NVIDIA, model: NVIDIA A100, memoryMiB: 40960}\n\
             - {id: MLU-b, vendor: MLU, memoryMiB: 24576, numa: 1, index: 7, healthy: false,\n\
             \x20  extras: {linkZone: '2'}}\n",
        )
        .expect("valid file");
        assert_eq!(
            (d[0].index, d[0].cores, d[0].numa, d[0].healthy),
            (0, 100, 0, true)
        );
        assert_eq!((d[1].index, d[1].numa, d[1].healthy), (7, 1, false));
        assert_eq!(d[1].extras.get("linkZone").map(String::as_str), Some("2"));
    }

    #[test]
    fn a_missing_memory_names_the_file_and_the_device() {
        let err = parse_text("devices:\n- {id: GPU-a, vendor: NVIDIA}\n").unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("devices.yaml: devices[0]: missing field `memoryMiB`"),
            "{text}"
        );
    }

    #[test]
    fn a_misspelt_key_is_refused_with_its_path() {
        let err =
            parse_text("devices:\n- {id: a, vendor: X, memoryMiB: 1, helthy: true}\n").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("devices.yaml: devices[0].helthy: unknown field `helthy`"),
            "{err}"
        );
    }

    #[test]
    fn a_duplicate_id_is_refused() {
        let err = parse_text(
            "devices:\n- {id: a, vendor: MLU, memoryMiB: 1}\n- {id: a, vendor: MLU, memoryMiB: 1}\n",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "devices.yaml: devices[1].id: \"a\" appears twice"
        );
    }

    #[test]
    fn a_missing_file_is_a_read_error_naming_it() {
        let err = FakeDiscovery::new("/nonexistent/devices.yaml")
            .scan()
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("/nonexistent/devices.yaml: cannot read: "),
            "{err}"
        );
    }
    #[test]
    fn an_unknown_vendor_is_refused_with_the_known_keys() {
        let err = parse_text("devices:\n- {id: a, vendor: Nvidia, memoryMiB: 1}\n").unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with(
                "devices.yaml: devices[0].vendor: \"Nvidia\" is not a vendor key (NVIDIA, "
            ),
            "{text}"
        );
        assert!(!text.contains("VOLCANO"), "{text}");
    }

    #[test]
    fn a_count_on_an_nvidia_card_or_a_zero_count_is_refused() {
        let err = parse_text("devices:\n- {id: a, vendor: NVIDIA, memoryMiB: 1, count: 2}\n")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "devices.yaml: devices[0].count: NVIDIA cards register deviceSplitCount from the configuration"
        );
        let err =
            parse_text("devices:\n- {id: a, vendor: DCU, memoryMiB: 1, count: 0}\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "devices.yaml: devices[0].count: must be above 0"
        );
    }

    #[test]
    fn a_device_its_vendor_cannot_register_is_refused_with_its_path() {
        let err = parse_text(
            "devices:\n- {id: a, vendor: DCU, memoryMiB: 1}\n\
             - {id: n1, vendor: Ascend910B3, memoryMiB: 65536, extras: {NetworkID: x1}}\n",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "devices.yaml: devices[1].extras.NetworkID: \"x1\" is not a number"
        );
    }
}
