//! HAMi's `migProfiles` from a card's GPU-instance profiles and `migProfileAllowlist`
//! (node-side.md §6.2): the first allowlist entry whose model strings occur in the card's model
//! names the profiles; each name's `Ng` prefix picks the NVML profile.

use hamr_guest::device::MigProfile;

use super::{GiProfile, profile_id, slices_of};
use crate::config::MigAllow;

/// The allowlist entry for a card model: the first with a model string that occurs in it as
/// whole words (node-side.md §6.2; see [`names_model`]).
pub fn allow_entry<'a>(allowlist: &'a [MigAllow], model: &str) -> Option<&'a MigAllow> {
    allowlist
        .iter()
        .find(|e| e.models.iter().any(|m| names_model(model, m)))
}

/// Whether `pattern` occurs in `model` with no letter or digit right before or after it.
///
/// HAMi tests a plain substring, and NVML names an H200 `NVIDIA H200`: its chart's `H20`
/// entry then matches the H200 first, and the card registers the H20's profile names
/// (`1g.12gb` for a 16 GiB slice). Whole words keep `H20` off `H200` and `A10` off `A100`,
/// while `A100-SXM4` still matches `NVIDIA A100-SXM4-40GB` (DEVIATIONS.md).
pub fn names_model(model: &str, pattern: &str) -> bool {
    if pattern.is_empty() {
        return false;
    }
    let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric());
    model.match_indices(pattern).any(|(at, _)| {
        !word(model[..at].chars().next_back()) && !word(model[at + pattern.len()..].chars().next())
    })
}

/// What a card registers in MIG mode: its allowed profiles, and `count` (the largest instance
/// count among them). `None` when no allowlist entry matches or none of its profiles exists on
/// the card: HAMi then leaves the card out of the registration.
///
/// `core` = ceil(profile SMs × 100 / whole-card SMs), the whole card being the largest SM count
/// of any profile. Worked example (A100-40GB, 98 SMs as 7g): `1g.5gb` with 14 SMs →
/// ceil(1400 / 98) = 15; `3g.20gb` with 42 SMs → ceil(4200 / 98) = 43.
pub fn registered(
    model: &str,
    profiles: &[GiProfile],
    allowlist: &[MigAllow],
) -> Option<(Vec<MigProfile>, u32)> {
    let entry = allow_entry(allowlist, model)?;
    let whole = profiles.iter().map(|p| p.multiprocessors).max()?;
    let mut out = Vec::new();
    let mut count = 0;
    for name in &entry.profiles {
        let Some(id) = slices_of(name).and_then(profile_id) else {
            continue;
        };
        let Some(p) = profiles.iter().find(|p| p.id == id) else {
            continue;
        };
        let core = if whole == 0 {
            0
        } else {
            (u64::from(p.multiprocessors) * 100).div_ceil(u64::from(whole))
        };
        count = count.max(p.instance_count);
        out.push(MigProfile {
            name: name.clone(),
            memory_mb: i64::try_from(p.memory_mib).unwrap_or(i64::MAX),
            core: i64::try_from(core).unwrap_or(i64::MAX),
            slice_count: p.slice_count,
            placements: p.placements.clone(),
        });
    }
    (!out.is_empty()).then_some((out, count))
}
