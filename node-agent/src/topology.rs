//! NVIDIA pair scores, `hami.io/node-nvidia-score` (node-side.md §2.6, hami-core-nvidia.md
//! §6.7): for every ordered pair of cards, the PCIe score of their common ancestor plus 100 per
//! NVLink between them. A pair whose link lists differ by direction scores 0.
//!
//! | common ancestor | score |
//! | --- | --- |
//! | same board (`internal`) | 60 |
//! | single PCIe switch (`single`) | 50 |
//! | multiple PCIe switches (`multiple`) | 40 |
//! | host bridge (`hostBridge`) | 30 |
//! | same CPU / NUMA node (`node`) | 20 |
//! | across CPUs (`system`) | 10 |
//!
//! N NVLinks (1..=18) add 100 x N. The links come from discovery (NVML, or the fake file's
//! `links`); a pair discovery knows nothing about is left out (the scheduler reads it as 0).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::discovery::{Device, NVIDIA};

/// `NVML_NVLINK_MAX_LINKS`.
pub const MAX_NVLINKS: u32 = 18;

/// The closest common PCIe ancestor of two cards (NVML's topology levels).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Level {
    Internal,
    Single,
    Multiple,
    HostBridge,
    Node,
    System,
}

impl Level {
    /// HAMi's PCIe link weight.
    pub fn score(self) -> i64 {
        match self {
            Level::Internal => 60,
            Level::Single => 50,
            Level::Multiple => 40,
            Level::HostBridge => 30,
            Level::Node => 20,
            Level::System => 10,
        }
    }
}

/// What discovery knows about the path from one card to another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Link {
    /// The PCIe common ancestor.
    pub pcie: Level,
    /// Active NVLinks to the other card (direct, or through NVSwitches: the smaller count of
    /// the two cards' switch links); 0 without NVLink.
    #[serde(default)]
    pub nvlinks: u32,
}

impl Link {
    /// The entries of HAMi's link list for this direction: the PCIe link, and one NVLink
    /// entry when there are NVLinks.
    fn entries(&self) -> usize {
        1 + usize::from(self.nvlinks > 0)
    }
}

/// The score of the ordered pair (i, j) from the link seen from i and the one seen from j; 0
/// when the link lists differ in length (HAMi's `AsymmetricGPUP2PLink`).
pub fn pair_score(from_i: &Link, from_j: &Link) -> i64 {
    if from_i.entries() != from_j.entries() {
        return 0;
    }
    from_i.pcie.score() + 100 * i64::from(from_i.nvlinks.min(MAX_NVLINKS))
}

/// One active NVLink of a card, as NVML reports its far end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteLink {
    /// The far end's PCI bus id, normalised (`0000:3b:00.0`).
    pub bus_id: String,
    /// The far end is an NVSwitch.
    pub switch: bool,
}

/// The NVLinks from card i to card j (node-side.md §2.6): i's links whose far end is j's bus
/// id; with none, when i has active links, the links through NVSwitches of both cards, the
/// smaller count; else 0.
///
/// Worked example: two SXM cards with 18 switch links each score 18; a card with 2 direct
/// links to `0000:3b:00.0` scores 2 to that card and 0 to a card with no links at all.
pub fn nvlinks(from_i: &[RemoteLink], from_j: &[RemoteLink], bus_j: &str) -> u32 {
    let count = |links: &[RemoteLink], f: &dyn Fn(&RemoteLink) -> bool| {
        u32::try_from(links.iter().filter(|l| f(l)).count()).unwrap_or(u32::MAX)
    };
    let direct = count(from_i, &|l| !bus_j.is_empty() && l.bus_id == bus_j);
    if direct > 0 || from_i.is_empty() {
        return direct;
    }
    let switches_i = count(from_i, &|l| l.switch);
    let switches_j = count(from_j, &|l| l.switch);
    if switches_i > 0 && switches_j > 0 {
        switches_i.min(switches_j)
    } else {
        0
    }
}

/// The value of `hami.io/node-nvidia-score` for the node's NVIDIA cards, in index order, or
/// `None` when no card knows a link. Pairs with a link known in one direction only are left
/// out.
///
/// ```
/// # use hamr_node_agent::{discovery::Device, topology::{Level, Link, encode_scores}};
/// let mut a = Device { id: "GPU-a".into(), vendor: "NVIDIA".into(), ..Device::default() };
/// let mut b = Device { id: "GPU-b".into(), vendor: "NVIDIA".into(), index: 1, ..Device::default() };
/// a.links.insert("GPU-b".into(), Link { pcie: Level::Node, nvlinks: 2 });
/// b.links.insert("GPU-a".into(), Link { pcie: Level::Node, nvlinks: 2 });
/// assert_eq!(encode_scores(&[a, b]).unwrap(),
///     r#"[{"uuid":"GPU-a","score":{"GPU-b":220}},{"uuid":"GPU-b","score":{"GPU-a":220}}]"#);
/// ```
pub fn encode_scores(devices: &[Device]) -> Option<String> {
    let mut cards: Vec<&Device> = devices.iter().filter(|d| d.vendor == NVIDIA).collect();
    if cards.iter().all(|d| d.links.is_empty()) {
        return None;
    }
    cards.sort_by_key(|d| d.index);
    let by_id: BTreeMap<&str, &Device> = cards.iter().map(|d| (d.id.as_str(), *d)).collect();
    let entries: Vec<ScoreEntry> = cards
        .iter()
        .map(|i| ScoreEntry {
            uuid: &i.id,
            score: i
                .links
                .iter()
                .filter_map(|(other, link)| {
                    let back = by_id.get(other.as_str())?.links.get(&i.id)?;
                    Some((other.as_str(), pair_score(link, back)))
                })
                .collect(),
        })
        .collect();
    // Strings and integers always serialise; `None` would only mean "no scores".
    serde_json::to_string(&entries).ok()
}

/// One card's entry of `hami.io/node-nvidia-score`, in HAMi's field order (`uuid`, then
/// `score`, ordered by UUID).
#[derive(Serialize)]
struct ScoreEntry<'a> {
    uuid: &'a str,
    score: BTreeMap<&'a str, i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(pcie: Level, nvlinks: u32) -> Link {
        Link { pcie, nvlinks }
    }

    #[test]
    fn each_level_and_nvlink_count_scores_as_hami() {
        let table = [
            (Level::Internal, 0, 60),
            (Level::Single, 0, 50),
            (Level::Multiple, 0, 40),
            (Level::HostBridge, 0, 30),
            (Level::Node, 0, 20),
            (Level::System, 0, 10),
            (Level::System, 1, 110),
            (Level::Node, 4, 420),
            (Level::Single, 18, 1850),
            (Level::Single, 30, 1850),
        ];
        for (level, n, want) in table {
            let l = link(level, n);
            assert_eq!(pair_score(&l, &l), want, "{level:?} with {n} NVLinks");
        }
    }

    #[test]
    fn a_link_list_that_differs_by_direction_scores_zero() {
        assert_eq!(pair_score(&link(Level::Node, 2), &link(Level::Node, 0)), 0);
        assert_eq!(pair_score(&link(Level::Node, 0), &link(Level::Node, 2)), 0);
        // Same list length both ways: scored from the first card's side.
        assert_eq!(
            pair_score(&link(Level::Node, 2), &link(Level::Node, 3)),
            220
        );
    }

    #[test]
    fn nvlinks_count_direct_links_else_the_smaller_switch_count() {
        let to = |bus: &str| RemoteLink {
            bus_id: bus.into(),
            switch: false,
        };
        let switch = || RemoteLink {
            bus_id: "0000:c1:00.0".into(),
            switch: true,
        };
        let direct = [to("0000:3b:00.0"), to("0000:3b:00.0"), to("0000:5e:00.0")];
        assert_eq!(nvlinks(&direct, &[], "0000:3b:00.0"), 2);
        assert_eq!(nvlinks(&direct, &[], "0000:af:00.0"), 0, "no switch links");
        let i = vec![switch(); 18];
        let j = vec![switch(); 12];
        assert_eq!(nvlinks(&i, &j, "0000:3b:00.0"), 12);
        assert_eq!(nvlinks(&j, &i, "0000:5e:00.0"), 12);
        assert_eq!(
            nvlinks(&i, &[], "0000:5e:00.0"),
            0,
            "the other card has none"
        );
        assert_eq!(nvlinks(&[], &i, "0000:5e:00.0"), 0, "this card has none");
        assert_eq!(
            nvlinks(&direct, &[], ""),
            0,
            "an unknown bus id matches nothing"
        );
    }

    fn card(id: &str, index: u32, links: &[(&str, Link)]) -> Device {
        Device {
            id: id.into(),
            vendor: NVIDIA.into(),
            index,
            links: links.iter().map(|(k, l)| (k.to_string(), *l)).collect(),
            ..Device::default()
        }
    }

    /// hami-core-nvidia.md §6.7's example (four cards, NV1/NV2 links), which lists the NVLink
    /// weights only; here every pair's PCIe level is `system`, adding 10.
    #[test]
    fn the_spec_example_in_index_order_with_one_sided_pairs_left_out() {
        let nv = |n| link(Level::System, n);
        let cards = [
            card(
                "gpu3",
                3,
                &[("gpu0", nv(2)), ("gpu1", nv(1)), ("gpu2", nv(2))],
            ),
            card(
                "gpu0",
                0,
                &[("gpu1", nv(1)), ("gpu2", nv(1)), ("gpu3", nv(2))],
            ),
            card(
                "gpu1",
                1,
                &[("gpu0", nv(1)), ("gpu2", nv(2)), ("gpu3", nv(1))],
            ),
            card(
                "gpu2",
                2,
                &[
                    ("gpu0", nv(1)),
                    ("gpu1", nv(2)),
                    ("gpu3", nv(2)),
                    ("gpuX", nv(9)),
                ],
            ),
        ];
        assert_eq!(
            encode_scores(&cards).expect("links known"),
            concat!(
                r#"[{"uuid":"gpu0","score":{"gpu1":110,"gpu2":110,"gpu3":210}},"#,
                r#"{"uuid":"gpu1","score":{"gpu0":110,"gpu2":210,"gpu3":110}},"#,
                r#"{"uuid":"gpu2","score":{"gpu0":110,"gpu1":210,"gpu3":210}},"#,
                r#"{"uuid":"gpu3","score":{"gpu0":210,"gpu1":110,"gpu2":210}}]"#
            )
        );
        assert_eq!(encode_scores(&[card("gpu0", 0, &[])]), None);
    }
}
