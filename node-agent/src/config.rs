//! The agent's configuration file (YAML). Every key has HAMi's chart default, so an empty file
//! (or no file) is a valid configuration; see `examples/node-agent/config.yaml`. HAMi's
//! per-node file overrides some keys for one node ([`node`]).

pub mod node;

use std::path::{Path, PathBuf};

use hamr_guest::config::MigGeometries;
use serde::Deserialize;

use crate::filter::FilterDevices;

/// Why the configuration file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read (missing, or no permission).
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not YAML of the expected shape; `field` is the dotted path to the bad key.
    #[error("{path}: {field}: {message}")]
    Parse {
        path: PathBuf,
        field: String,
        message: String,
    },
    /// A key parsed but its value cannot work (for example a split count of 0); the message
    /// names the value.
    #[error("{path}: {field}: {message}")]
    Invalid {
        path: PathBuf,
        field: String,
        message: String,
    },
}

/// The node agent's settings (HAMi's `nvidia:` device config and per-node overrides, node-side.md
/// §2.2, plus the paths of §1).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Config {
    /// The kubelet resource this agent serves (`resourceCountName`).
    pub resource_name: String,
    /// Replicas advertised per card, and the `count` registered (`deviceSplitCount`).
    pub device_split_count: u32,
    /// Registered memory = physical MiB x this, truncated (`deviceMemoryScaling`).
    pub device_memory_scaling: f64,
    /// Registered cores = 100 x this (`deviceCoreScaling`).
    pub device_core_scaling: f64,
    /// `hami-core` (default), `mig` or `mps`: the `mode` registered for every card.
    pub operating_mode: String,
    /// HAMi's `HOOK_PATH`: the isolation library lives in `<hookPath>/vgpu` on the host and in
    /// the container.
    pub hook_path: PathBuf,
    /// The legacy node-wide lock directory mounted into every container.
    pub lock_dir: PathBuf,
    /// kubelet's device plugin directory (`kubelet.sock` and our socket live there).
    pub plugin_dir: PathBuf,
    /// Seconds between registration checks (30 in HAMi).
    pub register_interval_seconds: u64,
    /// Seconds between discovery re-scans that feed health into ListAndWatch.
    pub health_interval_seconds: u64,
    /// `LIBCUDA_LOG_LEVEL` handed to containers, when set.
    pub lib_cuda_log_level: Option<u32>,
    /// MiB registered for a card whose memory discovery reports as 0 (unified-memory parts);
    /// 0 leaves such a card out (`preConfiguredDeviceMemory`).
    pub pre_configured_device_memory: u64,
    /// Tell kubelet each replica's NUMA node in ListAndWatch (`enableNumaTopology`).
    pub enable_numa_topology: bool,
    /// NVIDIA cards neither registered nor advertised to kubelet (`filterdevices`).
    pub filter_devices: FilterDevices,
    /// HAMi's per-node file (`/config/config.json` of its device plugin ConfigMap), read once
    /// at start; a missing file overrides nothing ([`node`]).
    pub node_config_path: PathBuf,
    /// Hands containers `GPU_CORE_UTILIZATION_POLICY=disable`.
    pub disable_core_limit: bool,
    /// Offer `GetPreferredAllocation` to kubelet (`enablegetpreferredallocation`).
    pub enable_get_preferred_allocation: bool,
    /// Write HAMi's `hami.io/node-nvidia-register`. Turn it off on a node that only Volcano
    /// schedules: hamr books a card listed by both protocols as HAMi's.
    pub register_hami: bool,
    /// Volcano's protocol (`volcano.sh/node-vgpu-register`).
    pub volcano: VolcanoConfig,
    /// Publish `hamr.io/node-device-usage` (the use of this node's cards by its pods) for
    /// schedulers that see nodes but not pods (kube-scheduler-wasm-extension).
    pub publish_usage: bool,
    /// Seconds without a new critical XID after which a card marked unhealthy by one is
    /// healthy again (HAMi never recovers; see DEVIATIONS.md). 0 keeps it unhealthy until the
    /// agent restarts, as HAMi.
    pub xid_recovery_seconds: u64,
    /// Write `hami.io/node-nvidia-score` (HAMi's `ENABLE_TOPOLOGY_SCORE`, set by its chart when
    /// the scheduler's GPU policy is `topology-aware`).
    pub topology_score: bool,
    /// Completing the decisions of schedulers that bind pods without writing them
    /// (kube-scheduler-wasm-extension): [`crate::complete`].
    pub complete_decisions: CompleteConfig,
    /// Which MIG profiles each card model registers in `mig` mode (`migProfileAllowlist`):
    /// the first entry with a model string found in the card's model as whole words applies.
    /// HAMi's chart default, plus `NVIDIA H200` (NVML's name for the card).
    pub mig_profile_allowlist: Vec<MigAllow>,
    /// Seconds between MIG reconciliations (instances whose pod is gone are destroyed; 5 in
    /// HAMi).
    pub mig_reconcile_seconds: u64,
}

/// One `migProfileAllowlist` entry: card models (whole words of the model name) and the profile
/// names they register (`<N>g.<memory>`).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigAllow {
    pub models: Vec<String>,
    pub profiles: Vec<String>,
}

/// HAMi's chart default `migProfileAllowlist` (node-side.md §6.2).
pub fn default_mig_allowlist() -> Vec<MigAllow> {
    let entry = |models: &[&str], profiles: &[&str]| MigAllow {
        models: models.iter().map(|s| s.to_string()).collect(),
        profiles: profiles.iter().map(|s| s.to_string()).collect(),
    };
    vec![
        entry(&["A30"], &["1g.6gb", "2g.12gb", "4g.24gb"]),
        entry(
            &["A100-SXM4-40GB", "A100-40GB-PCIe", "A100-PCIE-40GB"],
            &["1g.5gb", "2g.10gb", "3g.20gb", "7g.40gb"],
        ),
        entry(
            &["A100-SXM4-80GB", "A100-80GB-PCIe", "A100-PCIE-80GB"],
            &["1g.10gb", "2g.20gb", "3g.40gb", "7g.79gb"],
        ),
        entry(
            &["H100-PCIE-80GB", "H100-SXM5-80GB"],
            &["1g.10gb", "2g.20gb", "3g.40gb", "7g.80gb"],
        ),
        entry(
            &["H100-PCIE-94GB", "H100-SXM5-94GB"],
            &["1g.12gb", "2g.24gb", "3g.47gb", "7g.94gb"],
        ),
        entry(
            &["H20", "H100 on GH200"],
            &["1g.12gb", "2g.24gb", "3g.48gb", "7g.96gb"],
        ),
        // `NVIDIA H200` is what NVML names an H200 (SXM, 143771 MiB, driver 580), read on a
        // card; the chart's two strings alone match no such name.
        entry(
            &["H200 NVL", "H200-SXM5", "NVIDIA H200"],
            &["1g.18gb", "2g.35gb", "3g.71gb", "7g.141gb"],
        ),
        entry(&["B200"], &["1g.23gb", "2g.45gb", "3g.90gb", "7g.180gb"]),
        entry(
            &["RTX PRO 6000 Blackwell Server Edition"],
            &["1g.24gb", "2g.48gb", "4g.96gb"],
        ),
    ]
}

/// Which pods the agent completes, and with which scheduler configuration.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct CompleteConfig {
    /// A pod bound here by one of these schedulers (`spec.schedulerName`) that asks for
    /// devices and carries no decision gets one from the agent. Empty turns completion off.
    pub scheduler_names: Vec<String>,
    /// hamr's scheduler configuration as JSON, the same text as the scheduler's `guestConfig`
    /// (card and node policies, resource names, default memory): the agent must choose what
    /// the scheduler would. Empty: the guest's defaults.
    pub guest_config: String,
    /// How long Allocate keeps trying to complete a pod before it fails for want of one.
    pub wait_seconds: u64,
}

impl Default for CompleteConfig {
    fn default() -> CompleteConfig {
        CompleteConfig {
            // The profile of examples/deploy/kube-scheduler-wasm-extension.yaml (and of the
            // extender deployment, whose pods always carry their decision before they are bound).
            scheduler_names: vec!["hamr-scheduler".to_string()],
            guest_config: String::new(),
            wait_seconds: 3,
        }
    }
}

/// Volcano's registration settings (interfaces.md §3.6).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct VolcanoConfig {
    /// Write `volcano.sh/node-vgpu-register`.
    pub register: bool,
    /// Registered memory = MiB ÷ this (`gpuMemoryFactor`).
    pub gpu_memory_factor: u32,
    /// The geometry groups Volcano's scheduler cuts MIG cards by (`knownMigGeometries` of
    /// `volcano-vgpu-device-config`; keep it equal to the scheduler's). A slice
    /// `UUID[<group>-<position>]` is created where the group's layout puts that position
    /// ([`crate::mig::volcano`]). Default: the chart's A30 and A100 groups.
    pub known_mig_geometries: Vec<MigGeometries>,
}

impl Default for VolcanoConfig {
    fn default() -> VolcanoConfig {
        VolcanoConfig {
            register: false,
            gpu_memory_factor: 1,
            known_mig_geometries: hamr_guest::config::VolcanoConfig::default().known_mig_geometries,
        }
    }
}

impl VolcanoConfig {
    /// The scheduler-side settings these geometries belong to (to look a card's groups up).
    pub fn geometries(&self) -> hamr_guest::config::VolcanoConfig {
        hamr_guest::config::VolcanoConfig {
            known_mig_geometries: self.known_mig_geometries.clone(),
            ..hamr_guest::config::VolcanoConfig::default()
        }
    }
}

impl Default for Config {
    fn default() -> Config {
        Config {
            resource_name: "nvidia.com/gpu".to_string(),
            device_split_count: 10,
            device_memory_scaling: 1.0,
            device_core_scaling: 1.0,
            operating_mode: "hami-core".to_string(),
            hook_path: PathBuf::from("/usr/local"),
            lock_dir: PathBuf::from("/tmp/vgpulock"),
            plugin_dir: PathBuf::from("/var/lib/kubelet/device-plugins"),
            register_interval_seconds: 30,
            health_interval_seconds: 5,
            lib_cuda_log_level: None,
            pre_configured_device_memory: 0,
            enable_numa_topology: false,
            filter_devices: FilterDevices::default(),
            node_config_path: PathBuf::from("/config/config.json"),
            disable_core_limit: false,
            enable_get_preferred_allocation: false,
            register_hami: true,
            volcano: VolcanoConfig::default(),
            publish_usage: true,
            xid_recovery_seconds: 300,
            topology_score: false,
            complete_decisions: CompleteConfig::default(),
            mig_profile_allowlist: default_mig_allowlist(),
            mig_reconcile_seconds: 5,
        }
    }
}

impl Config {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(path, &text)
    }

    /// Parses configuration text; `path` only names the source in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let config: Config = if text.trim().is_empty() {
            Config::default()
        } else {
            from_yaml(text).map_err(|(field, message)| ConfigError::Parse {
                path: path.to_path_buf(),
                field,
                message,
            })?
        };
        config
            .check()
            .map_err(|(field, message)| ConfigError::Invalid {
                path: path.to_path_buf(),
                field: field.to_string(),
                message,
            })?;
        for (i, entry) in config.mig_profile_allowlist.iter().enumerate() {
            let invalid = |message: String| ConfigError::Parse {
                path: path.to_path_buf(),
                field: format!("migProfileAllowlist[{i}]"),
                message,
            };
            if entry.models.is_empty() || entry.profiles.is_empty() {
                return Err(invalid("models and profiles must not be empty".to_string()));
            }
            if let Some(bad) = entry
                .profiles
                .iter()
                .find(|p| crate::mig::slices_of(p).is_none())
            {
                return Err(invalid(format!(
                    "profile {bad:?} is not <N>g.<memory> (e.g. 1g.10gb)"
                )));
            }
        }
        for (i, entry) in config.volcano.known_mig_geometries.iter().enumerate() {
            for (g, group) in entry.allowed_geometries.iter().enumerate() {
                for (k, instance) in group.geometries.iter().enumerate() {
                    if crate::mig::slices_of(&instance.name).is_none() {
                        return Err(ConfigError::Invalid {
                            path: path.to_path_buf(),
                            field: format!(
                                "volcano.knownMigGeometries[{i}].allowedGeometries[{g}].geometries[{k}].name"
                            ),
                            message: format!(
                                "{:?} is not <N>g.<memory> (e.g. 1g.10gb)",
                                instance.name
                            ),
                        });
                    }
                }
            }
        }
        Ok(config)
    }

    /// The first key whose value cannot work, and why (naming the value).
    fn check(&self) -> Result<(), (&'static str, String)> {
        if self.device_split_count == 0 {
            return Err(("deviceSplitCount", "must be at least 1, not 0".into()));
        }
        let positive = |field, value: f64| {
            if value.is_finite() && value > 0.0 {
                Ok(())
            } else {
                Err((field, format!("must be a number above 0, not {value}")))
            }
        };
        positive("deviceMemoryScaling", self.device_memory_scaling)?;
        positive("deviceCoreScaling", self.device_core_scaling)?;
        if self.volcano.gpu_memory_factor == 0 {
            return Err((
                "volcano.gpuMemoryFactor",
                "must be at least 1, not 0".into(),
            ));
        }
        if !["hami-core", "mig", "mps"].contains(&self.operating_mode.as_str()) {
            return Err((
                "operatingMode",
                format!(
                    "must be hami-core, mig or mps, not {:?}",
                    self.operating_mode
                ),
            ));
        }
        if let Err(e) = hamr_guest::config::Config::from_json(&self.complete_decisions.guest_config)
        {
            return Err(("completeDecisions.guestConfig", e.to_string()));
        }
        if let Err(e) = self.volcano.geometries().validate() {
            return Err((
                "volcano.knownMigGeometries",
                format!("{} is {:?}: {}", e.field, e.value, e.message),
            ));
        }
        Ok(())
    }

    /// The host and container directory of the isolation library: `<hookPath>/vgpu`.
    pub fn vgpu_dir(&self) -> PathBuf {
        self.hook_path.join("vgpu")
    }

    /// The socket file name we serve on: `nvidia-<suffix>.sock` for `nvidia.com/<suffix>`.
    pub fn socket_name(&self) -> String {
        let suffix = self
            .resource_name
            .rsplit_once('/')
            .map_or(self.resource_name.as_str(), |(_, s)| s);
        format!("nvidia-{suffix}.sock")
    }
}

/// Deserialises YAML; on failure returns the dotted path of the bad key and the message
/// (without the path serde_norway repeats at its start).
pub(crate) fn from_yaml<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, (String, String)> {
    let de = serde_norway::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        let message = e.inner().to_string();
        let message = match message.split_once(": ") {
            Some((prefix, rest)) if field.starts_with(prefix) => rest.to_string(),
            _ => message,
        };
        (field, message)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_gives_the_chart_defaults() {
        let c = Config::parse(Path::new("agent.yaml"), "").expect("empty is valid");
        assert_eq!(c, Config::default());
        assert_eq!(c.device_split_count, 10);
        assert_eq!(c.socket_name(), "nvidia-gpu.sock");
        assert_eq!(c.vgpu_dir(), PathBuf::from("/usr/local/vgpu"));
    }

    #[test]
    fn an_unknown_key_is_named_with_the_file() {
        let err = Config::parse(Path::new("agent.yaml"), "deviceSplitCout: 4\n").unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("agent.yaml: "), "{text}");
        assert!(text.contains("deviceSplitCout"), "{text}");
    }

    #[test]
    fn a_wrongly_typed_value_names_its_field() {
        let err = Config::parse(Path::new("agent.yaml"), "deviceSplitCount: many\n").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("agent.yaml: deviceSplitCount: "),
            "{err}"
        );
    }

    #[test]
    fn the_example_file_documents_exactly_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/node-agent/config.yaml");
        let c = Config::load(&path).expect("the example parses");
        assert_eq!(c, Config::default());
    }

    #[test]
    fn the_deployed_config_map_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/deploy/node-agent.yaml");
        let text = std::fs::read_to_string(&path).expect("manifest");
        let (_, rest) = text
            .split_once("  config.yaml: |\n")
            .expect("the ConfigMap's file");
        let body: String = rest
            .lines()
            .take_while(|l| l.starts_with("    "))
            .map(|l| format!("{}\n", &l[4..]))
            .collect();
        assert_eq!(
            Config::parse(&path, &body).expect("valid"),
            Config::default()
        );
    }

    #[test]
    fn a_guest_config_the_guest_refuses_is_named_with_the_guests_reason() {
        let text = "completeDecisions:\n  guestConfig: '{\"gpuSchedulerPolicy\": 7}'\n";
        let err = Config::parse(Path::new("a.yaml"), text).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("a.yaml: completeDecisions.guestConfig: config: ")
                && text.contains("expected a string"),
            "{text}"
        );
    }

    #[test]
    fn volcano_geometries_are_read_and_checked_by_the_schedulers_rules_and_profile_names() {
        let text = "volcano:\n  knownMigGeometries:\n  - models: [A30]\n    allowedGeometries:\n    - group: g1\n      geometries: [{name: 1g.6gb, memory: 6144, count: 4}]\n";
        let config = Config::parse(Path::new("a.yaml"), text).expect("valid");
        let groups = config.volcano.geometries();
        let found = groups.geometries_for("NVIDIA-NVIDIA A30").expect("A30");
        assert_eq!(found[0].group, "g1");
        assert!(
            groups.geometries_for("NVIDIA-A100-SXM4-40GB").is_none(),
            "replaced as a whole"
        );

        let bad_group = text.replace("group: g1", "group: g-1");
        let err = Config::parse(Path::new("a.yaml"), &bad_group).unwrap_err();
        assert_eq!(
            err.to_string(),
            "a.yaml: volcano.knownMigGeometries: volcano.knownMigGeometries[0].allowedGeometries[0].group \
             is \"g-1\": must be non-empty without '-', '[', ']', ',', ':' or ';'"
        );
        let bad_name = text.replace("name: 1g.6gb", "name: small");
        let err = Config::parse(Path::new("a.yaml"), &bad_name).unwrap_err();
        assert_eq!(
            err.to_string(),
            "a.yaml: volcano.knownMigGeometries[0].allowedGeometries[0].geometries[0].name: \
             \"small\" is not <N>g.<memory> (e.g. 1g.10gb)"
        );
    }

    #[test]
    fn a_mig_profile_that_is_not_n_g_dot_memory_is_refused_with_its_entry() {
        let text = "migProfileAllowlist:\n- {models: [A30], profiles: [1g.6gb, big]}\n";
        let err = Config::parse(Path::new("a.yaml"), text).unwrap_err();
        assert_eq!(
            err.to_string(),
            "a.yaml: migProfileAllowlist[0]: profile \"big\" is not <N>g.<memory> (e.g. 1g.10gb)"
        );
        let text = "migProfileAllowlist:\n- {models: [], profiles: [1g.6gb]}\n";
        let err = Config::parse(Path::new("a.yaml"), text).unwrap_err();
        assert_eq!(
            err.to_string(),
            "a.yaml: migProfileAllowlist[0]: models and profiles must not be empty"
        );
    }

    #[test]
    fn a_split_count_of_zero_is_refused() {
        let err = Config::parse(Path::new("a.yaml"), "deviceSplitCount: 0\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "a.yaml: deviceSplitCount: must be at least 1, not 0"
        );
    }
}
