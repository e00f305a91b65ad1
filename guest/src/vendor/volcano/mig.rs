//! Volcano's dynamic MIG (spec interfaces.md §3.7): best-fit slices from the configured
//! geometry groups, one group fixed per card until the card empties, and slice ids
//! `UUID[<group>-<position>]`.
//!
//! A slice in use is kept on the card as a [`MigInUse`] whose `profile` is the group name and
//! whose `placement.start` is the slice's position in the group (`size` 1).

use crate::config::MigGroup;
use crate::device::{Card, ContainerDevice, MigInUse, Placement};

/// The id written for a device: the card's UUID, with `[<group>-<position>]` for a slice.
pub fn device_id(d: &ContainerDevice) -> String {
    match &d.mig {
        Some(m) => format!("{}[{}-{}]", d.uuid, m.profile, m.placement.start),
        None => d.uuid.clone(),
    }
}

/// Splits `GPU-x[group2-3]` into `GPU-x` and the slice (group `group2`, position 3); an id
/// without brackets is a whole card.
///
/// ```
/// # use hamr_guest::vendor::volcano::mig::split_id;
/// let (uuid, slice) = split_id("GPU-a[group2-3]").unwrap();
/// assert_eq!((uuid.as_str(), slice.unwrap().placement.start), ("GPU-a", 3));
/// assert!(split_id("GPU-a[group2]").is_err());
/// ```
pub fn split_id(id: &str) -> Result<(String, Option<MigInUse>), String> {
    let Some((uuid, rest)) = id.split_once('[') else {
        return Ok((id.to_string(), None));
    };
    let bad = || format!("MIG device id {id:?} is not UUID[<group>-<position>]");
    let inner = rest.strip_suffix(']').ok_or_else(bad)?;
    let (group, position) = inner.split_once('-').ok_or_else(bad)?;
    let position: u32 = position.parse().map_err(|_| bad())?;
    if uuid.is_empty() || group.is_empty() {
        return Err(bad());
    }
    Ok((
        uuid.to_string(),
        Some(MigInUse {
            profile: group.to_string(),
            placement: Placement {
                start: position,
                size: 1,
            },
        }),
    ))
}

/// Chooses a slice of at least `need` MiB on a MIG card: the smallest instance type that
/// fits and has a free slot in the card's group, or on an unpartitioned card the first group
/// (config order) with an instance type that fits. Returns the slice and its memory (MiB).
///
/// Worked example (A100-40GB groups: group1 7×1g.5gb; group2 3×2g.10gb + 1×1g.5gb; …):
/// an empty card asked for 8,000 MiB adopts group2 and gets `2g.10gb` at position 0; asked
/// again, position 1; then 4,000 MiB gets `1g.5gb` at position 3 (three 2g slots come first).
pub fn choose(card: &Card, groups: &[MigGroup], need: i64) -> Option<(MigInUse, i64)> {
    let in_use = &card.mig_in_use;
    if let Some(first) = in_use.first() {
        // The card's group is fixed; a card with slices of two groups is inconsistent.
        if in_use.iter().any(|m| m.profile != first.profile) {
            return None;
        }
        let group = groups.iter().find(|g| g.group == first.profile)?;
        let used: Vec<u32> = in_use.iter().map(|m| m.placement.start).collect();
        return pick(group, &used, need);
    }
    groups.iter().find_map(|g| pick(g, &[], need))
}

/// The smallest instance type of `group` with at least `need` MiB and a free slot.
fn pick(group: &MigGroup, used: &[u32], need: i64) -> Option<(MigInUse, i64)> {
    let mut offsets = Vec::with_capacity(group.geometries.len());
    let mut offset = 0u32;
    for inst in &group.geometries {
        offsets.push(offset);
        offset = offset.saturating_add(u32::try_from(inst.count).unwrap_or(0));
    }
    let mut types: Vec<usize> = (0..group.geometries.len()).collect();
    types.sort_by_key(|&t| group.geometries[t].memory);
    types.into_iter().find_map(|t| {
        let inst = &group.geometries[t];
        if inst.memory < need {
            return None;
        }
        let count = u32::try_from(inst.count).unwrap_or(0);
        let position =
            (offsets[t]..offsets[t].saturating_add(count)).find(|p| !used.contains(p))?;
        Some((
            MigInUse {
                profile: group.group.clone(),
                placement: Placement {
                    start: position,
                    size: 1,
                },
            },
            inst.memory,
        ))
    })
}
