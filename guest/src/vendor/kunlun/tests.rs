//! Unit tables for Kunlun from spec §16.3 and §3.1.

use super::vxpu::{align, fits_vxpu};
use super::*;
use crate::device::{Card, DeviceInfo};

#[test]
fn trim_memory_kl_01() {
    let rows = [
        (0, 24576),
        (24576, 24576),
        (24577, 49152),
        (49152, 49152),
        (49153, 98304),
        (200000, 98304),
    ];
    for (m, want) in rows {
        assert_eq!(align(m), want, "align({m})");
    }
}

fn card(used: i64, used_mem: i64, health: bool) -> Card {
    let mut c = Card::new(
        VXPU_VENDOR,
        DeviceInfo {
            id: "xpu-0".into(),
            count: 4,
            devmem: 98304,
            devcore: 100,
            model: "XPU".into(),
            health,
            ..DeviceInfo::default()
        },
    );
    c.used = used;
    c.used_mem = used_mem;
    c
}

#[test]
fn fit_vxpu_kl_05_06() {
    assert!(!fits_vxpu(&card(1, 90000, true), 20000), "no room");
    assert!(fits_vxpu(&card(0, 0, true), 24576), "idle");
    assert!(fits_vxpu(&card(2, 49152, true), 24576), "two quarters");
    assert!(
        !fits_vxpu(&card(1, 49152, true), 24576),
        "a half and a quarter never mix"
    );
    assert!(!fits_vxpu(&card(0, 0, false), 24576), "unhealthy");
}

fn all(n: usize) -> (Vec<u32>, Vec<bool>) {
    ((0..n as u32).collect(), vec![true; n])
}

#[test]
fn eight_cards_need_all_eight_kl_07_08() {
    let (idx, fits) = all(8);
    assert_eq!(select(&idx, &fits, 8), Some((0..8).collect()));
    let mut five_used = fits.clone();
    five_used[5] = false;
    assert_eq!(select(&idx, &five_used, 8), None);
}

/// (free cards, card count, the chosen indices)
type Row<'a> = (&'a [u32], i64, Option<Vec<u32>>);

#[test]
fn allowed_sets_table() {
    let (idx, _) = all(8);
    let f = |free: &[u32]| -> Vec<bool> { (0..8).map(|i| free.contains(&i)).collect() };
    // (free cards, nums, want)
    let rows: Vec<Row<'_>> = vec![
        // Best fit for one card: the wing with exactly one free card.
        (&[0, 1, 2, 3, 4], 1, Some(vec![4])),
        // Then a wing with 3 free (leaving a pair) before one with 2.
        (&[0, 1, 4, 5, 6], 1, Some(vec![4])),
        (&[0, 1, 4, 5, 6, 7], 1, Some(vec![0])),
        // Two cards: same wing first (exactly 2 free), else a cross-wing pair.
        (&[0, 1, 2, 4, 5], 2, Some(vec![4, 5])),
        (&[2, 6], 2, Some(vec![2, 6])),
        (&[1, 6], 2, None),
        (&[0, 5], 2, None),
        // Four cards: a whole wing, else a connected quad.
        (&[1, 4, 5, 6, 7], 4, Some(vec![4, 5, 6, 7])),
        (&[0, 1, 4, 5, 6], 4, Some(vec![0, 1, 4, 5])),
        (&[0, 2, 4, 6, 7], 4, Some(vec![0, 2, 4, 6])),
        // Six free (3 per wing): a quad whose two leftovers stay connected (2-6 here) ...
        (&[0, 1, 2, 4, 5, 6], 4, Some(vec![0, 1, 4, 5])),
        // ... else the last quad inside (here the only one; 2 and 7 are not connected).
        (&[0, 1, 2, 4, 5, 7], 4, Some(vec![0, 1, 4, 5])),
        (&[0, 1, 3, 4, 6, 7], 4, Some(vec![0, 3, 4, 7])),
        (&[0, 1, 4], 4, None),
        (&[0, 1, 2, 3, 4, 5, 6], 3, None),
        (&[0, 1, 2, 3, 4, 5, 6], 6, None),
    ];
    for (free, nums, want) in rows {
        assert_eq!(
            select(&idx, &f(free), nums),
            want,
            "free {free:?}, {nums} cards"
        );
    }
}

#[test]
fn bubble_and_score_kl_25_26() {
    assert_eq!(
        [&[][..], &[0, 1, 2, 3], &[0], &[4], &[0, 1]].map(bubble),
        [1, 1, 3, 3, 2]
    );
    assert_eq!(bubble_score(&[0], &[0, 1]), 3000);
    assert_eq!(bubble_score(&[0], &[4]), 2000);
    assert_eq!(bubble_score(&[0, 1], &[0]), 1000);
    assert_eq!(bubble_score(&[0, 1, 2, 3], &[0]), 0);
    assert_eq!(bubble_score(&[0, 1, 2, 3], &[0, 1, 2, 3, 4, 5, 6, 7]), 3000);
    assert_eq!(bubble_score(&[], &[0]), 0);
}
