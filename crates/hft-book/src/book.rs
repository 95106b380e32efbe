//! The price-level book: two [`Ladder`]s, one per side (see `ladder.rs` for how a
//! side stores its levels), and the queries strategies and venues ask of them.

use crate::error::BookError;
use crate::ladder::Ladder;
use hft_core::{
    InstrumentId, InstrumentSpec, MarketEvent, MarketEventKind, Price, Qty, Side, div_round,
};

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
///
/// Speed: levels within a window of ticks around the touch are set by index, so
/// give the book the instrument's tick ([`with_tick`](Self::with_tick)); the window
/// spans sixteen ticks per level of capacity. Levels off the grid or beyond the window
/// are still kept exactly, in a sorted store.
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
        Self::with_tick(instrument, Price(1), levels_per_side)
    }

    /// As [`with_capacity`](Self::with_capacity), for prices on a grid of `tick` raw
    /// units, which lets a window of `16 * levels_per_side` ticks around the touch be
    /// indexed directly. A non-positive `tick` is taken as 1.
    pub fn with_tick(instrument: InstrumentId, tick: Price, levels_per_side: usize) -> Self {
        let window = levels_per_side.saturating_mul(16).clamp(64, 1 << 20);
        let side = |s: Side| Ladder::new(s.sign(), tick.raw().max(1), window, levels_per_side);
        Self {
            instrument,
            sides: [side(Side::Buy), side(Side::Sell)],
        }
    }

    /// A book for `spec`'s instrument on its tick grid.
    pub fn for_spec(spec: &InstrumentSpec, levels_per_side: usize) -> Self {
        Self::with_tick(spec.id, spec.tick_size, levels_per_side)
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
            // An order event is followed by the level events it amounts to.
            MarketEventKind::Trade { .. }
            | MarketEventKind::Quote { .. }
            | MarketEventKind::Order { .. } => Ok(()),
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
        self.side(side).best_first()
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
        Qty(self
            .side(side)
            .best_first()
            .take(n_levels)
            .fold(0i64, |acc, (_, q)| acc.saturating_add(q.raw())))
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
        b.sides.each_ref().map(Ladder::capacities)
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

        /// Prices over a range far wider than the window, on and off the tick grid,
        /// drifting like a market: the window must move and levels must cross between
        /// its two stores without any answer changing.
        #[test]
        fn windowed_book_matches_model_across_moves(
            steps in prop::collection::vec(
                (side(), -40i64..=40, 0i64..=3, 0u8..20),
                0..400,
            ),
            tick in prop_oneof![1i64..=7, Just(1i64 << 40), Just(i64::MAX)],
            capacity in 0usize..40,
        ) {
            let mut b = L2Book::with_tick(INSTR, Price(tick), capacity);
            let mut m = Model::default();
            let mut centre = 5_000i64;
            for &(s, offset, q, kind) in &steps {
                let op = match kind {
                    0 => Op::Clear,
                    // A jump: the market gaps far away.
                    1 => {
                        centre = (centre + offset * 97).max(100);
                        continue;
                    }
                    2 => {
                        centre = (centre + offset).max(100);
                        continue;
                    }
                    // Off-grid or on-grid prices near the centre.
                    _ => Op::Level(s, centre + offset * i64::from(kind % 3 + 1), q),
                };
                let got = match op {
                    Op::Clear => b.apply(&ev(INSTR, MarketEventKind::Clear)),
                    Op::Level(s, p, q) => b.apply_level(s, Price(p), Qty(q)),
                };
                prop_assert_eq!(got.is_ok(), m.apply(&op).is_ok(), "{:?}", op);
                for s in [Side::Buy, Side::Sell] {
                    let want = m.levels(s);
                    let got: Vec<_> = b.levels(s).map(|(p, q)| (p.raw(), q.raw())).collect();
                    prop_assert_eq!(&got, &want);
                    prop_assert_eq!(b.level_count(s), want.len());
                    for &(p, q) in &want {
                        prop_assert_eq!(b.qty_at(s, Price(p)), Qty(q));
                    }
                    let probe = centre + 41 * 3;
                    let q = m.sides[s.index()].get(&probe).copied().unwrap_or(0);
                    prop_assert_eq!(b.qty_at(s, Price(probe)), Qty(q));
                }
            }
        }

        /// Levels at the very top of the price range, where the window's end and
        /// `i64::MAX` meet.
        #[test]
        fn extreme_prices_match_the_model(
            ops in prop::collection::vec(
                (side(), 0i64..40, 0i64..=2),
                0..200,
            ),
            tick in prop_oneof![Just(1i64), Just(7i64), Just(i64::MAX)],
        ) {
            let mut b = L2Book::with_tick(INSTR, Price(tick), 0);
            let mut m = Model::default();
            for &(s, down, q) in &ops {
                let op = Op::Level(s, i64::MAX - down * tick.min(1 << 20), q);
                let Op::Level(_, p, _) = op else { unreachable!() };
                prop_assert_eq!(b.apply_level(s, Price(p), Qty(q)).is_ok(), m.apply(&op).is_ok());
                for s in [Side::Buy, Side::Sell] {
                    let want = m.levels(s);
                    let got: Vec<_> = b.levels(s).map(|(p, q)| (p.raw(), q.raw())).collect();
                    prop_assert_eq!(&got, &want);
                    prop_assert_eq!(b.qty_at(s, Price(p)), Qty(m.sides[s.index()].get(&p).copied().unwrap_or(0)));
                }
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
