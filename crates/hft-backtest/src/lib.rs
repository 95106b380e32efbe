//! Deterministic event-driven backtests over recorded data, driving the same engine,
//! risk, OMS and strategy code as a live node.
//!
//! - [`model`]: order entry/response latency (constant, seeded log-normal, recorded
//!   series), feed latency (zero, constant, from the data's timestamps) and queue
//!   position models for resting orders on L2 data (risk-averse, power, log).
//! - [`exchange`]: the simulated venue: its copy of the recorded books, our resting
//!   orders with their queue position, partial fills, maker/taker fees, post-only and
//!   self-trade prevention.
//! - [`run`]: the two-clock loop; strategies see an event only at its local time.
//! - [`report`]: metrics, CSV and HTML reports, byte-identical for identical runs.
//! - The [`stress`] scenarios (price gap, liquidity drought, latency spike, venue
//!   outage) rewrite the data into a consistent bad day.

pub mod exchange;
pub mod model;
pub mod report;
pub mod run;
pub mod stress;
pub mod train;

use hft_core::{
    InstrumentId, InstrumentSpec, MarketEvent, MarketEventKind, Price, Qty, StrategyId,
};
use hft_exec::{Engine, EngineSetup};
use hft_risk::{KillSwitch, NodeExposure, PreTradeRisk, RiskLimits};
use hft_strategy::{Strategy, TouchMaker, TouchParams};
use std::path::Path;
use std::time::Instant;

/// Why a backtest could not run.
#[derive(Debug, thiserror::Error)]
pub enum BacktestError {
    /// The data could not be read.
    #[error(transparent)]
    Data(#[from] hft_store::StoreError),
    /// The data holds no market events.
    #[error("{0}: no market events to replay")]
    Empty(String),
}

/// Recorded data in memory.
pub struct Loaded {
    /// Events in the store's order, instrument ids index `specs`.
    pub events: Vec<MarketEvent>,
    /// The data's instruments.
    pub specs: Vec<InstrumentSpec>,
    /// Input messages (capture lines, records) the data came from.
    pub input_messages: u64,
    /// Seconds spent reading and parsing.
    pub load_s: f64,
}

/// Loads `path`: a store directory or `.parquet` file, or any file `hft data import`
/// reads (imported into a scratch store first). Instruments get the tick and lot the
/// data shows (the greatest common divisor of its prices and sizes).
pub fn load(path: &Path) -> Result<Loaded, BacktestError> {
    load_with(path, &[])
}

/// [`load`], importing files with `instruments` known (their symbols at their own
/// price and quantity scales, as `hft data import --config` stores them).
pub fn load_with(path: &Path, instruments: &[InstrumentSpec]) -> Result<Loaded, BacktestError> {
    let started = Instant::now();
    let is_store = path.is_dir() || path.extension().is_some_and(|e| e == "parquet");
    let scratch = std::env::temp_dir().join(format!(
        "hft-backtest-{}-{}",
        std::process::id(),
        started.elapsed().as_nanos()
    ));
    let (root, input_messages) = if is_store {
        (path.to_path_buf(), 0)
    } else {
        let opts = hft_store::ImportOptions {
            instruments: instruments.to_vec(),
            ..Default::default()
        };
        let s = hft_store::import_with(path, &scratch, &opts)?;
        (scratch.clone(), s.messages)
    };
    let read = (|| {
        let mut r = hft_store::MergedReader::open(&root, &Default::default(), 0, u64::MAX)?;
        let metas = r.series().to_vec();
        let mut events = Vec::new();
        while r.next_events(&mut events, 65_536)? > 0 {}
        Ok::<_, hft_store::StoreError>((metas, events))
    })();
    if !is_store {
        let _ = std::fs::remove_dir_all(&scratch);
    }
    // The store's order is the order the venue's messages must be applied in (a
    // series in file order, series merged by venue time); the run loop never lets the
    // local clock go back, so a receive time out of order is delivered at once.
    let (metas, events) = read?;
    if events.is_empty() {
        return Err(BacktestError::Empty(path.display().to_string()));
    }
    let specs = metas
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let id = InstrumentId(i as u32);
            let (tick, lot) = grid(&events, id);
            // The same symbol on two venues (spot and perpetual BTCUSDT) is told apart
            // as `venue:symbol`, the name a config uses for each.
            let shared = metas.iter().filter(|o| o.symbol == m.symbol).count() > 1;
            let symbol = if shared {
                format!("{}:{}", m.venue, m.symbol)
            } else {
                m.symbol.clone()
            };
            let mut spec = InstrumentSpec::new(
                id,
                &symbol,
                m.price_scale,
                m.qty_scale,
                Price(tick),
                Qty(lot),
            );
            spec.min_notional = hft_core::Money::ZERO;
            spec
        })
        .collect();
    let input_messages = if input_messages == 0 {
        events.len() as u64
    } else {
        input_messages
    };
    Ok(Loaded {
        events,
        specs,
        input_messages,
        load_s: started.elapsed().as_secs_f64(),
    })
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 { a.abs() } else { gcd(b, a % b) }
}

/// Tick and lot of an instrument as its data shows them.
fn grid(events: &[MarketEvent], id: InstrumentId) -> (i64, i64) {
    let (mut tick, mut lot) = (0i64, 0i64);
    for e in events.iter().filter(|e| e.instrument == id).take(200_000) {
        let (p, q) = match e.kind {
            MarketEventKind::Level { price, qty, .. }
            | MarketEventKind::Trade { price, qty, .. } => (price.raw(), qty.raw()),
            MarketEventKind::Quote { bid, bid_qty, .. } => (bid.raw(), bid_qty.raw()),
            MarketEventKind::Clear => continue,
        };
        tick = gcd(tick, p);
        lot = gcd(lot, q);
    }
    (tick.max(1), lot.max(1))
}

/// An engine for a backtest: `strategy` installed as strategy `id`, trading from
/// `instrument` over all of `specs`, behind `limits`.
pub fn engine_with(
    specs: &[InstrumentSpec],
    id: u16,
    instrument: InstrumentId,
    strategy: Box<dyn Strategy>,
    limits: RiskLimits,
) -> Engine {
    let exposure = NodeExposure::new(
        specs.len().max(usize::from(id) + 1),
        hft_core::Money(i64::MAX / 4),
    );
    let setup = EngineSetup {
        strategy: StrategyId(id),
        instrument,
        specs: specs.to_vec(),
        book_depth: exchange::BOOK_LEVELS,
        max_open_orders: limits.max_open_orders as usize,
        epoch: 0,
        cache: hft_book::CacheSizes::default(),
    };
    let mut e = Engine::new(
        setup,
        PreTradeRisk::new(limits, KillSwitch::new(false), exposure),
    );
    struct Null;
    impl hft_exec::OrderSink for Null {
        fn send(&mut self, _: &hft_core::OrderCommand) -> bool {
            true
        }
    }
    let _ = e.install(strategy, 0, &mut Null);
    e
}

/// Limits that never bind except the position: for backtests whose subject is the
/// strategy, not the risk layer.
pub fn loose_limits(max_position: Qty) -> RiskLimits {
    RiskLimits {
        max_order_qty: Qty(i64::MAX / 4),
        max_order_notional: hft_core::Money(i64::MAX / 4),
        price_band_bps: 10_000,
        max_position,
        max_orders_per_sec: 1_000_000,
        max_open_orders: 16,
        max_daily_loss: hft_core::Money(i64::MAX / 4),
    }
}

/// One touch maker per instrument (one lot a side, at most ten lots of position) with
/// generous risk limits: the backtest's default strategy and the speed comparison's.
pub fn touch_engines(specs: &[InstrumentSpec]) -> Vec<Engine> {
    specs
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let lot = spec.lot_size;
            let limits = RiskLimits {
                max_order_qty: Qty(lot.raw() * 10),
                ..loose_limits(Qty(lot.raw() * 11))
            };
            let strategy: Box<dyn Strategy> = Box::new(TouchMaker::new(
                spec.id,
                TouchParams {
                    order_qty: lot,
                    max_position: Qty(lot.raw() * 10),
                },
            ));
            engine_with(specs, i as u16, spec.id, strategy, limits)
        })
        .collect()
}

/// The speed comparison's setup: 100 µs each way, no feed latency, risk-averse queue.
pub fn peer_setup() -> run::BacktestSetup {
    run::BacktestSetup {
        entry: model::Latency::Constant(100_000),
        response: model::Latency::Constant(100_000),
        feed: model::FeedLatency::Zero,
        queue: model::QueueModel::RiskAverse,
        timer_interval: 1_000_000_000,
        sample_interval: 1_000_000_000,
        progress: None,
    }
}
