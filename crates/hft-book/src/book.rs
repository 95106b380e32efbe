//! The price-level book.
//!
//! Each side is a sorted sequence of levels with the best level at the end, kept in a
//! gap buffer: two parallel arrays (keys, quantities) with a movable hole in them.
//! An insert or delete happens at the hole, and moving the hole costs the distance
//! from the previous update. Venue messages list their levels in price order, so
//! successive updates are close and a message costs about one pass over the book,
//! wherever in a deep book its levels land; top-of-book traffic keeps the hole near
//! the end and costs a few elements. Keys and quantities are kept apart so the binary
//! search walks a dense array of `i64`s.

use crate::error::BookError;
use hft_core::{InstrumentId, MarketEvent, MarketEventKind, Price, Qty, Side, div_round};

/// One side of the book.
///
/// Prices are stored as sort keys that ascend towards the best level: the price itself
/// for bids (best = highest) and its negation for asks (best = lowest). Prices are
/// validated positive, so the negation cannot overflow, and one ascending search
/// serves both sides.
///
/// The logical sequence is `keys[..gap_start]` followed by `keys[gap_end..]`, strictly
/// ascending; the slots in between are the gap.
#[derive(Clone, Debug)]
struct Ladder {
    /// Sort keys; `keys.len()` is the capacity, the gap holds stale values.
    keys: Vec<i64>,
    /// Quantity per slot, index-aligned with `keys`; > 0 outside the gap.
    qtys: Vec<Qty>,
    gap_start: usize,
    gap_end: usize,
    /// +1 for bids, -1 for asks: `key = price * sign` and `price = key * sign`.
    sign: i64,
}

impl Ladder {
    fn with_capacity(side: Side, levels: usize) -> Self {
        let cap = levels.max(1);
        Self {
            keys: vec![0; cap],
            qtys: vec![Qty::ZERO; cap],
            gap_start: 0,
            gap_end: cap,
            sign: side.sign(),
        }
    }

    #[inline]
    fn key(&self, price: Price) -> i64 {
        price.raw() * self.sign
    }

    #[inline]
    fn price(&self, key: i64) -> Price {
        Price(key * self.sign)
    }

    #[inline]
    fn len(&self) -> usize {
        self.keys.len() - (self.gap_end - self.gap_start)
    }

    /// Physical slot of the best (logically last) level.
    #[inline]
    fn best_slot(&self) -> Option<usize> {
        if self.gap_end < self.keys.len() {
            Some(self.keys.len() - 1)
        } else {
            self.gap_start.checked_sub(1)
        }
    }

    /// Logical position of `key`: `Ok(i)` if present, `Err(i)` where it would go.
    #[inline]
    fn search(&self, key: i64) -> Result<usize, usize> {
        let right = &self.keys[self.gap_end..];
        if right.first().is_some_and(|&first| key >= first) {
            match right.binary_search(&key) {
                Ok(i) => Ok(self.gap_start + i),
                Err(i) => Err(self.gap_start + i),
            }
        } else {
            self.keys[..self.gap_start].binary_search(&key)
        }
    }

    /// Physical slot of logical position `i` (`i < len`).
    #[inline]
    fn slot(&self, i: usize) -> usize {
        if i < self.gap_start {
            i
        } else {
            i + (self.gap_end - self.gap_start)
        }
    }

    /// Moves the gap so that it starts at logical position `i`.
    #[inline]
    fn move_gap(&mut self, i: usize) {
        if i < self.gap_start {
            let n = self.gap_start - i;
            let to = self.gap_end - n;
            self.keys.copy_within(i..self.gap_start, to);
            self.qtys.copy_within(i..self.gap_start, to);
            self.gap_start = i;
            self.gap_end = to;
        } else if i > self.gap_start {
            let n = i - self.gap_start;
            let from = self.gap_end;
            self.keys.copy_within(from..from + n, self.gap_start);
            self.qtys.copy_within(from..from + n, self.gap_start);
            self.gap_start = i;
            self.gap_end = from + n;
        }
    }

    /// Doubles the buffer (only beyond the pre-sized capacity), keeping the gap.
    #[cold]
    fn grow(&mut self) {
        let old = self.keys.len();
        let extra = old.max(1);
        let tail = old - self.gap_end;
        self.keys.resize(old + extra, 0);
        self.qtys.resize(old + extra, Qty::ZERO);
        self.keys
            .copy_within(self.gap_end..old, self.gap_end + extra);
        self.qtys
            .copy_within(self.gap_end..old, self.gap_end + extra);
        self.gap_end += extra;
        debug_assert_eq!(self.keys.len() - self.gap_end, tail);
    }

    /// Sets or deletes a level; `price` is positive and `qty` non-negative here.
    #[inline]
    fn set(&mut self, price: Price, qty: Qty) {
        let key = self.key(price);
        // Fast path: the update hits the current best level, the most common case.
        if let Some(b) = self.best_slot() {
            if self.keys[b] == key && !qty.is_zero() {
                self.qtys[b] = qty;
                return;
            }
        }
        match (self.search(key), qty.is_zero()) {
            (Ok(i), false) => {
                let s = self.slot(i);
                self.qtys[s] = qty;
            }
            (Ok(i), true) => {
                self.move_gap(i);
                self.gap_end += 1;
            }
            (Err(i), false) => {
                if self.gap_start == self.gap_end {
                    self.grow();
                }
                self.move_gap(i);
                self.keys[self.gap_start] = key;
                self.qtys[self.gap_start] = qty;
                self.gap_start += 1;
            }
            // Deleting a level that is not there: the venue and we already agree.
            (Err(_), true) => {}
        }
    }

    #[inline]
    fn best(&self) -> Option<(Price, Qty)> {
        self.best_slot()
            .map(|s| (self.price(self.keys[s]), self.qtys[s]))
    }

    fn qty_at(&self, price: Price) -> Qty {
        if price.raw() <= 0 {
            // Never stored, and negating i64::MIN would overflow for asks.
            return Qty::ZERO;
        }
        match self.search(self.key(price)) {
            Ok(i) => self.qtys[self.slot(i)],
            Err(_) => Qty::ZERO,
        }
    }

    fn clear(&mut self) {
        self.gap_start = 0;
        self.gap_end = self.keys.len();
    }

    /// Slots from the best level outward.
    fn best_first(&self) -> impl Iterator<Item = usize> + '_ {
        (self.gap_end..self.keys.len())
            .rev()
            .chain((0..self.gap_start).rev())
    }
}

/// A price-level (L2) order book for one instrument.
///
/// It holds, per side, the total resting quantity at each price, as a venue's
/// market-by-price feed publishes it. Updates are absolute ("the level now holds q"),
/// so applying them is idempotent and a snapshot is just [`clear`](Self::clear)
/// followed by levels.
///
/// Memory: each side is pre-sized for `levels_per_side` levels and no update
/// allocates while a side stays within that. A side that grows beyond it reallocates
/// (amortised doubling) and keeps the larger buffer, including across `clear`, so a
/// too-small capacity costs a few allocations early on, not one per update; size it
/// to the deepest book the venue sends.
#[derive(Clone, Debug)]
pub struct L2Book {
    instrument: InstrumentId,
    /// Indexed by [`Side::index`]: bids then asks.
    sides: [Ladder; 2],
}

impl L2Book {
    /// An empty book for `instrument`, pre-sized so that up to `levels_per_side`
    /// levels per side can be applied without touching the allocator on the hot path.
    pub fn with_capacity(instrument: InstrumentId, levels_per_side: usize) -> Self {
        Self {
            instrument,
            sides: [
                Ladder::with_capacity(Side::Buy, levels_per_side),
                Ladder::with_capacity(Side::Sell, levels_per_side),
            ],
        }
    }

    /// The instrument this book tracks; events for any other are refused.
    #[inline]
    pub fn instrument(&self) -> InstrumentId {
        self.instrument
    }

    #[inline]
    fn side(&self, side: Side) -> &Ladder {
        &self.sides[side.index()]
    }

    /// Drops every level on both sides, as a venue snapshot starts from nothing.
    /// Capacity is kept, so rebuilding the book from the snapshot does not allocate.
    pub fn clear(&mut self) {
        self.sides.iter_mut().for_each(Ladder::clear);
    }

    /// Sets the level at `price` on `side` to hold `qty`; `qty == 0` deletes the
    /// level, and deleting a level that is absent is a no-op because the book
    /// already says what the venue says.
    ///
    /// Refuses a negative `qty` and a non-positive `price` (both mean a decoding
    /// bug, not market data), leaving the book unchanged.
    #[inline]
    pub fn apply_level(&mut self, side: Side, price: Price, qty: Qty) -> Result<(), BookError> {
        if price.raw() <= 0 {
            return Err(BookError::BadPrice { side, price });
        }
        if qty.raw() < 0 {
            return Err(BookError::NegativeQty { side, price, qty });
        }
        self.sides[side.index()].set(price, qty);
        Ok(())
    }

    /// Folds one normalised market event into the book: `Clear` empties it, `Level`
    /// sets a level, and `Trade` and `Quote` change nothing: market-by-price venues
    /// publish the resulting level changes separately, and a quote stream is not
    /// sequenced with the depth stream.
    ///
    /// An event for another instrument is refused so a routing bug cannot corrupt
    /// the book.
    #[inline]
    pub fn apply(&mut self, ev: &MarketEvent) -> Result<(), BookError> {
        if ev.instrument != self.instrument {
            return Err(BookError::WrongInstrument {
                book: self.instrument,
                got: ev.instrument,
            });
        }
        match ev.kind {
            MarketEventKind::Clear => {
                self.clear();
                Ok(())
            }
            MarketEventKind::Level { side, price, qty } => self.apply_level(side, price, qty),
            MarketEventKind::Trade { .. } | MarketEventKind::Quote { .. } => Ok(()),
        }
    }

    /// Highest bid price and its quantity, or `None` if there are no bids.
    #[inline]
    pub fn best_bid(&self) -> Option<(Price, Qty)> {
        self.side(Side::Buy).best()
    }

    /// Lowest ask price and its quantity, or `None` if there are no asks.
    #[inline]
    pub fn best_ask(&self) -> Option<(Price, Qty)> {
        self.side(Side::Sell).best()
    }

    /// Best level of `side`, for code that is generic over the side it quotes.
    #[inline]
    pub fn best(&self, side: Side) -> Option<(Price, Qty)> {
        self.side(side).best()
    }

    /// Best bid plus best ask in raw price units, i.e. twice the mid price.
    ///
    /// Twice the mid is exact where the mid itself could fall on half a raw unit.
    /// `None` if either side is empty (or, for absurd prices, if the sum would
    /// overflow an `i64`).
    #[inline]
    pub fn mid_x2(&self) -> Option<i64> {
        let (bid, _) = self.best_bid()?;
        let (ask, _) = self.best_ask()?;
        bid.raw().checked_add(ask.raw())
    }

    /// Best ask minus best bid; `None` if either side is empty. Zero or negative when
    /// the book is locked or crossed, which real feeds can show for an instant.
    #[inline]
    pub fn spread(&self) -> Option<Price> {
        let (bid, _) = self.best_bid()?;
        let (ask, _) = self.best_ask()?;
        // Both prices are positive, so the difference cannot overflow.
        Some(Price(ask.raw() - bid.raw()))
    }

    /// Levels of `side` from the best price outward, for depth-aware strategies.
    pub fn levels(&self, side: Side) -> impl Iterator<Item = (Price, Qty)> + '_ {
        let ladder = self.side(side);
        ladder
            .best_first()
            .map(move |s| (ladder.price(ladder.keys[s]), ladder.qtys[s]))
    }

    /// Number of price levels on `side`.
    #[inline]
    pub fn level_count(&self, side: Side) -> usize {
        self.side(side).len()
    }

    /// Quantity resting at `price` on `side`, zero if there is no such level (an
    /// absent level and an empty one are the same thing to a market-by-price feed).
    pub fn qty_at(&self, side: Side, price: Price) -> Qty {
        self.side(side).qty_at(price)
    }

    /// Total quantity of the best `n_levels` levels of `side` (all of them if the side
    /// is shallower): how much a sweep of that depth could fill.
    ///
    /// Saturates at `i64::MAX` instead of overflowing on absurd quantities.
    pub fn depth_qty(&self, side: Side, n_levels: usize) -> Qty {
        let ladder = self.side(side);
        Qty(ladder
            .best_first()
            .take(n_levels)
            .fold(0i64, |acc, s| acc.saturating_add(ladder.qtys[s].raw())))
    }

    /// Size-weighted mid: `(bid * ask_qty + ask * bid_qty) / (bid_qty + ask_qty)`,
    /// rounded to the nearest raw price unit (halves away from zero).
    ///
    /// It leans towards the side with less quantity, which is where the price is more
    /// likely to move next, so it is a better fair value than the plain mid. Computed in
    /// `i128`, which cannot overflow for any `i64` prices and quantities. It is not
    /// rounded to the tick grid. `None` if either side is empty.
    #[inline]
    pub fn microprice(&self) -> Option<Price> {
        let (bid, bid_qty) = self.best_bid()?;
        let (ask, ask_qty) = self.best_ask()?;
        let (bid_qty, ask_qty) = (i128::from(bid_qty.raw()), i128::from(ask_qty.raw()));
        let num = i128::from(bid.raw()) * ask_qty + i128::from(ask.raw()) * bid_qty;
        // Stored levels always hold a positive quantity, so `den > 0`, and the result
        // lies between bid and ask, so it fits an i64.
        let den = bid_qty + ask_qty;
        i64::try_from(div_round(num, den)).ok().map(Price)
    }

    /// Top-of-book imbalance `(bid_qty - ask_qty) / (bid_qty + ask_qty)`, in `[-1, 1]`:
    /// positive when buyers dominate. A model input, hence the only `f64` here.
    /// `None` if either side is empty.
    #[inline]
    pub fn imbalance(&self) -> Option<f64> {
        let (_, bid_qty) = self.best_bid()?;
        let (_, ask_qty) = self.best_ask()?;
        let (bid_qty, ask_qty) = (i128::from(bid_qty.raw()), i128::from(ask_qty.raw()));
        Some((bid_qty - ask_qty) as f64 / (bid_qty + ask_qty) as f64)
    }

    /// True when both sides are present and the best bid is at or above the best ask.
    ///
    /// Real feeds can show this for an instant (e.g. between the events of one venue
    /// message), so it is reported, not refused; strategies should not quote on it.
    #[inline]
    pub fn is_crossed(&self) -> bool {
        matches!((self.best_bid(), self.best_ask()), (Some((bid, _)), Some((ask, _))) if bid >= ask)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hft_core::{FLAG_LAST, MarketEvent};
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    const INSTR: InstrumentId = InstrumentId(7);

    fn book() -> L2Book {
        L2Book::with_capacity(INSTR, 16)
    }

    fn ev(instrument: InstrumentId, kind: MarketEventKind) -> MarketEvent {
        MarketEvent {
            ts_exchange: 1,
            ts_recv: 2,
            seq: 3,
            instrument,
            flags: FLAG_LAST,
            kind,
        }
    }

    fn level(side: Side, price: i64, qty: i64) -> MarketEventKind {
        MarketEventKind::Level {
            side,
            price: Price(price),
            qty: Qty(qty),
        }
    }

    /// (keys, qtys) capacities of both sides, to prove updates do not reallocate.
    fn capacities(b: &L2Book) -> [(usize, usize); 2] {
        b.sides
            .each_ref()
            .map(|l| (l.keys.capacity(), l.qtys.capacity()))
    }

    #[test]
    fn empty_book_reports_nothing() {
        let b = book();
        assert_eq!(b.instrument(), INSTR);
        assert_eq!(b.best_bid(), None);
        assert_eq!(b.best_ask(), None);
        assert_eq!(b.mid_x2(), None);
        assert_eq!(b.spread(), None);
        assert_eq!(b.microprice(), None);
        assert_eq!(b.imbalance(), None);
        assert!(!b.is_crossed());
        assert_eq!(b.depth_qty(Side::Buy, 5), Qty::ZERO);
        assert_eq!(b.levels(Side::Sell).count(), 0);
    }

    #[test]
    fn one_sided_book_has_no_two_sided_metrics() {
        let mut b = book();
        b.apply_level(Side::Buy, Price(100), Qty(5)).unwrap();
        assert_eq!(b.best_bid(), Some((Price(100), Qty(5))));
        assert_eq!(b.mid_x2(), None);
        assert_eq!(b.spread(), None);
        assert_eq!(b.microprice(), None);
        assert_eq!(b.imbalance(), None);
        assert!(!b.is_crossed());
    }

    #[test]
    fn levels_are_ordered_from_best_outward() {
        let mut b = book();
        for (p, q) in [(99, 1), (101, 2), (100, 3)] {
            b.apply_level(Side::Buy, Price(p), Qty(q)).unwrap();
        }
        for (p, q) in [(104, 4), (102, 5), (103, 6)] {
            b.apply_level(Side::Sell, Price(p), Qty(q)).unwrap();
        }
        let bids: Vec<_> = b
            .levels(Side::Buy)
            .map(|(p, q)| (p.raw(), q.raw()))
            .collect();
        let asks: Vec<_> = b
            .levels(Side::Sell)
            .map(|(p, q)| (p.raw(), q.raw()))
            .collect();
        assert_eq!(bids, [(101, 2), (100, 3), (99, 1)]);
        assert_eq!(asks, [(102, 5), (103, 6), (104, 4)]);
        assert_eq!(b.best(Side::Buy), b.best_bid());
        assert_eq!(b.best(Side::Sell), b.best_ask());
        assert_eq!(b.depth_qty(Side::Buy, 2), Qty(5));
        assert_eq!(b.depth_qty(Side::Sell, 0), Qty::ZERO);
        assert_eq!(b.depth_qty(Side::Sell, 99), Qty(15));
        assert_eq!(b.qty_at(Side::Sell, Price(103)), Qty(6));
        assert_eq!(b.qty_at(Side::Sell, Price(101)), Qty::ZERO);
        assert_eq!(b.qty_at(Side::Sell, Price(i64::MIN)), Qty::ZERO);
        assert_eq!(b.level_count(Side::Buy), 3);
    }

    #[test]
    fn zero_qty_deletes_and_missing_delete_is_a_no_op() {
        let mut b = book();
        b.apply_level(Side::Sell, Price(10), Qty(1)).unwrap();
        b.apply_level(Side::Sell, Price(11), Qty(1)).unwrap();
        b.apply_level(Side::Sell, Price(10), Qty(0)).unwrap();
        assert_eq!(b.best_ask(), Some((Price(11), Qty(1))));
        b.apply_level(Side::Sell, Price(50), Qty(0)).unwrap();
        b.apply_level(Side::Buy, Price(50), Qty(0)).unwrap();
        assert_eq!(b.level_count(Side::Sell), 1);
        assert_eq!(b.level_count(Side::Buy), 0);
    }

    #[test]
    fn spread_mid_and_crossing() {
        let mut b = book();
        b.apply_level(Side::Buy, Price(100), Qty(1)).unwrap();
        b.apply_level(Side::Sell, Price(103), Qty(1)).unwrap();
        assert_eq!(b.spread(), Some(Price(3)));
        assert_eq!(b.mid_x2(), Some(203));
        assert!(!b.is_crossed());
        // Locked counts as crossed: nobody can quote inside a zero spread.
        b.apply_level(Side::Buy, Price(103), Qty(1)).unwrap();
        assert_eq!(b.spread(), Some(Price(0)));
        assert!(b.is_crossed());
        b.apply_level(Side::Buy, Price(105), Qty(1)).unwrap();
        assert_eq!(b.spread(), Some(Price(-2)));
        assert!(b.is_crossed());
    }

    #[test]
    fn mid_x2_overflow_is_none_not_a_panic() {
        let mut b = book();
        b.apply_level(Side::Buy, Price(i64::MAX - 1), Qty(1))
            .unwrap();
        b.apply_level(Side::Sell, Price(i64::MAX), Qty(1)).unwrap();
        assert_eq!(b.mid_x2(), None);
        assert_eq!(b.spread(), Some(Price(1)));
    }

    #[test]
    fn microprice_leans_towards_the_thin_side() {
        let mut b = book();
        b.apply_level(Side::Buy, Price(100), Qty(1)).unwrap();
        b.apply_level(Side::Sell, Price(104), Qty(3)).unwrap();
        // (100*3 + 104*1) / 4 = 101: thin bid, price leans down.
        assert_eq!(b.microprice(), Some(Price(101)));
        b.apply_level(Side::Buy, Price(100), Qty(3)).unwrap();
        b.apply_level(Side::Sell, Price(104), Qty(1)).unwrap();
        // (100*1 + 104*3) / 4 = 103.
        assert_eq!(b.microprice(), Some(Price(103)));
        // Equal sizes give the plain mid.
        b.apply_level(Side::Sell, Price(104), Qty(3)).unwrap();
        assert_eq!(b.microprice(), Some(Price(102)));
    }

    #[test]
    fn microprice_rounds_to_nearest() {
        let mut b = book();
        b.apply_level(Side::Buy, Price(100), Qty(1)).unwrap();
        b.apply_level(Side::Sell, Price(101), Qty(1)).unwrap();
        // 100.5 rounds half away from zero.
        assert_eq!(b.microprice(), Some(Price(101)));
        b.apply_level(Side::Sell, Price(101), Qty(2)).unwrap();
        // (200 + 101) / 3 = 100.33 -> 100.
        assert_eq!(b.microprice(), Some(Price(100)));
        b.apply_level(Side::Buy, Price(100), Qty(2)).unwrap();
        b.apply_level(Side::Sell, Price(101), Qty(1)).unwrap();
        // (100 + 202) / 3 = 100.67 -> 101.
        assert_eq!(b.microprice(), Some(Price(101)));
    }

    #[test]
    fn microprice_and_imbalance_survive_extreme_values() {
        let mut b = book();
        b.apply_level(Side::Buy, Price(i64::MAX - 1), Qty(i64::MAX))
            .unwrap();
        b.apply_level(Side::Sell, Price(i64::MAX), Qty(i64::MAX))
            .unwrap();
        assert_eq!(b.microprice(), Some(Price(i64::MAX)));
        assert_eq!(b.imbalance(), Some(0.0));
        assert_eq!(b.depth_qty(Side::Buy, 1), Qty(i64::MAX));
        b.apply_level(Side::Buy, Price(1), Qty(i64::MAX)).unwrap();
        assert_eq!(b.depth_qty(Side::Buy, 2), Qty(i64::MAX), "depth saturates");
    }

    #[test]
    fn imbalance_sign_and_range() {
        let mut b = book();
        b.apply_level(Side::Buy, Price(100), Qty(3)).unwrap();
        b.apply_level(Side::Sell, Price(101), Qty(1)).unwrap();
        assert_eq!(b.imbalance(), Some(0.5));
        b.apply_level(Side::Sell, Price(101), Qty(3)).unwrap();
        assert_eq!(b.imbalance(), Some(0.0));
        b.apply_level(Side::Buy, Price(100), Qty(1)).unwrap();
        assert_eq!(b.imbalance(), Some(-0.5));
        b.apply_level(Side::Sell, Price(101), Qty(i64::MAX))
            .unwrap();
        let i = b.imbalance().unwrap();
        assert!((-1.0..=1.0).contains(&i), "{i}");
    }

    #[test]
    fn bad_input_is_an_error_and_leaves_the_book_unchanged() {
        let mut b = book();
        b.apply_level(Side::Buy, Price(100), Qty(3)).unwrap();
        assert_eq!(
            b.apply_level(Side::Buy, Price(100), Qty(-1)),
            Err(BookError::NegativeQty {
                side: Side::Buy,
                price: Price(100),
                qty: Qty(-1)
            })
        );
        assert_eq!(
            b.apply_level(Side::Sell, Price(0), Qty(1)),
            Err(BookError::BadPrice {
                side: Side::Sell,
                price: Price(0)
            })
        );
        assert_eq!(
            b.apply_level(Side::Sell, Price(i64::MIN), Qty(0)),
            Err(BookError::BadPrice {
                side: Side::Sell,
                price: Price(i64::MIN)
            })
        );
        let other = ev(InstrumentId(8), MarketEventKind::Clear);
        assert_eq!(
            b.apply(&other),
            Err(BookError::WrongInstrument {
                book: INSTR,
                got: InstrumentId(8)
            })
        );
        assert_eq!(b.best_bid(), Some((Price(100), Qty(3))));
        assert_eq!(b.level_count(Side::Sell), 0);
    }

    #[test]
    fn error_messages_say_what_and_how_to_fix() {
        let neg = BookError::NegativeQty {
            side: Side::Buy,
            price: Price(100),
            qty: Qty(-1),
        }
        .to_string();
        assert!(
            neg.contains("negative quantity -1") && neg.contains("buy") && neg.contains("send 0"),
            "{neg}"
        );
        let bad = BookError::BadPrice {
            side: Side::Sell,
            price: Price(0),
        }
        .to_string();
        assert!(
            bad.contains("price 0") && bad.contains("sell") && bad.contains("price scale"),
            "{bad}"
        );
        let wrong = BookError::WrongInstrument {
            book: InstrumentId(1),
            got: InstrumentId(2),
        }
        .to_string();
        assert!(
            wrong.contains("instrument 2")
                && wrong.contains("instrument 1")
                && wrong.contains("route"),
            "{wrong}"
        );
    }

    #[test]
    fn apply_dispatches_events() {
        let mut b = book();
        b.apply(&ev(INSTR, level(Side::Buy, 100, 2))).unwrap();
        b.apply(&ev(INSTR, level(Side::Sell, 101, 4))).unwrap();
        assert_eq!(b.spread(), Some(Price(1)));
        let trade = MarketEventKind::Trade {
            aggressor: Side::Sell,
            price: Price(100),
            qty: Qty(1),
        };
        b.apply(&ev(INSTR, trade)).unwrap();
        assert_eq!(
            b.best_bid(),
            Some((Price(100), Qty(2))),
            "trades do not change the book"
        );
        assert_eq!(
            b.apply(&ev(INSTR, level(Side::Buy, 100, -5))),
            Err(BookError::NegativeQty {
                side: Side::Buy,
                price: Price(100),
                qty: Qty(-5)
            })
        );
        b.apply(&ev(INSTR, MarketEventKind::Clear)).unwrap();
        assert_eq!(b.best_bid(), None);
        assert_eq!(b.best_ask(), None);
    }

    #[test]
    fn ten_thousand_updates_within_capacity_never_reallocate() {
        let mut b = L2Book::with_capacity(INSTR, 64);
        let before = capacities(&b);
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for i in 0..10_000u64 {
            // xorshift: deterministic pseudo-random prices and sizes.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let offset = (x % 64) as i64;
            let qty = ((x >> 8) % 5) as i64; // 0 deletes about one update in five
            let (side, price) = if x & (1 << 40) == 0 {
                (Side::Buy, 1_000 - offset)
            } else {
                (Side::Sell, 1_001 + offset)
            };
            b.apply_level(side, Price(price), Qty(qty)).unwrap();
            if i % 2_500 == 2_499 {
                b.clear();
            }
            assert!(b.level_count(Side::Buy) <= 64 && b.level_count(Side::Sell) <= 64);
        }
        assert_eq!(capacities(&b), before);
    }

    #[test]
    fn growing_beyond_capacity_works_and_keeps_the_buffer() {
        let mut b = L2Book::with_capacity(INSTR, 2);
        for p in 1..=100 {
            b.apply_level(Side::Sell, Price(p), Qty(p)).unwrap();
        }
        assert_eq!(b.level_count(Side::Sell), 100);
        assert_eq!(b.best_ask(), Some((Price(1), Qty(1))));
        let grown = capacities(&b);
        b.clear();
        assert_eq!(capacities(&b), grown);
    }

    /// One generated book operation.
    #[derive(Clone, Debug)]
    enum Op {
        Clear,
        Level(Side, i64, i64),
    }

    fn side() -> impl Strategy<Value = Side> {
        prop_oneof![Just(Side::Buy), Just(Side::Sell)]
    }

    /// Naive reference: one ordered map per side, price -> qty.
    #[derive(Default)]
    struct Model {
        sides: [BTreeMap<i64, i64>; 2],
    }

    impl Model {
        fn apply(&mut self, op: &Op) -> Result<(), ()> {
            match *op {
                Op::Clear => self.sides.iter_mut().for_each(BTreeMap::clear),
                Op::Level(_, p, q) if p <= 0 || q < 0 => return Err(()),
                Op::Level(s, p, 0) => {
                    self.sides[s.index()].remove(&p);
                }
                Op::Level(s, p, q) => {
                    self.sides[s.index()].insert(p, q);
                }
            }
            Ok(())
        }

        /// Levels from best outward.
        fn levels(&self, side: Side) -> Vec<(i64, i64)> {
            let m = &self.sides[side.index()];
            match side {
                Side::Buy => m.iter().rev().map(|(&p, &q)| (p, q)).collect(),
                Side::Sell => m.iter().map(|(&p, &q)| (p, q)).collect(),
            }
        }
    }

    fn check_against_model(b: &L2Book, m: &Model) -> Result<(), TestCaseError> {
        for s in [Side::Buy, Side::Sell] {
            let want = m.levels(s);
            let got: Vec<_> = b.levels(s).map(|(p, q)| (p.raw(), q.raw())).collect();
            prop_assert_eq!(&got, &want);
            prop_assert_eq!(b.level_count(s), want.len());
            prop_assert_eq!(
                b.best(s).map(|(p, q)| (p.raw(), q.raw())),
                want.first().copied()
            );
            for n in 0..=want.len() + 1 {
                let depth: i64 = want.iter().take(n).map(|&(_, q)| q).sum();
                prop_assert_eq!(b.depth_qty(s, n), Qty(depth));
            }
            for p in -1..=22 {
                let q = m.sides[s.index()].get(&p).copied().unwrap_or(0);
                prop_assert_eq!(b.qty_at(s, Price(p)), Qty(q));
            }
        }
        let best_bid = m.levels(Side::Buy).first().map(|&(p, _)| p);
        let best_ask = m.levels(Side::Sell).first().map(|&(p, _)| p);
        prop_assert_eq!(b.best_bid().map(|(p, _)| p.raw()), best_bid);
        prop_assert_eq!(b.best_ask().map(|(p, _)| p.raw()), best_ask);
        if let (Some(bid), Some(ask)) = (best_bid, best_ask) {
            prop_assert_eq!(b.spread(), Some(Price(ask - bid)));
            prop_assert_eq!(b.mid_x2(), Some(ask + bid));
            prop_assert_eq!(b.is_crossed(), bid >= ask);
            let micro = b.microprice().unwrap();
            prop_assert!(micro.raw() >= bid.min(ask) && micro.raw() <= bid.max(ask));
            let imb = b.imbalance().unwrap();
            prop_assert!((-1.0..=1.0).contains(&imb));
        } else {
            prop_assert!(!b.is_crossed());
            prop_assert_eq!(b.spread(), None);
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn book_matches_btreemap_model(
            ops in prop::collection::vec(
                prop_oneof![
                    1 => Just(Op::Clear),
                    // Includes invalid prices (<= 0) and quantities (< 0): both book and
                    // model must refuse them without changing anything.
                    30 => (side(), -1i64..=20, -1i64..=6).prop_map(|(s, p, q)| Op::Level(s, p, q)),
                ],
                0..300,
            ),
            capacity in 0usize..8,
        ) {
            let mut b = L2Book::with_capacity(INSTR, capacity);
            let mut m = Model::default();
            for op in &ops {
                let got = match *op {
                    Op::Clear => b.apply(&ev(INSTR, MarketEventKind::Clear)),
                    Op::Level(s, p, q) => b.apply_level(s, Price(p), Qty(q)),
                };
                prop_assert_eq!(got.is_ok(), m.apply(op).is_ok(), "{:?}", op);
                check_against_model(&b, &m)?;
            }
        }

        #[test]
        fn non_crossed_feed_never_reports_crossed(
            ops in prop::collection::vec(
                prop_oneof![
                    1 => Just(Op::Clear),
                    15 => (1i64..=50, 0i64..=5).prop_map(|(p, q)| Op::Level(Side::Buy, p, q)),
                    15 => (51i64..=100, 0i64..=5).prop_map(|(p, q)| Op::Level(Side::Sell, p, q)),
                ],
                0..300,
            ),
        ) {
            let mut b = L2Book::with_capacity(INSTR, 8);
            for op in &ops {
                let kind = match *op {
                    Op::Clear => MarketEventKind::Clear,
                    Op::Level(s, p, q) => level(s, p, q),
                };
                b.apply(&ev(INSTR, kind)).unwrap();
                prop_assert!(!b.is_crossed());
                if let Some(spread) = b.spread() {
                    prop_assert!(spread.raw() > 0);
                }
            }
        }
    }
}
