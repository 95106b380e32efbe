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

mod actors;
mod threads;

pub use actors::{
    EngineActor, EngineActorArgs, EngineMsg, FeedActor, GatewayMsg, NodeArgs, NodeMsg, NodeState,
    NodeSupervisor, RiskMsg, RiskShardActor, Supervised, VenueActor,
};
pub use threads::{
    Clock, Control, CrashTarget, EngineLive, EngineThread, GatewayLive, GatewayThread,
};

use crate::booking::{Booking, BookingStats};
use crate::node::NodeParts;
use crate::reload::Reload;
use crate::report::LedgerSummary;
use crate::report::SessionReport;
use crate::ring::{IdleMode, Parker, ring};
use hft_core::Nanos;
use hft_exec::{StrategySlot, VenuePort};
use ractor::Actor;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Live counters for the status line.
#[derive(Clone)]
pub struct LiveView {
    /// Per engine.
    pub engines: Vec<EngineView>,
    /// Gateway counters.
    pub gateway: Arc<GatewayLive>,
}

impl LiveView {
    /// Each engine's PnL as of its last update, money raw units.
    pub fn pnls(&self) -> impl Iterator<Item = i64> + '_ {
        self.engines
            .iter()
            .map(|e| e.live.pnl.load(Ordering::Relaxed))
    }
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
    /// Books every fill in the ledger, when set.
    pub booking: Option<Booking>,
    /// Configuration reloads to apply to the running engines.
    pub reload: Option<mpsc::Receiver<Reload>>,
}

/// Runs a live session against the node's in-process simulated venue to completion
/// and returns its summary.
pub fn run(
    parts: NodeParts,
    opts: LiveOptions,
    on_status: impl FnMut(&LiveView, Duration),
) -> Result<SessionReport, String> {
    let NodeParts {
        venue, slots, kill, ..
    } = parts;
    run_with(venue, slots, kill, opts, on_status)
}

/// Runs a live session of `slots` trading through `venue` until it is stopped, its
/// duration passes, or the venue ends the session (a newer owner took over).
pub fn run_with<V: VenuePort>(
    venue: V,
    mut slots: Vec<StrategySlot>,
    kill: hft_risk::KillSwitch,
    opts: LiveOptions,
    mut on_status: impl FnMut(&LiveView, Duration),
) -> Result<SessionReport, String> {
    let clock = Clock::start();
    if let Some(b) = &opts.booking {
        b.restore_positions(&mut slots)
            .map_err(|e| format!("cannot read positions from the ledger: {e}"))?;
        b.reserve_order_ids(&mut slots)
            .map_err(|e| format!("cannot reserve client order ids in the ledger: {e}"))?;
    }
    let booking_stop = Arc::new(AtomicBool::new(false));
    let booking_stats = Arc::new(BookingStats::default());
    let (booked_tx, booking_thread) = match opts.booking.clone() {
        Some(b) => {
            let parker = Parker::new();
            let (tx, rx) = ring(opts.ring_capacity, &parker);
            let t = b
                .spawn(rx, parker, booking_stop.clone(), booking_stats.clone())
                .map_err(|e| format!("cannot start the ledger booking thread: {e}"))?;
            (Some(tx), Some(t))
        }
        None => (None, None),
    };
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
    let mut factories = Vec::new();
    let strategies: Vec<_> = slots.iter().map(|s| s.engine.id()).collect();
    for slot in slots {
        let parker = Parker::new();
        let (md_tx, md_rx) = ring(opts.ring_capacity, &parker);
        let (rep_tx, rep_rx) = ring(opts.ring_capacity, &parker);
        let (ord_tx, ord_rx) = ring(opts.ring_capacity, &gw_parker);
        let (ctl_tx, ctl_rx) = mpsc::channel();
        let live = Arc::new(EngineLive::default());
        let crash: CrashTarget = Arc::new(Mutex::new(None));
        // The supervisor restarts a crashed strategy from the current factory, which a
        // reload replaces.
        let cell = Arc::new(std::sync::RwLock::new(slot.factory.clone()));
        factories.push(cell.clone());
        let factory: hft_exec::StrategyFactory = Arc::new(move || {
            let f = cell.read().map(|f| f.clone());
            match f {
                Ok(f) => f(),
                Err(poisoned) => (poisoned.into_inner())(),
            }
        });
        supervised.push(Supervised {
            name: slot.name.clone(),
            control: ctl_tx.clone(),
            factory,
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
            warming: false,
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
        strategies,
        booked: booked_tx,
        parker: gw_parker.clone(),
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
    let supervised_names: Vec<String> = supervised.iter().map(|s| s.name.clone()).collect();
    let args = NodeArgs {
        engines: supervised,
        gateway: gateway_live.clone(),
        kill: kill.clone(),
        clock,
    };
    // Named after its engines: a cluster node runs one tree per engine session.
    let tree = format!("node:{}", supervised_names.join(","));
    let (supervisor, sup_handle) = match rt.block_on(Actor::spawn(Some(tree), NodeSupervisor, args))
    {
        Ok(s) => s,
        Err(e) => {
            // Nothing may keep trading without its supervisor: stop what started.
            for c in &controls {
                let _ = c.send(Control::Stop);
            }
            for t in engine_threads {
                let _ = t.join();
            }
            stop.store(true, Ordering::SeqCst);
            gw_parker.wake();
            let _ = gateway.join();
            return Err(format!("cannot start the actor tree: {e}"));
        }
    };
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
    let sample_every = Duration::from_nanos(crate::report::PNL_SAMPLE_INTERVAL_NS);
    let mut next_sample = started + sample_every;
    let mut pnl_path = crate::report::PnlPath::new(crate::report::PNL_SAMPLE_INTERVAL_NS);
    pnl_path.offer(view.pnls());
    loop {
        // Waiting on the reload channel wakes the loop the moment a reload arrives.
        let mut arrived = match &opts.reload {
            Some(rx) => rx.recv_timeout(Duration::from_millis(20)).ok(),
            None => {
                std::thread::sleep(Duration::from_millis(20));
                None
            }
        };
        let elapsed = started.elapsed();
        if opts.shutdown.load(Ordering::SeqCst)
            || opts.duration.is_some_and(|d| elapsed >= d)
            || gateway_live.venue_ended.load(Ordering::SeqCst)
        {
            break;
        }
        if Instant::now() >= next_status {
            next_status += opts.status_interval;
            on_status(&view, elapsed);
        }
        let now = Instant::now();
        if now >= next_sample {
            // One sample however late: a stalled loop repeating one would make
            // intervals without change that never were.
            pnl_path.offer(view.pnls());
            while next_sample <= now {
                next_sample += sample_every;
            }
        }
        while let Some(r) = arrived
            .take()
            .or_else(|| opts.reload.as_ref().and_then(|rx| rx.try_recv().ok()))
        {
            for ((e, ctl), cell) in r.engines.into_iter().zip(&controls).zip(&factories) {
                let strategy = e.factory.map(|f| {
                    let s = f();
                    if let Ok(mut c) = cell.write() {
                        *c = f;
                    }
                    s
                });
                let _ = ctl.send(Control::Reconfigure {
                    risk: e.risk,
                    strategy,
                    revision: r.revision,
                });
            }
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
    // The gateway may sleep on its venue's socket: wake it to see the stop.
    gw_parker.wake();
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
        pnl_path,
    );
    report.md_dropped = gateway_live.md_dropped.load(Ordering::Relaxed);
    report.md_resyncs = gateway_live.md_resyncs.load(Ordering::Relaxed);
    if let (Some(b), Some(t)) = (&opts.booking, booking_thread) {
        booking_stop.store(true, Ordering::SeqCst);
        t.join().map_err(|_| "the ledger booking thread panicked")?;
        // A session the venue ended may have been taken over: the ledger then holds the
        // new owner's fills too, and this engine's view is not the book of record.
        let mismatches = if gateway_live.venue_ended.load(Ordering::SeqCst) {
            Vec::new()
        } else {
            b.reconcile(&slots)
                .map_err(|e| format!("cannot read positions back from the ledger: {e}"))?
        };
        let n = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        report.ledger = Some(LedgerSummary {
            dir: String::new(),
            fills: n(&booking_stats.fills),
            booked: n(&booking_stats.booked),
            duplicates: n(&booking_stats.duplicates),
            rejected: n(&booking_stats.rejected),
            retries: n(&booking_stats.retries),
            mismatches,
        });
    }
    Ok(report)
}
