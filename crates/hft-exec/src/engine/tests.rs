//! Engine tests against the real simulated venue on a simulated clock.

use crate::{Engine, EngineSetup, RestartPolicy, SimSession, SimTiming, SimVenue, StrategySlot};
use hft_core::{
    InstrumentId, InstrumentSpec, Money, NANOS_PER_SEC, Price, Qty, StrategyId, TradingState,
};
use hft_feed::SimParams;
use hft_risk::{KillSwitch, NodeExposure, PreTradeRisk, RiskLimits};
use hft_strategy::{Context, MarketMaking, MarketMakingParams, Strategy};

pub(crate) fn spec() -> InstrumentSpec {
    InstrumentSpec {
        min_notional: Money::parse_quote("10").unwrap(),
        ..InstrumentSpec::new(InstrumentId(0), "BTC-USD", 2, 4, Price(100), Qty(10))
            .with_fees(-25, 500)
    }
}

pub(crate) fn sim() -> SimParams {
    SimParams::typical(Price(6_000_000))
}

fn limits() -> RiskLimits {
    RiskLimits {
        max_order_qty: Qty(500),
        max_order_notional: Money::parse_quote("5000").unwrap(),
        price_band_bps: 100,
        max_position: Qty(1000),
        max_orders_per_sec: 200,
        max_open_orders: 10,
        max_daily_loss: Money::parse_quote("2000").unwrap(),
    }
}

fn mm_params() -> MarketMakingParams {
    MarketMakingParams {
        risk_aversion: 0.1,
        liquidity: 0.5,
        horizon_s: 1.0,
        order_qty: Qty(100),
        max_inventory: Qty(500),
        requote_ticks: 2,
        vol_halflife_s: 20.0,
    }
}

/// A bare engine on the test instrument with the test limits and hot-cache `cache`.
fn lone_engine(cache: hft_book::CacheSizes) -> Engine {
    let setup = EngineSetup {
        strategy: StrategyId(0),
        instrument: InstrumentId(0),
        specs: vec![spec()],
        book_depth: 16,
        max_open_orders: 10,
        epoch: 0,
        cache,
    };
    let exposure = NodeExposure::new(1, Money(i64::MAX));
    Engine::new(
        setup,
        PreTradeRisk::new(limits(), KillSwitch::new(false), exposure),
    )
}

/// Panics on the n-th market callback, otherwise quotes like the market maker.
struct Flaky {
    inner: MarketMaking,
    calls: u32,
    panic_at: u32,
}

impl Strategy for Flaky {
    fn on_market(&mut self, ctx: &mut Context<'_>, ev: &hft_core::MarketEvent) {
        self.calls += 1;
        if self.calls == self.panic_at {
            panic!("flaky strategy blew up");
        }
        self.inner.on_market(ctx, ev);
    }
}

fn session(seed: u64, flaky_at: Option<u32>) -> SimSession {
    session_with(seed, flaky_at, limits())
}

fn session_with(seed: u64, flaky_at: Option<u32>, limits: RiskLimits) -> SimSession {
    let specs = vec![spec()];
    let venue = SimVenue::new(seed, 0, &[(spec(), sim())], 20);
    let exposure = NodeExposure::new(2, Money::parse_quote("10000000").unwrap());
    let kill = KillSwitch::new(false);
    let mut slots = Vec::new();
    for (i, flaky) in [None, flaky_at].into_iter().enumerate() {
        let setup = EngineSetup {
            strategy: StrategyId(i as u16),
            instrument: InstrumentId(0),
            specs: specs.clone(),
            book_depth: 256,
            max_open_orders: 10,
            epoch: 0,
            cache: hft_book::CacheSizes::default(),
        };
        let engine = Engine::new(
            setup,
            PreTradeRisk::new(limits.clone(), kill.clone(), exposure.clone()),
        );
        let factory: crate::StrategyFactory = match flaky {
            None => {
                std::sync::Arc::new(|| Box::new(MarketMaking::new(InstrumentId(0), mm_params())))
            }
            Some(at) => std::sync::Arc::new(move || {
                Box::new(Flaky {
                    inner: MarketMaking::new(InstrumentId(0), mm_params()),
                    calls: 0,
                    panic_at: at,
                })
            }),
        };
        slots.push(StrategySlot::new(
            format!("s{i}"),
            engine,
            factory,
            RestartPolicy::new(2, 60, 100),
        ));
    }
    let timing = SimTiming {
        md_latency: 25_000,
        order_latency: 50_000,
        timer_interval: 100_000_000,
    };
    SimSession::new(venue, slots, timing, 0)
}

#[test]
fn market_maker_trades_both_sides_and_is_deterministic() {
    let run = |seed| {
        let mut s = session(seed, None);
        s.run_until(20 * NANOS_PER_SEC, |_| false);
        s.shutdown();
        let slots = s.into_slots();
        let e = &slots[0].engine;
        (
            e.fills_digest(),
            e.fill_count(),
            e.position(InstrumentId(0)).volume,
            e.open_orders().len(),
            e.oms_stats().errors,
        )
    };
    let a = run(11);
    let b = run(11);
    assert_eq!(a, b, "same seed, same fills");
    let (_, fills, volume, open_after_shutdown, oms_errors) = a;
    assert!(fills >= 4, "only {fills} fills");
    assert!(volume.raw() > 0);
    assert_eq!(open_after_shutdown, 0, "shutdown cancels everything");
    assert_eq!(oms_errors, 0);
    assert_ne!(run(12).0, a.0, "another seed trades differently");
}

#[test]
fn panicking_strategy_restarts_then_halts_while_the_other_trades() {
    let mut s = session(5, Some(50));
    s.run_until(30 * NANOS_PER_SEC, |_| false);
    s.shutdown();
    let slots = s.into_slots();
    // Each restart builds a fresh Flaky that panics again at its 50th call: 2 restarts,
    // then the third crash halts it.
    assert_eq!(slots[1].restarts, 2);
    assert!(
        slots[1]
            .halted
            .as_deref()
            .unwrap_or("")
            .contains("3 crashes"),
        "{:?}",
        slots[1].halted
    );
    assert_eq!(slots[1].engine.risk().state(), TradingState::Halted);
    assert_eq!(slots[1].engine.stats().panics, 3);
    assert!(slots[1].engine.open_orders().is_empty());
    // The healthy strategy kept trading throughout.
    assert!(slots[0].engine.fill_count() > 0);
    assert!(slots[0].halted.is_none());
}

/// Counts market callbacks.
struct Counting(std::sync::Arc<std::sync::atomic::AtomicU32>);

impl Strategy for Counting {
    fn on_market(&mut self, _ctx: &mut Context<'_>, _ev: &hft_core::MarketEvent) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

#[test]
fn sequence_gap_stops_the_strategy_until_a_snapshot() {
    use hft_core::{FLAG_LAST, FLAG_SNAPSHOT, MarketEvent, MarketEventKind, Side};
    struct Null;
    impl crate::OrderSink for Null {
        fn send(&mut self, _: &hft_core::OrderCommand) -> bool {
            true
        }
    }
    let mut engine = lone_engine(hft_book::CacheSizes::default());
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    engine
        .install(Box::new(Counting(calls.clone())), 0, &mut Null)
        .unwrap();
    let ev = |seq, flags, kind| MarketEvent {
        ts_exchange: 0,
        ts_recv: 0,
        seq,
        instrument: InstrumentId(0),
        flags,
        kind,
    };
    let level = |side, px| MarketEventKind::Level {
        side,
        price: Price(px),
        qty: Qty(10),
    };
    let snapshot = |engine: &mut Engine, seq| {
        engine
            .on_market(
                &ev(seq, FLAG_SNAPSHOT, MarketEventKind::Clear),
                0,
                &mut Null,
            )
            .unwrap();
        engine
            .on_market(
                &ev(seq, FLAG_SNAPSHOT, level(Side::Buy, 5_999_900)),
                0,
                &mut Null,
            )
            .unwrap();
        engine
            .on_market(
                &ev(seq, FLAG_SNAPSHOT | FLAG_LAST, level(Side::Sell, 6_000_100)),
                0,
                &mut Null,
            )
            .unwrap();
    };
    let calls_now = || calls.load(std::sync::atomic::Ordering::Relaxed);
    assert!(engine.is_stale(InstrumentId(0)), "no snapshot yet");
    snapshot(&mut engine, 5);
    assert!(!engine.is_stale(InstrumentId(0)));
    assert_eq!(calls_now(), 1);
    engine
        .on_market(&ev(6, FLAG_LAST, level(Side::Buy, 5_999_800)), 0, &mut Null)
        .unwrap();
    assert_eq!(calls_now(), 2);
    // Message 7 is lost.
    engine
        .on_market(&ev(8, FLAG_LAST, level(Side::Buy, 5_999_700)), 0, &mut Null)
        .unwrap();
    assert!(engine.is_stale(InstrumentId(0)));
    assert_eq!(engine.stats().gaps, 1);
    engine
        .on_market(&ev(9, FLAG_LAST, level(Side::Buy, 5_999_600)), 0, &mut Null)
        .unwrap();
    assert_eq!(calls_now(), 2, "no strategy call on a stale book");
    snapshot(&mut engine, 9);
    assert!(!engine.is_stale(InstrumentId(0)));
    assert_eq!(calls_now(), 3);
    engine
        .on_market(
            &ev(10, FLAG_LAST, level(Side::Buy, 5_999_500)),
            0,
            &mut Null,
        )
        .unwrap();
    assert_eq!(
        engine.stats().gaps,
        1,
        "the snapshot restarted the sequence"
    );
    assert_eq!(calls_now(), 4);
}

#[test]
fn loss_limit_switches_to_reducing_and_the_position_only_shrinks() {
    // Any loss at all trips the breaker.
    let tight = RiskLimits {
        max_daily_loss: Money::ZERO,
        ..limits()
    };
    let mut s = session_with(3, None, tight);
    s.run_until(20 * NANOS_PER_SEC, |_| false);
    let e = &s.slots()[0].engine;
    assert_eq!(e.risk().state(), TradingState::Reducing, "pnl {}", e.pnl());
    assert!(e.risk().breaker_trips() >= 1);
    let at_trip = e.position(InstrumentId(0)).qty.raw().abs();
    s.run_until(40 * NANOS_PER_SEC, |_| false);
    let e = &s.slots()[0].engine;
    assert!(e.position(InstrumentId(0)).qty.raw().abs() <= at_trip);
    assert!(
        e.open_orders()
            .iter()
            .all(|o| o.side.sign() != e.position(InstrumentId(0)).qty.raw().signum())
    );
}

#[test]
fn strategies_read_recent_trades_and_books_from_the_hot_cache() {
    use hft_core::{FLAG_LAST, FLAG_SNAPSHOT, MarketEvent, MarketEventKind, Side};
    use std::sync::{Arc, Mutex};
    struct Null;
    impl crate::OrderSink for Null {
        fn send(&mut self, _: &hft_core::OrderCommand) -> bool {
            true
        }
    }
    /// What the strategy saw on its last callback: trade prices and best bids, newest
    /// first, and the live book's best bid.
    type Seen = Arc<Mutex<(Vec<i64>, Vec<i64>, i64)>>;
    struct Reader(Seen);
    impl Strategy for Reader {
        fn on_market(&mut self, ctx: &mut Context<'_>, _: &MarketEvent) {
            let id = InstrumentId(0);
            let trades = ctx.recent_trades(id).map(|t| t.price.raw()).collect();
            let bids = ctx
                .recent_books(id)
                .map(|b| b.bids.first().map_or(0, |l| l.0.raw()))
                .collect();
            let live = ctx.book(id).best_bid().map_or(0, |l| l.0.raw());
            *self.0.lock().unwrap() = (trades, bids, live);
        }
    }
    let sizes = hft_book::CacheSizes {
        trades: 3,
        depth: 4,
        snapshots: 8,
    };
    let mut engine = lone_engine(sizes);
    let seen: Seen = Arc::default();
    engine
        .install(Box::new(Reader(seen.clone())), 0, &mut Null)
        .unwrap();
    let mut seq = 0;
    let mut send = |engine: &mut Engine, flags, kind| {
        seq += u64::from(flags & FLAG_SNAPSHOT == 0);
        let ev = MarketEvent {
            ts_exchange: seq,
            ts_recv: 0,
            seq,
            instrument: InstrumentId(0),
            flags,
            kind,
        };
        engine.on_market(&ev, 0, &mut Null).unwrap();
    };
    let level = |px| MarketEventKind::Level {
        side: Side::Buy,
        price: Price(px),
        qty: Qty(10),
    };
    send(&mut engine, FLAG_SNAPSHOT, MarketEventKind::Clear);
    send(&mut engine, FLAG_SNAPSHOT | FLAG_LAST, level(5_999_000));
    for k in 1..=5 {
        send(&mut engine, FLAG_LAST, level(5_999_000 + k * 100));
        let trade = MarketEventKind::Trade {
            aggressor: Side::Sell,
            price: Price(5_999_000 + k * 100),
            qty: Qty(10),
        };
        send(&mut engine, FLAG_LAST, trade);
    }
    let (trades, bids, live) = seen.lock().unwrap().clone();
    assert_eq!(
        trades,
        vec![5_999_500, 5_999_400, 5_999_300],
        "the last 3, newest first"
    );
    assert_eq!(bids[0], live, "the newest snapshot is the live book");
    assert_eq!(
        &bids[..5],
        &[5_999_500, 5_999_400, 5_999_300, 5_999_200, 5_999_100]
    );
    assert_eq!(
        bids.len(),
        6,
        "one per change of the touch, the snapshot included"
    );
}

/// Asks for an order risk refuses (above `max_order_qty`) on every timer, and again
/// each time it hears of a refusal.
struct Insistent(std::sync::Arc<std::sync::atomic::AtomicU32>);

impl Strategy for Insistent {
    fn on_market(&mut self, _ctx: &mut Context<'_>, _ev: &hft_core::MarketEvent) {}

    fn on_timer(&mut self, ctx: &mut Context<'_>) {
        let _ = ctx.place(
            InstrumentId(0),
            hft_core::Side::Buy,
            Price(6_000_000),
            Qty(10_000),
            hft_core::TimeInForce::Gtc,
            false,
        );
    }

    fn on_order_update(&mut self, ctx: &mut Context<'_>, r: &hft_core::OrderReport) {
        if r.kind == hft_core::OrderReportKind::Rejected(hft_core::RejectReason::Risk) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.on_timer(ctx);
        }
    }
}

#[test]
fn a_risk_refusal_reaches_the_strategy_once_per_event_without_looping() {
    struct Sink(u32);
    impl crate::OrderSink for Sink {
        fn send(&mut self, _: &hft_core::OrderCommand) -> bool {
            self.0 += 1;
            true
        }
    }
    let mut e = lone_engine(hft_book::CacheSizes::default());
    let told = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let mut sink = Sink(0);
    e.install(Box::new(Insistent(told.clone())), 0, &mut sink)
        .unwrap();
    for t in 1..=3 {
        e.on_timer(t * NANOS_PER_SEC, &mut sink).unwrap();
        // Each event tells the refusals held so far (this event's order and those the
        // strategy asked for while hearing of earlier ones), once each; what it asks
        // for while being told waits for the next event: 1, 1 + 2, 1 + 2 + 3.
        let t = t as u32;
        assert_eq!(
            told.load(std::sync::atomic::Ordering::Relaxed),
            t * (t + 1) / 2,
            "after timer {t}"
        );
    }
    assert_eq!(sink.0, 0, "a refused order never leaves the engine");
}
