//! Deriving an NVIDIA container request (spec §4) and the admission mutation of one container
//! (spec §3.2).

use crate::api::{
    Container, ContainerEnv, ContainerLimit, ContainerRef, Invalid, Mutation, lookup,
};
use crate::config::NvidiaConfig;
use crate::quantity::{self, QuantityError};
use crate::vendor::{Request, Slot, common};

use super::VENDOR;

/// Percentage sentinel: "no percentage given".
pub const PCT_UNSET: i64 = 101;

/// Reads a container's resources, limits first, and names the field in errors. Shared with
/// Volcano's request derivation, which reads resources the same way.
pub(crate) struct Resources<'a> {
    pub(crate) container: &'a Container,
    pub(crate) slot: Slot<'a>,
}

impl<'a> Resources<'a> {
    /// The common reads ([`common::Resources`]: limits, else requests); NVIDIA adds its own
    /// bounds ([`Resources::integer`]).
    fn common(&self) -> common::Resources<'a> {
        common::Resources {
            container: self.container,
            slot: self.slot,
        }
    }

    /// `(field, value)` of `name` from limits, else requests.
    pub(crate) fn get(&self, name: &str) -> Option<(String, &'a str)> {
        self.common().get(name, false)
    }

    fn find(&self, name: &str) -> Option<(&'static str, &'a str)> {
        self.common().find(name, false)
    }

    fn field(&self, list: &str, name: &str) -> String {
        self.common().field(list, name)
    }

    pub(crate) fn in_limits(&self, name: &str) -> bool {
        self.common().in_limits(name)
    }

    pub(crate) fn present(&self, name: &str) -> bool {
        self.find(name).is_some()
    }

    /// Parses `name` as a whole number within `min..=max`.
    pub(crate) fn integer(&self, name: &str, min: i128, max: i128) -> Result<Option<i64>, Invalid> {
        let Some((list, value)) = self.find(name) else {
            return Ok(None);
        };
        let n = quantity::parse_integer(value).map_err(|e| {
            let message = match e {
                QuantityError::NotInteger => "must be a whole number".to_string(),
                other => other.to_string(),
            };
            Invalid::new(self.slot.object, self.field(list, name), value, message)
        })?;
        if n < min || n > max {
            return Err(Invalid::new(
                self.slot.object,
                self.field(list, name),
                value,
                format!("must be between {min} and {max}"),
            ));
        }
        // Saturate: only unbounded fields (percentages) can exceed i64, and they are clamped.
        Ok(Some(
            n.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
        ))
    }
}

/// Derives the container's NVIDIA request, or `None` when it asks for no NVIDIA card.
///
/// Follows spec §4 (limits before requests; `gpumem` × `memoryFactor`; percentage 101 means
/// unset, above 100 is clamped, 0 or less is unset; `defaultMemory`, else the whole card;
/// `defaultCores`), except that
/// a malformed or out-of-range value is an error naming the field instead of silently dropping
/// the request (HAMi's quirk Q5, see DEVIATIONS.md).
pub fn derive(
    c: &Container,
    slot: Slot<'_>,
    cfg: &NvidiaConfig,
) -> Result<Option<Request>, Invalid> {
    let r = Resources { container: c, slot };
    let factor = cfg.memory_factor.max(1);
    let Some(nums) = r.integer(&cfg.resource_count_name, 0, i128::from(i32::MAX))? else {
        // Validate the other device resources even so: they are typos or half requests.
        validate_others(&r, cfg)?;
        return Ok(None);
    };
    let memreq = r
        .integer(
            &cfg.resource_memory_name,
            0,
            i128::from(i32::MAX) / i128::from(factor),
        )?
        .map_or(0, |m| m * factor);
    let mut mem_pct = match r.integer(&cfg.resource_memory_percentage_name, i128::MIN, i128::MAX)? {
        Some(p) if p > 100 => 100,
        Some(p) if p >= 1 => p,
        _ => PCT_UNSET,
    };
    let coresreq = r
        .integer(&cfg.resource_core_name, 0, i128::from(i32::MAX))?
        .unwrap_or(cfg.default_cores);
    if nums == 0 {
        return Ok(None);
    }
    let mut memreq = memreq;
    if mem_pct == PCT_UNSET && memreq == 0 {
        if cfg.default_memory != 0 {
            memreq = cfg.default_memory;
        } else {
            mem_pct = 100;
        }
    }
    Ok(Some(Request {
        vendor: VENDOR,
        nums,
        memreq,
        mem_pct,
        coresreq,
    }))
}

/// Percentages may be any integer in the filter path (clamped); memory and cores must be sane.
fn validate_others(r: &Resources<'_>, cfg: &NvidiaConfig) -> Result<(), Invalid> {
    let factor = cfg.memory_factor.max(1);
    r.integer(
        &cfg.resource_memory_name,
        0,
        i128::from(i32::MAX) / i128::from(factor),
    )?;
    r.integer(&cfg.resource_memory_percentage_name, i128::MIN, i128::MAX)?;
    r.integer(&cfg.resource_core_name, 0, i128::from(i32::MAX))?;
    Ok(())
}

/// The outcome of admitting one container.
#[derive(Debug)]
pub struct Admitted {
    /// The container asks for an NVIDIA card (after mutation).
    pub has_resource: bool,
    pub mutations: Vec<Mutation>,
}

/// Spec §3.2 for one container. `slot` names the container; `cref` addresses it in mutations.
pub fn admit(
    c: &Container,
    slot: Slot<'_>,
    cref: ContainerRef,
    cfg: &NvidiaConfig,
) -> Result<Admitted, Invalid> {
    let r = Resources { container: c, slot };
    let mut mutations = Vec::new();
    // 1. A percentage outside 0..=100 is refused at admission.
    let pct = r.integer(&cfg.resource_memory_percentage_name, i128::MIN, i128::MAX)?;
    if let (Some(p), Some((field, value))) = (pct, r.get(&cfg.resource_memory_percentage_name))
        && !(0..=100).contains(&p)
    {
        return Err(Invalid::new(
            slot.object,
            &field,
            value,
            "must be between 0 and 100",
        ));
    }
    // Every other device value must parse too.
    derive(c, slot, cfg)?;
    let env = |name: &str, value: String| {
        Mutation::AddEnv(ContainerEnv {
            container: cref,
            name: name.to_string(),
            value,
        })
    };
    // 2. Priority from limits.
    if let Some(p) = lookup(&c.limits, &cfg.resource_priority_name)
        && !cfg.resource_priority_name.is_empty()
        && !c.env_names.iter().any(|n| n == "CUDA_TASK_PRIORITY")
    {
        mutations.push(env("CUDA_TASK_PRIORITY", p.to_string()));
    }
    // 3. Core utilisation policy.
    if cfg.gpu_core_policy != "default"
        && !c
            .env_names
            .iter()
            .any(|n| n == "GPU_CORE_UTILIZATION_POLICY")
    {
        mutations.push(env(
            "GPU_CORE_UTILIZATION_POLICY",
            cfg.gpu_core_policy.clone(),
        ));
    }
    let set_limit = |name: &str, value: String| {
        Mutation::SetLimit(ContainerLimit {
            container: cref,
            name: name.to_string(),
            value,
        })
    };
    // 4. Count in limits, or injected when only memory/cores/percentage are in limits.
    let mut has = r.in_limits(&cfg.resource_count_name);
    let mut count_present = r.present(&cfg.resource_count_name);
    if !has
        && (r.in_limits(&cfg.resource_core_name)
            || r.in_limits(&cfg.resource_memory_name)
            || r.in_limits(&cfg.resource_memory_percentage_name))
        && cfg.default_gpu_num > 0
    {
        mutations.push(set_limit(
            &cfg.resource_count_name,
            cfg.default_gpu_num.to_string(),
        ));
        has = true;
        count_present = true;
    }
    // 5. Whole-card default: exclusive cores when no memory share is asked for.
    if count_present && !r.present(&cfg.resource_core_name) {
        let exclusive = match pct {
            Some(p) => p == 100,
            None => !r.present(&cfg.resource_memory_name),
        };
        if exclusive {
            mutations.push(set_limit(&cfg.resource_core_name, "100".to_string()));
            has = true;
        }
    }
    // 7. Containers without a card may be hidden from all cards.
    if !has && cfg.overwrite_env && !c.env_names.iter().any(|n| n == "NVIDIA_VISIBLE_DEVICES") {
        mutations.push(env("NVIDIA_VISIBLE_DEVICES", "none".to_string()));
    }
    Ok(Admitted {
        has_resource: has,
        mutations,
    })
}

#[cfg(test)]
mod tests;
