//! The simulated venue of a backtest: its own copy of each recorded book, our resting
//! orders with their place in the queue, and fills by the queue model.

use crate::model::QueueModel;
use hft_book::L2Book;
use hft_core::{
    ExecId, InstrumentSpec, Liquidity, MarketEvent, MarketEventKind, Nanos, OrderCommand,
    OrderKind, OrderReport, OrderReportKind, Price, Qty, RejectReason, Side, TimeInForce,
};

/// Levels per side the backtest's books (the venue's and the engines') are sized for.
/// Recorded depth streams update levels far from the touch (Binance's reach half and
/// twice the price), and a book sized this deep indexes nearly all of them directly
/// (a window of 16 ticks per level); memory is committed only where levels land.
pub const BOOK_LEVELS: usize = 4_096;

/// One of our orders resting at the venue.
#[derive(Clone, Copy, Debug)]
struct Resting {
    cmd: OrderCommand,
    side: Side,
    price: Price,
    leaves: i64,
    /// Quantity ahead of it at its price.
    ahead: i64,
    /// When it reached the venue.
    arrived: Nanos,
}

/// A fill with what the report needs beyond the venue report.
#[derive(Clone, Copy, Debug)]
pub struct FillRecord {
    /// The report sent to the engine.
    pub report: OrderReport,
    /// Time from the order's arrival at the venue to this fill.
    pub queue_wait: Nanos,
    /// Twice the venue's mid when it filled, for attribution.
    pub mid_x2: Option<i64>,
}

/// The backtest venue for all instruments.
pub struct Exchange {
    specs: Vec<InstrumentSpec>,
    books: Vec<L2Book>,
    orders: Vec<Resting>,
    model: QueueModel,
    exec_seq: u64,
    /// Venue messages after which an instrument's recorded book was crossed.
    crossed: Vec<u64>,
    /// Reports produced by the last call, in order.
    pub out: Vec<FillOrReport>,
}

/// What the venue produced.
#[derive(Clone, Copy, Debug)]
pub enum FillOrReport {
    /// A fill.
    Fill(FillRecord),
    /// Any other report.
    Report(OrderReport),
}

impl Exchange {
    /// A venue for `specs` with queue model `model`.
    pub fn new(specs: Vec<InstrumentSpec>, model: QueueModel) -> Self {
        let n = specs.len();
        Self {
            books: specs
                .iter()
                .map(|s| L2Book::for_spec(s, BOOK_LEVELS))
                .collect(),
            specs,
            orders: Vec::with_capacity(64),
            model,
            exec_seq: 0,
            crossed: vec![0; n],
            out: Vec::with_capacity(64),
        }
    }

    /// Venue messages after which each instrument's recorded book was crossed: bad
    /// data the report must show (fills against a crossed book mean little).
    pub fn crossed(&self) -> &[u64] {
        &self.crossed
    }

    /// Applies a recorded event at venue time `t`.
    ///
    /// The book is the venue's only at the end of a message: between the levels of
    /// one depth diff it can be crossed for a moment that never existed at the venue.
    /// So resting orders the book trades through fill when a message ends.
    #[inline(always)]
    pub fn on_market(&mut self, ev: &MarketEvent, t: Nanos) {
        let i = ev.instrument.index();
        self.apply_market(ev, t);
        if ev.is_last() && i < self.books.len() {
            let book = &self.books[i];
            let (bid, ask) = (book.best_bid(), book.best_ask());
            if let (Some((b, _)), Some((a, _))) = (bid, ask) {
                self.crossed[i] += u64::from(b >= a);
            }
            if !self.orders.is_empty() {
                self.fill_crossed(i, bid, ask, t);
            }
        }
    }

    fn apply_market(&mut self, ev: &MarketEvent, t: Nanos) {
        let i = ev.instrument.index();
        let Some(book) = self.books.get_mut(i) else {
            return;
        };
        match ev.kind {
            MarketEventKind::Level { side, price, qty } if self.orders.is_empty() => {
                let _ = book.apply_level(side, price, qty);
            }
            MarketEventKind::Level { side, price, qty } => {
                // The level's old size matters only to our orders resting there.
                let ours = self
                    .orders
                    .iter()
                    .any(|o| o.cmd.instrument.index() == i && o.side == side && o.price == price);
                let before = if ours {
                    book.qty_at(side, price).raw()
                } else {
                    0
                };
                let _ = book.apply(ev);
                let after = qty.raw();
                if ours && after < before {
                    for o in self.orders.iter_mut() {
                        if o.cmd.instrument.index() == i && o.side == side && o.price == price {
                            o.ahead = self.model.on_cancel(o.ahead, o.leaves, before, after);
                        }
                    }
                }
            }
            MarketEventKind::Trade {
                aggressor,
                price,
                qty,
            } => {
                let mut left = qty.raw();
                let mut k = 0;
                while k < self.orders.len() {
                    let o = self.orders[k];
                    // Only orders on the passive side of the trade.
                    if o.cmd.instrument.index() != i || o.side == aggressor {
                        k += 1;
                        continue;
                    }
                    let through = match o.side {
                        Side::Buy => price < o.price,
                        Side::Sell => price > o.price,
                    };
                    let take = if through {
                        o.leaves
                    } else if price == o.price {
                        // The trade eats the queue ahead first.
                        let past = left - o.ahead;
                        self.orders[k].ahead = (o.ahead - left).max(0);
                        past.clamp(0, o.leaves)
                    } else {
                        0
                    };
                    if !through && price == o.price {
                        left = (left - o.ahead - take).max(0);
                    }
                    if take > 0 && self.fill_resting(k, take, t) {
                        continue;
                    }
                    k += 1;
                }
            }
            MarketEventKind::Clear | MarketEventKind::Quote { .. } => {
                let _ = book.apply(ev);
            }
        }
    }

    /// Our resting orders that the public book now trades through fill at their price.
    fn fill_crossed(
        &mut self,
        i: usize,
        bid: Option<(Price, Qty)>,
        ask: Option<(Price, Qty)>,
        t: Nanos,
    ) {
        let mut k = 0;
        while k < self.orders.len() {
            let o = self.orders[k];
            let crossed = o.cmd.instrument.index() == i
                && match o.side {
                    Side::Buy => ask.is_some_and(|(p, _)| p < o.price),
                    Side::Sell => bid.is_some_and(|(p, _)| p > o.price),
                };
            if crossed && self.fill_resting(k, o.leaves, t) {
                continue;
            }
            k += 1;
        }
    }

    /// Fills `qty` of resting order `k`; true when it left the book.
    fn fill_resting(&mut self, k: usize, qty: i64, t: Nanos) -> bool {
        let o = self.orders[k];
        let leaves = o.leaves - qty;
        self.fill(
            &o.cmd,
            o.side,
            o.price,
            Qty(qty),
            Qty(leaves),
            Liquidity::Maker,
            t,
            t.saturating_sub(o.arrived),
        );
        if leaves == 0 {
            self.orders.swap_remove(k);
            true
        } else {
            self.orders[k].leaves = leaves;
            false
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn fill(
        &mut self,
        cmd: &OrderCommand,
        side: Side,
        price: Price,
        qty: Qty,
        leaves: Qty,
        liquidity: Liquidity,
        t: Nanos,
        queue_wait: Nanos,
    ) {
        self.exec_seq += 1;
        let spec = &self.specs[cmd.instrument.index()];
        let report = hft_exec::Execution {
            exec_id: ExecId(self.exec_seq),
            side,
            price,
            qty,
            leaves,
            liquidity,
        }
        .report(spec, cmd, t);
        let mid_x2 = self.books[cmd.instrument.index()].mid_x2();
        self.out.push(FillOrReport::Fill(FillRecord {
            report,
            queue_wait,
            mid_x2,
        }));
    }

    fn report(&mut self, cmd: &OrderCommand, t: Nanos, kind: OrderReportKind) {
        self.out.push(FillOrReport::Report(OrderReport {
            ts: t,
            instrument: cmd.instrument,
            cl_ord_id: cmd.cl_ord_id,
            kind,
        }));
    }

    /// An order command reaches the venue at `t`.
    pub fn submit(&mut self, cmd: &OrderCommand, t: Nanos) {
        let i = cmd.instrument.index();
        let Some(spec) = self.specs.get(i) else {
            self.report(cmd, t, OrderReportKind::Rejected(RejectReason::Malformed));
            return;
        };
        match cmd.kind {
            OrderKind::Cancel => match self
                .orders
                .iter()
                .position(|o| o.cmd.cl_ord_id == cmd.cl_ord_id)
            {
                Some(k) => {
                    self.orders.swap_remove(k);
                    self.report(cmd, t, OrderReportKind::Canceled);
                }
                None => self.report(
                    cmd,
                    t,
                    OrderReportKind::CancelRejected(RejectReason::UnknownOrder),
                ),
            },
            OrderKind::New {
                side,
                price,
                qty,
                tif,
                post_only,
            } => {
                if let Err(v) = spec.check_order(price, qty) {
                    self.report(cmd, t, OrderReportKind::Rejected(RejectReason::Spec(v)));
                    return;
                }
                let (levels, n) = hft_exec::takeable(&self.books[i], side, price);
                let crosses = |p: Price| match side {
                    Side::Buy => p <= price,
                    Side::Sell => p >= price,
                };
                // Self-trade prevention: never cross our own resting order.
                let self_cross = self.orders.iter().any(|o| {
                    o.cmd.instrument == cmd.instrument && o.side != side && crosses(o.price)
                });
                if post_only && n > 0 {
                    self.report(
                        cmd,
                        t,
                        OrderReportKind::Rejected(RejectReason::PostOnlyWouldCross),
                    );
                    return;
                }
                if self_cross {
                    self.report(cmd, t, OrderReportKind::Rejected(RejectReason::SelfTrade));
                    return;
                }
                self.report(cmd, t, OrderReportKind::Accepted);
                let mut leaves = qty.raw();
                for &(p, avail) in &levels[..n] {
                    if leaves == 0 {
                        break;
                    }
                    let take = leaves.min(avail.raw());
                    leaves -= take;
                    self.fill(cmd, side, p, Qty(take), Qty(leaves), Liquidity::Taker, t, 0);
                }
                if leaves == 0 {
                    return;
                }
                if tif == TimeInForce::Ioc {
                    self.report(cmd, t, OrderReportKind::Canceled);
                    return;
                }
                let ahead = self.books[i].qty_at(side, price).raw();
                self.orders.push(Resting {
                    cmd: *cmd,
                    side,
                    price,
                    leaves,
                    ahead,
                    arrived: t,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hft_core::{ClientOrderId, FLAG_LAST, InstrumentId, StrategyId};

    fn ev(kind: MarketEventKind) -> MarketEvent {
        MarketEvent {
            ts_exchange: 0,
            ts_recv: 0,
            seq: 0,
            instrument: InstrumentId(0),
            flags: FLAG_LAST,
            kind,
        }
    }

    fn buy(seq: u64, price: i64, qty: i64, post_only: bool) -> OrderCommand {
        OrderCommand {
            ts: 0,
            tick_ts: 0,
            instrument: InstrumentId(0),
            cl_ord_id: ClientOrderId::new(StrategyId(0), seq),
            epoch: 0,
            kind: OrderKind::New {
                side: Side::Buy,
                price: Price(price),
                qty: Qty(qty),
                tif: TimeInForce::Gtc,
                post_only,
            },
        }
    }

    fn fills(x: &mut Exchange) -> Vec<(i64, i64, Liquidity, Nanos)> {
        x.out
            .drain(..)
            .filter_map(|o| match o {
                FillOrReport::Fill(f) => match f.report.kind {
                    OrderReportKind::Fill(fl) => {
                        Some((fl.price.raw(), fl.qty.raw(), fl.liquidity, f.queue_wait))
                    }
                    _ => None,
                },
                FillOrReport::Report(_) => None,
            })
            .collect()
    }

    #[test]
    fn risk_averse_queue_fills_only_after_the_volume_ahead_traded() {
        let spec = InstrumentSpec::new(InstrumentId(0), "X", 0, 0, Price(1), Qty(1));
        let mut x = Exchange::new(vec![spec], QueueModel::RiskAverse);
        let lvl = |side, p, q| MarketEventKind::Level {
            side,
            price: Price(p),
            qty: Qty(q),
        };
        x.on_market(&ev(lvl(Side::Buy, 99, 5)), 0);
        x.on_market(&ev(lvl(Side::Sell, 101, 5)), 0);
        assert_eq!(x.crossed(), &[0]);
        x.submit(&buy(1, 99, 3, true), 10);
        assert!(fills(&mut x).is_empty(), "rests behind 5");
        let sell = |q| MarketEventKind::Trade {
            aggressor: Side::Sell,
            price: Price(99),
            qty: Qty(q),
        };
        x.on_market(&ev(sell(4)), 20);
        assert!(fills(&mut x).is_empty(), "1 still ahead");
        // Cancels at the level do not move a risk-averse queue...
        x.on_market(&ev(lvl(Side::Buy, 99, 4)), 25);
        x.on_market(&ev(sell(3)), 30);
        // ... so of this trade 1 goes to the order ahead and 2 to ours.
        assert_eq!(fills(&mut x), vec![(99, 2, Liquidity::Maker, 20)]);
        // A trade through the price fills the rest.
        x.on_market(
            &ev(MarketEventKind::Trade {
                aggressor: Side::Sell,
                price: Price(98),
                qty: Qty(1),
            }),
            40,
        );
        assert_eq!(fills(&mut x), vec![(99, 1, Liquidity::Maker, 30)]);
        // Post-only that would cross is refused; a taker walks the book.
        x.submit(&buy(2, 101, 1, true), 50);
        assert!(matches!(
            x.out.pop(),
            Some(FillOrReport::Report(OrderReport {
                kind: OrderReportKind::Rejected(RejectReason::PostOnlyWouldCross),
                ..
            }))
        ));
        x.submit(&buy(3, 101, 7, false), 60);
        assert_eq!(fills(&mut x), vec![(101, 5, Liquidity::Taker, 0)]);
        // Its remainder rests at 101; a sell that would meet it is a self-trade.
        let sell_cmd = OrderCommand {
            cl_ord_id: ClientOrderId::new(StrategyId(0), 4),
            kind: OrderKind::New {
                side: Side::Sell,
                price: Price(100),
                qty: Qty(1),
                tif: TimeInForce::Gtc,
                post_only: false,
            },
            ..buy(4, 0, 1, false)
        };
        x.submit(&sell_cmd, 70);
        // Bad data is counted: a bid above the ask after a message.
        x.on_market(&ev(lvl(Side::Buy, 150, 1)), 80);
        assert_eq!(x.crossed(), &[1]);
        assert!(matches!(
            x.out.pop(),
            Some(FillOrReport::Report(OrderReport {
                kind: OrderReportKind::Rejected(RejectReason::SelfTrade),
                ..
            }))
        ));
    }
}
