//! Ascend `Fit` and `ScoreNode` (spec §6): G-Fit with soft-split cores, 910C module pairing
//! and NetworkID grouping on the 910 series.

use std::collections::BTreeMap;

use crate::device::{Card, ContainerDevice, PodDevices};
use crate::reason::{self, Counter};
use crate::vendor::common::{self, MODE_NOT_FIT, Sharing, Walk};
use crate::vendor::{Fit, FitContext, Request};

use super::Ascend;

/// Weight of the NetworkID term of the node score (`Ascend910NetworkWeight`).
pub const NETWORK_WEIGHT: f64 = 10.0;

/// The `custom` key under which a registered device's `custominfo.NetworkID` is kept.
pub const NETWORK_ID: &str = "networkId";

/// The registered `custominfo.NetworkID` of a device, found in any case, as `parse_node` keeps
/// it in [`NETWORK_ID`].
pub fn network_id_of(custom: &serde_json::Map<String, serde_json::Value>) -> Option<f64> {
    custom
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("NetworkID"))
        .and_then(|(_, v)| v.as_f64())
}

/// Each card's NetworkID, by card id (cards without one are left out); read from what
/// `parse_node` kept, so the registration is parsed once per node change.
pub fn network_ids<'a>(
    chip: &Ascend,
    cards: impl Iterator<Item = &'a Card>,
) -> BTreeMap<&'a str, f64> {
    cards
        .filter(|c| c.vendor == chip.common)
        .filter_map(|c| {
            let id = c.info.custom.get(NETWORK_ID)?.parse::<f64>().ok()?;
            Some((c.info.id.as_str(), id))
        })
        .collect()
}

/// Fits `request` on `cards` (policy order; tried from the last).
pub fn fit(chip: &Ascend, cards: &[&Card], request: &Request, ctx: &FitContext<'_>) -> Fit {
    let hami_core = Ascend::hami_core(ctx.pod);
    if hami_core && !Ascend::node_allows_hami_core(ctx.node, ctx.config) {
        let mut counter = Counter::default();
        counter.add(MODE_NOT_FIT);
        return Fit::NoFit(counter);
    }
    // Only the 910 series groups by NetworkID; the others need not read the registration.
    let series_910 = chip.common.starts_with("Ascend910");
    let networks = if series_910 {
        network_ids(chip, cards.iter().copied())
    } else {
        BTreeMap::new()
    };
    let need_topology = series_910
        && !cards.is_empty()
        && cards
            .iter()
            .all(|c| networks.contains_key(c.info.id.as_str()));
    let pairing = chip.is_910c_pairing() && request.nums > 1;
    let sharing = Sharing {
        vendor: chip.common,
        uuid_keys: (chip.use_uuid, chip.nouse_uuid),
        type_keys: None,
        quota: false,
        same_card: false,
        collect_all: need_topology || pairing,
        total_core: hami_core.then_some(100),
    };
    let walk = common::gfit(cards, request, ctx, &sharing);
    let nums = usize::try_from(request.nums).unwrap_or(0);
    if pairing {
        return pair_modules(walk, nums);
    }
    if need_topology && walk.picked.len() >= nums {
        let picked: Vec<ContainerDevice> = walk.picked.into_iter().map(|(d, _)| d).collect();
        if picked.len() == nums || nums == 1 {
            return Fit::Fits(picked.into_iter().take(nums).collect());
        }
        return Fit::Fits(common::fill_by_group(
            picked,
            |d| networks.get(d.uuid.as_str()).copied(),
            nums,
        ));
    }
    walk.finish()
}

/// 910C: NPUs `2k` and `2k+1` form one module; only whole modules are given, lowest module
/// first among equals (A2).
fn pair_modules(walk: Walk<'_>, nums: usize) -> Fit {
    let mut modules: BTreeMap<u32, Vec<ContainerDevice>> = BTreeMap::new();
    for (d, _) in &walk.picked {
        modules.entry(d.index / 2).or_default().push(d.clone());
    }
    let mut chosen = Vec::new();
    for (_, npus) in modules.into_iter().filter(|(_, n)| n.len() == 2) {
        if chosen.len() >= nums {
            break;
        }
        chosen.extend(npus);
    }
    if chosen.len() == nums {
        return Fit::Fits(chosen);
    }
    let mut counter = walk.counter;
    counter.set(
        reason::ALLOCATED_CARDS_INSUFFICIENT_REQUEST,
        chosen.len() as u32,
    );
    Fit::NoFit(counter)
}

/// `ScoreNode` for the 910 series: per container, the share of its NPUs in its largest
/// NetworkID group, summed and weighted by 10; 0 when a device has no NetworkID.
pub fn score(chip: &Ascend, cards: &[Card], devices: &PodDevices) -> f64 {
    if !chip.common.starts_with("Ascend910") {
        return 0.0;
    }
    let networks = network_ids(chip, cards.iter());
    let mut total = 0.0;
    for container in devices.iter().filter(|c| !c.is_empty()) {
        match common::largest_group_share(container, |d| networks.get(d.uuid.as_str()).copied()) {
            Some(share) => total += share,
            None => return 0.0,
        }
    }
    total * NETWORK_WEIGHT
}
