//! Volcano node registration: `volcano.sh/node-vgpu-register` and the allocatable rule that
//! stands in for a handshake (spec interfaces.md §3.6).

use std::collections::BTreeSet;

use crate::api::{Invalid, Node, lookup};
use crate::config::{Config, VolcanoConfig};
use crate::device::DeviceInfo;
use crate::policy::parse_go_bool;
use crate::quantity;
use crate::vendor::nvidia;

use super::{MODE_HAMI_CORE, MODE_MIG};

pub const REGISTER: &str = "volcano.sh/node-vgpu-register";

/// Parses the node's Volcano cards: for each card `UUID,SplitCount,MemoryMiB,Type,Health,Mode`
/// followed by `:`; fields after the sixth are ignored. The index is the card's position.
/// Only `mig` is a mode of its own, and only when `knownMigGeometries` has the card's model;
/// anything else is `hami-core`.
///
/// A card that HAMi's `hami.io/node-nvidia-register` also lists is left out: HAMi's protocol
/// owns it, so the two protocols never book one card twice (see DEVIATIONS.md).
///
/// `Ok(None)` when the node has no Volcano registration or no card in it.
pub fn parse(node: &Node, config: &Config) -> Result<Option<Vec<DeviceInfo>>, Invalid> {
    let Some(text) = node.annotation(REGISTER) else {
        return Ok(None);
    };
    let object = format!("node/{}", node.name);
    let bad = |m: String| Invalid::new(&object, REGISTER, text, m);
    if text.trim().is_empty() {
        return Ok(None);
    }
    if !text.contains(':') {
        return Err(bad("no ':' after a card".to_string()));
    }
    let hami: BTreeSet<String> = nvidia::register::parse(node)
        .ok()
        .flatten()
        .unwrap_or_default()
        .into_iter()
        .map(|d| d.id)
        .collect();
    let mut cards = Vec::new();
    for (position, entry) in text.split(':').filter(|e| e.contains(',')).enumerate() {
        let fields: Vec<&str> = entry.split(',').map(str::trim).collect();
        let [uuid, split, memory, card_type, health, mode, ..] = fields.as_slice() else {
            return Err(bad(format!(
                "card {position} {entry:?} has {} fields, want UUID,SplitCount,MemoryMiB,Type,Health,Mode",
                fields.len()
            )));
        };
        if uuid.is_empty() || uuid.contains(['[', ']']) {
            return Err(bad(format!(
                "card {position} has a malformed UUID {uuid:?}"
            )));
        }
        let number = |name: &str, value: &str| {
            quantity::parse_integer(value)
                .ok()
                .filter(|n| (0..=i128::from(i32::MAX)).contains(n))
                .map(|n| n as i64)
                .ok_or_else(|| {
                    bad(format!(
                        "card {position}: {name} {value:?} is not a whole number from 0 to 2147483647"
                    ))
                })
        };
        let count = number("SplitCount", split)?;
        let devmem = number("MemoryMiB", memory)?;
        let health = parse_go_bool(health).ok_or_else(|| {
            bad(format!(
                "card {position}: Health {health:?} is not a boolean"
            ))
        })?;
        let mig = *mode == MODE_MIG && config.volcano.geometries_for(card_type).is_some();
        if hami.contains(*uuid) {
            continue;
        }
        cards.push(DeviceInfo {
            id: uuid.to_string(),
            index: position as u32,
            count,
            devmem,
            devcore: 100,
            model: card_type.to_string(),
            numa: 0,
            mode: if mig { MODE_MIG } else { MODE_HAMI_CORE }.to_string(),
            health,
            ..DeviceInfo::default()
        });
    }
    Ok((!cards.is_empty()).then_some(cards))
}

/// Volcano ignores a node unless its allocatable has non-zero vGPU number, cores and memory:
/// a stale registration on a node without the device plugin is not live.
pub fn live(node: &Node, config: &VolcanoConfig) -> bool {
    [
        &config.resource_count_name,
        &config.resource_core_name,
        &config.resource_memory_name,
    ]
    .into_iter()
    .filter(|name| !name.is_empty())
    .all(|name| {
        lookup(&node.allocatable, name)
            .and_then(|v| quantity::parse_integer(v).ok())
            .is_some_and(|n| n > 0)
    })
}
