//! The engine of one strategy instance: market event → book → strategy → pre-trade
//! risk → OMS → order command. A plain struct driven by its caller, so the live actor,
//! the deterministic simulation and the benches run exactly the same code.
//!
//! Nothing here allocates per event: books, OMS and the action buffer are pre-sized,
//! and the strategy is called through `catch_unwind`, which costs nothing unless it
//! panics. A panicking strategy is dropped, its orders are cancelled, and the caller
//! decides about a restart.

use hft_book::{CacheSizes, HotCache, L2Book, SequenceTracker, TradeTick};
use hft_core::{
    ClientOrderId, FLAG_SNAPSHOT, Fill, InstrumentId, InstrumentSpec, MarketEventKind, Money,
    Nanos, OpenOrder, OrderCommand, OrderKind, OrderReport, OrderReportKind, OrderStatus, Position,
    Price, Qty, RejectReason, Side, StrategyId, TradingState,
};
use hft_risk::{OrderIntent, PreTradeRisk, RiskContext, RiskReject};
use hft_strategy::{Action, ActionBuffer, Context, ContextParts, NewOrder, Strategy};
use sha2::{Digest, Sha256};
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::oms::{Oms, OmsStats};

/// Where an engine's order commands go: a ring to the venue session, or the
/// deterministic simulation's in-flight queue.
pub trait OrderSink {
    /// Hands a command on; false when the sink is full (the order is then dropped and
    /// counted, never silently lost).
    fn send(&mut self, cmd: &OrderCommand) -> bool;
}

/// A strategy callback panicked; the strategy has been removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StrategyPanic {
    /// The panic message, if it was a string.
    pub message: String,
}

/// Counters of one engine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Market events applied.
    pub events: u64,
    /// Book updates refused (bad price/qty, wrong instrument).
    pub book_errors: u64,
    /// Sequence gaps and stale messages seen.
    pub gaps: u64,
    /// Commands the sink refused.
    pub sink_full: u64,
    /// Strategy panics.
    pub panics: u64,
    /// Reports the OMS refused.
    pub oms_errors: u64,
}

/// Fixed facts about the engine.
#[derive(Clone, Debug)]
pub struct EngineSetup {
    /// Strategy instance id.
    pub strategy: StrategyId,
    /// The instrument whose PnL drives the circuit breaker and exposure.
    pub instrument: InstrumentId,
    /// All instruments of the node, indexed by id.
    pub specs: Vec<InstrumentSpec>,
    /// Levels per side each book is sized for.
    pub book_depth: usize,
    /// Open orders the OMS is sized for.
    pub max_open_orders: usize,
    /// Fencing epoch stamped on every command.
    pub epoch: u64,
    /// What the hot cache keeps per instrument.
    pub cache: CacheSizes,
}

/// Risk refusals held for the strategy between two callbacks.
const REFUSALS: usize = 64;

/// One strategy instance and everything it trades with.
pub struct Engine {
    setup: EngineSetup,
    books: Vec<L2Book>,
    cache: HotCache,
    seqs: Vec<SequenceTracker>,
    last_seq: Vec<u64>,
    stale: Vec<bool>,
    positions: Vec<Position>,
    oms: Oms,
    risk: PreTradeRisk,
    strategy: Option<Box<dyn Strategy>>,
    actions: ActionBuffer,
    next_seq: u64,
    stats: EngineStats,
    hasher: Sha256,
    fills: u64,
    tick_ts: Nanos,
    /// Mark of each instrument at its last mark-to-market.
    marks: Vec<Option<Price>>,
    /// Orders risk refused during the last callback, told to the strategy right
    /// after it (what it asks for then and is refused waits for the next event, so
    /// a strategy that keeps asking cannot loop).
    refused: Vec<(ClientOrderId, InstrumentId)>,
    /// Fill count and risk state at the last mark-to-market: while neither changes
    /// and the mark did not move, exposure and PnL cannot have, so it is skipped.
    marked: Option<(u64, TradingState)>,
}

impl Engine {
    /// An engine without a strategy yet (see [`Engine::install`]).
    pub fn new(setup: EngineSetup, risk: PreTradeRisk) -> Self {
        let n = setup.specs.len();
        Self {
            books: setup
                .specs
                .iter()
                .map(|s| L2Book::for_spec(s, setup.book_depth))
                .collect(),
            cache: HotCache::new(n, setup.cache),
            seqs: (0..n).map(|_| SequenceTracker::new()).collect(),
            last_seq: vec![0; n],
            // Books start empty: nothing is quoted until the first snapshot.
            stale: vec![true; n],
            positions: vec![Position::default(); n],
            oms: Oms::with_capacity(setup.max_open_orders.max(4) * 2),
            actions: ActionBuffer::with_capacity(64),
            setup,
            risk,
            strategy: None,
            next_seq: 0,
            stats: EngineStats::default(),
            hasher: Sha256::new(),
            fills: 0,
            tick_ts: 0,
            marks: vec![None; n],
            refused: Vec::with_capacity(REFUSALS),
            marked: None,
        }
    }

    /// Installs a (new) strategy instance and starts it.
    pub fn install(
        &mut self,
        strategy: Box<dyn Strategy>,
        now: Nanos,
        sink: &mut impl OrderSink,
    ) -> Result<(), StrategyPanic> {
        self.strategy = Some(strategy);
        self.tick_ts = 0;
        self.call(now, sink, |s, ctx| s.on_start(ctx))
    }

    /// True while a strategy is installed (false after a panic until reinstalled).
    pub fn has_strategy(&self) -> bool {
        self.strategy.is_some()
    }

    /// Stamps every later command with `epoch`: the assignment a cluster node trades
    /// under, which venues and the ledger check so that a fenced owner cannot trade.
    pub fn set_epoch(&mut self, epoch: u64) {
        self.setup.epoch = epoch;
    }

    /// Makes the next client order id's sequence number at least `floor` + 1: ids up to
    /// `floor` were used or reserved by an earlier run (the ledger's high-water mark), and
    /// a venue must never see an id twice.
    pub fn continue_order_ids_after(&mut self, floor: u64) {
        self.next_seq = self.next_seq.max(floor);
    }

    /// The last client order sequence number used.
    pub fn last_order_seq(&self) -> u64 {
        self.next_seq
    }

    /// The strategy instance id.
    pub fn id(&self) -> StrategyId {
        self.setup.strategy
    }

    /// Primary instrument.
    pub fn instrument(&self) -> InstrumentId {
        self.setup.instrument
    }

    /// Counters.
    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// OMS counters.
    pub fn oms_stats(&self) -> &OmsStats {
        self.oms.stats()
    }

    /// Open orders.
    pub fn open_orders(&self) -> &[OpenOrder] {
        self.oms.open()
    }

    /// Pre-trade gate (rejections by reason, trading state).
    pub fn risk(&self) -> &PreTradeRisk {
        &self.risk
    }

    /// Replaces the pre-trade risk limits (a configuration reload); the next order is
    /// checked against them.
    pub fn set_risk_limits(&mut self, limits: hft_risk::RiskLimits) {
        self.risk.set_limits(limits);
    }

    /// Changes the trading state (supervisor halts, operator actions).
    pub fn set_trading_state(&mut self, state: TradingState) {
        self.risk.set_state(state);
    }

    /// Starts the engine from a booked position (the ledger's, at start or after a
    /// failover) instead of flat, so risk limits and PnL continue where they were.
    pub fn restore_position(&mut self, id: InstrumentId, position: Position) {
        if let Some(p) = self.positions.get_mut(id.index()) {
            *p = position;
        }
    }

    /// Position in an instrument.
    pub fn position(&self, id: InstrumentId) -> &Position {
        &self.positions[id.index()]
    }

    /// Book of an instrument.
    pub fn book(&self, id: InstrumentId) -> &L2Book {
        &self.books[id.index()]
    }

    /// Every instrument's book, by instrument index: a backtest venue that sees the
    /// market when the engine does reads these instead of keeping a copy.
    pub fn books(&self) -> &[L2Book] {
        &self.books
    }

    /// Twice the mid of an instrument's book (exact in raw units), if both sides are
    /// present: what reports compare execution prices with.
    pub fn mid_x2(&self, id: InstrumentId) -> Option<i64> {
        self.books.get(id.index())?.mid_x2()
    }

    /// Spec of an instrument.
    pub fn spec(&self, id: InstrumentId) -> &InstrumentSpec {
        &self.setup.specs[id.index()]
    }

    /// Mark price of the primary instrument (mid), if known.
    pub fn mark(&self) -> Option<Price> {
        self.books[self.setup.instrument.index()]
            .mid_x2()
            .map(|m| Price(m / 2))
    }

    /// PnL after fees over every instrument the strategy traded, each marked at its
    /// mid (at its cost basis while its book has no mid): a multi-leg strategy's
    /// result is the sum of its legs.
    pub fn pnl(&self) -> Money {
        Money(
            self.positions
                .iter()
                .enumerate()
                .map(|(i, pos)| {
                    let mark = self.books[i].mid_x2().map(|m| Price(m / 2));
                    mark.map_or(pos.realized_net(), |m| {
                        pos.total_pnl(&self.setup.specs[i], m)
                    })
                    .raw()
                })
                .fold(0i64, i64::saturating_add),
        )
    }

    /// PnL after fees of one instrument at its mid.
    pub fn pnl_of(&self, id: InstrumentId) -> Money {
        let i = id.index();
        let (Some(pos), Some(book)) = (self.positions.get(i), self.books.get(i)) else {
            return Money::ZERO;
        };
        book.mid_x2().map_or(pos.realized_net(), |m| {
            pos.total_pnl(&self.setup.specs[i], Price(m / 2))
        })
    }

    /// Fills applied.
    pub fn fill_count(&self) -> u64 {
        self.fills
    }

    /// SHA-256 of the fill sequence so far (strategy, instrument, exec id, side, price,
    /// qty, fee of each fill): equal digests mean identical trading.
    pub fn fills_digest(&self) -> [u8; 32] {
        self.hasher.clone().finalize().into()
    }

    /// Applies one market event; calls the strategy when the event closes a venue message.
    #[inline]
    pub fn on_market(
        &mut self,
        ev: &hft_core::MarketEvent,
        now: Nanos,
        sink: &mut impl OrderSink,
    ) -> Result<(), StrategyPanic> {
        self.on_market_msg(std::slice::from_ref(ev), ev.seq, now, sink)
    }

    /// Applies the events of one venue message (or a part of one, in order), all
    /// numbered `seq`; calls the strategy once if the last event closes the message.
    ///
    /// A backtest hands a depth diff's levels over in one call instead of one call
    /// per level: the per-message work (sequence check, mark-to-market, strategy)
    /// runs once and the levels go straight into the book.
    pub fn on_market_msg(
        &mut self,
        evs: &[hft_core::MarketEvent],
        seq: u64,
        now: Nanos,
        sink: &mut impl OrderSink,
    ) -> Result<(), StrategyPanic> {
        for ev in evs {
            self.absorb(ev, seq, now, sink);
        }
        let Some(last) = evs.last() else {
            return Ok(());
        };
        let i = last.instrument.index();
        if i >= self.books.len() || !last.is_last() || self.stale[i] {
            return Ok(());
        }
        self.mark_to_market(i, now, sink);
        self.tick_ts = last.ts_recv;
        let ev = hft_core::MarketEvent { seq, ..*last };
        self.call(now, sink, |s, ctx| s.on_market(ctx, &ev))
    }

    /// Folds one event, numbered `seq`, into the book, the sequence check and the
    /// hot cache.
    #[inline]
    fn absorb(
        &mut self,
        ev: &hft_core::MarketEvent,
        seq: u64,
        now: Nanos,
        sink: &mut impl OrderSink,
    ) {
        let i = ev.instrument.index();
        if i >= self.books.len() {
            self.stats.book_errors += 1;
            return;
        }
        self.stats.events += 1;
        if ev.flags & FLAG_SNAPSHOT != 0 {
            if ev.kind == MarketEventKind::Clear {
                // A snapshot restarts the sequence at its own number and heals the book.
                self.seqs[i].reset();
                let _ = self.seqs[i].check(seq);
                self.last_seq[i] = seq;
                self.stale[i] = false;
            }
        } else if seq != self.last_seq[i] {
            if self.seqs[i].check(seq).is_err() {
                // Messages were lost: the book cannot be trusted until a snapshot comes.
                // Stop quoting this instrument and pull what rests there.
                self.stats.gaps += 1;
                self.seqs[i].reset();
                let _ = self.seqs[i].check(seq);
                if !self.stale[i] {
                    self.stale[i] = true;
                    self.cancel_instrument(ev.instrument, now, sink);
                }
            }
            self.last_seq[i] = seq;
        }
        if self.books[i].apply(ev).is_err() {
            self.stats.book_errors += 1;
        }
        match ev.kind {
            MarketEventKind::Trade {
                aggressor,
                price,
                qty,
            } => self.cache.record_trade(
                i,
                TradeTick {
                    ts: ev.ts_exchange,
                    price,
                    qty,
                    aggressor,
                },
            ),
            MarketEventKind::Level { .. } | MarketEventKind::Clear if ev.is_last() => {
                self.cache.record_book(i, ev.ts_exchange, &self.books[i]);
            }
            _ => {}
        }
    }

    /// True while an instrument's book waits for a snapshot after a sequence gap.
    pub fn is_stale(&self, id: InstrumentId) -> bool {
        self.stale.get(id.index()).copied().unwrap_or(true)
    }

    /// Applies one venue report for one of our orders.
    #[inline]
    pub fn on_report(
        &mut self,
        r: &OrderReport,
        now: Nanos,
        sink: &mut impl OrderSink,
    ) -> Result<(), StrategyPanic> {
        // Orders a report triggers are not tick-to-order.
        self.tick_ts = 0;
        let order = match self.oms.on_report(r) {
            Ok(Some(o)) => o,
            Ok(None) => return Ok(()),
            Err(_) => {
                self.stats.oms_errors += 1;
                return Ok(());
            }
        };
        match r.kind {
            OrderReportKind::Fill(f) => {
                self.apply_fill(r.instrument, &f);
                if r.instrument.index() < self.books.len() {
                    self.mark_to_market(r.instrument.index(), now, sink);
                }
                self.call(now, sink, |s, ctx| s.on_fill(ctx, &order, &f))
            }
            OrderReportKind::Rejected(_) => {
                self.risk.count_reject(RiskReject::Venue);
                self.call(now, sink, |s, ctx| s.on_order_update(ctx, r))
            }
            _ => self.call(now, sink, |s, ctx| s.on_order_update(ctx, r)),
        }
    }

    /// Periodic timer.
    pub fn on_timer(&mut self, now: Nanos, sink: &mut impl OrderSink) -> Result<(), StrategyPanic> {
        self.tick_ts = 0;
        self.mark_to_market(self.setup.instrument.index(), now, sink);
        self.call(now, sink, |s, ctx| s.on_timer(ctx))
    }

    /// Stops and removes the strategy, then cancels every open order.
    pub fn stop(&mut self, now: Nanos, sink: &mut impl OrderSink) -> Result<(), StrategyPanic> {
        let r = self.call(now, sink, |s, ctx| s.on_stop(ctx));
        self.strategy = None;
        self.cancel_all(now, sink);
        r
    }

    /// Cancels every open order not already being cancelled.
    pub fn cancel_all(&mut self, now: Nanos, sink: &mut impl OrderSink) {
        for i in 0..self.oms.open().len() {
            let id = self.oms.open()[i].cl_ord_id;
            self.send_cancel(id, now, sink);
        }
    }

    fn cancel_instrument(
        &mut self,
        instrument: InstrumentId,
        now: Nanos,
        sink: &mut impl OrderSink,
    ) {
        for i in 0..self.oms.open().len() {
            let o = self.oms.open()[i];
            if o.instrument == instrument {
                self.send_cancel(o.cl_ord_id, now, sink);
            }
        }
    }

    fn apply_fill(&mut self, instrument: InstrumentId, f: &Fill) {
        let i = instrument.index();
        self.positions[i].apply(&self.setup.specs[i], f);
        self.fills += 1;
        self.hasher.update(self.setup.strategy.0.to_le_bytes());
        self.hasher.update(instrument.0.to_le_bytes());
        self.hasher.update(f.exec_id.0.to_le_bytes());
        self.hasher.update([f.side as u8]);
        self.hasher.update(f.price.raw().to_le_bytes());
        self.hasher.update(f.qty.raw().to_le_bytes());
        self.hasher.update(f.fee.raw().to_le_bytes());
    }

    /// Publishes exposure and feeds the circuit breaker; on a trip, open orders that
    /// would not reduce the position are cancelled.
    /// Publishes the strategy's exposure and checks its loss limit after a message of
    /// instrument `i`: gross notional and PnL over every leg, each at its mid.
    fn mark_to_market(&mut self, i: usize, now: Nanos, sink: &mut impl OrderSink) {
        let Some(mark) = self.books[i].mid_x2().map(|m| Price(m / 2)) else {
            return;
        };
        let state = self.risk.state();
        if self.marks[i] == Some(mark) && self.marked == Some((self.fills, state)) {
            return;
        }
        self.marks[i] = Some(mark);
        self.marked = Some((self.fills, state));
        let (mut exposure, mut pnl) = (0i64, 0i64);
        for (j, pos) in self.positions.iter().enumerate() {
            if pos.qty.is_zero() && pos.realized_net().is_zero() {
                continue;
            }
            let spec = &self.setup.specs[j];
            let (e, p) = match self.marks[j] {
                Some(m) => (
                    spec.notional(m, pos.qty).raw().saturating_abs(),
                    pos.total_pnl(spec, m).raw(),
                ),
                None => (0, pos.realized_net().raw()),
            };
            exposure = exposure.saturating_add(e);
            pnl = pnl.saturating_add(p);
        }
        self.risk
            .publish_exposure(self.setup.strategy.index(), Money(exposure));
        if self.risk.on_pnl(Money(pnl)) {
            self.cancel_all(now, sink);
        }
    }

    /// Runs a strategy callback with a context, then executes the actions it queued.
    fn call_once(
        &mut self,
        now: Nanos,
        sink: &mut impl OrderSink,
        f: impl FnOnce(&mut dyn Strategy, &mut Context<'_>),
    ) -> Result<(), StrategyPanic> {
        let Some(strategy) = self.strategy.as_mut() else {
            return Ok(());
        };
        let state = self.risk.state();
        let mut ctx = Context::new(ContextParts {
            now,
            strategy: self.setup.strategy,
            specs: &self.setup.specs,
            books: &self.books,
            cache: &self.cache,
            positions: &self.positions,
            open_orders: self.oms.open(),
            state,
            next_seq: &mut self.next_seq,
            actions: &mut self.actions,
        });
        let outcome = catch_unwind(AssertUnwindSafe(|| f(strategy.as_mut(), &mut ctx)));
        if let Err(payload) = outcome {
            self.actions.drain().for_each(drop);
            self.strategy = None;
            self.stats.panics += 1;
            self.cancel_all(now, sink);
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".to_owned());
            return Err(StrategyPanic { message });
        }
        self.execute_actions(now, sink);
        Ok(())
    }

    /// [`call_once`](Self::call_once), then tells the strategy of the orders risk
    /// refused (the `Context::place` contract: a refusal arrives as an order update).
    fn call(
        &mut self,
        now: Nanos,
        sink: &mut impl OrderSink,
        f: impl FnOnce(&mut dyn Strategy, &mut Context<'_>),
    ) -> Result<(), StrategyPanic> {
        self.call_once(now, sink, f)?;
        for _ in 0..self.refused.len() {
            if self.refused.is_empty() {
                break;
            }
            let (cl_ord_id, instrument) = self.refused.remove(0);
            let report = OrderReport {
                ts: now,
                instrument,
                cl_ord_id,
                kind: OrderReportKind::Rejected(RejectReason::Risk),
            };
            self.call_once(now, sink, |s, ctx| s.on_order_update(ctx, &report))?;
        }
        Ok(())
    }

    fn execute_actions(&mut self, now: Nanos, sink: &mut impl OrderSink) {
        // Index loop: actions are Copy and the buffer is not borrowed across sends.
        let n = self.actions.len();
        for k in 0..n {
            let a = self.actions.get(k);
            match a {
                Action::Place(order) => self.place(order, now, sink),
                Action::Cancel { cl_ord_id } => self.send_cancel(cl_ord_id, now, sink),
            }
        }
        self.actions.clear();
    }

    fn place(&mut self, order: NewOrder, now: Nanos, sink: &mut impl OrderSink) {
        let NewOrder {
            cl_ord_id,
            instrument,
            side,
            price,
            qty,
            tif,
            post_only,
        } = order;
        let i = instrument.index();
        if i >= self.books.len() {
            self.risk.count_reject(RiskReject::Venue);
            return;
        }
        let spec = &self.setup.specs[i];
        let pos = &self.positions[i];
        let reference = if self.stale[i] {
            None
        } else {
            self.books[i].mid_x2().map(|m| Price(m / 2))
        };
        let ctx = RiskContext {
            position: pos.qty,
            open_buy: self.oms.open_qty(instrument, Side::Buy),
            open_sell: self.oms.open_qty(instrument, Side::Sell),
            open_orders: self.oms.open().len() as u32,
            reference,
            exposure: reference.map_or(Money::ZERO, |r| {
                Money(spec.notional(r, pos.qty).raw().saturating_abs())
            }),
        };
        if self
            .risk
            .check(spec, &OrderIntent { side, price, qty }, &ctx, now)
            .is_err()
        {
            // Bounded: beyond this, refusals are only counted.
            if self.refused.len() < REFUSALS {
                self.refused.push((cl_ord_id, instrument));
            }
            return;
        }
        let order = OpenOrder {
            cl_ord_id,
            instrument,
            side,
            price,
            qty,
            filled: Qty::ZERO,
            status: OrderStatus::PendingNew,
            cancel_pending: false,
            sent_ts: now,
        };
        if self.oms.insert(order).is_err() {
            self.stats.oms_errors += 1;
            return;
        }
        let kind = OrderKind::New {
            side,
            price,
            qty,
            tif,
            post_only,
        };
        let cmd = self.command(now, instrument, cl_ord_id, kind);
        if !sink.send(&cmd) {
            self.oms.forget(cl_ord_id);
            self.stats.sink_full += 1;
        }
    }

    /// A command stamped with the decision time, the triggering tick and the epoch.
    #[inline]
    fn command(
        &self,
        now: Nanos,
        instrument: InstrumentId,
        cl_ord_id: ClientOrderId,
        kind: OrderKind,
    ) -> OrderCommand {
        OrderCommand {
            ts: now,
            tick_ts: self.tick_ts,
            instrument,
            cl_ord_id,
            epoch: self.setup.epoch,
            kind,
        }
    }

    fn send_cancel(&mut self, id: ClientOrderId, now: Nanos, sink: &mut impl OrderSink) {
        let Some(o) = self.oms.get(id).copied() else {
            return;
        };
        if !self.oms.mark_cancel_pending(id) {
            return;
        }
        self.risk.on_cancel(now);
        let cmd = self.command(now, o.instrument, id, OrderKind::Cancel);
        if !sink.send(&cmd) {
            self.oms.unmark_cancel_pending(id);
            self.stats.sink_full += 1;
        }
    }
}

#[cfg(test)]
mod tests;
