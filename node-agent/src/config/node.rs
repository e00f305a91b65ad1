//! The per-node configuration of HAMi's device plugin ConfigMap (node-side.md §2.2): the JSON
//! file `/config/config.json`, `{"nodeconfig": [{"name": "<node>", ...}, ...]}`. The entry whose
//! `name` is this node overrides the agent's settings field by field, only where its value is
//! not zero (as HAMi does):
//!
//! | key | overrides |
//! | --- | --- |
//! | `devicesplitcount` | `deviceSplitCount` |
//! | `devicememoryscaling` | `deviceMemoryScaling` |
//! | `devicecorescaling` | `deviceCoreScaling` |
//! | `preconfigureddevicememory` | `preConfiguredDeviceMemory` |
//! | `libcudaloglevel` | `libCudaLogLevel` |
//! | `enablenumatopology` | `enableNumaTopology` (when true) |
//! | `operatingmode` | `operatingMode` (when not empty) |
//! | `filterdevices` `{uuid: [], index: []}` | `filterDevices` (when present) |
//! | `enablegetpreferredallocation` | `enableGetPreferredAllocation` (when present, true or false) |
//!
//! Keys are HAMi's lower-case spellings; the camelCase ones are accepted too (Go's decoder
//! matches keys without regard to case). Other keys (`migstrategy`, ...) are ignored, as Go
//! ignores them. The file is read once, at start: a missing file gives no overrides, a
//! malformed one stops the agent before it serves anything (see `load_for_node`).

use std::path::Path;

use serde::Deserialize;

use super::{Config, ConfigError};
use crate::filter::FilterDevices;

/// The file's shape.
#[derive(Debug, Default, Deserialize)]
struct NodeConfigFile {
    #[serde(default)]
    nodeconfig: Vec<NodeEntry>,
}

/// One node's entry; zero means "not set".
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct NodeEntry {
    pub name: String,
    #[serde(alias = "operatingMode")]
    pub operatingmode: String,
    #[serde(alias = "deviceSplitCount")]
    pub devicesplitcount: u32,
    #[serde(alias = "deviceMemoryScaling")]
    pub devicememoryscaling: f64,
    #[serde(alias = "deviceCoreScaling")]
    pub devicecorescaling: f64,
    #[serde(alias = "preConfiguredDeviceMemory")]
    pub preconfigureddevicememory: u64,
    #[serde(alias = "libCudaLogLevel")]
    pub libcudaloglevel: u32,
    #[serde(alias = "enableNumaTopology")]
    pub enablenumatopology: bool,
    #[serde(alias = "filterDevices")]
    pub filterdevices: Option<FilterDevices>,
    #[serde(alias = "enableGetPreferredAllocation")]
    pub enablegetpreferredallocation: Option<bool>,
}

impl Config {
    /// This configuration with `node`'s entry of the per-node file at `path` laid over it. A
    /// missing file, or no entry for the node, changes nothing.
    pub fn load_for_node(self, path: &Path, node: &str) -> Result<Config, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::info!(path = %path.display(), "no per-node configuration file");
                return Ok(self);
            }
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        self.with_node_file(path, &text, node)
    }

    /// [`Config::load_for_node`] on the file's text; `path` only names it in errors.
    pub fn with_node_file(
        self,
        path: &Path,
        text: &str,
        node: &str,
    ) -> Result<Config, ConfigError> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let file: NodeConfigFile =
            serde_path_to_error::deserialize(de).map_err(|e| ConfigError::Parse {
                path: path.to_path_buf(),
                field: e.path().to_string(),
                message: e.inner().to_string(),
            })?;
        let Some((i, entry)) = file
            .nodeconfig
            .iter()
            .enumerate()
            .find(|(_, e)| e.name == node)
        else {
            return Ok(self);
        };
        let config = self.overridden(entry);
        config
            .check()
            .map_err(|(field, message)| ConfigError::Invalid {
                path: path.to_path_buf(),
                field: format!("nodeconfig[{i}].{}", field.to_ascii_lowercase()),
                message,
            })?;
        tracing::info!(%node, path = %path.display(), "per-node configuration applied");
        Ok(config)
    }

    /// This configuration with `entry`'s non-zero values.
    fn overridden(mut self, entry: &NodeEntry) -> Config {
        if entry.devicesplitcount != 0 {
            self.device_split_count = entry.devicesplitcount;
        }
        if entry.devicememoryscaling != 0.0 {
            self.device_memory_scaling = entry.devicememoryscaling;
        }
        if entry.devicecorescaling != 0.0 {
            self.device_core_scaling = entry.devicecorescaling;
        }
        if entry.preconfigureddevicememory != 0 {
            self.pre_configured_device_memory = entry.preconfigureddevicememory;
        }
        if entry.libcudaloglevel != 0 {
            self.lib_cuda_log_level = Some(entry.libcudaloglevel);
        }
        if entry.enablenumatopology {
            self.enable_numa_topology = true;
        }
        if !entry.operatingmode.is_empty() {
            self.operating_mode = entry.operatingmode.clone();
        }
        if let Some(filter) = &entry.filterdevices {
            self.filter_devices = filter.clone();
        }
        if let Some(enable) = entry.enablegetpreferredallocation {
            self.enable_get_preferred_allocation = enable;
        }
        self
    }
}

#[cfg(test)]
mod tests;
