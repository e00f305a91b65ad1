//! The scheduler configuration: the keys of hamr's config file, which are HAMi's scheduler flags
//! and device-config keys in camelCase.
//!
//! ```yaml
//! schedulerName: hamr-scheduler
//! nodeSchedulerPolicy: binpack      # binpack | spread
//! gpuSchedulerPolicy: spread        # binpack | spread | topology-aware | mutex | numa | chains
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
    /// The NVIDIA section of HAMi's device config.
    pub nvidia: NvidiaConfig,
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
            nvidia: NvidiaConfig::default(),
            metax: MetaxConfig::default(),
        }
    }
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

impl Config {
    /// Parses and validates a JSON configuration. Absent keys keep their defaults.
    pub fn from_json(text: &str) -> Result<Config, Invalid> {
        let text = if text.trim().is_empty() { "{}" } else { text };
        let config: Config = serde_json::from_str(text).map_err(|e| {
            Invalid::new("config", config_path(&e.to_string()), text, e.to_string())
        })?;
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
        Ok(())
    }
}

/// serde_json names the unknown field in its message; surface it as the field.
fn config_path(message: &str) -> String {
    message
        .split('`')
        .nth(1)
        .map(str::to_string)
        .unwrap_or_else(|| "(document)".to_string())
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
    fn unknown_key_is_named() {
        let err = Config::from_json(r#"{"nvidia":{"defaultMemroy":5}}"#).unwrap_err();
        assert_eq!(err.field, "defaultMemroy");
    }

    #[test]
    fn bad_policy_is_refused() {
        let err = Config::from_json(r#"{"nodeSchedulerPolicy":"random"}"#).unwrap_err();
        assert_eq!(err.field, "nodeSchedulerPolicy");
        assert_eq!(err.value, "random");
    }
}
