//! A price-time-priority matching engine: one FIFO queue per price level, orders kept in
//! a slab with intrusive links, so adds, cancels and fills are O(1) after the level is
//! found and a strategy's order keeps its honest place in the queue.

use hft_core::{ClientOrderId, Price, Qty, Side};
use std::collections::HashMap;

const NIL: u32 = u32::MAX;

/// Who owns a resting order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Owner {
    /// Simulated background participant, by simulator reference.
    Sim(u64),
    /// One of our strategies, by client order id.
    Client(ClientOrderId),
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    owner: Owner,
    side: Side,
    leaves: Qty,
    prev: u32,
    next: u32,
    level_price: i64,
}

#[derive(Clone, Copy, Debug)]
struct Level {
    price: Price,
    total: Qty,
    head: u32,
    tail: u32,
}

/// One execution produced by matching.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trade {
    /// Resting order.
    pub maker: Owner,
    /// Incoming order.
    pub taker: Owner,
    /// Side of the incoming order.
    pub taker_side: Side,
    /// Execution price (the maker's).
    pub price: Price,
    /// Executed quantity.
    pub qty: Qty,
    /// Maker's remaining quantity after this trade.
    pub maker_leaves: Qty,
}

/// Receives what a matching step did, in order.
pub trait MatchSink {
    /// An execution.
    fn trade(&mut self, t: &Trade);
    /// A level's total changed (0 = level gone).
    fn level(&mut self, side: Side, price: Price, total: Qty);
}

/// Outcome of submitting an order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubmitResult {
    /// Quantity executed at once.
    pub filled: Qty,
    /// Quantity left resting (0 for IOC or when fully filled).
    pub resting: Qty,
}

/// The order book of one instrument at the venue.
#[derive(Debug)]
pub struct MatchingBook {
    /// Per side, sorted with the best level at the end.
    sides: [Vec<Level>; 2],
    slots: Vec<Slot>,
    free: Vec<u32>,
    index: HashMap<Owner, u32>,
}

impl Default for MatchingBook {
    fn default() -> Self {
        Self::new()
    }
}

impl MatchingBook {
    /// An empty book with room for a few thousand orders.
    pub fn new() -> Self {
        Self {
            sides: [Vec::with_capacity(1024), Vec::with_capacity(1024)],
            slots: Vec::with_capacity(8192),
            free: Vec::with_capacity(8192),
            index: HashMap::with_capacity(8192),
        }
    }

    /// Best price and total quantity of a side.
    pub fn best(&self, side: Side) -> Option<(Price, Qty)> {
        self.sides[side.index()].last().map(|l| (l.price, l.total))
    }

    /// Mid price rounded down to a raw unit, if both sides exist.
    pub fn mid(&self) -> Option<Price> {
        let (b, _) = self.best(Side::Buy)?;
        let (a, _) = self.best(Side::Sell)?;
        Some(Price((b.raw() + a.raw()).div_euclid(2)))
    }

    /// Whether an order is resting.
    pub fn contains(&self, owner: Owner) -> bool {
        self.index.contains_key(&owner)
    }

    /// Levels of a side from best outward (price, total).
    pub fn levels(&self, side: Side) -> impl Iterator<Item = (Price, Qty)> + '_ {
        self.sides[side.index()]
            .iter()
            .rev()
            .map(|l| (l.price, l.total))
    }

    /// Quantity queued ahead of a resting order at its level.
    pub fn queue_ahead(&self, owner: Owner) -> Option<Qty> {
        let slot = *self.index.get(&owner)?;
        let mut ahead = 0;
        let mut cur = self.slots[slot as usize].prev;
        while cur != NIL {
            ahead += self.slots[cur as usize].leaves.raw();
            cur = self.slots[cur as usize].prev;
        }
        Some(Qty(ahead))
    }

    /// Would an order at `price` on `side` execute against the book?
    pub fn crosses(&self, side: Side, price: Price) -> bool {
        match (side, self.best(side.opposite())) {
            (Side::Buy, Some((ask, _))) => price >= ask,
            (Side::Sell, Some((bid, _))) => price <= bid,
            (_, None) => false,
        }
    }

    /// Matches an order against the opposite side (limit `price`, or no limit for
    /// `None`) and rests the remainder when `rest` is set.
    pub fn submit(
        &mut self,
        owner: Owner,
        side: Side,
        price: Option<Price>,
        qty: Qty,
        rest: bool,
        sink: &mut impl MatchSink,
    ) -> SubmitResult {
        let mut left = qty.raw();
        let opp = side.opposite().index();
        while left > 0 {
            let Some(level) = self.sides[opp].last_mut() else {
                break;
            };
            let crosses = match (side, price) {
                (_, None) => true,
                (Side::Buy, Some(p)) => p >= level.price,
                (Side::Sell, Some(p)) => p <= level.price,
            };
            if !crosses {
                break;
            }
            let level_price = level.price;
            while left > 0 && level.head != NIL {
                let h = level.head as usize;
                let take = left.min(self.slots[h].leaves.raw());
                left -= take;
                self.slots[h].leaves = Qty(self.slots[h].leaves.raw() - take);
                level.total = Qty(level.total.raw() - take);
                let maker_leaves = self.slots[h].leaves;
                sink.trade(&Trade {
                    maker: self.slots[h].owner,
                    taker: owner,
                    taker_side: side,
                    price: level_price,
                    qty: Qty(take),
                    maker_leaves,
                });
                if maker_leaves.raw() == 0 {
                    let next = self.slots[h].next;
                    level.head = next;
                    if next == NIL {
                        level.tail = NIL;
                    } else {
                        self.slots[next as usize].prev = NIL;
                    }
                    self.index.remove(&self.slots[h].owner);
                    self.free.push(h as u32);
                }
            }
            sink.level(side.opposite(), level_price, level.total);
            if level.head == NIL {
                self.sides[opp].pop();
            }
        }
        let filled = Qty(qty.raw() - left);
        let resting = match (rest, price) {
            (true, Some(p)) if left > 0 => {
                self.insert(owner, side, p, Qty(left), sink);
                Qty(left)
            }
            _ => Qty::ZERO,
        };
        SubmitResult { filled, resting }
    }

    fn insert(
        &mut self,
        owner: Owner,
        side: Side,
        price: Price,
        qty: Qty,
        sink: &mut impl MatchSink,
    ) {
        let slot = Slot {
            owner,
            side,
            leaves: qty,
            prev: NIL,
            next: NIL,
            level_price: price.raw(),
        };
        let idx = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = slot;
                i
            }
            None => {
                self.slots.push(slot);
                (self.slots.len() - 1) as u32
            }
        };
        self.index.insert(owner, idx);
        let levels = &mut self.sides[side.index()];
        // Bids ascending and asks descending, so the best is last for both.
        let pos = match side {
            Side::Buy => levels.binary_search_by(|l| l.price.cmp(&price)),
            Side::Sell => levels.binary_search_by(|l| price.cmp(&l.price)),
        };
        let level = match pos {
            Ok(i) => &mut levels[i],
            Err(i) => {
                levels.insert(
                    i,
                    Level {
                        price,
                        total: Qty::ZERO,
                        head: NIL,
                        tail: NIL,
                    },
                );
                &mut levels[i]
            }
        };
        if level.tail == NIL {
            level.head = idx;
        } else {
            self.slots[level.tail as usize].next = idx;
            self.slots[idx as usize].prev = level.tail;
        }
        level.tail = idx;
        level.total = Qty(level.total.raw() + qty.raw());
        sink.level(side, price, level.total);
    }

    /// Removes a resting order; returns its remaining quantity, or `None` if unknown.
    pub fn cancel(&mut self, owner: Owner, sink: &mut impl MatchSink) -> Option<Qty> {
        let idx = self.index.remove(&owner)?;
        let s = self.slots[idx as usize];
        let levels = &mut self.sides[s.side.index()];
        let pos = match s.side {
            Side::Buy => levels.binary_search_by(|l| l.price.raw().cmp(&s.level_price)),
            Side::Sell => levels.binary_search_by(|l| s.level_price.cmp(&l.price.raw())),
        };
        let Ok(li) = pos else {
            debug_assert!(false, "resting order without its level");
            return None;
        };
        let level = &mut levels[li];
        if s.prev == NIL {
            level.head = s.next;
        } else {
            self.slots[s.prev as usize].next = s.next;
        }
        if s.next == NIL {
            level.tail = s.prev;
        } else {
            self.slots[s.next as usize].prev = s.prev;
        }
        level.total = Qty(level.total.raw() - s.leaves.raw());
        let (price, total) = (level.price, level.total);
        if level.head == NIL {
            levels.remove(li);
        }
        self.free.push(idx);
        sink.level(s.side, price, total);
        Some(s.leaves)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Rec {
        trades: Vec<Trade>,
        levels: Vec<(Side, Price, Qty)>,
    }
    impl MatchSink for Rec {
        fn trade(&mut self, t: &Trade) {
            self.trades.push(*t);
        }
        fn level(&mut self, side: Side, price: Price, total: Qty) {
            self.levels.push((side, price, total));
        }
    }

    fn cl(n: u64) -> Owner {
        Owner::Client(ClientOrderId(n))
    }

    #[test]
    fn fifo_within_a_level() {
        let mut b = MatchingBook::new();
        let mut r = Rec::default();
        b.submit(
            Owner::Sim(1),
            Side::Sell,
            Some(Price(100)),
            Qty(5),
            true,
            &mut r,
        );
        b.submit(cl(1), Side::Sell, Some(Price(100)), Qty(3), true, &mut r);
        assert_eq!(b.queue_ahead(cl(1)), Some(Qty(5)));
        // 4 lots take from the first order only: ours does not fill at touch.
        b.submit(Owner::Sim(2), Side::Buy, None, Qty(4), false, &mut r);
        assert!(r.trades.iter().all(|t| t.maker == Owner::Sim(1)));
        assert_eq!(b.queue_ahead(cl(1)), Some(Qty(1)));
        r.trades.clear();
        b.submit(
            Owner::Sim(3),
            Side::Buy,
            Some(Price(100)),
            Qty(3),
            true,
            &mut r,
        );
        assert_eq!(r.trades.len(), 2);
        assert_eq!(r.trades[1].maker, cl(1));
        assert_eq!(r.trades[1].qty, Qty(2));
        assert_eq!(r.trades[1].maker_leaves, Qty(1));
        assert_eq!(b.best(Side::Sell), Some((Price(100), Qty(1))));
    }

    #[test]
    fn sweep_multiple_levels_and_rest_remainder() {
        let mut b = MatchingBook::new();
        let mut r = Rec::default();
        for (i, p) in [101, 102, 103].iter().enumerate() {
            b.submit(
                Owner::Sim(i as u64),
                Side::Sell,
                Some(Price(*p)),
                Qty(2),
                true,
                &mut r,
            );
        }
        let res = b.submit(cl(9), Side::Buy, Some(Price(102)), Qty(7), true, &mut r);
        assert_eq!(
            res,
            SubmitResult {
                filled: Qty(4),
                resting: Qty(3)
            }
        );
        assert_eq!(b.best(Side::Buy), Some((Price(102), Qty(3))));
        assert_eq!(b.best(Side::Sell), Some((Price(103), Qty(2))));
    }

    #[test]
    fn cancel_unlinks_from_the_middle() {
        let mut b = MatchingBook::new();
        let mut r = Rec::default();
        for i in 0..3 {
            b.submit(cl(i), Side::Buy, Some(Price(99)), Qty(1), true, &mut r);
        }
        assert_eq!(b.cancel(cl(1), &mut r), Some(Qty(1)));
        assert_eq!(b.cancel(cl(1), &mut r), None);
        assert_eq!(b.queue_ahead(cl(2)), Some(Qty(1)));
        assert_eq!(b.best(Side::Buy), Some((Price(99), Qty(2))));
        b.cancel(cl(0), &mut r);
        b.cancel(cl(2), &mut r);
        assert_eq!(b.best(Side::Buy), None);
    }
}
