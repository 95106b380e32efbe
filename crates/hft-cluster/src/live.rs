//! The live single-node runtime: hot-path threads joined by SPSC rings, supervised by
//! a ractor tree.
//!
//! Threads: one gateway thread runs the venue session and the feed handler (the feed
//! stamps and fans market data out to one ring per engine; the venue session takes
//! orders from one ring per engine and returns reports), and one thread per engine.
//! Actors: `NodeSupervisor` → `FeedActor`, `VenueActor`, `RiskShardActor` and one
//! `EngineActor` per strategy instance. An engine thread that catches a strategy panic
//! tells its `EngineActor`, which fails; the supervisor restarts it after a backoff
//! (the new actor installs a fresh strategy) or halts the strategy after repeated crashes.

use crate::node::NodeParts;
use crate::report::SessionReport;
use crate::ring::{IdleMode, Parker, RingRx, RingTx, SPIN_BEFORE_PARK, ring};
use hdrhistogram::Histogram;
use hft_core::{
    MarketEvent, Nanos, OrderCommand, OrderReport, OrderReportKind, RejectReason, TradingState,
};
use hft_exec::wire::{ORDER_WIRE_LEN, decode_order, encode_order};
use hft_exec::{
    OrderSink, RestartDecision, RestartPolicy, SimVenue, StrategyFactory, StrategySlot, VenueOutput,
};
use hft_risk::{KillSwitch, RiskReject};
use hft_strategy::Strategy;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
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
}

impl EngineThread {
    /// Runs until stopped; returns the slot with its final state.
    pub fn run(mut self) -> StrategySlot {
        self.parker.bind_current();
        let mut next_timer = self.clock.now() + self.timer_interval;
        let mut stopping: Option<Nanos> = None;
        let mut idle_spins = 0u32;
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
                idle_spins = 0;
            } else {
                idle_spins += 1;
                if self.idle == IdleMode::Park && idle_spins > SPIN_BEFORE_PARK {
                    let wait = Duration::from_nanos(
                        next_timer.saturating_sub(now).clamp(10_000, 5_000_000),
                    );
                    let (md, rep) = (&self.md, &self.reports);
                    self.parker.park(wait, || !md.is_empty() || !rep.is_empty());
                } else {
                    std::hint::spin_loop();
                }
            }
        }
        self.publish();
        self.slot
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
    }
}

/// The gateway's outbound side: market data to every engine (the feed handler's
/// fan-out) and reports to the engine that owns the order (the venue session's routing).
struct Fanout {
    md: Vec<RingTx<MarketEvent>>,
    reports: Vec<RingTx<OrderReport>>,
    /// Engines that lost market data and are owed a snapshot.
    resync: Vec<bool>,
    live: Arc<GatewayLive>,
}

impl Fanout {
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
        let Some(tx) = self.fanout.reports.get_mut(r.cl_ord_id.strategy().index()) else {
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
pub struct GatewayThread {
    /// The simulated venue.
    pub venue: SimVenue,
    /// Orders from each engine.
    pub orders: Vec<RingRx<OrderCommand>>,
    /// Market data to each engine.
    pub md: Vec<RingTx<MarketEvent>>,
    /// Reports to each engine.
    pub reports: Vec<RingTx<OrderReport>>,
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

impl GatewayThread {
    /// Runs until stopped; returns the venue and one tick-to-order histogram per engine.
    pub fn run(mut self) -> (SimVenue, Vec<Histogram<u64>>) {
        self.parker.bind_current();
        let mut lat: Vec<Histogram<u64>> = self
            .orders
            .iter()
            .map(|_| hft_telemetry::latency_histogram())
            .collect();
        let mut window = hft_telemetry::latency_histogram();
        let mut wire = [0u8; ORDER_WIRE_LEN];
        let mut next_status = self.clock.now() + 1_000_000_000;
        let mut idle_spins = 0u32;
        let n_engines = self.md.len();
        let mut fanout = Fanout {
            md: std::mem::take(&mut self.md),
            reports: std::mem::take(&mut self.reports),
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
                    let mut out = fanout.at(t, None);
                    // The venue reads what went over the wire, not our struct.
                    match decode_order(&wire[..n]) {
                        Ok(decoded) => self.venue.submit(&decoded, t, &mut out),
                        Err(e) => {
                            tracing::error!(error = %e, order = %cmd.cl_ord_id, "venue refused an undecodable order");
                            let kind = OrderReportKind::Rejected(RejectReason::Malformed);
                            out.report(&OrderReport {
                                ts: t,
                                instrument: cmd.instrument,
                                cl_ord_id: cmd.cl_ord_id,
                                kind,
                            });
                        }
                    }
                }
            }
            let mut steps = 0;
            while steps < 256 && self.venue.next_flow_ts() <= now {
                self.venue.step_flow(&mut fanout.at(now, None));
                steps += 1;
                worked = true;
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
                window.reset();
            }
            if self.stop.load(Ordering::Relaxed) {
                break;
            }
            if worked {
                idle_spins = 0;
            } else {
                idle_spins += 1;
                if self.idle == IdleMode::Park && idle_spins > SPIN_BEFORE_PARK {
                    let wait = self
                        .venue
                        .next_flow_ts()
                        .saturating_sub(self.clock.now())
                        .clamp(1_000, 1_000_000);
                    let orders = &self.orders;
                    self.parker.park(Duration::from_nanos(wait), || {
                        orders.iter().any(|r| !r.is_empty())
                    });
                } else {
                    std::hint::spin_loop();
                }
            }
        }
        (self.venue, lat)
    }
}

/// Messages of an `EngineActor`.
#[derive(Debug)]
pub enum EngineMsg {
    /// Its strategy panicked (sent by the engine thread).
    Crashed(String),
}

/// Control-plane owner of one strategy instance: installs the strategy when it starts,
/// and fails when the strategy crashes so that its supervisor decides what follows.
pub struct EngineActor;

/// Start-up arguments of an `EngineActor`.
pub struct EngineActorArgs {
    control: mpsc::Sender<Control>,
    factory: StrategyFactory,
    crash: CrashTarget,
    restart: bool,
}

impl Actor for EngineActor {
    type Msg = EngineMsg;
    type State = ();
    type Arguments = EngineActorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<EngineMsg>,
        args: EngineActorArgs,
    ) -> Result<(), ActorProcessingErr> {
        if let Ok(mut g) = args.crash.lock() {
            *g = Some(myself);
        }
        args.control
            .send(Control::Install {
                strategy: (args.factory)(),
                restart: args.restart,
            })
            .map_err(|_| "engine thread is gone")?;
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<EngineMsg>,
        msg: EngineMsg,
        _state: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            EngineMsg::Crashed(m) => Err(format!("strategy panicked: {m}").into()),
        }
    }
}

/// Messages of the `FeedActor` and `VenueActor`: read their thread's counters.
#[derive(Debug)]
pub enum GatewayMsg {
    /// Reply with (published, dropped, orders received).
    Stats(RpcReplyPort<(u64, u64, u64)>),
}

/// Owner of the feed handler (simulator market data, fan-out to engines).
pub struct FeedActor;
/// Owner of the venue session (order intake, reports).
pub struct VenueActor;

macro_rules! gateway_actor {
    ($t:ty) => {
        impl Actor for $t {
            type Msg = GatewayMsg;
            type State = Arc<GatewayLive>;
            type Arguments = Arc<GatewayLive>;

            async fn pre_start(
                &self,
                _m: ActorRef<GatewayMsg>,
                live: Arc<GatewayLive>,
            ) -> Result<Arc<GatewayLive>, ActorProcessingErr> {
                Ok(live)
            }

            async fn handle(
                &self,
                _m: ActorRef<GatewayMsg>,
                msg: GatewayMsg,
                live: &mut Arc<GatewayLive>,
            ) -> Result<(), ActorProcessingErr> {
                let GatewayMsg::Stats(reply) = msg;
                let _ = reply.send((
                    live.md_published.load(Ordering::Relaxed),
                    live.md_dropped.load(Ordering::Relaxed),
                    live.orders_in.load(Ordering::Relaxed),
                ));
                Ok(())
            }
        }
    };
}
gateway_actor!(FeedActor);
gateway_actor!(VenueActor);

/// Messages of the `RiskShardActor`.
#[derive(Debug)]
pub enum RiskMsg {
    /// Engage the kill switch.
    Kill,
    /// Release the kill switch.
    Reset,
    /// Reply whether the kill switch is engaged.
    IsKilled(RpcReplyPort<bool>),
}

/// Owner of the node's risk shard: the kill switch (and, with a cluster, credit grants).
pub struct RiskShardActor;

impl Actor for RiskShardActor {
    type Msg = RiskMsg;
    type State = KillSwitch;
    type Arguments = KillSwitch;

    async fn pre_start(
        &self,
        _m: ActorRef<RiskMsg>,
        kill: KillSwitch,
    ) -> Result<KillSwitch, ActorProcessingErr> {
        Ok(kill)
    }

    async fn handle(
        &self,
        _m: ActorRef<RiskMsg>,
        msg: RiskMsg,
        kill: &mut KillSwitch,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            RiskMsg::Kill => {
                tracing::error!("kill switch engaged: all strategies halted");
                kill.engage();
            }
            RiskMsg::Reset => kill.reset(),
            RiskMsg::IsKilled(reply) => {
                let _ = reply.send(kill.is_engaged());
            }
        }
        Ok(())
    }
}

/// Per-strategy supervision state held by the `NodeSupervisor`.
pub struct Supervised {
    name: String,
    control: mpsc::Sender<Control>,
    factory: StrategyFactory,
    crash: CrashTarget,
    policy: RestartPolicy,
    actor: Option<ActorRef<EngineMsg>>,
}

/// Messages of the `NodeSupervisor`.
pub enum NodeMsg {
    /// Restart the engine actor of strategy `i` (after its backoff).
    Restart(usize),
    /// Forward to the risk shard.
    Risk(RiskMsg),
}

/// Root of the node's actor tree.
pub struct NodeSupervisor;

/// State of the `NodeSupervisor`.
pub struct NodeState {
    engines: Vec<Supervised>,
    risk: Option<ActorRef<RiskMsg>>,
    clock: Clock,
}

/// Start-up arguments of the `NodeSupervisor`.
pub struct NodeArgs {
    engines: Vec<Supervised>,
    gateway: Arc<GatewayLive>,
    kill: KillSwitch,
    clock: Clock,
}

impl NodeSupervisor {
    async fn spawn_engine(
        myself: &ActorRef<NodeMsg>,
        s: &mut Supervised,
        restart: bool,
    ) -> Result<(), ActorProcessingErr> {
        let args = EngineActorArgs {
            control: s.control.clone(),
            factory: s.factory.clone(),
            crash: s.crash.clone(),
            restart,
        };
        let (actor, _) = Actor::spawn_linked(None, EngineActor, args, myself.get_cell()).await?;
        s.actor = Some(actor);
        Ok(())
    }
}

impl Actor for NodeSupervisor {
    type Msg = NodeMsg;
    type State = NodeState;
    type Arguments = NodeArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<NodeMsg>,
        args: NodeArgs,
    ) -> Result<NodeState, ActorProcessingErr> {
        Actor::spawn_linked(None, FeedActor, args.gateway.clone(), myself.get_cell()).await?;
        Actor::spawn_linked(None, VenueActor, args.gateway.clone(), myself.get_cell()).await?;
        let (risk, _) =
            Actor::spawn_linked(None, RiskShardActor, args.kill.clone(), myself.get_cell()).await?;
        let mut engines = args.engines;
        for s in engines.iter_mut() {
            Self::spawn_engine(&myself, s, false).await?;
        }
        Ok(NodeState {
            engines,
            risk: Some(risk),
            clock: args.clock,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<NodeMsg>,
        msg: NodeMsg,
        state: &mut NodeState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            NodeMsg::Restart(i) => {
                if let Some(s) = state.engines.get_mut(i) {
                    Self::spawn_engine(&myself, s, true).await?;
                }
            }
            NodeMsg::Risk(m) => {
                if let Some(r) = &state.risk {
                    r.cast(m)?;
                }
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<NodeMsg>,
        evt: SupervisionEvent,
        state: &mut NodeState,
    ) -> Result<(), ActorProcessingErr> {
        let SupervisionEvent::ActorFailed(cell, err) = evt else {
            return Ok(());
        };
        let Some(i) = state.engines.iter().position(|s| {
            s.actor
                .as_ref()
                .is_some_and(|a| a.get_id() == cell.get_id())
        }) else {
            // A gateway or risk actor failing is not recoverable here: stop the node.
            tracing::error!(error = %err, "node actor failed");
            myself.stop(Some(format!("child failed: {err}")));
            return Ok(());
        };
        let s = &mut state.engines[i];
        s.actor = None;
        match s.policy.on_crash(state.clock.now()) {
            RestartDecision::RestartAfter(d) => {
                tracing::warn!(strategy = %s.name, backoff_ms = d / 1_000_000, "restarting strategy after backoff");
                myself.send_after(Duration::from_nanos(d), move || NodeMsg::Restart(i));
            }
            RestartDecision::Halt { crashes } => {
                let reason = format!("halted after {crashes} crashes; last: {err}");
                tracing::error!(strategy = %s.name, %reason, "strategy halted");
                let _ = s.control.send(Control::Halt(reason));
            }
        }
        Ok(())
    }
}

/// Live counters for the status line.
#[derive(Clone)]
pub struct LiveView {
    /// Per engine.
    pub engines: Vec<EngineView>,
    /// Gateway counters.
    pub gateway: Arc<GatewayLive>,
}

/// One engine as the status line sees it.
#[derive(Clone)]
pub struct EngineView {
    /// Strategy name.
    pub name: String,
    /// Quantity scale of its instrument (to print positions).
    pub qty_scale: u8,
    /// Its counters.
    pub live: Arc<EngineLive>,
}

/// How to run a live session.
pub struct LiveOptions {
    /// Stop after this long (None: until `shutdown`).
    pub duration: Option<Duration>,
    /// Set by signal handlers to stop.
    pub shutdown: Arc<AtomicBool>,
    /// Ring capacity.
    pub ring_capacity: usize,
    /// Strategy timer period.
    pub timer_interval: Duration,
    /// Status callback period.
    pub status_interval: Duration,
    /// Idle mode of the hot-path threads.
    pub idle: IdleMode,
    /// Seed (for the report).
    pub seed: u64,
}

/// Runs a live session to completion and returns its summary.
pub fn run(
    parts: NodeParts,
    opts: LiveOptions,
    mut on_status: impl FnMut(&LiveView, Duration),
) -> Result<SessionReport, String> {
    let clock = Clock::start();
    let NodeParts {
        venue, slots, kill, ..
    } = parts;
    let gw_parker = Parker::new();
    let gateway_live = Arc::new(GatewayLive::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut md_txs = Vec::new();
    let mut rep_txs = Vec::new();
    let mut order_rxs = Vec::new();
    let mut engine_threads: Vec<JoinHandle<StrategySlot>> = Vec::new();
    let mut supervised = Vec::new();
    let mut view = LiveView {
        engines: Vec::new(),
        gateway: gateway_live.clone(),
    };
    let mut controls = Vec::new();
    for slot in slots {
        let parker = Parker::new();
        let (md_tx, md_rx) = ring(opts.ring_capacity, &parker);
        let (rep_tx, rep_rx) = ring(opts.ring_capacity, &parker);
        let (ord_tx, ord_rx) = ring(opts.ring_capacity, &gw_parker);
        let (ctl_tx, ctl_rx) = mpsc::channel();
        let live = Arc::new(EngineLive::default());
        let crash: CrashTarget = Arc::new(Mutex::new(None));
        supervised.push(Supervised {
            name: slot.name.clone(),
            control: ctl_tx.clone(),
            factory: slot.factory.clone(),
            crash: crash.clone(),
            policy: slot.policy.clone(),
            actor: None,
        });
        view.engines.push(EngineView {
            name: slot.name.clone(),
            qty_scale: slot.engine.spec(slot.engine.instrument()).qty_scale,
            live: live.clone(),
        });
        let t = EngineThread {
            slot,
            md: md_rx,
            reports: rep_rx,
            orders: ord_tx,
            control: ctl_rx,
            parker,
            clock,
            timer_interval: opts.timer_interval.as_nanos() as Nanos,
            live,
            idle: opts.idle,
            crash,
        };
        let name = format!("engine-{}", engine_threads.len());
        engine_threads.push(
            std::thread::Builder::new()
                .name(name)
                .spawn(move || t.run())
                .map_err(|e| e.to_string())?,
        );
        md_txs.push(md_tx);
        rep_txs.push(rep_tx);
        order_rxs.push(ord_rx);
        controls.push(ctl_tx);
    }
    let gw = GatewayThread {
        venue,
        orders: order_rxs,
        md: md_txs,
        reports: rep_txs,
        parker: gw_parker,
        clock,
        stop: stop.clone(),
        live: gateway_live.clone(),
        idle: opts.idle,
    };
    let gateway = std::thread::Builder::new()
        .name("gateway".into())
        .spawn(move || gw.run())
        .map_err(|e| e.to_string())?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .thread_name("control")
        .build()
        .map_err(|e| format!("cannot start the control-plane runtime: {e}"))?;
    let args = NodeArgs {
        engines: supervised,
        gateway: gateway_live.clone(),
        kill: kill.clone(),
        clock,
    };
    let (supervisor, sup_handle) = rt
        .block_on(Actor::spawn(Some("node".into()), NodeSupervisor, args))
        .map_err(|e| format!("cannot start the actor tree: {e}"))?;
    let shutdown = opts.shutdown.clone();
    rt.spawn(async move {
        let term = async {
            #[cfg(unix)]
            if let Ok(mut s) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            {
                s.recv().await;
                return;
            }
            std::future::pending::<()>().await
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term => {}
        }
        shutdown.store(true, Ordering::SeqCst);
    });

    let started = Instant::now();
    let mut next_status = started + opts.status_interval;
    loop {
        std::thread::sleep(Duration::from_millis(20));
        let elapsed = started.elapsed();
        if opts.shutdown.load(Ordering::SeqCst) || opts.duration.is_some_and(|d| elapsed >= d) {
            break;
        }
        if Instant::now() >= next_status {
            next_status += opts.status_interval;
            on_status(&view, elapsed);
        }
    }
    let elapsed = started.elapsed();
    // Stop the actors first so no restart races the shutdown, then the engines (they
    // cancel their orders through the still-running gateway), then the gateway.
    supervisor.stop(None);
    let _ = rt.block_on(sup_handle);
    for c in &controls {
        let _ = c.send(Control::Stop);
    }
    let mut slots = Vec::new();
    for t in engine_threads {
        slots.push(
            t.join()
                .map_err(|_| "an engine thread panicked outside its strategy")?,
        );
    }
    stop.store(true, Ordering::SeqCst);
    let (venue, lat) = gateway.join().map_err(|_| "the gateway thread panicked")?;
    for (slot, h) in slots.iter_mut().zip(lat) {
        slot.latency = h;
    }
    rt.shutdown_timeout(Duration::from_millis(200));
    let mut report = SessionReport::build(
        "live",
        opts.seed,
        elapsed.as_secs_f64(),
        venue.flow_events(),
        &slots,
        kill.is_engaged(),
    );
    report.md_dropped = gateway_live.md_dropped.load(Ordering::Relaxed);
    report.md_resyncs = gateway_live.md_resyncs.load(Ordering::Relaxed);
    Ok(report)
}
