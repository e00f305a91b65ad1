//! The scheduler configuration: the keys of hamr's config file, which are HAMi's scheduler flags
//! and device-config keys in camelCase.
//!
//! ```yaml
//! schedulerName: hamr-scheduler
//! nodeSchedulerPolicy: binpack      # binpack | spread
//! gpuSchedulerPolicy: spread        # binpack | spread | topology-aware | mutex | numa | chains
//! filterVerdicts: tried             # tried | all: verdicts for the nodes tried, or every candidate
//! nvidia:
//!   defaultMemory: 0                # MiB when neither gpumem nor percentage is given (0 = whole card)
//!   memoryFactor: 1
//! ```

use serde::Deserialize;

use crate::api::Invalid;

/// The whole configuration. Every field has HAMi's chart default.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Config {
    /// The scheduler name admission writes into device pods (`--scheduler-name`).
    pub scheduler_name: String,
    /// Take over pods that name `default-scheduler` (`--force-overwrite-default-scheduler`).
    pub force_overwrite_default_scheduler: bool,
    /// Node policy when the pod has no `hami.io/node-scheduler-policy` (`binpack` | `spread`).
    pub node_scheduler_policy: String,
    /// Card policy when the pod has no `hami.io/gpu-scheduler-policy`.
    pub gpu_scheduler_policy: String,
    /// Which candidates `filter` gives a verdict for when some node fits (hamr's own key):
    /// `tried` (the default) evaluates candidates best first and stops at the first that fits,
    /// so only the nodes ranked above the choice have a verdict; `all` evaluates every
    /// candidate. The choice is the same either way; with no fitting node both list every
    /// candidate. HAMi returns no `FailedNodes` at all on success.
    pub filter_verdicts: String,
    /// The NVIDIA section of HAMi's device config.
    pub nvidia: NvidiaConfig,
    /// Volcano's vGPU protocol (`volcano.sh/*`): the deviceshare plugin's arguments and the
    /// `nvidia:` section of `volcano-vgpu-device-config`.
    pub volcano: VolcanoConfig,
    /// Huawei Ascend (HAMi's `vnpus`), shared by every chip.
    pub ascend: AscendConfig,
    /// Cambricon MLU.
    pub cambricon: ResourceNames,
    /// Hygon DCU.
    pub hygon: ResourceNames,
    /// Moore Threads.
    pub mthreads: ResourceNames,
    /// Biren (count only).
    pub biren: ResourceNames,
    /// AMD.
    pub amd: ResourceNames,
    /// VastAI (count only).
    pub vastai: ResourceNames,
    /// The MetaX section of HAMi's device config.
    pub metax: MetaxConfig,
}

/// HAMi's `metax:` device-config section (scheduler-side keys).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct MetaxConfig {
    /// Inter-node MetaXLink scoring for exclusive sGPU pods (`--sgpu-topology-aware`); a pod
    /// overrides it with `metax-tech.com/sgpu-topology-aware`.
    #[serde(rename = "sgpuTopologyAware")]
    pub sgpu_topology_aware: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            scheduler_name: "hamr-scheduler".to_string(),
            force_overwrite_default_scheduler: true,
            node_scheduler_policy: "binpack".to_string(),
            gpu_scheduler_policy: "spread".to_string(),
            filter_verdicts: "tried".to_string(),
            nvidia: NvidiaConfig::default(),
            volcano: VolcanoConfig::default(),
            ascend: AscendConfig::default(),
            cambricon: ResourceNames::new(
                "cambricon.com/vmlu",
                "cambricon.com/mlu.smlu.vmemory",
                "cambricon.com/mlu.smlu.vcore",
            ),
            hygon: ResourceNames::new("hygon.com/dcunum", "hygon.com/dcumem", "hygon.com/dcucores"),
            mthreads: ResourceNames::new(
                "mthreads.com/vgpu",
                "mthreads.com/sgpu-memory",
                "mthreads.com/sgpu-core",
            ),
            biren: ResourceNames::new("birentech.com/gpu", "", ""),
            amd: ResourceNames::new("amd.com/gpu", "amd.com/gpumem", "amd.com/gpucores"),
            vastai: ResourceNames::new("vastaitech.com/va", "", ""),
            metax: MetaxConfig::default(),
        }
    }
}

/// A vendor's resource names (HAMi's `resourceCountName`, `resourceMemoryName`,
/// `resourceCoreName`) and memory factor. Absent keys keep the vendor's chart default.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceNames {
    #[serde(default)]
    pub resource_count_name: Option<String>,
    #[serde(default)]
    pub resource_memory_name: Option<String>,
    #[serde(default)]
    pub resource_core_name: Option<String>,
    /// Multiplier applied to memory requests (Hygon); 1 elsewhere.
    #[serde(default = "one")]
    pub memory_factor: i64,
    /// The chart defaults, not part of the file.
    #[serde(skip)]
    defaults: [&'static str; 3],
}

fn one() -> i64 {
    1
}

impl Default for ResourceNames {
    fn default() -> Self {
        ResourceNames::new("", "", "")
    }
}

impl ResourceNames {
    pub fn new(count: &'static str, memory: &'static str, core: &'static str) -> ResourceNames {
        ResourceNames {
            resource_count_name: None,
            resource_memory_name: None,
            resource_core_name: None,
            memory_factor: 1,
            defaults: [count, memory, core],
        }
    }

    pub fn count(&self) -> &str {
        self.resource_count_name
            .as_deref()
            .unwrap_or(self.defaults[0])
    }

    pub fn memory(&self) -> &str {
        self.resource_memory_name
            .as_deref()
            .unwrap_or(self.defaults[1])
    }

    pub fn core(&self) -> &str {
        self.resource_core_name
            .as_deref()
            .unwrap_or(self.defaults[2])
    }

    /// The non-empty names, count first.
    pub fn all(&self) -> Vec<String> {
        [self.count(), self.memory(), self.core()]
            .into_iter()
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    }
}

/// HAMi's `vnpus` settings that hamr reads (the chips and their templates are the chart's).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct AscendConfig {
    /// Nodes allow soft split (`huawei.com/vnpu-mode: hami-core`) unless their `hami-vnpu-core`
    /// annotation says otherwise.
    pub hami_vnpu_core: bool,
    /// Multiplier applied to `huawei.com/<chip>-memory` (0 or 1 = none).
    pub memory_factor: i64,
    /// Add `ASCEND_VISIBLE_DEVICES=""` to containers that ask for no NPU of a chip.
    pub overwrite_env: bool,
    /// Runtime class set on pods that ask for an NPU and have none (HAMi's per-chip
    /// `runtimeClassName`, one value for every chip); empty for none.
    pub runtime_class_name: String,
}

/// HAMi's `nvidia:` device-config section (scheduler-side keys).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct NvidiaConfig {
    /// Number of cards per container.
    pub resource_count_name: String,
    /// MiB per card (× `memoryFactor`). Empty means "not configured".
    pub resource_memory_name: String,
    /// Percent of each card's memory.
    pub resource_memory_percentage_name: String,
    /// Percent of each card's SMs.
    pub resource_core_name: String,
    /// Task priority (→ `CUDA_TASK_PRIORITY`).
    pub resource_priority_name: String,
    /// Add `NVIDIA_VISIBLE_DEVICES=none` to containers that ask for no card.
    pub overwrite_env: bool,
    /// MiB used when neither memory nor percentage is given; 0 means the whole card.
    pub default_memory: i64,
    /// Cores used when none are given.
    pub default_cores: i64,
    /// Card count added when only memory, cores or percentage is given.
    #[serde(rename = "defaultGPUNum")]
    pub default_gpu_num: i64,
    /// Multiplier applied to memory requests.
    pub memory_factor: i64,
    /// `default` | `force` | `disable` (→ `GPU_CORE_UTILIZATION_POLICY` when not default).
    pub gpu_core_policy: String,
    /// Runtime class set on device pods that have none; empty for none.
    pub runtime_class_name: String,
}

impl Default for NvidiaConfig {
    fn default() -> Self {
        NvidiaConfig {
            resource_count_name: "nvidia.com/gpu".to_string(),
            resource_memory_name: "nvidia.com/gpumem".to_string(),
            resource_memory_percentage_name: "nvidia.com/gpumem-percentage".to_string(),
            resource_core_name: "nvidia.com/gpucores".to_string(),
            resource_priority_name: "nvidia.com/priority".to_string(),
            overwrite_env: false,
            default_memory: 0,
            default_cores: 0,
            default_gpu_num: 1,
            memory_factor: 1,
            gpu_core_policy: "default".to_string(),
            runtime_class_name: String::new(),
        }
    }
}

/// Volcano's vGPU settings (spec interfaces.md §3.4–3.7).
///
/// ```yaml
/// volcano:
///   schedulePolicy: binpack          # deviceshare.SchedulePolicy: binpack | spread | "" (none)
///   gpuMemoryFactor: 1
///   knownMigGeometries:
///   - models: ["A100-SXM4-40GB", "A100-PCIE-40GB"]
///     allowedGeometries:
///     - group: group1
///       geometries: [{name: 1g.5gb, memory: 5120, count: 7}]
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct VolcanoConfig {
    /// Number of vGPUs per container.
    pub resource_count_name: String,
    /// MiB per vGPU.
    pub resource_memory_name: String,
    /// Percent of each card's memory (101 = unset).
    pub resource_memory_percentage_name: String,
    /// Percent of each card's SMs.
    pub resource_core_name: String,
    /// Card order and device score: `binpack`, `spread`, or empty for neither.
    pub schedule_policy: String,
    /// Requests are in units of this many MiB when sized against MIG slices.
    #[serde(rename = "gpuMemoryFactor")]
    pub gpu_memory_factor: i64,
    /// MIG geometries per GPU model, for cards registered in `mig` mode; a configured list
    /// replaces the defaults (A30, A100 40 GB, A100 80 GB) as a whole.
    pub known_mig_geometries: Vec<MigGeometries>,
}

impl Default for VolcanoConfig {
    fn default() -> Self {
        VolcanoConfig {
            resource_count_name: "volcano.sh/vgpu-number".to_string(),
            resource_memory_name: "volcano.sh/vgpu-memory".to_string(),
            resource_memory_percentage_name: "volcano.sh/vgpu-memory-percentage".to_string(),
            resource_core_name: "volcano.sh/vgpu-cores".to_string(),
            schedule_policy: String::new(),
            gpu_memory_factor: 1,
            known_mig_geometries: default_mig_geometries(),
        }
    }
}

/// The chart's geometries (spec interfaces.md §3.7): A30, A100 40 GB and A100 80 GB. Slice
/// sizes of the A100 80 GB are the chart's; those of the A30 and A100 40 GB are the design
/// doc's round numbers.
fn default_mig_geometries() -> Vec<MigGeometries> {
    let group = |name: &str, geometries: &[(&str, i64, i64)]| MigGroup {
        group: name.to_string(),
        geometries: geometries
            .iter()
            .map(|(n, memory, count)| MigInstance {
                name: n.to_string(),
                memory: *memory,
                count: *count,
            })
            .collect(),
    };
    let models = |m: &[&str]| m.iter().map(|s| s.to_string()).collect();
    vec![
        MigGeometries {
            models: models(&["A30"]),
            allowed_geometries: vec![
                group("group1", &[("1g.6gb", 6144, 4)]),
                group("group2", &[("2g.12gb", 12288, 2)]),
                group("group3", &[("4g.24gb", 24576, 1)]),
            ],
        },
        MigGeometries {
            models: models(&["A100-SXM4-40GB", "A100-40GB-PCIe", "A100-PCIE-40GB"]),
            allowed_geometries: vec![
                group("group1", &[("1g.5gb", 5120, 7)]),
                group("group2", &[("2g.10gb", 10240, 3), ("1g.5gb", 5120, 1)]),
                group("group3", &[("3g.20gb", 20480, 2)]),
                group("group4", &[("7g.40gb", 40960, 1)]),
            ],
        },
        MigGeometries {
            models: models(&["A100-SXM4-80GB", "A100-80GB-PCIe", "A100-PCIE-80GB"]),
            allowed_geometries: vec![
                group("group1", &[("1g.10gb", 9728, 7)]),
                group("group2", &[("2g.20gb", 19968, 3), ("1g.10gb", 9728, 1)]),
                group("group3", &[("3g.40gb", 40192, 2)]),
                group("group4", &[("7g.80gb", 80896, 1)]),
            ],
        },
    ]
}

/// One entry of `knownMigGeometries`: the models it applies to and their geometry groups.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MigGeometries {
    /// Substrings of the registered card type; the first entry with a match applies.
    pub models: Vec<String>,
    /// Whole-GPU partitionings, tried in this order on an unpartitioned card.
    pub allowed_geometries: Vec<MigGroup>,
}

/// One way to partition a whole GPU.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigGroup {
    pub group: String,
    pub geometries: Vec<MigInstance>,
}

/// `count` instances of one MIG profile.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigInstance {
    pub name: String,
    /// MiB.
    pub memory: i64,
    pub count: i64,
}

impl Config {
    /// Parses and validates a JSON configuration. Absent keys keep their defaults.
    pub fn from_json(text: &str) -> Result<Config, Invalid> {
        let text = if text.trim().is_empty() { "{}" } else { text };
        let mut de = serde_json::Deserializer::from_str(text);
        let mut config: Config = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let message = e.into_inner().to_string();
            Invalid::new("config", config_path(&path, &message), text, message)
        })?;
        // A vendor section that is present was built without its chart defaults.
        let d = Config::default();
        for (section, default) in [
            (&mut config.cambricon, &d.cambricon),
            (&mut config.hygon, &d.hygon),
            (&mut config.mthreads, &d.mthreads),
            (&mut config.biren, &d.biren),
            (&mut config.amd, &d.amd),
            (&mut config.vastai, &d.vastai),
        ] {
            section.defaults = default.defaults;
        }
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), Invalid> {
        let bad = |field: &str, value: String, message: &str| {
            Err(Invalid::new("config", field, &value, message))
        };
        if !matches!(self.node_scheduler_policy.as_str(), "binpack" | "spread") {
            return bad(
                "nodeSchedulerPolicy",
                self.node_scheduler_policy.clone(),
                "must be binpack or spread",
            );
        }
        if !matches!(self.filter_verdicts.as_str(), "tried" | "all") {
            return bad(
                "filterVerdicts",
                self.filter_verdicts.clone(),
                "must be tried or all",
            );
        }
        for token in self.gpu_scheduler_policy.split(',') {
            let token = token.trim();
            if !matches!(
                token,
                "binpack" | "spread" | "topology-aware" | "mutex" | "numa"
            ) {
                return bad(
                    "gpuSchedulerPolicy",
                    self.gpu_scheduler_policy.clone(),
                    "each item must be binpack, spread, topology-aware, mutex or numa",
                );
            }
        }
        let n = &self.nvidia;
        if n.resource_count_name.is_empty() {
            return bad(
                "nvidia.resourceCountName",
                String::new(),
                "must not be empty",
            );
        }
        if n.memory_factor < 1 {
            return bad(
                "nvidia.memoryFactor",
                n.memory_factor.to_string(),
                "must be at least 1",
            );
        }
        if n.default_memory < 0 || n.default_memory > i64::from(i32::MAX) {
            return bad(
                "nvidia.defaultMemory",
                n.default_memory.to_string(),
                "must be between 0 and 2147483647 MiB",
            );
        }
        if !(0..=100).contains(&n.default_cores) {
            return bad(
                "nvidia.defaultCores",
                n.default_cores.to_string(),
                "must be between 0 and 100",
            );
        }
        if n.default_gpu_num < 0 {
            return bad(
                "nvidia.defaultGPUNum",
                n.default_gpu_num.to_string(),
                "must not be negative",
            );
        }
        if !matches!(n.gpu_core_policy.as_str(), "default" | "force" | "disable") {
            return bad(
                "nvidia.gpuCorePolicy",
                n.gpu_core_policy.clone(),
                "must be default, force or disable",
            );
        }
        for (name, factor) in [
            ("hygon.memoryFactor", self.hygon.memory_factor),
            ("ascend.memoryFactor", self.ascend.memory_factor.max(1)),
        ] {
            if factor < 1 {
                return bad(name, factor.to_string(), "must be at least 1");
            }
        }
        self.volcano.validate()
    }
}

impl VolcanoConfig {
    /// Checks the settings, `knownMigGeometries` included (the node agent checks its copy of
    /// the geometries with this too).
    pub fn validate(&self) -> Result<(), Invalid> {
        let bad = |field: String, value: String, message: &str| {
            Err(Invalid::new("config", field, &value, message))
        };
        if !matches!(self.schedule_policy.as_str(), "" | "binpack" | "spread") {
            return bad(
                "volcano.schedulePolicy".into(),
                self.schedule_policy.clone(),
                "must be binpack, spread or empty",
            );
        }
        if self.resource_count_name.is_empty() {
            return bad(
                "volcano.resourceCountName".into(),
                String::new(),
                "must not be empty",
            );
        }
        if self.gpu_memory_factor < 1 {
            return bad(
                "volcano.gpuMemoryFactor".into(),
                self.gpu_memory_factor.to_string(),
                "must be at least 1",
            );
        }
        for (i, entry) in self.known_mig_geometries.iter().enumerate() {
            let at = format!("volcano.knownMigGeometries[{i}]");
            if entry.models.iter().all(|m| m.is_empty()) {
                return bad(format!("{at}.models"), String::new(), "needs a model name");
            }
            for (g, group) in entry.allowed_geometries.iter().enumerate() {
                let at = format!("{at}.allowedGeometries[{g}]");
                // The group name is part of the slice id `UUID[<group>-<position>]`.
                if group.group.is_empty() || group.group.contains(['-', '[', ']', ',', ':', ';']) {
                    return bad(
                        format!("{at}.group"),
                        group.group.clone(),
                        "must be non-empty without '-', '[', ']', ',', ':' or ';'",
                    );
                }
                if group.geometries.is_empty() {
                    return bad(
                        format!("{at}.geometries"),
                        String::new(),
                        "must not be empty",
                    );
                }
                for (k, inst) in group.geometries.iter().enumerate() {
                    if inst.memory <= 0 || inst.memory > i64::from(i32::MAX) {
                        return bad(
                            format!("{at}.geometries[{k}].memory"),
                            inst.memory.to_string(),
                            "must be between 1 and 2147483647 MiB",
                        );
                    }
                    if !(1..=64).contains(&inst.count) {
                        return bad(
                            format!("{at}.geometries[{k}].count"),
                            inst.count.to_string(),
                            "must be between 1 and 64",
                        );
                    }
                }
            }
        }
        Ok(())
    }

    /// The geometry groups for a card type: the first entry with a model that is a
    /// substring of it.
    pub fn geometries_for(&self, card_type: &str) -> Option<&[MigGroup]> {
        self.known_mig_geometries
            .iter()
            .find(|e| {
                e.models
                    .iter()
                    .any(|m| !m.is_empty() && card_type.contains(m.as_str()))
            })
            .map(|e| e.allowed_geometries.as_slice())
    }
}

/// The key a serde error is about, dotted from the top (`nvidia.defaultMemory`, an unknown key
/// included); `(document)` when the text is not a JSON object at all.
fn config_path(path: &str, message: &str) -> String {
    if path != "." && !path.is_empty() {
        return path.to_string();
    }
    message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split('`').next())
        .unwrap_or("(document)")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_is_hamis_chart_defaults() {
        let c = Config::from_json("").expect("empty config is valid");
        assert_eq!(c, Config::default());
        assert_eq!(c.nvidia.default_gpu_num, 1);
        assert_eq!(c.gpu_scheduler_policy, "spread");
    }

    #[test]
    fn malformed_keys_are_named_by_their_path() {
        let cases = [
            (r#"{"nvidia":{"defaultMemroy":5}}"#, "nvidia.defaultMemroy"),
            (r#"{"shedulerName":"x"}"#, "shedulerName"),
            (r#"{"gpuSchedulerPolicy":7}"#, "gpuSchedulerPolicy"),
            (
                r#"{"nvidia":{"defaultMemory":"lots"}}"#,
                "nvidia.defaultMemory",
            ),
            ("5", "(document)"),
        ];
        for (text, field) in cases {
            let err = Config::from_json(text).unwrap_err();
            assert_eq!(err.field, field, "{text}: {}", err.message);
        }
    }

    #[test]
    fn bad_policy_is_refused() {
        let err = Config::from_json(r#"{"nodeSchedulerPolicy":"random"}"#).unwrap_err();
        assert_eq!(err.field, "nodeSchedulerPolicy");
        assert_eq!(err.value, "random");
    }
}
