//! The simulated venue: the market simulator's order flow and our strategies' orders
//! meet in one price-time-priority matching engine per instrument. Its public output is
//! market data (levels and trades); its private output is order reports for our orders.

use crate::matching::{MatchSink, MatchingBook, Owner, Trade};
use hft_core::{
    ExecId, FLAG_LAST, FLAG_SNAPSHOT, Fill, InstrumentId, InstrumentSpec, Liquidity, MarketEvent,
    MarketEventKind, Nanos, OrderCommand, OrderKind, OrderReport, OrderReportKind, Price, Qty,
    RejectReason, Side, TimeInForce,
};
use hft_feed::{FlowAction, FlowEvent, MarketSimulator, SimParams};

/// Where the venue's output goes.
pub trait VenueOutput {
    /// Public market data.
    fn market(&mut self, event: &MarketEvent);
    /// A report for one of our orders.
    fn report(&mut self, report: &OrderReport);
}

/// Venue name of the built-in simulator: fills it executes are booked as ("sim",
/// exec id), and exec ids are unique within it.
pub const SIM_VENUE: &str = "sim";

/// Simulated exchange for all instruments of a node.
#[derive(Debug)]
pub struct SimVenue {
    specs: Vec<InstrumentSpec>,
    books: Vec<MatchingBook>,
    sim: MarketSimulator,
    md_seq: Vec<u64>,
    min_epoch: u64,
    tape: Tape,
    flow_events: u64,
}

/// What one step produced, buffered until the step is complete.
#[derive(Debug)]
struct Tape {
    md: Vec<MarketEvent>,
    reports: Vec<OrderReport>,
    exec_seq: u64,
}

/// Collects what one matching step did into market data and reports.
struct StepSink<'a> {
    spec: &'a InstrumentSpec,
    now: Nanos,
    tape: &'a mut Tape,
    taker_left: i64,
}

impl<'a> StepSink<'a> {
    fn new(spec: &'a InstrumentSpec, now: Nanos, tape: &'a mut Tape, taker_qty: Qty) -> Self {
        Self {
            spec,
            now,
            tape,
            taker_left: taker_qty.raw(),
        }
    }

    fn event(&self, kind: MarketEventKind) -> MarketEvent {
        MarketEvent {
            ts_exchange: self.now,
            ts_recv: 0,
            seq: 0,
            instrument: self.spec.id,
            flags: 0,
            kind,
        }
    }

    fn fill(&mut self, owner: Owner, side: Side, t: &Trade, leaves: Qty, liquidity: Liquidity) {
        if let Owner::Client(id) = owner {
            self.tape.exec_seq += 1;
            let fee = self.spec.fee(t.price, t.qty, liquidity == Liquidity::Maker);
            self.tape.reports.push(OrderReport {
                ts: self.now,
                instrument: self.spec.id,
                cl_ord_id: id,
                kind: OrderReportKind::Fill(Fill {
                    exec_id: ExecId(self.tape.exec_seq),
                    side,
                    price: t.price,
                    qty: t.qty,
                    leaves,
                    liquidity,
                    fee,
                }),
            });
        }
    }
}

impl MatchSink for StepSink<'_> {
    fn trade(&mut self, t: &Trade) {
        self.taker_left -= t.qty.raw();
        let ev = self.event(MarketEventKind::Trade {
            aggressor: t.taker_side,
            price: t.price,
            qty: t.qty,
        });
        self.tape.md.push(ev);
        self.fill(
            t.maker,
            t.taker_side.opposite(),
            t,
            t.maker_leaves,
            Liquidity::Maker,
        );
        let left = Qty(self.taker_left);
        self.fill(t.taker, t.taker_side, t, left, Liquidity::Taker);
    }

    fn level(&mut self, side: Side, price: Price, total: Qty) {
        let ev = self.event(MarketEventKind::Level {
            side,
            price,
            qty: total,
        });
        self.tape.md.push(ev);
    }
}

impl SimVenue {
    /// A venue whose simulator starts at `start` with `seed`, its books pre-filled with
    /// `seed_levels` levels per side.
    pub fn new(
        seed: u64,
        start: Nanos,
        instruments: &[(InstrumentSpec, SimParams)],
        seed_levels: u32,
    ) -> Self {
        let mut venue = Self {
            specs: instruments.iter().map(|(s, _)| s.clone()).collect(),
            books: instruments.iter().map(|_| MatchingBook::new()).collect(),
            sim: MarketSimulator::new(seed, start, instruments),
            md_seq: vec![0; instruments.len()],
            min_epoch: 0,
            tape: Tape {
                md: Vec::with_capacity(1024),
                reports: Vec::with_capacity(256),
                exec_seq: 0,
            },
            flow_events: 0,
        };
        for ev in venue.sim.seed_book(seed_levels) {
            venue.apply_flow(&ev, &mut Discard);
        }
        venue
    }

    /// Instruments traded here.
    pub fn specs(&self) -> &[InstrumentSpec] {
        &self.specs
    }

    /// Simulated flow events processed so far.
    pub fn flow_events(&self) -> u64 {
        self.flow_events
    }

    /// Time of the next simulated flow event.
    pub fn next_flow_ts(&self) -> Nanos {
        self.sim.next_ts()
    }

    /// Orders with an epoch below this are refused (fencing of a stale owner).
    pub fn set_min_epoch(&mut self, epoch: u64) {
        self.min_epoch = epoch;
    }

    /// Matching book of an instrument (read-only, for snapshots and tests).
    pub fn book(&self, id: InstrumentId) -> Option<&MatchingBook> {
        self.books.get(id.index())
    }

    /// Number of events `snapshot` would publish right now.
    pub fn snapshot_len(&self) -> usize {
        self.books
            .iter()
            .map(|b| 1 + b.levels(Side::Buy).count() + b.levels(Side::Sell).count())
            .sum()
    }

    /// Publishes a full snapshot of every book: what a late subscriber, or one that lost
    /// messages, needs. A snapshot carries the sequence number of the last incremental
    /// message it includes and does not advance it, so subscribers that did not ask for
    /// it see no gap.
    pub fn snapshot(&mut self, now: Nanos, out: &mut impl VenueOutput) {
        for i in 0..self.books.len() {
            let id = self.specs[i].id;
            let mk = |kind| MarketEvent {
                ts_exchange: now,
                ts_recv: 0,
                seq: 0,
                instrument: id,
                flags: FLAG_SNAPSHOT,
                kind,
            };
            self.tape.md.push(mk(MarketEventKind::Clear));
            for side in [Side::Buy, Side::Sell] {
                for (price, qty) in self.books[i].levels(side) {
                    self.tape
                        .md
                        .push(mk(MarketEventKind::Level { side, price, qty }));
                }
            }
            self.flush(i, out);
        }
    }

    /// Processes the next simulated flow event at its own timestamp.
    pub fn step_flow(&mut self, out: &mut impl VenueOutput) -> Option<Nanos> {
        let books = &self.books;
        let ev = self
            .sim
            .next_event(|id| books.get(id.index()).and_then(MatchingBook::mid))?;
        self.apply_flow(&ev, out);
        Some(ev.ts)
    }

    fn apply_flow(&mut self, ev: &FlowEvent, out: &mut impl VenueOutput) {
        let i = ev.instrument.index();
        self.flow_events += 1;
        let taker_qty = match ev.action {
            FlowAction::Limit { qty, .. } | FlowAction::Market { qty, .. } => qty,
            FlowAction::Cancel { .. } => Qty::ZERO,
        };
        let mut sink = StepSink::new(&self.specs[i], ev.ts, &mut self.tape, taker_qty);
        match ev.action {
            FlowAction::Limit {
                order_ref,
                side,
                price,
                qty,
            } => {
                self.books[i].submit(
                    Owner::Sim(order_ref),
                    side,
                    Some(price),
                    qty,
                    true,
                    &mut sink,
                );
            }
            FlowAction::Market { side, qty } => {
                self.books[i].submit(Owner::Sim(0), side, None, qty, false, &mut sink);
            }
            FlowAction::Cancel { order_ref } => {
                self.books[i].cancel(Owner::Sim(order_ref), &mut sink);
            }
        }
        self.flush(i, out);
    }

    /// Handles one of our order commands arriving at venue time `now`.
    pub fn submit(&mut self, cmd: &OrderCommand, now: Nanos, out: &mut impl VenueOutput) {
        let i = cmd.instrument.index();
        let report = |kind| OrderReport {
            ts: now,
            instrument: cmd.instrument,
            cl_ord_id: cmd.cl_ord_id,
            kind,
        };
        if i >= self.books.len() {
            out.report(&report(OrderReportKind::Rejected(
                RejectReason::UnknownOrder,
            )));
            return;
        }
        let owner = Owner::Client(cmd.cl_ord_id);
        match cmd.kind {
            OrderKind::New {
                side,
                price,
                qty,
                tif,
                post_only,
            } => {
                let reject = if cmd.epoch < self.min_epoch {
                    Some(RejectReason::Fenced)
                } else if let Err(v) = self.specs[i].check_order(price, qty) {
                    Some(RejectReason::Spec(v))
                } else if self.books[i].contains(owner) {
                    Some(RejectReason::DuplicateId)
                } else if post_only && self.books[i].crosses(side, price) {
                    Some(RejectReason::PostOnlyWouldCross)
                } else {
                    None
                };
                if let Some(r) = reject {
                    out.report(&report(OrderReportKind::Rejected(r)));
                    return;
                }
                out.report(&report(OrderReportKind::Accepted));
                let mut sink = StepSink::new(&self.specs[i], now, &mut self.tape, qty);
                let res = self.books[i].submit(
                    owner,
                    side,
                    Some(price),
                    qty,
                    tif == TimeInForce::Gtc,
                    &mut sink,
                );
                if tif == TimeInForce::Ioc && res.filled < qty {
                    self.tape.reports.push(report(OrderReportKind::Canceled));
                }
                self.flush(i, out);
            }
            OrderKind::Cancel => {
                let mut sink = StepSink::new(&self.specs[i], now, &mut self.tape, Qty::ZERO);
                let kind = match self.books[i].cancel(owner, &mut sink) {
                    Some(_) => OrderReportKind::Canceled,
                    None => OrderReportKind::CancelRejected(RejectReason::UnknownOrder),
                };
                self.tape.reports.push(report(kind));
                self.flush(i, out);
            }
        }
    }

    /// Emits the step's market data as one message (one sequence number, last flagged)
    /// and then the order reports, the order a real venue's gateways would show.
    fn flush(&mut self, i: usize, out: &mut impl VenueOutput) {
        if let Some(first) = self.tape.md.first() {
            if first.flags & FLAG_SNAPSHOT == 0 {
                self.md_seq[i] += 1;
            }
            let seq = self.md_seq[i];
            let n = self.tape.md.len();
            for (k, ev) in self.tape.md.iter_mut().enumerate() {
                ev.seq = seq;
                if k + 1 == n {
                    ev.flags |= FLAG_LAST;
                }
                out.market(ev);
            }
            self.tape.md.clear();
        }
        for r in self.tape.reports.drain(..) {
            out.report(&r);
        }
    }
}

/// Drops output (used while pre-filling the books).
struct Discard;

impl VenueOutput for Discard {
    fn market(&mut self, _: &MarketEvent) {}
    fn report(&mut self, _: &OrderReport) {}
}

#[cfg(test)]
mod tests;
