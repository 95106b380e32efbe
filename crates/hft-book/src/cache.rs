//! The hot cache: the last trades and the last top-of-book snapshots of every
//! instrument, kept by the engine as events arrive so a strategy can read recent
//! history (trade flow, how the book moved) without keeping its own copies.
//!
//! Rings of fixed size, allocated once: recording an event copies a few words and never
//! allocates. It lives beside the books rather than in the Parquet store so the hot path
//! does not link the storage stack.

use crate::L2Book;
use hft_core::{Nanos, Price, Qty, Side};

/// One trade print.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TradeTick {
    /// Venue time.
    pub ts: Nanos,
    /// Price.
    pub price: Price,
    /// Quantity.
    pub qty: Qty,
    /// Aggressor side.
    pub aggressor: Side,
}

impl Default for TradeTick {
    fn default() -> Self {
        Self {
            ts: 0,
            price: Price(0),
            qty: Qty(0),
            aggressor: Side::Buy,
        }
    }
}

/// How much the cache keeps per instrument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheSizes {
    /// Trades kept.
    pub trades: usize,
    /// Levels per side in a snapshot.
    pub depth: usize,
    /// Snapshots kept.
    pub snapshots: usize,
}

impl Default for CacheSizes {
    fn default() -> Self {
        Self {
            trades: 256,
            depth: 5,
            snapshots: 32,
        }
    }
}

/// A top-of-book snapshot: up to `depth` levels per side, best first.
#[derive(Clone, Copy, Debug)]
pub struct BookView<'a> {
    /// Venue time of the message after which it was taken.
    pub ts: Nanos,
    /// Bid levels.
    pub bids: &'a [(Price, Qty)],
    /// Ask levels.
    pub asks: &'a [(Price, Qty)],
}

/// Fixed-size ring with newest-first iteration.
#[derive(Clone, Debug)]
struct Ring<T> {
    items: Vec<T>,
    next: usize,
    len: usize,
}

impl<T: Copy + Default> Ring<T> {
    fn new(capacity: usize) -> Self {
        Self {
            items: vec![T::default(); capacity],
            next: 0,
            len: 0,
        }
    }

    /// Slot to overwrite with the newest item.
    #[inline]
    fn advance(&mut self) -> usize {
        let slot = self.next;
        self.next = (self.next + 1) % self.items.len().max(1);
        self.len = (self.len + 1).min(self.items.len());
        slot
    }

    /// Slot indices, newest first.
    fn slots(&self) -> impl Iterator<Item = usize> + '_ {
        let cap = self.items.len();
        (1..=self.len).map(move |k| (self.next + cap - k) % cap)
    }
}

/// Best bid and best ask, each `(price, size)` when the side is not empty.
type Touch = (Option<(Price, Qty)>, Option<(Price, Qty)>);

/// One instrument's cache.
#[derive(Clone, Debug)]
struct InstrumentCache {
    trades: Ring<TradeTick>,
    /// Snapshot timestamps, slot-aligned with `levels`.
    snap_ts: Ring<Nanos>,
    /// `snapshots * 2 * depth` levels: slot `s` holds bids then asks.
    levels: Vec<(Price, Qty)>,
    /// Level counts per slot (bids, asks).
    counts: Vec<(u16, u16)>,
    /// Best bid and ask of the newest snapshot.
    touch: Touch,
}

/// Recent trades and book snapshots of every instrument, indexed by `InstrumentId`.
#[derive(Clone, Debug)]
pub struct HotCache {
    sizes: CacheSizes,
    instruments: Vec<InstrumentCache>,
}

impl HotCache {
    /// A cache for `instruments` instruments.
    pub fn new(instruments: usize, sizes: CacheSizes) -> Self {
        let sizes = CacheSizes {
            trades: sizes.trades.max(1),
            depth: sizes.depth.clamp(1, usize::from(u16::MAX)),
            snapshots: sizes.snapshots.max(1),
        };
        Self {
            sizes,
            instruments: (0..instruments)
                .map(|_| InstrumentCache {
                    trades: Ring::new(sizes.trades),
                    snap_ts: Ring::new(sizes.snapshots),
                    levels: vec![(Price(0), Qty(0)); sizes.snapshots * 2 * sizes.depth],
                    counts: vec![(0, 0); sizes.snapshots],
                    touch: (None, None),
                })
                .collect(),
        }
    }

    /// What it keeps.
    pub fn sizes(&self) -> CacheSizes {
        self.sizes
    }

    /// Records a trade of instrument `i`.
    #[inline]
    pub fn record_trade(&mut self, i: usize, trade: TradeTick) {
        if let Some(c) = self.instruments.get_mut(i) {
            let slot = c.trades.advance();
            c.trades.items[slot] = trade;
        }
    }

    /// Records the top of `book` (instrument `i`) after a message at `ts`, if its best
    /// bid or ask (price or size) changed since the last snapshot: the history is one
    /// snapshot per change of the touch, and messages that only move deeper levels cost
    /// two comparisons.
    #[inline]
    pub fn record_book(&mut self, i: usize, ts: Nanos, book: &L2Book) {
        let depth = self.sizes.depth;
        let Some(c) = self.instruments.get_mut(i) else {
            return;
        };
        let touch = (book.best_bid(), book.best_ask());
        if c.snap_ts.len > 0 && touch == c.touch {
            return;
        }
        c.touch = touch;
        let slot = c.snap_ts.advance();
        c.snap_ts.items[slot] = ts;
        let base = slot * 2 * depth;
        let mut counts = (0u16, 0u16);
        for (side, off, n) in [
            (Side::Buy, 0, &mut counts.0),
            (Side::Sell, depth, &mut counts.1),
        ] {
            for (k, lvl) in book.levels(side).take(depth).enumerate() {
                c.levels[base + off + k] = lvl;
                *n += 1;
            }
        }
        c.counts[slot] = counts;
    }

    /// Trades of instrument `i`, newest first.
    pub fn trades(&self, i: usize) -> impl Iterator<Item = &TradeTick> + '_ {
        self.instruments
            .get(i)
            .into_iter()
            .flat_map(|c| c.trades.slots().map(move |s| &c.trades.items[s]))
    }

    /// Book snapshots of instrument `i`, newest first.
    pub fn books(&self, i: usize) -> impl Iterator<Item = BookView<'_>> + '_ {
        let depth = self.sizes.depth;
        self.instruments.get(i).into_iter().flat_map(move |c| {
            c.snap_ts.slots().map(move |s| {
                let base = s * 2 * depth;
                let (nb, na) = c.counts[s];
                BookView {
                    ts: c.snap_ts.items[s],
                    bids: &c.levels[base..base + usize::from(nb)],
                    asks: &c.levels[base + depth..base + depth + usize::from(na)],
                }
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hft_core::InstrumentId;

    #[test]
    fn keeps_the_newest_trades_and_books_first() {
        let sizes = CacheSizes {
            trades: 3,
            depth: 2,
            snapshots: 2,
        };
        let mut c = HotCache::new(1, sizes);
        for k in 1..=5 {
            c.record_trade(
                0,
                TradeTick {
                    ts: k,
                    price: Price(100 + k as i64),
                    qty: Qty(1),
                    aggressor: Side::Buy,
                },
            );
        }
        let ts: Vec<u64> = c.trades(0).map(|t| t.ts).collect();
        assert_eq!(ts, vec![5, 4, 3]);
        let mut b = L2Book::with_capacity(InstrumentId(0), 8);
        for p in [97, 98, 99] {
            b.apply_level(Side::Buy, Price(p), Qty(1)).unwrap();
        }
        c.record_book(0, 10, &b);
        b.apply_level(Side::Sell, Price(101), Qty(4)).unwrap();
        c.record_book(0, 11, &b);
        // A change below the touch is not a new snapshot.
        b.apply_level(Side::Buy, Price(97), Qty(5)).unwrap();
        c.record_book(0, 12, &b);
        let views: Vec<BookView<'_>> = c.books(0).collect();
        assert_eq!(views.len(), 2);
        assert_eq!(views[0].ts, 11);
        assert_eq!(views[0].bids, &[(Price(99), Qty(1)), (Price(98), Qty(1))]);
        assert_eq!(views[0].asks, &[(Price(101), Qty(4))]);
        assert!(views[1].asks.is_empty());
        assert_eq!(c.trades(7).count(), 0, "unknown instrument: nothing");
    }
}
