//! The hot-path threads of a live node: one gateway thread (venue session + feed
//! fan-out) and one thread per engine, joined by SPSC rings.

use super::actors::EngineMsg;
use crate::ring::{IdleMode, Idler, Parker, RingRx, RingTx};
use hdrhistogram::Histogram;
use hft_core::{
    FLAG_WARMUP, MarketEvent, Nanos, OrderCommand, OrderReport, OrderReportKind, TradingState,
};
use hft_exec::wire::{ORDER_WIRE_LEN, encode_order};
use hft_exec::{OrderSink, StrategySlot, VenueOutput, VenuePort};
use hft_risk::RiskReject;
use hft_strategy::Strategy;
use ractor::ActorRef;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Monotonic nanoseconds since the node started; the venue and engines share it.
#[derive(Clone, Copy, Debug)]
pub struct Clock(Instant);

impl Clock {
    /// A clock starting now.
    pub fn start() -> Self {
        Self(Instant::now())
    }

    /// Nanoseconds since start (a vDSO read, not a syscall).
    #[inline]
    pub fn now(&self) -> Nanos {
        self.0.elapsed().as_nanos() as Nanos
    }
}

/// Live counters of one engine, published by its thread a few times per second.
#[derive(Debug, Default)]
pub struct EngineLive {
    /// Market events applied.
    pub events: AtomicU64,
    /// Orders sent.
    pub orders: AtomicU64,
    /// Fills.
    pub fills: AtomicU64,
    /// Net position, raw units.
    pub position: AtomicI64,
    /// PnL after fees, money raw units.
    pub pnl: AtomicI64,
    /// Rejections by reason (indexed by `RiskReject as usize`).
    pub rejects: [AtomicU64; RiskReject::COUNT],
    /// Strategy restarts after crashes.
    pub restarts: AtomicU64,
    /// Revision of the configuration the engine runs (0: the one it started with).
    pub config_revision: AtomicU64,
    /// Its open orders as of the last timer (for the admin API; the engine thread only
    /// tries the lock, so a reader never delays it).
    pub open_orders: Mutex<Vec<hft_core::OpenOrder>>,
}

/// Counters of the gateway thread.
#[derive(Debug, Default)]
pub struct GatewayLive {
    /// Market events published to engines.
    pub md_published: AtomicU64,
    /// Market events dropped because an engine's ring was full.
    pub md_dropped: AtomicU64,
    /// Orders received from engines.
    pub orders_in: AtomicU64,
    /// Snapshots sent to engines that had lost market data.
    pub md_resyncs: AtomicU64,
    /// Tick-to-order of the last second, ns: p50, p99, p99.9.
    pub latency_ns: [AtomicU64; 3],
    /// Tick-to-order of the last whole second (all engines).
    pub last_second: Mutex<Option<Histogram<u64>>>,
    /// Seconds published into `last_second`.
    pub seconds: AtomicU64,
    /// Set once the venue ended the session (fenced by a newer owner, or the link
    /// broke): the engines behind it must stop.
    pub venue_ended: AtomicBool,
}

/// Control messages to an engine thread (never on the per-event path).
pub enum Control {
    /// Install and start a strategy.
    Install {
        /// The new instance.
        strategy: Box<dyn Strategy>,
        /// True for a restart after a crash.
        restart: bool,
    },
    /// Halt the strategy for good.
    Halt(String),
    /// A configuration reload: new risk limits and, when its parameters changed, a new
    /// strategy instance (the old one's orders are cancelled first).
    Reconfigure {
        /// New pre-trade limits.
        risk: hft_risk::RiskLimits,
        /// The strategy with new parameters.
        strategy: Option<Box<dyn Strategy>>,
        /// The configuration's revision, published once applied.
        revision: u64,
    },
    /// Stop: cancel everything and return.
    Stop,
}

/// Order sink of an engine thread: its ring to the gateway.
struct RingSink<'a>(&'a mut RingTx<OrderCommand>);

impl OrderSink for RingSink<'_> {
    #[inline]
    fn send(&mut self, cmd: &OrderCommand) -> bool {
        self.0.push(*cmd).is_ok()
    }
}

/// Where an engine thread reports a strategy crash: its current `EngineActor`.
pub type CrashTarget = Arc<Mutex<Option<ActorRef<EngineMsg>>>>;

/// Everything an engine thread runs with.
pub struct EngineThread {
    /// The supervised strategy instance.
    pub slot: StrategySlot,
    /// Market data from the feed.
    pub md: RingRx<MarketEvent>,
    /// Reports from the venue session.
    pub reports: RingRx<OrderReport>,
    /// Orders to the venue session.
    pub orders: RingTx<OrderCommand>,
    /// Control from the actors.
    pub control: mpsc::Receiver<Control>,
    /// This thread's parker.
    pub parker: Arc<Parker>,
    /// Shared clock.
    pub clock: Clock,
    /// Strategy timer period.
    pub timer_interval: Nanos,
    /// Live counters.
    pub live: Arc<EngineLive>,
    /// Spin or park when idle.
    pub idle: IdleMode,
    /// Crash notifications.
    pub crash: CrashTarget,
    /// True while replayed history is applied (trading halted for it).
    pub warming: bool,
}

impl EngineThread {
    /// Runs until stopped; returns the slot with its final state.
    pub fn run(mut self) -> StrategySlot {
        self.parker.bind_current();
        let mut next_timer = self.clock.now() + self.timer_interval;
        let mut stopping: Option<Nanos> = None;
        let mut idler = Idler::new(self.idle);
        loop {
            let now = self.clock.now();
            let mut worked = false;
            while let Ok(c) = self.control.try_recv() {
                worked = true;
                self.on_control(c, now, &mut stopping);
            }
            while let Some(r) = self.reports.pop() {
                worked = true;
                let res = self.slot.engine.on_report(
                    &r,
                    self.clock.now(),
                    &mut RingSink(&mut self.orders),
                );
                self.check(res);
            }
            for _ in 0..256 {
                let Some(ev) = self.md.pop() else { break };
                worked = true;
                self.warm_up(&ev);
                let res = self.slot.engine.on_market(
                    &ev,
                    self.clock.now(),
                    &mut RingSink(&mut self.orders),
                );
                self.check(res);
            }
            if now >= next_timer {
                next_timer = now + self.timer_interval;
                let res = self
                    .slot
                    .engine
                    .on_timer(now, &mut RingSink(&mut self.orders));
                self.check(res);
                self.publish();
            }
            if let Some(deadline) = stopping {
                if self.slot.engine.open_orders().is_empty() || now > deadline {
                    break;
                }
            }
            if worked {
                idler.reset();
            } else {
                let wait =
                    Duration::from_nanos(next_timer.saturating_sub(now).clamp(10_000, 5_000_000));
                let (md, rep) = (&self.md, &self.reports);
                idler.idle(&self.parker, wait, || !md.is_empty() || !rep.is_empty());
            }
        }
        self.publish();
        self.slot
    }

    /// Replayed history (a takeover's warm-up) is applied with trading halted; the first
    /// live event resumes it, unless something else halted the engine meanwhile.
    #[inline]
    fn warm_up(&mut self, ev: &MarketEvent) {
        let replayed = ev.flags & FLAG_WARMUP != 0;
        if replayed == self.warming {
            return;
        }
        let state = self.slot.engine.risk().state();
        if replayed && state == TradingState::Active {
            self.slot.engine.set_trading_state(TradingState::Halted);
            self.warming = true;
        } else if !replayed {
            // Only the halt the warm-up set is lifted: a strategy halted meanwhile (by
            // the supervisor or an operator) stays halted.
            if state == TradingState::Halted && self.slot.halted.is_none() {
                self.slot.engine.set_trading_state(TradingState::Active);
            }
            self.warming = false;
        }
    }

    fn on_control(&mut self, c: Control, now: Nanos, stopping: &mut Option<Nanos>) {
        match c {
            Control::Install { strategy, restart } => {
                if self.slot.halted.is_some() || stopping.is_some() {
                    return;
                }
                if restart {
                    self.slot.restarts += 1;
                    tracing::info!(strategy = %self.slot.name, restarts = self.slot.restarts, "strategy restarted");
                }
                let res = self
                    .slot
                    .engine
                    .install(strategy, now, &mut RingSink(&mut self.orders));
                self.check(res);
            }
            Control::Reconfigure {
                risk,
                strategy,
                revision,
            } => {
                self.slot.engine.set_risk_limits(risk);
                if let Some(strategy) = strategy
                    && self.slot.halted.is_none()
                    && stopping.is_none()
                {
                    self.slot
                        .engine
                        .cancel_all(now, &mut RingSink(&mut self.orders));
                    let res =
                        self.slot
                            .engine
                            .install(strategy, now, &mut RingSink(&mut self.orders));
                    self.check(res);
                }
                self.live.config_revision.store(revision, Ordering::Release);
                tracing::info!(strategy = %self.slot.name, revision, "configuration reloaded");
            }
            Control::Halt(reason) => {
                self.slot.engine.set_trading_state(TradingState::Halted);
                self.slot
                    .engine
                    .cancel_all(now, &mut RingSink(&mut self.orders));
                self.slot.halted = Some(reason);
            }
            Control::Stop => {
                let _ = self.slot.engine.stop(now, &mut RingSink(&mut self.orders));
                *stopping = Some(now + 2_000_000_000);
            }
        }
    }

    #[inline]
    fn check(&mut self, res: Result<(), hft_exec::StrategyPanic>) {
        if let Err(p) = res {
            tracing::warn!(strategy = %self.slot.name, message = %p.message, "strategy panicked; its orders were cancelled");
            if let Ok(guard) = self.crash.lock() {
                if let Some(actor) = guard.as_ref() {
                    let _ = actor.cast(EngineMsg::Crashed(p.message));
                }
            }
        }
    }

    fn publish(&self) {
        let e = &self.slot.engine;
        self.live.events.store(e.stats().events, Ordering::Relaxed);
        self.live
            .orders
            .store(e.oms_stats().orders, Ordering::Relaxed);
        self.live.fills.store(e.fill_count(), Ordering::Relaxed);
        self.live
            .position
            .store(e.position(e.instrument()).qty.raw(), Ordering::Relaxed);
        self.live.pnl.store(e.pnl().raw(), Ordering::Relaxed);
        for (slot, n) in self.live.rejects.iter().zip(e.risk().rejects().0) {
            slot.store(n, Ordering::Relaxed);
        }
        self.live
            .restarts
            .store(u64::from(self.slot.restarts), Ordering::Relaxed);
        if let Ok(mut open) = self.live.open_orders.try_lock() {
            open.clear();
            open.extend_from_slice(e.open_orders());
        }
    }
}

/// The gateway's outbound side: market data to every engine (the feed handler's
/// fan-out) and reports to the engine that owns the order (the venue session's routing).
struct Fanout {
    md: Vec<RingTx<MarketEvent>>,
    reports: Vec<RingTx<OrderReport>>,
    /// Position in `reports` of each strategy id's engine.
    route: Vec<Option<usize>>,
    /// Fill reports to the ledger's booking thread.
    booked: Option<RingTx<OrderReport>>,
    /// Fills waiting for room in that ring (the ledger is slow, e.g. electing): the
    /// gateway keeps serving market data and reports meanwhile.
    booked_backlog: std::collections::VecDeque<OrderReport>,
    /// Engines that lost market data and are owed a snapshot.
    resync: Vec<bool>,
    live: Arc<GatewayLive>,
}

impl Fanout {
    /// Moves backlogged fills into the booking ring while it has room.
    fn flush_booked(&mut self) {
        let Some(tx) = self.booked.as_mut() else {
            return;
        };
        while let Some(r) = self.booked_backlog.pop_front() {
            if let Err(back) = tx.push(r) {
                self.booked_backlog.push_front(back);
                return;
            }
        }
    }

    /// Venue output stamped with receipt time `now`, to every engine or to one.
    fn at(&mut self, now: Nanos, only: Option<usize>) -> Gateway<'_> {
        Gateway {
            fanout: self,
            now,
            only,
        }
    }
}

/// Venue output of the gateway for one step.
struct Gateway<'a> {
    fanout: &'a mut Fanout,
    now: Nanos,
    only: Option<usize>,
}

impl VenueOutput for Gateway<'_> {
    #[inline]
    fn market(&mut self, e: &MarketEvent) {
        let mut ev = *e;
        ev.ts_recv = self.now;
        let f = &mut *self.fanout;
        for (i, tx) in f.md.iter_mut().enumerate() {
            if self.only.is_some_and(|o| o != i) {
                continue;
            }
            if tx.push(ev).is_err() {
                // Counted; the engine sees the sequence gap and the gateway owes it a
                // snapshot as soon as its ring has room.
                f.live.md_dropped.fetch_add(1, Ordering::Relaxed);
                f.resync[i] = true;
            }
        }
        f.live.md_published.fetch_add(1, Ordering::Relaxed);
    }

    fn report(&mut self, r: &OrderReport) {
        let f = &mut *self.fanout;
        if let (OrderReportKind::Fill(_), Some(tx)) = (&r.kind, f.booked.as_mut()) {
            // Never dropped: a fill the ledger misses is a position nobody can
            // reconcile. In order behind any backlog; the backlog allocates only
            // while the ledger lags.
            if !f.booked_backlog.is_empty() || tx.push(*r).is_err() {
                f.booked_backlog.push_back(*r);
            }
        }
        let engine = self
            .fanout
            .route
            .get(r.cl_ord_id.strategy().index())
            .copied()
            .flatten();
        let Some(tx) = engine.and_then(|i| self.fanout.reports.get_mut(i)) else {
            return;
        };
        // Reports are never dropped: wait for the engine to make room.
        let mut item = *r;
        while let Err(back) = tx.push(item) {
            item = back;
            std::thread::yield_now();
        }
    }
}

/// Everything the gateway thread runs with.
pub struct GatewayThread<V: VenuePort> {
    /// The venue: simulated in process, or a session with a venue process.
    pub venue: V,
    /// Orders from each engine.
    pub orders: Vec<RingRx<OrderCommand>>,
    /// Market data to each engine.
    pub md: Vec<RingTx<MarketEvent>>,
    /// Reports to each engine.
    pub reports: Vec<RingTx<OrderReport>>,
    /// Strategy id of each engine (the index of its `reports` ring).
    pub strategies: Vec<hft_core::StrategyId>,
    /// Fill reports to the ledger's booking thread, when fills are booked.
    pub booked: Option<RingTx<OrderReport>>,
    /// This thread's parker.
    pub parker: Arc<Parker>,
    /// Shared clock.
    pub clock: Clock,
    /// Set to stop.
    pub stop: Arc<AtomicBool>,
    /// Counters.
    pub live: Arc<GatewayLive>,
    /// Spin or park when idle.
    pub idle: IdleMode,
}

impl<V: VenuePort> GatewayThread<V> {
    /// Runs until stopped; returns the venue and one tick-to-order histogram per engine.
    pub fn run(mut self) -> (V, Vec<Histogram<u64>>) {
        self.parker.bind_current();
        let mut lat: Vec<Histogram<u64>> = self
            .orders
            .iter()
            .map(|_| hft_telemetry::latency_histogram())
            .collect();
        let mut window = hft_telemetry::latency_histogram();
        let mut wire = [0u8; ORDER_WIRE_LEN];
        let mut next_status = self.clock.now() + 1_000_000_000;
        let mut idler = Idler::new(self.idle);
        let n_engines = self.md.len();
        let mut fanout = Fanout {
            md: std::mem::take(&mut self.md),
            reports: std::mem::take(&mut self.reports),
            route: {
                let mut route = Vec::new();
                for (i, s) in self.strategies.iter().enumerate() {
                    if route.len() <= s.index() {
                        route.resize(s.index() + 1, None);
                    }
                    route[s.index()] = Some(i);
                }
                route
            },
            booked: self.booked.take(),
            booked_backlog: std::collections::VecDeque::new(),
            resync: vec![false; n_engines],
            live: self.live.clone(),
        };
        // Engines start from a full snapshot, then follow the incremental messages.
        let t0 = self.clock.now();
        self.venue.snapshot(t0, &mut fanout.at(t0, None));
        loop {
            let now = self.clock.now();
            let mut worked = false;
            for (i, rx) in self.orders.iter_mut().enumerate() {
                while let Some(cmd) = rx.pop() {
                    worked = true;
                    let n = encode_order(&cmd, &mut wire);
                    let t = self.clock.now();
                    if cmd.tick_ts > 0 {
                        let d = t.saturating_sub(cmd.tick_ts).max(1);
                        let _ = lat[i].record(d);
                        let _ = window.record(d);
                    }
                    self.live.orders_in.fetch_add(1, Ordering::Relaxed);
                    self.venue
                        .submit(&cmd, &wire[..n], t, &mut fanout.at(t, None));
                }
            }
            worked |= self.venue.poll(now, &mut fanout.at(now, None));
            if self.venue.ended() && !self.live.venue_ended.swap(true, Ordering::SeqCst) {
                tracing::warn!("the venue ended this session; the engines stop trading");
            }
            for i in 0..n_engines {
                // Resynchronise an engine that lost data once its ring has room for a book.
                if fanout.resync[i] && fanout.md[i].slots() > self.venue.snapshot_len() {
                    fanout.resync[i] = false;
                    self.live.md_resyncs.fetch_add(1, Ordering::Relaxed);
                    self.venue.snapshot(now, &mut fanout.at(now, Some(i)));
                    worked = true;
                }
            }
            if now >= next_status {
                next_status = now + 1_000_000_000;
                for (slot, q) in self.live.latency_ns.iter().zip([0.5, 0.99, 0.999]) {
                    slot.store(window.value_at_quantile(q), Ordering::Relaxed);
                }
                // The whole second's distribution, for readers that pool seconds (a
                // benchmark comparing phases); skipped if a reader holds it.
                if let Ok(mut last) = self.live.last_second.try_lock() {
                    let h = last.get_or_insert_with(|| window.clone());
                    h.reset();
                    let _ = h.add(&window);
                    self.live.seconds.fetch_add(1, Ordering::Release);
                }
                window.reset();
            }
            fanout.flush_booked();
            if self.stop.load(Ordering::Relaxed) {
                // Whatever rests at the venue is cancelled and its last reports taken.
                let now = self.clock.now();
                self.venue.finish(now, &mut fanout.at(now, None));
                // The booking thread runs until the gateway is done: hand it the rest.
                while !fanout.booked_backlog.is_empty() {
                    fanout.flush_booked();
                    std::thread::yield_now();
                }
                break;
            }
            if worked {
                idler.reset();
            } else {
                let now = self.clock.now();
                let wait = if fanout.booked_backlog.is_empty() && !fanout.resync.contains(&true) {
                    // Sleep no later than the next status publication.
                    self.venue
                        .idle_for(now)
                        .min(Duration::from_nanos(next_status.saturating_sub(now)))
                } else {
                    // A ring was full: retry soon.
                    Duration::from_micros(200)
                };
                let orders = &self.orders;
                idler.idle_on(&self.parker, self.venue.wait_fd(), wait, || {
                    orders.iter().any(|r| !r.is_empty())
                });
            }
        }
        (self.venue, lat)
    }
}
