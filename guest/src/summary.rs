//! Per-node summaries: what a vendor's per-card checks read, copied out of a node's cards
//! into a few dense bytes, kept by the ledger by the node's name rank.
//!
//! A pod that fits nowhere makes `filter` evaluate every node (issue #6's worst case). Reading
//! a node's cards through the ledger costs a hash lookup, the node entry, the cards and each
//! card's registration behind its own allocation: cache misses, which dominated that case. A
//! summary is a 24-byte head in a table by rank plus 16 bytes per card in one shared table,
//! reached from the rank the best-first walk already holds. When a vendor can tell from it
//! that no card passes the pod's first request on its own
//! ([`crate::vendor::Vendor::summary_check`]), the node is rejected with the same counted
//! reasons as the full evaluation, which is not run.
//!
//! Only nodes with one registered vendor whose numbers fit in 32 bits, and nodes with none
//! (no devices: every vendor is unregistered there), are summarised; the others are always
//! evaluated in full.

use crate::device::Card;
use crate::vendor::Liveness;

/// One card: flags and the numbers of its use (MiB and percent of a card).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CardRow {
    flags: u8,
    /// `devmem - used_mem`.
    pub free_mem: i32,
    pub devmem: i32,
    /// `devcore - used_cores`.
    pub free_cores: i32,
}

const OWNED: u8 = 1;
const HEALTHY: u8 = 1 << 1;
const CORDONED: u8 = 1 << 2;
const EXHAUSTED: u8 = 1 << 3;
const BUSY: u8 = 1 << 4;
const WHOLE: u8 = 1 << 5;
const CORES_BOOKED: u8 = 1 << 6;

impl CardRow {
    /// The row of `card`; `None` when a number does not fit in 32 bits.
    pub fn of(card: &Card) -> Option<CardRow> {
        let d = &card.info;
        let flag = |on: bool, bit: u8| if on { bit } else { 0 };
        let flags = flag(card.owned, OWNED)
            | flag(card.healthy(), HEALTHY)
            | flag(card.cordoned, CORDONED)
            | flag(d.count <= card.used, EXHAUSTED)
            | flag(card.used > 0, BUSY)
            | flag(d.devcore == 100, WHOLE)
            | flag(d.devcore != 0 && card.used_cores == d.devcore, CORES_BOOKED);
        Some(CardRow {
            flags,
            free_mem: i32::try_from(d.devmem.checked_sub(card.used_mem)?).ok()?,
            devmem: i32::try_from(d.devmem).ok()?,
            free_cores: i32::try_from(d.devcore.checked_sub(card.used_cores)?).ok()?,
        })
    }

    /// [`Card::owned`].
    pub fn owned(&self) -> bool {
        self.flags & OWNED != 0
    }
    /// [`Card::healthy`].
    pub fn healthy(&self) -> bool {
        self.flags & HEALTHY != 0
    }
    pub fn cordoned(&self) -> bool {
        self.flags & CORDONED != 0
    }
    /// Every slot taken (`count <= used`).
    pub fn exhausted(&self) -> bool {
        self.flags & EXHAUSTED != 0
    }
    /// Some task holds it (`used > 0`).
    pub fn busy(&self) -> bool {
        self.flags & BUSY != 0
    }
    /// `devcore == 100`.
    pub fn whole(&self) -> bool {
        self.flags & WHOLE != 0
    }
    /// Its cores all booked (`devcore != 0 && used_cores == devcore`).
    pub fn cores_booked(&self) -> bool {
        self.flags & CORES_BOOKED != 0
    }
}

/// A summarised node: its only registered vendor, that vendor's liveness, and where its card
/// rows are in [`Summaries`].
#[derive(Clone, Copy, Debug, PartialEq)]
struct Head {
    vendor: &'static str,
    live: Liveness,
    start: u32,
    len: u32,
}

/// A node as the summary shows it.
#[derive(Clone, Copy, Debug)]
pub struct NodeSummary<'a> {
    /// The node's only registered vendor; empty when it has none (and no cards).
    pub vendor: &'static str,
    pub live: Liveness,
    /// Its cards, in the node's order.
    pub cards: &'a [CardRow],
}

/// The summaries of the ranked nodes, by rank.
#[derive(Clone, Debug, Default)]
pub struct Summaries {
    heads: Vec<Option<Head>>,
    rows: Vec<CardRow>,
    /// Rows no head points at any more (dropped by the next [`Summaries::clear`]).
    stale: usize,
}

impl Summaries {
    pub fn get(&self, rank: u32) -> Option<NodeSummary<'_>> {
        let head = self.heads.get(rank as usize).copied().flatten()?;
        let cards = self
            .rows
            .get(head.start as usize..(head.start + head.len) as usize)?;
        Some(NodeSummary {
            vendor: head.vendor,
            live: head.live,
            cards,
        })
    }

    /// Summarises the node of rank `rank` from its cards and its vendors' liveness; a node
    /// that cannot be summarised has none.
    pub fn set(&mut self, rank: u32, cards: &[Card], liveness: &[(&'static str, Liveness)]) {
        let at = rank as usize;
        if self.heads.len() <= at {
            self.heads.resize(at + 1, None);
        }
        let old = self.heads[at].take();
        let (vendor, live) = match liveness {
            [one] => one,
            // No registration at all (a node without devices): every vendor is unregistered.
            [] if cards.is_empty() => &("", Liveness::Dead),
            _ => {
                self.drop_rows(old);
                return;
            }
        };
        let Some(rows) = cards
            .iter()
            .map(|c| (c.vendor == *vendor).then(|| CardRow::of(c)).flatten())
            .collect::<Option<Vec<CardRow>>>()
        else {
            self.drop_rows(old);
            return;
        };
        let Ok(len) = u32::try_from(rows.len()) else {
            self.drop_rows(old);
            return;
        };
        let start = match old {
            Some(h) if h.len == len => {
                self.rows[h.start as usize..(h.start + len) as usize].copy_from_slice(&rows);
                h.start
            }
            _ => {
                self.drop_rows(old);
                let Ok(start) = u32::try_from(self.rows.len()) else {
                    return;
                };
                if start.checked_add(len).is_none() {
                    return;
                }
                self.rows.extend_from_slice(&rows);
                start
            }
        };
        self.heads[at] = Some(Head {
            vendor,
            live: *live,
            start,
            len,
        });
    }

    fn drop_rows(&mut self, old: Option<Head>) {
        if let Some(h) = old {
            self.stale += h.len as usize;
        }
    }

    pub fn remove(&mut self, rank: u32) {
        if let Some(head) = self.heads.get_mut(rank as usize) {
            let old = head.take();
            self.drop_rows(old);
        }
    }

    /// Many rows are left behind by re-registrations with another card count: rebuild
    /// (clear, then set every node).
    pub fn wasteful(&self) -> bool {
        self.stale > 4096 && self.stale > self.rows.len() / 2
    }

    pub fn clear(&mut self) {
        self.heads.clear();
        self.rows.clear();
        self.stale = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::DeviceInfo;

    fn card(vendor: &'static str, devmem: i64, used_mem: i64) -> Card {
        let mut c = Card::new(
            vendor,
            DeviceInfo {
                id: "GPU-a".into(),
                count: 10,
                devmem,
                devcore: 100,
                health: true,
                ..DeviceInfo::default()
            },
        );
        c.owned = true;
        c.used = 1;
        c.used_mem = used_mem;
        c.used_cores = 100;
        c
    }

    #[test]
    fn a_row_holds_the_numbers_and_flags_of_a_card() {
        let row = CardRow::of(&card("NVIDIA", 81920, 1024)).expect("fits");
        assert_eq!(
            (row.free_mem, row.devmem, row.free_cores),
            (80896, 81920, 0)
        );
        assert!(row.owned() && row.healthy() && !row.cordoned() && !row.exhausted());
        assert!(row.busy() && row.whole() && row.cores_booked());
    }

    #[test]
    fn nodes_that_cannot_be_summarised_have_none() {
        let live = [("NVIDIA", Liveness::Live)];
        let mut s = Summaries::default();
        // Numbers past 32 bits.
        s.set(0, &[card("NVIDIA", 1 << 40, 0)], &live);
        assert!(s.get(0).is_none());
        // Two vendors registered.
        let two = [("NVIDIA", Liveness::Live), ("DCU", Liveness::Live)];
        s.set(1, &[card("NVIDIA", 1024, 0)], &two);
        assert!(s.get(1).is_none());
        // None registered: an empty summary whose vendor matches none.
        s.set(4, &[], &[]);
        assert_eq!(s.get(4).map(|n| (n.vendor, n.cards.len())), Some(("", 0)));
        // A card of a vendor without liveness.
        s.set(2, &[card("DCU", 1024, 0)], &live);
        assert!(s.get(2).is_none());
        s.set(3, &[card("NVIDIA", 1024, 0)], &live);
        assert_eq!(s.get(3).map(|n| n.cards.len()), Some(1));
        assert!(s.get(9).is_none(), "never set");
    }

    #[test]
    fn rows_are_rewritten_in_place_or_appended_and_left_rows_counted() {
        let live = [("NVIDIA", Liveness::Live)];
        let mut s = Summaries::default();
        s.set(0, &[card("NVIDIA", 1024, 0)], &live);
        s.set(1, &[card("NVIDIA", 2048, 0)], &live);
        s.set(0, &[card("NVIDIA", 1024, 512)], &live);
        assert_eq!(s.rows.len(), 2, "same card count: in place");
        assert_eq!(s.get(0).map(|n| n.cards[0].free_mem), Some(512));
        let two = [card("NVIDIA", 4096, 0), card("NVIDIA", 4096, 1)];
        s.set(0, &two, &live);
        assert_eq!((s.rows.len(), s.stale), (4, 1), "another count: appended");
        assert_eq!(s.get(0).map(|n| n.cards.len()), Some(2));
        assert_eq!(s.get(1).map(|n| n.cards[0].devmem), Some(2048));
        s.remove(1);
        assert!(s.get(1).is_none());
        assert_eq!(s.stale, 2);
        assert!(!s.wasteful());
        s.clear();
        assert!(s.get(0).is_none() && s.rows.is_empty() && s.stale == 0);
    }
}
