//! Built-in benchmarks of the hot path (`hft bench`). Both replay market data recorded
//! from the simulated venue, so they measure the engine rather than the simulator.

use crate::live::{Clock, Control, EngineLive, EngineThread};
use crate::node;
use crate::ring::{IdleMode, Idler, Parker, RingRx, RingTx, ring};
use hdrhistogram::Histogram;
use hft_config::Config;
use hft_core::{MarketEvent, Nanos, OrderCommand, OrderKind, OrderReport, OrderReportKind};
use hft_exec::wire::{ORDER_WIRE_LEN, encode_order};
use hft_exec::{Engine, OrderSink, VenueOutput};
use hft_telemetry::LatencySummary;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

/// Recorded market data: a snapshot, then the venue's incremental messages.
pub fn record_market_data(config: &Config, seed: u64, events: usize) -> Vec<MarketEvent> {
    struct Rec(Vec<MarketEvent>);
    impl VenueOutput for Rec {
        fn market(&mut self, e: &MarketEvent) {
            self.0.push(*e);
        }
        fn report(&mut self, _: &OrderReport) {}
    }
    let mut parts = node::build(config, seed, 0);
    let mut rec = Rec(Vec::with_capacity(events + 1024));
    parts.venue.snapshot(0, &mut rec);
    while rec.0.len() < events {
        if parts.venue.step_flow(&mut rec).is_none() {
            break;
        }
    }
    // End on a message boundary so every replayed cycle is whole.
    while rec.0.last().is_some_and(|e| !e.is_last()) {
        rec.0.pop();
    }
    rec.0
}

/// An instant venue: encodes each order to wire bytes and acknowledges it at once.
struct EchoVenue {
    pending: [Option<OrderCommand>; 64],
    n: usize,
    wire: [u8; ORDER_WIRE_LEN],
    bytes: u64,
}

impl OrderSink for EchoVenue {
    #[inline]
    fn send(&mut self, cmd: &OrderCommand) -> bool {
        if self.n == self.pending.len() {
            return false;
        }
        self.bytes += encode_order(cmd, &mut self.wire) as u64;
        self.pending[self.n] = Some(*cmd);
        self.n += 1;
        true
    }
}

fn echo_report(cmd: &OrderCommand, now: Nanos) -> OrderReport {
    let kind = match cmd.kind {
        OrderKind::New { .. } => OrderReportKind::Accepted,
        OrderKind::Cancel => OrderReportKind::Canceled,
    };
    OrderReport {
        ts: now,
        instrument: cmd.instrument,
        cl_ord_id: cmd.cl_ord_id,
        kind,
    }
}

/// Result of `hft bench core-loop`.
#[derive(Clone, Debug)]
pub struct CoreLoopResult {
    /// Events processed.
    pub events: u64,
    /// Orders and cancels encoded.
    pub orders: u64,
    /// Wall-clock throughput.
    pub events_per_s: f64,
    /// Wall-clock cost per event.
    pub ns_per_event: f64,
}

/// Takes the first strategy's engine, with its strategy installed.
fn bench_engine(
    config: &Config,
    seed: u64,
) -> Result<(Engine, hft_exec::StrategyFactory, String), String> {
    let mut parts = node::build(config, seed, 0);
    if parts.slots.is_empty() {
        return Err("the configuration has no enabled strategy to benchmark".into());
    }
    let slot = parts.slots.swap_remove(0);
    Ok((slot.engine, slot.factory, slot.name))
}

/// The core loop, prepared: a recorded buffer and an engine with its strategy started.
/// `run` replays the buffer (timestamps shifted per cycle so time moves forward) through
/// book update → strategy → risk → OMS → order encode, against a venue that
/// acknowledges instantly.
pub struct CoreLoop {
    buffer: Vec<MarketEvent>,
    span: Nanos,
    engine: Engine,
    venue: EchoVenue,
    next: u64,
    orders: u64,
}

impl CoreLoop {
    /// Records 100k events of the simulated market and starts the first strategy.
    pub fn new(config: &Config, seed: u64) -> Result<Self, String> {
        Self::with_buffer(config, seed, record_market_data(config, seed, 100_000))
    }

    /// The core loop over a given recording.
    pub fn with_buffer(
        config: &Config,
        seed: u64,
        buffer: Vec<MarketEvent>,
    ) -> Result<Self, String> {
        if buffer.is_empty() {
            return Err("the simulator produced no market data".into());
        }
        let span = buffer.last().map_or(1, |e| e.ts_exchange + 1);
        let (mut engine, factory, _) = bench_engine(config, seed)?;
        let mut venue = EchoVenue {
            pending: [None; 64],
            n: 0,
            wire: [0; ORDER_WIRE_LEN],
            bytes: 0,
        };
        engine
            .install(factory(), 0, &mut venue)
            .map_err(|p| p.message)?;
        Ok(Self {
            buffer,
            span,
            engine,
            venue,
            next: 0,
            orders: 0,
        })
    }

    /// Processes the next `events` events; returns the orders and cancels encoded.
    pub fn run(&mut self, events: u64) -> u64 {
        let before = self.orders;
        let len = self.buffer.len() as u64;
        for _ in 0..events {
            let i = self.next;
            self.next += 1;
            let mut ev = self.buffer[(i % len) as usize];
            ev.ts_exchange += (i / len) * self.span;
            ev.ts_recv = ev.ts_exchange;
            let now = ev.ts_exchange;
            let _ = self.engine.on_market(&ev, now, &mut self.venue);
            // Acknowledge what was sent (acks may trigger more orders; bounded by the array).
            let mut k = 0;
            while k < self.venue.n {
                if let Some(cmd) = self.venue.pending[k].take() {
                    self.orders += 1;
                    let _ = self
                        .engine
                        .on_report(&echo_report(&cmd, now), now, &mut self.venue);
                }
                k += 1;
            }
            self.venue.n = 0;
        }
        std::hint::black_box(self.venue.bytes);
        self.orders - before
    }
}

/// Runs the core loop over `events` events and times it.
pub fn core_loop(config: &Config, seed: u64, events: u64) -> Result<CoreLoopResult, String> {
    let mut bench = CoreLoop::new(config, seed)?;
    let t0 = Instant::now();
    let orders = bench.run(events);
    let elapsed = t0.elapsed().as_secs_f64().max(1e-9);
    Ok(CoreLoopResult {
        events,
        orders,
        events_per_s: events as f64 / elapsed,
        ns_per_event: elapsed * 1e9 / events.max(1) as f64,
    })
}

/// Result of `hft bench simulator`.
#[derive(Clone, Debug)]
pub struct SimulatorResult {
    /// Order-flow events generated and matched.
    pub flow_events: u64,
    /// Market data events the venue published for them.
    pub md_events: u64,
    /// Simulated seconds covered.
    pub simulated_s: f64,
    /// Flow events per wall-clock second.
    pub flow_events_per_s: f64,
    /// Market data events per wall-clock second.
    pub md_events_per_s: f64,
}

/// The simulated market as fast as it can go: order-flow generation, matching and
/// market-data publication, no engines attached.
pub fn simulator(config: &Config, seed: u64, events: u64) -> SimulatorResult {
    struct Count(u64);
    impl VenueOutput for Count {
        fn market(&mut self, _: &MarketEvent) {
            self.0 += 1;
        }
        fn report(&mut self, _: &OrderReport) {}
    }
    let mut parts = node::build(config, seed, 0);
    let mut out = Count(0);
    let mut last_ts = 0;
    let t0 = Instant::now();
    for _ in 0..events {
        match parts.venue.step_flow(&mut out) {
            Some(ts) => last_ts = ts,
            None => break,
        }
    }
    let elapsed = t0.elapsed().as_secs_f64().max(1e-9);
    let flow = parts.venue.flow_events();
    SimulatorResult {
        flow_events: flow,
        md_events: out.0,
        simulated_s: last_ts as f64 / 1e9,
        flow_events_per_s: flow as f64 / elapsed,
        md_events_per_s: out.0 as f64 / elapsed,
    }
}

/// Result of `hft bench tick-to-order`.
#[derive(Clone, Debug)]
pub struct TickToOrderResult {
    /// Idle mode of both threads.
    pub idle: IdleMode,
    /// Feed receipt → order at the venue session, through the engine thread.
    pub pipeline: LatencySummary,
    /// A bare SPSC handoff between the same two threads, same idle mode and pacing.
    pub handoff: LatencySummary,
    /// Part of the pipeline: feed receipt → the engine starts on the event.
    pub to_engine: LatencySummary,
    /// Part of the pipeline: the engine starts on the event → order at the venue session.
    pub engine_to_venue: LatencySummary,
}

/// Latency histograms of the pipeline, filled by the venue side.
struct PipelineHists {
    total: Histogram<u64>,
    to_engine: Histogram<u64>,
    engine_to_venue: Histogram<u64>,
}

/// The venue side of the bench: takes orders, "writes" them (encode), records their
/// latency and acknowledges them at once.
fn serve_orders(
    clock: &Clock,
    orders: &mut RingRx<OrderCommand>,
    reports: &mut RingTx<OrderReport>,
    hists: &mut PipelineHists,
    wire: &mut [u8; ORDER_WIRE_LEN],
) {
    while let Some(cmd) = orders.pop() {
        let t = clock.now();
        encode_order(&cmd, wire);
        if cmd.tick_ts > 0 {
            let _ = hists.total.record(t.saturating_sub(cmd.tick_ts).max(1));
            let _ = hists
                .to_engine
                .record(cmd.ts.saturating_sub(cmd.tick_ts).max(1));
            let _ = hists
                .engine_to_venue
                .record(t.saturating_sub(cmd.ts).max(1));
        }
        let mut r = echo_report(&cmd, t);
        while let Err(back) = reports.push(r) {
            r = back;
            std::hint::spin_loop();
        }
    }
}

/// Market data through the feed ring → engine thread → order ring → venue session; and,
/// on the same two threads in the same run, a bare handoff of a timestamp through a ring
/// of the same kind. Both ends use `idle` (`hft run` uses `Park`). One sample is in
/// flight at a time, so a descheduled thread delays one sample, not a queue of them.
pub fn tick_to_order(
    config: &Config,
    seed: u64,
    samples: u64,
    max_time: Duration,
    idle: IdleMode,
) -> Result<TickToOrderResult, String> {
    // Long enough for an idle thread to go to sleep in park mode.
    let gap: Nanos = match idle {
        IdleMode::Spin => 10_000,
        IdleMode::Park => 200_000,
    };
    let buffer = record_market_data(config, seed, 200_000);
    // Which messages make the strategy send orders (found by replaying once on this
    // thread): the engine is left idle for `gap` before each of them, and the messages
    // in between are sent back to back, so the run is spent on samples.
    let mut triggers = vec![false; buffer.len()];
    let mut offline = CoreLoop::with_buffer(config, seed, buffer.clone())?;
    for (k, ev) in buffer.iter().enumerate() {
        if offline.run(1) > 0 && ev.is_last() {
            triggers[k] = true;
        }
    }
    let (engine, factory, name) = bench_engine(config, seed)?;
    let clock = Clock::start();
    let engine_parker = Parker::new();
    let gw_parker = Parker::new();
    gw_parker.bind_current();
    let (mut md_tx, md_rx) = ring::<MarketEvent>(4096, &engine_parker);
    let (mut rep_tx, rep_rx) = ring::<OrderReport>(4096, &engine_parker);
    let (ord_tx, mut ord_rx) = ring::<OrderCommand>(4096, &gw_parker);
    let (mut base_tx, mut base_rx) = ring::<Nanos>(4, &engine_parker);
    let (mut ack_tx, mut ack_rx) = ring::<()>(4, &gw_parker);
    let (ctl_tx, ctl_rx) = mpsc::channel();
    let slot = hft_exec::StrategySlot::new(
        name,
        engine,
        factory.clone(),
        hft_exec::RestartPolicy::new(0, 1, 10),
    );
    let thread = EngineThread {
        slot,
        md: md_rx,
        reports: rep_rx,
        orders: ord_tx,
        control: ctl_rx,
        parker: engine_parker.clone(),
        clock,
        timer_interval: 100_000_000,
        live: Arc::new(EngineLive::default()),
        idle,
        crash: Arc::new(Mutex::new(None)),
        warming: false,
    };
    let baseline_n = samples.max(1_000);
    let engine_thread = std::thread::Builder::new()
        .name("engine-bench".into())
        .spawn(move || {
            // Phase 1 on this thread: the bare handoff, with the engine's idle rule.
            engine_parker.bind_current();
            let mut h = hft_telemetry::latency_histogram();
            let (mut got, mut idler) = (0, Idler::new(idle));
            while got < baseline_n {
                if let Some(t) = base_rx.pop() {
                    let _ = h.record(clock.now().saturating_sub(t).max(1));
                    got += 1;
                    idler.reset();
                    let _ = ack_tx.push(());
                } else {
                    idler.idle(&engine_parker, Duration::from_nanos(5_000_000), || {
                        !base_rx.is_empty()
                    });
                }
            }
            // Phase 2: the engine.
            let slot = thread.run();
            (h, slot)
        })
        .map_err(|e| e.to_string())?;
    for _ in 0..baseline_n {
        let (deadline, mut idler) = (clock.now() + gap, Idler::new(idle));
        while clock.now() < deadline {
            idler.idle(
                &gw_parker,
                Duration::from_nanos(deadline.saturating_sub(clock.now())),
                || false,
            );
        }
        while base_tx.push(clock.now()).is_err() {
            std::hint::spin_loop();
        }
        let mut idler = Idler::new(idle);
        while ack_rx.pop().is_none() {
            idler.idle(&gw_parker, Duration::from_nanos(5_000_000), || {
                !ack_rx.is_empty()
            });
        }
    }
    ctl_tx
        .send(Control::Install {
            strategy: factory(),
            restart: false,
        })
        .map_err(|e| e.to_string())?;
    let mut hists = PipelineHists {
        total: hft_telemetry::latency_histogram(),
        to_engine: hft_telemetry::latency_histogram(),
        engine_to_venue: hft_telemetry::latency_histogram(),
    };
    let mut wire = [0u8; ORDER_WIRE_LEN];
    let started = Instant::now();
    let mut i = 0usize;
    let mut cycle = 0u64;
    let span = buffer.last().map_or(1, |e| e.ts_exchange + 1);
    while hists.total.len() < samples && started.elapsed() < max_time {
        // Does the next message make the strategy trade?
        let mut end = i;
        while !buffer[end].is_last() {
            end += 1;
        }
        // Let the engine take everything, and before a trigger let it go idle for `gap`.
        while !md_tx.all_consumed() {
            serve_orders(&clock, &mut ord_rx, &mut rep_tx, &mut hists, &mut wire);
            std::hint::spin_loop();
        }
        if triggers[end] {
            let (deadline, mut idler) = (clock.now() + gap, Idler::new(idle));
            loop {
                serve_orders(&clock, &mut ord_rx, &mut rep_tx, &mut hists, &mut wire);
                let now = clock.now();
                if now >= deadline {
                    break;
                }
                idler.idle(&gw_parker, Duration::from_nanos(deadline - now), || {
                    !ord_rx.is_empty()
                });
            }
        }
        loop {
            let mut ev = buffer[i];
            ev.ts_exchange += cycle * span;
            ev.ts_recv = clock.now();
            while md_tx.push(ev).is_err() {
                std::hint::spin_loop();
            }
            i += 1;
            if i == buffer.len() {
                i = 0;
                cycle += 1;
            }
            if ev.is_last() {
                break;
            }
        }
        if triggers[end] {
            // Wait for the orders it causes (the engine's push wakes this thread).
            let (deadline, mut idler) = (clock.now() + gap, Idler::new(idle));
            while ord_rx.is_empty() && clock.now() < deadline {
                idler.idle(
                    &gw_parker,
                    Duration::from_nanos(deadline.saturating_sub(clock.now())),
                    || !ord_rx.is_empty(),
                );
            }
        }
        serve_orders(&clock, &mut ord_rx, &mut rep_tx, &mut hists, &mut wire);
    }
    let _ = ctl_tx.send(Control::Stop);
    while !engine_thread.is_finished() {
        serve_orders(&clock, &mut ord_rx, &mut rep_tx, &mut hists, &mut wire);
        std::thread::yield_now();
    }
    let (handoff, _slot) = engine_thread.join().map_err(|_| "engine thread panicked")?;
    Ok(TickToOrderResult {
        idle,
        pipeline: LatencySummary::of(&hists.total),
        handoff: LatencySummary::of(&handoff),
        to_engine: LatencySummary::of(&hists.to_engine),
        engine_to_venue: LatencySummary::of(&hists.engine_to_venue),
    })
}

/// Result of `hft bench feed-decode`.
#[derive(Clone, Debug)]
pub struct FeedDecodeResult {
    /// Messages in the capture.
    pub messages: u64,
    /// Messages decoded and normalised per second (best of the rounds).
    pub msgs_per_s: f64,
    /// The same messages parsed into `serde_json::Value` per second (best of the rounds).
    pub baseline_msgs_per_s: f64,
    /// Normalised events per message.
    pub events_per_msg: f64,
    /// Messages that failed to decode or normalise.
    pub errors: u64,
}

/// Decode + normalise of a real capture's messages against parsing the same messages
/// into `serde_json::Value`, alternating rounds in the same run.
pub fn feed_decode(path: &std::path::Path, rounds: u32) -> Result<FeedDecodeResult, String> {
    use hft_feed::binance::{BinanceDecoder, BinanceNormalizer};
    let lines = hft_feed::capture::CaptureReader::open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .read_all()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if lines.is_empty() {
        return Err(format!("{}: no messages", path.display()));
    }
    let mut decoder = BinanceDecoder::with_capacity(1024);
    let mut normalizer = BinanceNormalizer::new(hft_feed::InstrumentRegistry::auto(8, 8));
    let mut symbol = String::new();
    let (mut best, mut best_base) = (f64::MAX, f64::MAX);
    let (mut events, mut errors) = (0u64, 0u64);
    for _ in 0..rounds.max(1) {
        let t0 = Instant::now();
        events = 0;
        errors = 0;
        for (ts, msg) in &lines {
            match decoder.decode(msg) {
                Ok(m) => {
                    if let Some(s) = m.symbol() {
                        if s != symbol {
                            symbol.clear();
                            symbol.push_str(s);
                        }
                    }
                    let snapshot_of = Some(symbol.as_str()).filter(|s| !s.is_empty());
                    let (bids, asks) = decoder.levels_mut();
                    match normalizer.normalize(&m, bids, asks, *ts, snapshot_of, &mut |e| {
                        events += 1;
                        std::hint::black_box(e);
                    }) {
                        Ok(_) => {}
                        Err(_) => errors += 1,
                    }
                }
                Err(_) => errors += 1,
            }
        }
        best = best.min(t0.elapsed().as_secs_f64());
        let t1 = Instant::now();
        for (_, msg) in &lines {
            let v: Result<serde_json::Value, _> = serde_json::from_str(msg);
            std::hint::black_box(v.is_ok());
        }
        best_base = best_base.min(t1.elapsed().as_secs_f64());
    }
    let n = lines.len() as f64;
    Ok(FeedDecodeResult {
        messages: lines.len() as u64,
        msgs_per_s: n / best.max(1e-9),
        baseline_msgs_per_s: n / best_base.max(1e-9),
        events_per_msg: events as f64 / n,
        errors,
    })
}

/// Result of `hft bench book-update`.
#[derive(Clone, Debug)]
pub struct BookUpdateResult {
    /// Level updates applied.
    pub updates: u64,
    /// Wall-clock cost per update.
    pub ns_per_update: f64,
}

/// L2 book updates from deltas: the simulator's level events replayed into one book
/// (timestamps and order as recorded), `updates` times in a row.
pub fn book_update(config: &Config, seed: u64, updates: u64) -> Result<BookUpdateResult, String> {
    let levels: Vec<MarketEvent> = record_market_data(config, seed, 200_000)
        .into_iter()
        .filter(|e| e.instrument == hft_core::InstrumentId(0))
        .collect();
    if levels.is_empty() {
        return Err("the simulator produced no market data".into());
    }
    let mut book = hft_book::L2Book::with_capacity(hft_core::InstrumentId(0), node::BOOK_DEPTH);
    let t0 = Instant::now();
    for i in 0..updates {
        let ev = &levels[(i % levels.len() as u64) as usize];
        let _ = std::hint::black_box(book.apply(std::hint::black_box(ev)));
    }
    let secs = t0.elapsed().as_secs_f64();
    std::hint::black_box(book.best_bid());
    Ok(BookUpdateResult {
        updates,
        ns_per_update: secs * 1e9 / updates.max(1) as f64,
    })
}
