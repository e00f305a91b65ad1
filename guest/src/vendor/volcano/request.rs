//! Deriving a Volcano container request (spec interfaces.md §3.5).

use crate::api::{Container, Invalid, lookup};
use crate::config::VolcanoConfig;
use crate::vendor::nvidia::request::Resources;
use crate::vendor::{Request, Slot};

use super::VENDOR;

/// Percentage sentinel: "no percentage given".
pub const PCT_UNSET: i64 = 101;

/// Derives a regular container's Volcano request, or `None` when it asks for none.
///
/// - Only regular containers count; init containers never get a vGPU.
/// - The count is read from **limits** only: `vgpu-number`, or 1 when only `vgpu-memory` is
///   in the limits. Without either the container asks for nothing.
/// - Memory (MiB), percentage and cores come from limits, else requests.
/// - Percentage 101 means unset; with neither memory nor percentage the request is 100 % of
///   each card. Memory wins over a percentage.
///
/// Worked example: limits `{vgpu-number: 2, vgpu-cores: 30}` → 2 cards, 100 % of each card's
/// memory, 30 % of its SMs.
///
/// Malformed values are an error naming the field (Volcano reads them as 0): a count or
/// memory that is not a whole number from 0 to 2147483647, cores outside 0..=100, a
/// percentage outside 0..=101.
pub fn derive(
    c: &Container,
    slot: Slot<'_>,
    cfg: &VolcanoConfig,
) -> Result<Option<Request>, Invalid> {
    if slot.init {
        return Ok(None);
    }
    let r = Resources { container: c, slot };
    let max = i128::from(i32::MAX);
    let memreq = r.integer(&cfg.resource_memory_name, 0, max)?;
    let pct = r.integer(&cfg.resource_memory_percentage_name, 0, 101)?;
    let cores = r.integer(&cfg.resource_core_name, 0, 100)?;
    let nums = if lookup(&c.limits, &cfg.resource_count_name).is_some() {
        r.integer(&cfg.resource_count_name, 0, max)?.unwrap_or(0)
    } else if r.in_limits(&cfg.resource_memory_name) {
        1
    } else {
        return Ok(None);
    };
    if nums == 0 {
        return Ok(None);
    }
    let memreq = memreq.unwrap_or(0);
    let mut mem_pct = pct.unwrap_or(PCT_UNSET);
    if mem_pct == PCT_UNSET && memreq == 0 {
        mem_pct = 100;
    }
    Ok(Some(Request {
        vendor: VENDOR,
        nums,
        memreq,
        mem_pct,
        coresreq: cores.unwrap_or(0),
    }))
}
