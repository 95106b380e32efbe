//! The order-by-order (L3) book: every resting order with its place in its level's
//! time-priority queue, built from market-by-order feeds such as Databento MBO.
//!
//! What an L3 feed gives that L2 cannot is where an order stands in the queue: the
//! backtester's queue models and fill simulation need the quantity ahead of an order,
//! and the L2 view of the book ([`L3Book::levels`]) falls out of it exactly.
//!
//! Priority follows the common exchange rules (and Databento's book semantics): an
//! order keeps its place when its size is reduced, and goes to the back of the queue
//! when its price changes or its size increases.

use crate::error::BookError;
use hft_core::{
    FLAG_LAST, FLAG_SNAPSHOT, InstrumentId, MarketEvent, MarketEventKind, MboAction, Price, Qty,
    Side,
};
use std::collections::{BTreeMap, HashMap};

/// One resting order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestingOrder {
    /// Side.
    pub side: Side,
    /// Limit price.
    pub price: Price,
    /// Open quantity (> 0).
    pub qty: Qty,
    /// Time priority: lower is earlier in its level's queue.
    priority: u64,
}

impl RestingOrder {
    /// Its time priority: a new order (or one that lost its place) is behind every
    /// order with a lower one. An order joining at [`L3Book::next_priority`] is behind
    /// all orders resting now and ahead of all that come later.
    pub const fn priority(&self) -> u64 {
        self.priority
    }
}

/// Where an order stands in its level's queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueuePosition {
    /// Orders ahead of it at its price.
    pub orders_ahead: u32,
    /// Their total open quantity.
    pub qty_ahead: Qty,
    /// The level's total quantity, this order included.
    pub level_qty: Qty,
}

/// One price level: total quantity and the queue in priority order.
#[derive(Clone, Debug, Default)]
struct Level {
    qty: i64,
    queue: BTreeMap<u64, u64>,
}

/// Why an order-by-order update was refused; the book is unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum L3Error {
    /// The price or quantity cannot be booked.
    #[error(transparent)]
    Level(#[from] BookError),
    /// An add for an order id that already rests.
    #[error(
        "order {0} is already in the book: a venue never reuses a live order id, so an add was replayed or a cancel lost; resynchronise from a snapshot"
    )]
    DuplicateOrder(u64),
    /// An add of nothing.
    #[error("order {0} is added with size 0: a resting order has a positive size")]
    EmptyOrder(u64),
    /// A cancel, modify or execution of an order the book does not hold.
    #[error(
        "order {0} is not in the book: its add was lost or it was already removed; resynchronise from a snapshot"
    )]
    UnknownOrder(u64),
    /// More cancelled or executed than the order has open.
    #[error("order {order}: {requested} (raw) cancelled or executed but only {open} (raw) open")]
    Overfill {
        /// The order.
        order: u64,
        /// Quantity requested.
        requested: i64,
        /// Quantity open.
        open: i64,
    },
}

/// The order-by-order book of one instrument.
#[derive(Clone, Debug)]
pub struct L3Book {
    instrument: InstrumentId,
    orders: HashMap<u64, RestingOrder>,
    bids: BTreeMap<i64, Level>,
    asks: BTreeMap<i64, Level>,
    next_priority: u64,
}

impl L3Book {
    /// An empty book with room for `orders` resting orders before it reallocates.
    pub fn with_capacity(instrument: InstrumentId, orders: usize) -> Self {
        Self {
            instrument,
            orders: HashMap::with_capacity(orders),
            bids: BTreeMap::new(),
            asks: BTreeMap::new(),
            next_priority: 0,
        }
    }

    /// The instrument.
    pub fn instrument(&self) -> InstrumentId {
        self.instrument
    }

    /// Resting orders.
    pub fn order_count(&self) -> usize {
        self.orders.len()
    }

    /// A resting order.
    pub fn order(&self, id: u64) -> Option<&RestingOrder> {
        self.orders.get(&id)
    }

    /// Removes every order.
    pub fn clear(&mut self) {
        self.orders.clear();
        self.bids.clear();
        self.asks.clear();
    }

    fn side_mut(&mut self, side: Side) -> &mut BTreeMap<i64, Level> {
        match side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        }
    }

    fn side(&self, side: Side) -> &BTreeMap<i64, Level> {
        match side {
            Side::Buy => &self.bids,
            Side::Sell => &self.asks,
        }
    }

    /// Rests a new order at the back of its level's queue.
    pub fn add(&mut self, id: u64, side: Side, price: Price, qty: Qty) -> Result<(), L3Error> {
        check(side, price, qty)?;
        if qty.is_zero() {
            return Err(L3Error::EmptyOrder(id));
        }
        if self.orders.contains_key(&id) {
            return Err(L3Error::DuplicateOrder(id));
        }
        self.insert(id, side, price, qty);
        Ok(())
    }

    fn insert(&mut self, id: u64, side: Side, price: Price, qty: Qty) {
        let priority = self.next_priority;
        self.next_priority += 1;
        self.orders.insert(
            id,
            RestingOrder {
                side,
                price,
                qty,
                priority,
            },
        );
        let level = self.side_mut(side).entry(price.raw()).or_default();
        level.qty += qty.raw();
        level.queue.insert(priority, id);
    }

    fn remove(&mut self, id: u64) -> Option<RestingOrder> {
        let o = self.orders.remove(&id)?;
        let book = self.side_mut(o.side);
        if let Some(level) = book.get_mut(&o.price.raw()) {
            level.qty -= o.qty.raw();
            level.queue.remove(&o.priority);
            if level.queue.is_empty() {
                book.remove(&o.price.raw());
            }
        }
        Some(o)
    }

    /// Takes `qty` off an order (cancel or execution); it keeps its place, and leaves
    /// the book at zero.
    pub fn reduce(&mut self, id: u64, qty: Qty) -> Result<(), L3Error> {
        let o = *self.orders.get(&id).ok_or(L3Error::UnknownOrder(id))?;
        if qty.raw() < 0 || qty.raw() > o.qty.raw() {
            return Err(L3Error::Overfill {
                order: id,
                requested: qty.raw(),
                open: o.qty.raw(),
            });
        }
        if qty == o.qty {
            self.remove(id);
            return Ok(());
        }
        if let Some(level) = self.side_mut(o.side).get_mut(&o.price.raw()) {
            level.qty -= qty.raw();
        }
        if let Some(r) = self.orders.get_mut(&id) {
            r.qty = Qty(o.qty.raw() - qty.raw());
        }
        Ok(())
    }

    /// Changes an order's price and size: a smaller size at the same price keeps its
    /// place, a new price or a larger size goes to the back of the queue.
    pub fn modify(&mut self, id: u64, price: Price, qty: Qty) -> Result<(), L3Error> {
        let o = *self.orders.get(&id).ok_or(L3Error::UnknownOrder(id))?;
        check(o.side, price, qty)?;
        if qty.is_zero() {
            self.remove(id);
            return Ok(());
        }
        if price == o.price && qty.raw() <= o.qty.raw() {
            return self.reduce(id, Qty(o.qty.raw() - qty.raw()));
        }
        self.remove(id);
        self.insert(id, o.side, price, qty);
        Ok(())
    }

    /// Applies one market-by-order record. `Fill` reduces the resting order; use
    /// `book_fills = false` for feeds that send the book change separately (Databento).
    pub fn apply(
        &mut self,
        action: MboAction,
        id: u64,
        side: Option<Side>,
        price: Price,
        qty: Qty,
        book_fills: bool,
    ) -> Result<(), L3Error> {
        match action {
            MboAction::Add => {
                let side = side.ok_or(L3Error::UnknownOrder(id))?;
                self.add(id, side, price, qty)
            }
            MboAction::Cancel => self.reduce(id, qty),
            MboAction::Modify => match (self.orders.contains_key(&id), side) {
                // Some feeds announce an order by modifying it (e.g. after a snapshot
                // that missed it): book it as an add.
                (false, Some(side)) => self.add(id, side, price, qty),
                _ => self.modify(id, price, qty),
            },
            MboAction::Fill if book_fills => self.reduce(id, qty),
            MboAction::Fill | MboAction::Trade => Ok(()),
            MboAction::Clear => {
                self.clear();
                Ok(())
            }
        }
    }

    /// The priority the next order to join (or to lose its place) will get.
    pub const fn next_priority(&self) -> u64 {
        self.next_priority
    }

    /// Where order `id` stands in its queue.
    pub fn queue_position(&self, id: u64) -> Option<QueuePosition> {
        let o = self.orders.get(&id)?;
        let level = self.side(o.side).get(&o.price.raw())?;
        let (mut orders_ahead, mut qty_ahead) = (0u32, 0i64);
        for (_, ahead) in level.queue.range(..o.priority) {
            orders_ahead += 1;
            qty_ahead += self.orders.get(ahead).map_or(0, |a| a.qty.raw());
        }
        Some(QueuePosition {
            orders_ahead,
            qty_ahead: Qty(qty_ahead),
            level_qty: Qty(level.qty),
        })
    }

    /// Best price, total quantity and order count of a side.
    pub fn best(&self, side: Side) -> Option<(Price, Qty, usize)> {
        let level = match side {
            Side::Buy => self.bids.iter().next_back(),
            Side::Sell => self.asks.iter().next(),
        };
        level.map(|(p, l)| (Price(*p), Qty(l.qty), l.queue.len()))
    }

    /// Resting orders with their ids, bids best first and then asks best first, each
    /// level in queue order: the book as a snapshot lists it, so that replaying the
    /// list as adds into an empty book rebuilds it, queue places included.
    pub fn orders(&self) -> impl Iterator<Item = (u64, RestingOrder)> + '_ {
        self.bids
            .values()
            .rev()
            .chain(self.asks.values())
            .flat_map(|l| l.queue.values())
            .filter_map(|id| self.orders.get(id).map(|o| (*id, *o)))
    }

    /// The L2 view of a side, best first: price, total quantity, order count.
    pub fn levels(&self, side: Side) -> Box<dyn Iterator<Item = (Price, Qty, usize)> + '_> {
        let f = |(p, l): (&i64, &Level)| (Price(*p), Qty(l.qty), l.queue.len());
        match side {
            Side::Buy => Box::new(self.bids.iter().rev().map(f)),
            Side::Sell => Box::new(self.asks.iter().map(f)),
        }
    }

    /// Total quantity resting at `price` (zero when no level): after an update, the L2
    /// level event that the update amounts to.
    pub fn level_qty(&self, side: Side, price: Price) -> Qty {
        Qty(self.side(side).get(&price.raw()).map_or(0, |l| l.qty))
    }

    /// Price levels on a side.
    pub fn level_count(&self, side: Side) -> usize {
        self.side(side).len()
    }

    /// True when the best bid is at or above the best ask.
    pub fn is_crossed(&self) -> bool {
        matches!(
            (self.best(Side::Buy), self.best(Side::Sell)),
            (Some((b, ..)), Some((a, ..))) if b >= a
        )
    }
}

fn check(side: Side, price: Price, qty: Qty) -> Result<(), BookError> {
    if price.raw() <= 0 {
        return Err(BookError::BadPrice { side, price });
    }
    if qty.raw() < 0 {
        return Err(BookError::NegativeQty { side, price, qty });
    }
    Ok(())
}

/// Turns market-by-order events into what L2 consumers read: each order's add,
/// cancel, modify, execution or clear is passed on as its `Order` event, followed by
/// the `Level` events it amounts to (the order's old level and its new one) or, for a
/// clear, by a `Clear` that starts a snapshot; a trade print becomes a `Trade` (and is
/// dropped when it names no aggressor and ends no message). With it, books, strategies and venues built for L2 data
/// run on MBO data unchanged, and the L3 detail stays in the stream for those that
/// want it.
///
/// The flags of the record (its `FLAG_LAST`) go to the last event it becomes, so a
/// consumer still sees a consistent book only at the end of a venue message.
#[derive(Clone, Debug)]
pub struct MboToL2 {
    book: L3Book,
    refused: u64,
    /// Inside a snapshot (its records carry `FLAG_SNAPSHOT`).
    in_snapshot: bool,
}

impl MboToL2 {
    /// An expander for one instrument's MBO stream.
    pub fn new(instrument: InstrumentId) -> Self {
        Self {
            book: L3Book::with_capacity(instrument, 4096),
            refused: 0,
            in_snapshot: false,
        }
    }

    /// The order-by-order book built so far.
    pub fn book(&self) -> &L3Book {
        &self.book
    }

    /// Records the book refused (a cancel of an order added before the data began, a
    /// duplicate add): counted, never fatal, the book stays as it was.
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// Expands `ev` into `out`; events other than `Order` pass through unchanged.
    pub fn push(&mut self, ev: &MarketEvent, out: &mut impl FnMut(MarketEvent)) {
        let MarketEventKind::Order {
            action,
            side,
            order_id,
            price,
            qty,
        } = ev.kind
        else {
            out(*ev);
            return;
        };
        let with = |kind, flags| MarketEvent { kind, flags, ..*ev };
        let inner = ev.flags & !FLAG_LAST;
        let snapshot = ev.flags & FLAG_SNAPSHOT != 0;
        if snapshot && !self.in_snapshot && action != MboAction::Clear {
            // A snapshot that does not open with a clear (Databento's files begin
            // with the day's resting orders so): it still replaces the book.
            self.book.clear();
            out(with(MarketEventKind::Clear, inner));
        }
        // A snapshot ends with its last record: one that follows it starts a new one
        // (and replaces the book again), even with no other record between them.
        self.in_snapshot = (snapshot && !ev.is_last()) || action == MboAction::Clear;
        match action {
            MboAction::Clear => {
                self.book.clear();
                out(with(ev.kind, inner));
                out(with(MarketEventKind::Clear, ev.flags | FLAG_SNAPSHOT));
                return;
            }
            MboAction::Trade => {
                if let Some(aggressor) = side {
                    out(with(
                        MarketEventKind::Trade {
                            aggressor,
                            price,
                            qty,
                        },
                        ev.flags,
                    ));
                } else if ev.is_last() {
                    // A print with no aggressor (an auction) changes nothing for L2
                    // consumers, but the message still ends here.
                    out(*ev);
                }
                return;
            }
            MboAction::Fill => {
                out(*ev);
                return;
            }
            MboAction::Add | MboAction::Cancel | MboAction::Modify => {}
        }
        let before = self.book.order(order_id).map(|o| (o.side, o.price));
        if self
            .book
            .apply(action, order_id, side, price, qty, false)
            .is_err()
        {
            self.refused += 1;
        }
        let after = self.book.order(order_id).map(|o| (o.side, o.price));
        let levels = match (before, after) {
            (Some(b), Some(a)) if a != b => [Some(b), Some(a)],
            (Some(b), _) => [Some(b), None],
            (None, a) => [a, None],
        };
        let n = levels.iter().flatten().count();
        // Refused with no level to show, the order event itself ends the message.
        out(with(ev.kind, if n == 0 { ev.flags } else { inner }));
        for (k, (side, price)) in levels.into_iter().flatten().enumerate() {
            let flags = if k + 1 == n { ev.flags } else { inner };
            let qty = self.book.level_qty(side, price);
            out(with(MarketEventKind::Level { side, price, qty }, flags));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn book() -> L3Book {
        L3Book::with_capacity(InstrumentId(0), 16)
    }

    #[test]
    fn queue_position_follows_time_priority_and_its_rules() {
        let mut b = book();
        b.add(1, Side::Buy, Price(100), Qty(5)).unwrap();
        b.add(2, Side::Buy, Price(100), Qty(3)).unwrap();
        b.add(3, Side::Buy, Price(100), Qty(2)).unwrap();
        let pos = |b: &L3Book, id| b.queue_position(id).unwrap();
        assert_eq!(
            pos(&b, 3),
            QueuePosition {
                orders_ahead: 2,
                qty_ahead: Qty(8),
                level_qty: Qty(10)
            }
        );
        // A partial cancel keeps the place; a size increase loses it.
        b.reduce(1, Qty(4)).unwrap();
        assert_eq!(pos(&b, 3).qty_ahead, Qty(4));
        b.modify(2, Price(100), Qty(6)).unwrap();
        assert_eq!(pos(&b, 2).orders_ahead, 2);
        assert_eq!(pos(&b, 3).qty_ahead, Qty(1));
        // A smaller size keeps it.
        b.modify(3, Price(100), Qty(1)).unwrap();
        assert_eq!(pos(&b, 3).orders_ahead, 1);
        assert_eq!(b.best(Side::Buy), Some((Price(100), Qty(8), 3)));
        // A full execution removes the order.
        b.apply(MboAction::Fill, 1, None, Price(100), Qty(1), true)
            .unwrap();
        assert!(b.order(1).is_none());
        assert_eq!(pos(&b, 3).orders_ahead, 0);
    }

    /// Two snapshots back to back, neither opening with a clear: the second replaces
    /// the book the first built (a replay that starts from a snapshot of its own, just
    /// before the data's next one, relies on this).
    #[test]
    fn a_snapshot_right_after_another_replaces_the_book() {
        let mut x = MboToL2::new(InstrumentId(0));
        let snap = |id, price, last: bool| MarketEvent {
            ts_exchange: 1,
            ts_recv: 1,
            seq: 1,
            instrument: InstrumentId(0),
            flags: FLAG_SNAPSHOT | if last { FLAG_LAST } else { 0 },
            kind: MarketEventKind::Order {
                action: MboAction::Add,
                side: Some(Side::Buy),
                order_id: id,
                price: Price(price),
                qty: Qty(1),
            },
        };
        for e in [
            snap(1, 100, false),
            snap(2, 99, true),
            snap(2, 98, false),
            snap(3, 97, true),
        ] {
            x.push(&e, &mut |_| {});
        }
        assert_eq!(
            x.refused(),
            0,
            "order 2 of the first snapshot is not a duplicate"
        );
        let levels: Vec<i64> = x
            .book()
            .levels(Side::Buy)
            .map(|(p, _, _)| p.raw())
            .collect();
        assert_eq!(levels, vec![98, 97]);
    }

    #[test]
    fn mbo_records_become_the_level_events_they_amount_to() {
        let mut x = MboToL2::new(InstrumentId(3));
        let rec = |action, id, side, price, qty, flags| MarketEvent {
            ts_exchange: 1,
            ts_recv: 2,
            seq: 3,
            instrument: InstrumentId(3),
            flags,
            kind: MarketEventKind::Order {
                action,
                side,
                order_id: id,
                price: Price(price),
                qty: Qty(qty),
            },
        };
        let run = |x: &mut MboToL2, e: MarketEvent| {
            let mut v = Vec::new();
            x.push(&e, &mut |e| v.push((e.kind, e.flags)));
            v
        };
        let lvl = |side, p, q| MarketEventKind::Level {
            side,
            price: Price(p),
            qty: Qty(q),
        };
        let (b, s) = (Some(Side::Buy), Some(Side::Sell));
        let add = rec(MboAction::Add, 1, b, 100, 5, 0);
        assert_eq!(
            run(&mut x, add),
            vec![(add.kind, 0), (lvl(Side::Buy, 100, 5), 0)]
        );
        let add2 = rec(MboAction::Add, 2, b, 100, 2, FLAG_LAST);
        assert_eq!(
            run(&mut x, add2),
            vec![(add2.kind, 0), (lvl(Side::Buy, 100, 7), FLAG_LAST)],
            "the record's FLAG_LAST goes to its last event"
        );
        // A price change touches two levels.
        let m = rec(MboAction::Modify, 1, b, 99, 5, FLAG_LAST);
        assert_eq!(
            run(&mut x, m),
            vec![
                (m.kind, 0),
                (lvl(Side::Buy, 100, 2), 0),
                (lvl(Side::Buy, 99, 5), FLAG_LAST)
            ]
        );
        // An execution changes no level (the venue's cancel that follows does); a
        // trade print becomes a trade; a cancel of an unknown order is refused and
        // counted, and still ends the message.
        let f = rec(MboAction::Fill, 2, b, 100, 1, 0);
        assert_eq!(run(&mut x, f), vec![(f.kind, 0)]);
        let t = rec(MboAction::Trade, 0, s, 100, 1, 0);
        let print = MarketEventKind::Trade {
            aggressor: Side::Sell,
            price: Price(100),
            qty: Qty(1),
        };
        assert_eq!(run(&mut x, t), vec![(print, 0)]);
        let c = rec(MboAction::Cancel, 42, b, 100, 1, FLAG_LAST);
        assert_eq!(run(&mut x, c), vec![(c.kind, FLAG_LAST)]);
        assert_eq!(x.refused(), 1);
        // A snapshot that opens without a clear gets one.
        let snap = rec(MboAction::Add, 7, s, 101, 1, FLAG_SNAPSHOT);
        assert_eq!(
            run(&mut x, snap),
            vec![
                (MarketEventKind::Clear, FLAG_SNAPSHOT),
                (snap.kind, FLAG_SNAPSHOT),
                (lvl(Side::Sell, 101, 1), FLAG_SNAPSHOT)
            ]
        );
        let snap2 = rec(MboAction::Add, 8, s, 101, 1, FLAG_SNAPSHOT | FLAG_LAST);
        assert_eq!(run(&mut x, snap2).len(), 2, "no second clear inside it");
        let r = rec(MboAction::Clear, 0, None, 0, 0, 0);
        assert_eq!(
            run(&mut x, r),
            vec![(r.kind, 0), (MarketEventKind::Clear, FLAG_SNAPSHOT)]
        );
        assert_eq!(x.book().order_count(), 0);
        // Other events pass through.
        let q = MarketEvent { kind: print, ..add };
        assert_eq!(run(&mut x, q), vec![(print, 0)]);
    }

    #[test]
    fn bad_updates_are_refused_and_change_nothing() {
        let mut b = book();
        b.add(1, Side::Sell, Price(10), Qty(2)).unwrap();
        assert_eq!(
            b.add(1, Side::Sell, Price(11), Qty(1)),
            Err(L3Error::DuplicateOrder(1))
        );
        assert_eq!(b.reduce(9, Qty(1)), Err(L3Error::UnknownOrder(9)));
        assert!(matches!(b.reduce(1, Qty(3)), Err(L3Error::Overfill { .. })));
        assert!(b.add(2, Side::Sell, Price(0), Qty(1)).is_err());
        assert!(b.add(3, Side::Sell, Price(5), Qty(-1)).is_err());
        assert_eq!(b.order_count(), 1);
        assert_eq!(b.best(Side::Sell), Some((Price(10), Qty(2), 1)));
    }

    #[derive(Clone, Debug)]
    enum Op {
        Add(u64, bool, i64, i64),
        Reduce(u64, i64),
        Modify(u64, i64, i64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..40u64, any::<bool>(), 95..106i64, 1..20i64)
                .prop_map(|(i, b, p, q)| Op::Add(i, b, p, q)),
            (0..40u64, 0..20i64).prop_map(|(i, q)| Op::Reduce(i, q)),
            (0..40u64, 95..106i64, 0..20i64).prop_map(|(i, p, q)| Op::Modify(i, p, q)),
        ]
    }

    proptest! {
        /// Whatever the sequence of (valid or invalid) updates, every level's quantity
        /// and count equal the sum over its orders, and queue positions add up.
        #[test]
        fn levels_always_equal_the_sum_of_their_orders(ops in proptest::collection::vec(op(), 1..300)) {
            let mut b = book();
            for op in ops {
                let _ = match op {
                    Op::Add(i, buy, p, q) => b.add(i, if buy { Side::Buy } else { Side::Sell }, Price(p), Qty(q)),
                    Op::Reduce(i, q) => b.reduce(i, Qty(q)),
                    Op::Modify(i, p, q) => b.modify(i, Price(p), Qty(q)),
                };
                for side in [Side::Buy, Side::Sell] {
                    let mut expect: BTreeMap<i64, (i64, usize)> = BTreeMap::new();
                    for o in b.orders.values().filter(|o| o.side == side) {
                        prop_assert!(o.qty.raw() > 0);
                        let e = expect.entry(o.price.raw()).or_default();
                        e.0 += o.qty.raw();
                        e.1 += 1;
                    }
                    let got: BTreeMap<i64, (i64, usize)> =
                        b.levels(side).map(|(p, q, n)| (p.raw(), (q.raw(), n))).collect();
                    prop_assert_eq!(got, expect);
                }
                for (&id, o) in &b.orders {
                    let pos = b.queue_position(id).unwrap();
                    prop_assert!(pos.qty_ahead.raw() + o.qty.raw() <= pos.level_qty.raw());
                }
                // The snapshot listing, added in order to an empty book, rebuilds it
                // with every order in its queue place.
                let mut copy = book();
                for (id, o) in b.orders() {
                    prop_assert!(copy.add(id, o.side, o.price, o.qty).is_ok());
                }
                prop_assert_eq!(copy.order_count(), b.order_count());
                for &id in b.orders.keys() {
                    prop_assert_eq!(copy.queue_position(id), b.queue_position(id));
                }
            }
        }
    }
}
