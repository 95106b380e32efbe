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
use hft_core::{InstrumentId, Price, Qty, Side};
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

/// An order-by-order action as market-by-order feeds send it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MboAction {
    /// A new order rests.
    Add,
    /// `size` of the order is cancelled (the rest stays).
    Cancel,
    /// The order now has this price and size.
    Modify,
    /// A resting order traded (`size` executed). On feeds that also send the book change
    /// as its own cancel or modify (Databento/CME), pass those and not the fill.
    Fill,
    /// A trade print: no book change.
    Trade,
    /// The book is cleared (start of a snapshot or a reset).
    Clear,
}

impl MboAction {
    /// From Databento's action character (`A`, `C`, `M`, `F`, `T`, `R`).
    pub fn from_databento(c: u8) -> Option<Self> {
        Some(match c {
            b'A' => MboAction::Add,
            b'C' => MboAction::Cancel,
            b'M' => MboAction::Modify,
            b'F' => MboAction::Fill,
            b'T' => MboAction::Trade,
            b'R' => MboAction::Clear,
            _ => return None,
        })
    }
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
            }
        }
    }
}
