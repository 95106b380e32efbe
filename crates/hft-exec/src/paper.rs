//! Paper trading on external market data (a recorded file or a live feed): the venue
//! keeps its own copy of the public book, forwards the data to the engines, and fills
//! our orders against it without ever touching the real market.
//!
//! The fill model is deliberately conservative, because a strategy that only looks good
//! under optimistic fills is worse than useless: a marketable order takes the displayed
//! liquidity level by level (taker); a resting order fills (maker) only when a public
//! trade prints *through* its price, since at its own price an unknown queue was ahead of
//! it. The backtester's queue models refine this.
//!
//! Engines expect one sequence number per venue message, without holes unless data was
//! lost; the paper venue numbers the external messages itself, and turns a source's
//! "book invalid" marker (a `Clear` without `FLAG_SNAPSHOT`) into a skipped number, so
//! an engine stops quoting until the source's next snapshot.

use crate::sim_venue::VenueOutput;
use hft_book::L2Book;
use hft_core::{
    ExecId, FLAG_SNAPSHOT, Fill, InstrumentSpec, Liquidity, MarketEvent, MarketEventKind, Nanos,
    OrderCommand, OrderKind, OrderReport, OrderReportKind, Price, Qty, RejectReason, Side,
    TimeInForce,
};

/// Deepest a marketable order walks the displayed book; the rest of it rests (or, for
/// IOC, is cancelled), as no real order sweeps further without moving the market.
pub const TAKE_LEVELS: usize = 16;

/// An execution of one of our orders at a simulated venue, before fees.
#[derive(Clone, Copy, Debug)]
pub struct Execution {
    /// Venue execution id.
    pub exec_id: ExecId,
    /// Side of our order.
    pub side: Side,
    /// Price.
    pub price: Price,
    /// Quantity.
    pub qty: Qty,
    /// Open quantity after it.
    pub leaves: Qty,
    /// Maker or taker.
    pub liquidity: Liquidity,
}

impl Execution {
    /// The fill report for order `cmd` at `ts`, with the instrument's fee.
    pub fn report(&self, spec: &InstrumentSpec, cmd: &OrderCommand, ts: Nanos) -> OrderReport {
        OrderReport {
            ts,
            instrument: cmd.instrument,
            cl_ord_id: cmd.cl_ord_id,
            kind: OrderReportKind::Fill(Fill {
                exec_id: self.exec_id,
                side: self.side,
                price: self.price,
                qty: self.qty,
                leaves: self.leaves,
                liquidity: self.liquidity,
                fee: spec.fee(self.price, self.qty, self.liquidity == Liquidity::Maker),
            }),
        }
    }
}

/// The displayed levels a limit order of `side` at `limit` can take, best first (at
/// most `TAKE_LEVELS`), copied out of `book` so a venue can report fills while it
/// updates itself; the count is 0 when the order is not marketable.
pub fn takeable(book: &L2Book, side: Side, limit: Price) -> ([(Price, Qty); TAKE_LEVELS], usize) {
    let opposite = match side {
        Side::Buy => Side::Sell,
        Side::Sell => Side::Buy,
    };
    let crosses = |p: Price| match side {
        Side::Buy => p <= limit,
        Side::Sell => p >= limit,
    };
    let mut levels = [(Price(0), Qty(0)); TAKE_LEVELS];
    let mut n = 0;
    for l in book
        .levels(opposite)
        .take_while(|(p, _)| crosses(*p))
        .take(TAKE_LEVELS)
    {
        levels[n] = l;
        n += 1;
    }
    (levels, n)
}

/// One of our orders resting at the paper venue.
#[derive(Clone, Copy, Debug)]
struct Resting {
    cmd: OrderCommand,
    side: Side,
    price: Price,
    leaves: Qty,
}

/// Counters of a paper session.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PaperStats {
    /// External events received.
    pub events: u64,
    /// Messages whose book was invalidated by the source (engines went stale).
    pub invalidations: u64,
    /// Our fills.
    pub fills: u64,
    /// Events for instruments the venue was not set up with.
    pub unknown_instrument: u64,
}

/// The paper venue for every instrument of a node.
#[derive(Debug)]
pub struct PaperVenue {
    specs: Vec<InstrumentSpec>,
    books: Vec<L2Book>,
    seq: Vec<u64>,
    /// True when the next event starts a new message (per instrument).
    at_message_start: Vec<bool>,
    orders: Vec<Resting>,
    exec_seq: u64,
    stats: PaperStats,
}

impl PaperVenue {
    /// A paper venue for `specs` (indexed by instrument id), books sized for `depth`
    /// levels per side.
    pub fn new(specs: Vec<InstrumentSpec>, depth: usize) -> Self {
        let n = specs.len();
        Self {
            books: specs.iter().map(|s| L2Book::for_spec(s, depth)).collect(),
            specs,
            seq: vec![0; n],
            at_message_start: vec![true; n],
            orders: Vec::with_capacity(64),
            exec_seq: 0,
            stats: PaperStats::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> PaperStats {
        self.stats
    }

    /// The venue's copy of an instrument's public book.
    pub fn book(&self, i: usize) -> Option<&L2Book> {
        self.books.get(i)
    }

    /// One external event: the book is updated, the event forwarded (renumbered), and
    /// resting orders that a trade printed through are filled.
    pub fn on_market(&mut self, ev: &MarketEvent, now: Nanos, out: &mut impl VenueOutput) {
        let i = ev.instrument.index();
        if i >= self.books.len() {
            self.stats.unknown_instrument += 1;
            return;
        }
        self.stats.events += 1;
        if ev.kind == MarketEventKind::Clear && ev.flags & FLAG_SNAPSHOT == 0 {
            // The source lost the book: skip a number so engines see the gap.
            self.stats.invalidations += 1;
            self.books[i].clear();
            self.seq[i] += 1;
            self.at_message_start[i] = true;
            return;
        }
        if self.at_message_start[i] {
            self.seq[i] += 1;
        }
        self.at_message_start[i] = ev.is_last();
        let _ = self.books[i].apply(ev);
        let mut fwd = *ev;
        fwd.seq = self.seq[i];
        out.market(&fwd);
        if let MarketEventKind::Trade { price, qty, .. } = ev.kind {
            self.fill_through(i, price, qty, now, out);
        }
    }

    /// Resting orders of instrument `i` that a trade at `price` printed through.
    fn fill_through(
        &mut self,
        i: usize,
        price: Price,
        mut qty: Qty,
        now: Nanos,
        out: &mut impl VenueOutput,
    ) {
        let mut k = 0;
        while k < self.orders.len() && qty.raw() > 0 {
            let o = self.orders[k];
            let through = match o.side {
                Side::Buy => price < o.price,
                Side::Sell => price > o.price,
            };
            if o.cmd.instrument.index() != i || !through {
                k += 1;
                continue;
            }
            let take = Qty(o.leaves.raw().min(qty.raw()));
            qty = Qty(qty.raw() - take.raw());
            let leaves = Qty(o.leaves.raw() - take.raw());
            self.fill(
                &o.cmd,
                o.side,
                o.price,
                take,
                leaves,
                Liquidity::Maker,
                now,
                out,
            );
            if leaves.raw() == 0 {
                self.orders.swap_remove(k);
            } else {
                self.orders[k].leaves = leaves;
                k += 1;
            }
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
        now: Nanos,
        out: &mut impl VenueOutput,
    ) {
        self.exec_seq += 1;
        self.stats.fills += 1;
        let spec = &self.specs[cmd.instrument.index()];
        let fill = Execution {
            exec_id: ExecId(self.exec_seq),
            side,
            price,
            qty,
            leaves,
            liquidity,
        };
        out.report(&fill.report(spec, cmd, now));
    }

    /// An order command from an engine.
    pub fn submit(&mut self, cmd: &OrderCommand, now: Nanos, out: &mut impl VenueOutput) {
        let report = |kind| OrderReport {
            ts: now,
            instrument: cmd.instrument,
            cl_ord_id: cmd.cl_ord_id,
            kind,
        };
        let i = cmd.instrument.index();
        let Some(spec) = self.specs.get(i) else {
            out.report(&report(OrderReportKind::Rejected(RejectReason::Malformed)));
            return;
        };
        match cmd.kind {
            OrderKind::Cancel => {
                match self
                    .orders
                    .iter()
                    .position(|o| o.cmd.cl_ord_id == cmd.cl_ord_id)
                {
                    Some(k) => {
                        self.orders.swap_remove(k);
                        out.report(&report(OrderReportKind::Canceled));
                    }
                    None => out.report(&report(OrderReportKind::CancelRejected(
                        RejectReason::UnknownOrder,
                    ))),
                }
            }
            OrderKind::New {
                side,
                price,
                qty,
                tif,
                post_only,
            } => {
                if let Err(v) = spec.check_order(price, qty) {
                    out.report(&report(OrderReportKind::Rejected(RejectReason::Spec(v))));
                    return;
                }
                if self.orders.iter().any(|o| o.cmd.cl_ord_id == cmd.cl_ord_id) {
                    out.report(&report(OrderReportKind::Rejected(
                        RejectReason::DuplicateId,
                    )));
                    return;
                }
                let (levels, n) = takeable(&self.books[i], side, price);
                if post_only && n > 0 {
                    out.report(&report(OrderReportKind::Rejected(
                        RejectReason::PostOnlyWouldCross,
                    )));
                    return;
                }
                out.report(&report(OrderReportKind::Accepted));
                let mut leaves = qty;
                for &(p, avail) in &levels[..n] {
                    if leaves.raw() == 0 {
                        break;
                    }
                    let take = Qty(leaves.raw().min(avail.raw()));
                    leaves = Qty(leaves.raw() - take.raw());
                    self.fill(cmd, side, p, take, leaves, Liquidity::Taker, now, out);
                }
                if leaves.raw() == 0 {
                    return;
                }
                if tif == TimeInForce::Ioc {
                    out.report(&report(OrderReportKind::Canceled));
                    return;
                }
                self.orders.push(Resting {
                    cmd: *cmd,
                    side,
                    price,
                    leaves,
                });
            }
        }
    }

    /// Orders resting.
    pub fn open_orders(&self) -> usize {
        self.orders.len()
    }
}

/// The paper venue fed by a source of external market events (a store replay or a live
/// feed), clocked by the events' receive times: a [`crate::SimSession`] over it runs
/// strategies on real data exactly as it runs them on the simulator.
pub struct PaperMarket<I: Iterator<Item = MarketEvent>> {
    venue: PaperVenue,
    source: I,
    next: Option<MarketEvent>,
}

impl<I: Iterator<Item = MarketEvent>> PaperMarket<I> {
    /// The venue over `source` (its first event is read now).
    pub fn new(venue: PaperVenue, mut source: I) -> Self {
        let next = source.next();
        Self {
            venue,
            source,
            next,
        }
    }

    /// The paper venue.
    pub fn venue(&self) -> &PaperVenue {
        &self.venue
    }
}

impl<I: Iterator<Item = MarketEvent>> crate::sim_session::SessionVenue for PaperMarket<I> {
    fn start(&mut self, _now: Nanos, _out: &mut impl VenueOutput) {}

    fn next_flow_ts(&self) -> Nanos {
        self.next.map_or(Nanos::MAX, |e| e.ts_recv)
    }

    fn step_flow(&mut self, out: &mut impl VenueOutput) {
        if let Some(ev) = self.next.take() {
            self.venue.on_market(&ev, ev.ts_recv, out);
            // A live source blocks here until its next event: nothing else can happen
            // at the paper venue meanwhile.
            self.next = self.source.next();
        }
    }

    fn submit(&mut self, cmd: &OrderCommand, now: Nanos, out: &mut impl VenueOutput) {
        self.venue.submit(cmd, now, out);
    }

    fn exhausted(&self) -> bool {
        self.next.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hft_core::{ClientOrderId, FLAG_LAST, InstrumentId, StrategyId};

    #[derive(Default)]
    struct Out {
        md: Vec<MarketEvent>,
        reports: Vec<OrderReport>,
    }

    impl VenueOutput for Out {
        fn market(&mut self, e: &MarketEvent) {
            self.md.push(*e);
        }
        fn report(&mut self, r: &OrderReport) {
            self.reports.push(*r);
        }
    }

    fn ev(flags: u8, kind: MarketEventKind) -> MarketEvent {
        MarketEvent {
            ts_exchange: 0,
            ts_recv: 0,
            seq: 777,
            instrument: InstrumentId(0),
            flags,
            kind,
        }
    }

    fn new(seq: u64, side: Side, price: i64, qty: i64) -> OrderCommand {
        OrderCommand {
            ts: 0,
            tick_ts: 0,
            instrument: InstrumentId(0),
            cl_ord_id: ClientOrderId::new(StrategyId(0), seq),
            epoch: 0,
            kind: OrderKind::New {
                side,
                price: Price(price),
                qty: Qty(qty),
                tif: TimeInForce::Gtc,
                post_only: false,
            },
        }
    }

    fn fills(out: &Out) -> Vec<(i64, i64, Liquidity)> {
        out.reports
            .iter()
            .filter_map(|r| match r.kind {
                OrderReportKind::Fill(f) => Some((f.price.raw(), f.qty.raw(), f.liquidity)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn takes_displayed_levels_and_fills_resting_only_through() {
        let spec = InstrumentSpec::new(InstrumentId(0), "X", 0, 0, Price(1), Qty(1));
        let mut v = PaperVenue::new(vec![spec], 16);
        let mut out = Out::default();
        let lvl = |side, p, q| MarketEventKind::Level {
            side,
            price: Price(p),
            qty: Qty(q),
        };
        v.on_market(&ev(FLAG_SNAPSHOT, MarketEventKind::Clear), 0, &mut out);
        v.on_market(&ev(FLAG_SNAPSHOT, lvl(Side::Sell, 101, 2)), 0, &mut out);
        v.on_market(
            &ev(FLAG_SNAPSHOT | FLAG_LAST, lvl(Side::Sell, 102, 5)),
            0,
            &mut out,
        );
        assert!(out.md.iter().all(|e| e.seq == 1), "one message, one number");
        // A buy at 102 for 4 takes 2 at 101 and 2 at 102.
        v.submit(&new(1, Side::Buy, 102, 4), 0, &mut out);
        assert_eq!(
            fills(&out),
            vec![(101, 2, Liquidity::Taker), (102, 2, Liquidity::Taker)]
        );
        out.reports.clear();
        // A resting buy at 99: a trade at 99 does not fill it, one at 98 does.
        v.submit(&new(2, Side::Buy, 99, 3), 0, &mut out);
        let trade = |p| MarketEventKind::Trade {
            aggressor: Side::Sell,
            price: Price(p),
            qty: Qty(2),
        };
        v.on_market(&ev(FLAG_LAST, trade(99)), 0, &mut out);
        assert!(fills(&out).is_empty());
        v.on_market(&ev(FLAG_LAST, trade(98)), 0, &mut out);
        assert_eq!(fills(&out), vec![(99, 2, Liquidity::Maker)]);
        assert_eq!(v.open_orders(), 1, "1 left");
        assert_eq!(out.md.last().map(|e| e.seq), Some(3));
        // The source invalidates the book: a number is skipped.
        v.on_market(&ev(FLAG_LAST, MarketEventKind::Clear), 0, &mut out);
        v.on_market(&ev(FLAG_LAST, trade(100)), 0, &mut out);
        assert_eq!(out.md.last().map(|e| e.seq), Some(5));
        assert_eq!(v.stats().invalidations, 1);
    }
}
