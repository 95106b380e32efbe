//! The strategy families in the backtester: arbitrage fires on a mispricing and ends
//! flat net of legs, pairs trading opens and closes on a cointegrated spread, and the
//! ML strategy trains on real data and trades on its model.

use hft_backtest::run::{Outcome, run};
use hft_backtest::{engine_with, loose_limits, peer_setup};
use hft_core::{
    FLAG_LAST, FLAG_SNAPSHOT, InstrumentId, InstrumentSpec, MarketEvent, MarketEventKind, Price,
    Qty, Side,
};
use hft_strategy::params::{CrossArbParams, HedgeMethod, MlParams, PairsParams, TriangularParams};
use hft_strategy::{CrossVenueArb, MlTrader, PairsTrader, Strategy, TriangularArb};
mod common;

fn spec(id: u32, symbol: &str, price_scale: u8, tick: i64) -> InstrumentSpec {
    InstrumentSpec::new(
        InstrumentId(id),
        symbol,
        price_scale,
        3,
        Price(tick),
        Qty(1),
    )
}

/// Events of one venue message setting a two-sided book (a snapshot when `snapshot`).
fn book(ts: u64, id: u32, bid: i64, ask: i64, qty: i64, snapshot: bool) -> Vec<MarketEvent> {
    let ev = |kind, last: bool| MarketEvent {
        ts_exchange: ts,
        ts_recv: ts,
        seq: 0,
        instrument: InstrumentId(id),
        flags: if snapshot { FLAG_SNAPSHOT } else { 0 } | if last { FLAG_LAST } else { 0 },
        kind,
    };
    let level = |side, price, qty| MarketEventKind::Level {
        side,
        price: Price(price),
        qty: Qty(qty),
    };
    let mut v = Vec::new();
    if snapshot {
        v.push(ev(MarketEventKind::Clear, false));
    }
    v.push(ev(level(Side::Buy, bid, qty), false));
    v.push(ev(level(Side::Sell, ask, qty), true));
    v
}

/// Moves a book: drops the old touch, sets the new one.
fn move_book(ts: u64, id: u32, old: (i64, i64), new: (i64, i64), qty: i64) -> Vec<MarketEvent> {
    let mut v = book(ts, id, new.0, new.1, qty, false);
    let del = |side, price| MarketEvent {
        ts_exchange: ts,
        ts_recv: ts,
        seq: 0,
        instrument: InstrumentId(id),
        flags: 0,
        kind: MarketEventKind::Level {
            side,
            price: Price(price),
            qty: Qty(0),
        },
    };
    if old.0 != new.0 {
        v.insert(0, del(Side::Buy, old.0));
    }
    if old.1 != new.1 {
        v.insert(0, del(Side::Sell, old.1));
    }
    v
}

fn backtest(specs: &[InstrumentSpec], s: Box<dyn Strategy>, events: &[MarketEvent]) -> Outcome {
    let engine = engine_with(specs, 0, specs[0].id, s, loose_limits(Qty(1_000_000)));
    let mut setup = peer_setup();
    setup.timer_interval = 100_000_000;
    run(setup, specs.to_vec(), vec![engine], events)
}

fn position(o: &Outcome, id: u32) -> i64 {
    o.engines[0].position(InstrumentId(id)).qty.raw()
}

/// Two venues quoting 100.00/100.01; then the second's touch moves to
/// `jump` / `jump + 1` for 40 ms; an arb with a 5 bps threshold watches.
fn arb_run(specs: &[InstrumentSpec], jump: i64) -> Outcome {
    let mut ev = book(1_000_000, 0, 10_000, 10_001, 5_000, true);
    ev.extend(book(1_000_000, 1, 10_000, 10_001, 5_000, true));
    ev.extend(move_book(
        10_000_000,
        1,
        (10_000, 10_001),
        (jump, jump + 1),
        2_000,
    ));
    ev.extend(move_book(
        50_000_000,
        1,
        (jump, jump + 1),
        (10_000, 10_001),
        5_000,
    ));
    ev.extend(book(90_000_000, 0, 10_000, 10_001, 5_000, false));
    let arb = CrossVenueArb::new(
        InstrumentId(0),
        CrossArbParams {
            other: InstrumentId(1),
            order_qty: Qty(1_500),
            min_edge_bps: 5.0,
            max_position: Qty(10_000),
            cooldown_ms: 5,
        },
    );
    backtest(specs, Box::new(arb), &ev)
}

#[test]
fn cross_venue_arb_buys_the_cheap_leg_and_sells_the_rich_one() {
    let specs = [spec(0, "SPOT", 2, 1), spec(1, "PERP", 2, 1)];
    // The perpetual's bid jumps 20 bps over the spot ask.
    let o = arb_run(&specs, 10_020);
    assert_eq!(o.fills.len(), 2, "{:?}", o.fills);
    assert_eq!(position(&o, 0), 1_500, "bought the spot");
    assert_eq!(position(&o, 1), -1_500, "sold the perpetual");
    // Both legs marked at their mids: the round locked in about 19 bps of 1.5 units.
    let pnl = o.engines[0].pnl().raw();
    assert!(pnl > 0, "PnL {pnl}");
    assert_eq!(
        pnl,
        o.engines[0].pnl_of(InstrumentId(0)).raw() + o.engines[0].pnl_of(InstrumentId(1)).raw()
    );

    // Attribution: takers pay half the spread on each leg; the gain is the basis
    // they lock in, which shows as inventory; the parts add up per leg.
    let a = hft_backtest::report::attribution(&o, &specs);
    assert_eq!(a.len(), 2, "{a:?}");
    for x in &a {
        assert_eq!(
            x.total,
            x.spread + x.slippage + x.inventory - x.fees,
            "{x:?}"
        );
        assert!(x.spread < 0, "a taker pays the half spread: {x:?}");
        assert_eq!(
            x.slippage, 0,
            "nothing moved between decision and fill: {x:?}"
        );
    }
    assert_eq!(a.iter().map(|x| x.total).sum::<i64>(), pnl);

    // Without the edge (a jump of 5 bps, under the threshold after nothing) no trade.
    let o = arb_run(&specs, 10_005);
    assert!(o.fills.is_empty() && o.orders.is_empty(), "{:?}", o.orders);
}

#[test]
fn triangular_arb_goes_round_the_mispriced_triangle() {
    // BTC-USD 50000.00, ETH-USD 2500.00, ETH-BTC 0.05000 is consistent; the cross then
    // bids 0.05100, 2% rich.
    let specs = [
        spec(0, "BTC-USD", 2, 1),
        spec(1, "ETH-USD", 2, 1),
        spec(2, "ETH-BTC", 5, 1),
    ];
    let mut ev = book(1_000_000, 0, 5_000_000, 5_000_001, 100_000, true);
    ev.extend(book(1_000_000, 1, 250_000, 250_001, 100_000, true));
    ev.extend(book(1_000_000, 2, 5_000, 5_001, 100_000, true));
    ev.extend(move_book(
        20_000_000,
        2,
        (5_000, 5_001),
        (5_100, 5_101),
        100_000,
    ));
    ev.extend(move_book(
        60_000_000,
        2,
        (5_100, 5_101),
        (5_000, 5_001),
        100_000,
    ));
    let tri = TriangularArb::new(
        InstrumentId(0),
        TriangularParams {
            second: InstrumentId(1),
            cross: InstrumentId(2),
            order_qty: Qty(1_000),
            min_edge_bps: 10.0,
            max_position: Qty(10_000),
            cooldown_ms: 5,
        },
    );
    let o = backtest(&specs, Box::new(tri), &ev);
    assert_eq!(o.fills.len(), 3, "{:?}", o.fills);
    // Bought 1 ETH for USD, sold it for BTC, sold the BTC (0.051) for USD.
    assert_eq!(position(&o, 1), 1_000);
    assert_eq!(position(&o, 2), -1_000);
    assert_eq!(position(&o, 0), -51);
}

/// xorshift uniform in [-0.5, 0.5).
fn noise(x: &mut u64) -> f64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    (*x >> 11) as f64 / (1u64 << 53) as f64 - 0.5
}

#[test]
fn pairs_trades_a_cointegrated_spread_and_stays_out_of_independent_walks() {
    let specs = [spec(0, "Y", 2, 1), spec(1, "X", 2, 1)];
    let run_pairs = |coint: bool| {
        let mut ev = Vec::new();
        let (mut r, mut x, mut z) = (0x9E37_79B9_7F4A_7C15u64, 0.0f64, 0.0f64);
        let mut prev: Option<((i64, i64), (i64, i64))> = None;
        for step in 0..3_000u64 {
            x += noise(&mut r) * 0.002;
            // The spread: mean-reverting (AR(1), phi 0.9), or a walk of its own.
            let keep = if coint { 0.9 } else { 1.0 };
            z = keep * z + noise(&mut r) * 0.004;
            let px = (10_000.0 * x.exp()).round() as i64;
            let py = (10_000.0 * (x + z).exp()).round() as i64;
            let ts = 1_000_000 + step * 100_000_000;
            let (bx, by) = ((px - 1, px + 1), (py - 1, py + 1));
            match prev {
                None => {
                    ev.extend(book(ts, 0, by.0, by.1, 1_000_000, true));
                    ev.extend(book(ts, 1, bx.0, bx.1, 1_000_000, true));
                }
                Some((oy, ox)) => {
                    ev.extend(move_book(ts, 0, oy, by, 1_000_000));
                    ev.extend(move_book(ts, 1, ox, bx, 1_000_000));
                }
            }
            prev = Some((by, bx));
        }
        let p = PairsTrader::new(
            InstrumentId(0),
            PairsParams {
                other: InstrumentId(1),
                hedge: HedgeMethod::Ols,
                sample_ms: 100,
                window: 200,
                entry_z: 2.0,
                exit_z: 0.5,
                adf_lags: 1,
                adf_critical: -3.34,
                order_qty: Qty(1_000),
            },
        );
        backtest(&specs, Box::new(p), &ev)
    };
    let o = run_pairs(true);
    let y_fills = o
        .fills
        .iter()
        .filter(|f| f.report.instrument == InstrumentId(0))
        .count();
    assert!(
        y_fills >= 4,
        "a cointegrated pair should open and close: {y_fills} fills"
    );
    let independent = run_pairs(false);
    assert!(
        independent.fills.len() < o.fills.len() / 2,
        "independent walks traded {} times against {}",
        independent.fills.len(),
        o.fills.len()
    );
}

#[test]
fn ml_model_trains_walk_forward_on_real_data_and_trades() {
    let loaded = hft_backtest::load(&common::capture("spot_ethusdt_20240808.gz")).unwrap();
    let opts = hft_backtest::train::TrainOptions {
        horizon: 500_000_000,
        sample: 100_000_000,
        folds: 3,
        ..Default::default()
    };
    let r = hft_backtest::train::train(&loaded, &opts).unwrap();
    assert!(r.rows > 300, "{} rows", r.rows);
    assert_eq!(r.folds.len(), 3);
    for f in &r.folds {
        assert!(
            f.logloss.is_finite() && (0.0..=1.0).contains(&f.accuracy),
            "{f:?}"
        );
        assert!(f.train_rows > 0 && f.test_rows > 0);
    }
    let model = hft_strategy::signals::LogisticModel::from_json(&r.model.to_json()).unwrap();
    let spec = &loaded.specs[0];
    let ml = MlTrader::new(
        spec.id,
        MlParams {
            model,
            threshold: 0.55,
            order_qty: spec.lot_size,
            max_position: Qty(spec.lot_size.raw() * 5),
            horizon_ms: 500,
            learning_rate: 0.05,
        },
    );
    let engine = engine_with(
        &loaded.specs,
        0,
        spec.id,
        Box::new(ml),
        loose_limits(Qty(spec.lot_size.raw() * 6)),
    );
    let o = run(
        peer_setup(),
        loaded.specs.clone(),
        vec![engine],
        &loaded.events,
    );
    assert!(!o.orders.is_empty(), "the model never leaned either way");
    let pos = o.engines[0].position(spec.id).qty.raw().abs();
    assert!(
        pos <= spec.lot_size.raw() * 5,
        "position {pos} beyond the limit"
    );
}

#[test]
fn a_streamed_run_equals_the_in_memory_run() {
    // Small batches: after the first 200,000 events (read up front for the tick and
    // lot), hundreds of refills, and depth messages cut across batch ends.
    let path = common::capture("usdm_btcusdt_20240808.gz");
    let loaded = hft_backtest::load(&path).unwrap();
    let mem = run(
        peer_setup(),
        loaded.specs.clone(),
        hft_backtest::touch_engines(&loaded.specs),
        &loaded.events,
    );
    let mut stream = hft_backtest::Stream::open(&path, &[], 1_000).unwrap();
    assert_eq!(stream.specs, loaded.specs);
    let streamed = hft_backtest::run::run_source(
        peer_setup(),
        stream.specs.clone(),
        hft_backtest::touch_engines(&stream.specs),
        &mut stream,
    );
    assert!(stream.take_error().is_none());
    assert_eq!(streamed.events, mem.events);
    assert!(mem.fills.len() > 10, "{} fills", mem.fills.len());
    let key = |o: &Outcome| -> Vec<(u64, u64, i64)> {
        o.fills
            .iter()
            .map(|f| (f.local_ts, f.report.cl_ord_id.0, f.realized_after))
            .collect()
    };
    assert_eq!(key(&streamed), key(&mem));
    assert_eq!(streamed.orders.len(), mem.orders.len());
    assert_eq!(streamed.engines[0].pnl(), mem.engines[0].pnl());
}

/// A streamed touch-maker run over `path` with the progress reports it made.
fn streamed_with_progress(path: &std::path::Path) -> (Outcome, Vec<(u64, u64)>) {
    let mut stream = hft_backtest::Stream::open(path, &[], 65_536).unwrap();
    let mut setup = peer_setup();
    let c = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let c2 = c.clone();
    setup.progress = Some(Box::new(move |done, all| c2.borrow_mut().push((done, all))));
    let specs = stream.specs.clone();
    let o = hft_backtest::run::run_source(
        setup,
        specs.clone(),
        hft_backtest::touch_engines(&specs),
        &mut stream,
    );
    let seen = c.borrow().clone();
    (o, seen)
}

#[test]
fn progress_is_reported_about_every_percent_in_memory_and_streamed() {
    let path = common::capture("spot_ethusdt_20240808.gz");
    let loaded = hft_backtest::load(&path).unwrap();
    let calls = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let mut setup = peer_setup();
    let c = calls.clone();
    setup.progress = Some(Box::new(move |done, all| c.borrow_mut().push((done, all))));
    let o = run(
        setup,
        loaded.specs.clone(),
        hft_backtest::touch_engines(&loaded.specs),
        &loaded.events,
    );
    let seen = calls.borrow().clone();
    assert!((95..=101).contains(&seen.len()), "{} calls", seen.len());
    assert!(seen.iter().all(|&(d, a)| a == o.events && d <= a));
    assert!(seen.windows(2).all(|w| w[0].0 < w[1].0));

    let (o, seen) = streamed_with_progress(&path);
    assert!((95..=101).contains(&seen.len()), "{} calls", seen.len());
    assert!(
        seen.iter().all(|&(d, a)| a == o.events && d <= a),
        "{seen:?}"
    );

    // Order-by-order rows become more events than rows: progress stays in rows.
    let path = common::data("cme_databento/esh4-glbx-mdp3-20231225.mbo.dbn.zst");
    let (o, seen) = streamed_with_progress(&path);
    let rows = seen.first().map_or(0, |s| s.1);
    assert!(o.events > rows, "{} events from {rows} rows", o.events);
    assert!(seen.iter().all(|&(d, a)| a == rows && d <= a), "{seen:?}");
    let last = seen.last().map_or(0, |s| s.0);
    assert!(last * 100 >= rows * 90, "progress ends at {last} of {rows}");
}
