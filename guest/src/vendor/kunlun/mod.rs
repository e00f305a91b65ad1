//! Kunlunxin (Baidu Kunlun XPU, spec hami-vendors.md §3): whole cards (`kunlun`) and vXPU
//! slices (`XPU`), both placed by the eight-card left-wing/right-wing topology (§3.1).

pub mod vxpu;
pub mod whole;

#[cfg(test)]
mod tests;

pub use vxpu::KunlunVxpu;
pub use whole::KunlunWhole;

use crate::api::Pod;
use crate::device::Card;
use crate::reason::{self, Counter};
use crate::vendor::kit;

/// Whole-card vendor key, resource and annotations.
pub const WHOLE_VENDOR: &str = "kunlun";
pub const XPU_RESOURCE: &str = "kunlunxin.com/xpu";
pub const KUNLUN_ALLOCATED: &str = "hami.io/kunlun-allocated";
pub const DEVICE_IDX: &str = "BAIDU_COM_DEVICE_IDX";

/// vXPU vendor key, resources and annotations.
pub const VXPU_VENDOR: &str = "XPU";
pub const VXPU_RESOURCE: &str = "kunlunxin.com/vxpu";
pub const VXPU_MEMORY: &str = "kunlunxin.com/vxpu-memory";
pub const REGISTER: &str = "hami.io/node-register-xpu";
pub const HANDSHAKE: &str = "hami.io/node-handshake-xpu";
pub const XPU_TO_ALLOCATE: &str = "hami.io/xpu-devices-to-allocate";
pub const XPU_ALLOCATED: &str = "hami.io/xpu-devices-allocated";

/// UUID lists; both pairs apply together.
pub const USE_UUID: &str = "hami.io/use-xpu-uuid";
pub const NOUSE_UUID: &str = "hami.io/no-use-xpu-uuid";
pub const LEGACY_USE_UUID: &str = "baidu.com/use-gpuuuid";
pub const LEGACY_NOUSE_UUID: &str = "baidu.com/nouse-gpuuuid";

/// A whole card's memory, MiB (`KunlunMaxMemory`).
pub const MAX_MEMORY: i64 = 98304;

/// Both UUID pairs.
pub fn uuid_ok(pod: &Pod, id: &str) -> bool {
    kit::uuid_ok(pod, id, USE_UUID, NOUSE_UUID)
        && kit::uuid_ok(pod, id, LEGACY_USE_UUID, LEGACY_NOUSE_UUID)
}

/// Connected quads across both wings, in preference order.
const QUADS: [[u32; 4]; 6] = [
    [0, 1, 4, 5],
    [2, 3, 6, 7],
    [0, 2, 4, 6],
    [1, 3, 5, 7],
    [0, 3, 4, 7],
    [1, 2, 5, 6],
];

fn cross_pair(a: u32, b: u32) -> bool {
    a.abs_diff(b) == 4 && a.min(b) < 4
}

fn connected_pair(a: u32, b: u32) -> bool {
    cross_pair(a, b) || (a != b && a < 8 && b < 8 && (a < 4) == (b < 4))
}

/// `graghSelect`: the card indices for `nums` cards, given which slice positions fit. Wings
/// are slice positions 0–3 and 4–7 (the caller sorts by index, ambiguity A1); sets of 3, 5, 6
/// and 7 cards never fit. `None` when no allowed set fits.
///
/// ```
/// # use hamr_guest::vendor::kunlun::select;
/// let idx: Vec<u32> = (0..8).collect();
/// // Left wing has 3 free (0,1,2), right wing 1 free (5): one card goes to the lone free one.
/// let fits = [true, true, true, false, false, true, false, false];
/// assert_eq!(select(&idx, &fits, 1), Some(vec![5]));
/// assert_eq!(select(&idx, &fits, 2), Some(vec![0, 1]));
/// assert_eq!(select(&idx, &fits, 3), None);
/// ```
pub fn select(indices: &[u32], fits: &[bool], nums: i64) -> Option<Vec<u32>> {
    let fitting = |range: std::ops::Range<usize>| -> Vec<u32> {
        range
            .filter(|&p| fits.get(p).copied().unwrap_or(false))
            .filter_map(|p| indices.get(p).copied())
            .collect()
    };
    let left = fitting(0..4.min(fits.len()));
    let right_count = (4..fits.len()).filter(|&p| fits[p]).count();
    let right = fitting(4.min(fits.len())..8.min(fits.len()));
    if nums == 8 {
        return (left.len() + right_count == 8).then(|| (0..8).collect());
    }
    let n = match nums {
        1 | 2 | 4 => nums as usize,
        _ => return None,
    };
    if left.len() >= n || right_count >= n {
        let order: &[usize] = match n {
            1 => &[1, 3, 2, 4],
            2 => &[2, 3, 4],
            _ => &[4],
        };
        for &v in order {
            if left.len() == v {
                return Some(left[..n].to_vec());
            }
            if right_count == v {
                return Some(right.iter().take(n).copied().collect());
            }
        }
    }
    let all: Vec<u32> = fitting(0..fits.len());
    match n {
        2 => all.iter().enumerate().find_map(|(i, &a)| {
            all.iter()
                .skip(i + 1)
                .find(|&&b| cross_pair(a, b))
                .map(|&b| vec![a, b])
        }),
        4 => {
            let inside: Vec<&[u32; 4]> = QUADS
                .iter()
                .filter(|q| q.iter().all(|i| all.contains(i)))
                .collect();
            match all.len() {
                4 | 5 => inside.first().map(|q| q.to_vec()),
                6 => inside
                    .iter()
                    .find(|q| {
                        let rest: Vec<u32> =
                            all.iter().copied().filter(|i| !q.contains(i)).collect();
                        rest.len() == 2 && connected_pair(rest[0], rest[1])
                    })
                    .or(inside.last())
                    .map(|q| q.to_vec()),
                _ => None,
            }
        }
        _ => None,
    }
}

/// The cards sorted by index (ambiguity A1), as the topology wants them.
pub fn by_index<'a>(cards: &[&'a Card]) -> Vec<&'a Card> {
    let mut sorted = cards.to_vec();
    sorted.sort_by_key(|c| c.info.index);
    sorted
}

/// The failure reasons shared by both backends when no allowed set fits: unhealthy and
/// cordoned cards by their own reasons (hamr adds these; HAMi says only `NumaNotFit`), then the
/// UUID mismatches if there are any, else one `NumaNotFit`.
pub fn shortfall(cards: &[&Card], pod: &Pod) -> Counter {
    let mut c = Counter::default();
    let mut uuid = 0;
    for card in cards {
        if let Some(r) = kit::unusable(card, reason::CARD_NOT_HEALTH) {
            c.add(r);
        } else if !uuid_ok(pod, &card.info.id) {
            uuid += 1;
        }
    }
    if uuid > 0 {
        c.add_n(reason::CARD_UUID_MISMATCH, uuid);
    } else {
        c.add(reason::NUMA_NOT_FIT);
    }
    c
}

/// `countbubble`: 1 for an empty set, else g(left) + g(right) with g(4)=0, g(1)=2, g(else)=1.
pub fn bubble(indices: &[u32]) -> i64 {
    if indices.is_empty() {
        return 1;
    }
    let g = |n: usize| match n {
        4 => 0,
        1 => 2,
        _ => 1,
    };
    let left = indices.iter().filter(|&&i| i < 4).count();
    g(left) + g(indices.len() - left)
}

/// `calcscore`: 3000 / 2000 / 1000 / 0 for a bubble change of −1 / 0 / 1 / 2 (else 1000).
pub fn bubble_score(prev: &[u32], cur: &[u32]) -> i64 {
    match bubble(cur) - bubble(prev) {
        -1 => 3000,
        0 => 2000,
        1 => 1000,
        2 => 0,
        _ => 1000,
    }
}
