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
    InstrumentId, InstrumentSpec, MarketEvent, MarketEventKind, MboAction, Price, Qty, StrategyId,
};
use hft_exec::{Engine, EngineSetup};
use hft_risk::{KillSwitch, NodeExposure, PreTradeRisk, RiskLimits};
use hft_strategy::{Strategy, TouchMaker, TouchParams};
use std::path::{Path, PathBuf};
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

/// A store to read: the data itself, or a scratch import of a file that is removed
/// when this is dropped.
struct StoreRoot {
    root: PathBuf,
    scratch: bool,
    input_messages: u64,
}

impl Drop for StoreRoot {
    fn drop(&mut self) {
        if self.scratch {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

fn store_root(path: &Path, instruments: &[InstrumentSpec]) -> Result<StoreRoot, BacktestError> {
    if path.is_dir() || path.extension().is_some_and(|e| e == "parquet") {
        return Ok(StoreRoot {
            root: path.to_path_buf(),
            scratch: false,
            input_messages: 0,
        });
    }
    let root = std::env::temp_dir().join(format!(
        "hft-backtest-{}-{}",
        std::process::id(),
        SCRATCH.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let mut guard = StoreRoot {
        root,
        scratch: true,
        input_messages: 0,
    };
    let opts = hft_store::ImportOptions {
        instruments: instruments.to_vec(),
        ..Default::default()
    };
    guard.input_messages = hft_store::import_with(path, &guard.root, &opts)?.messages;
    Ok(guard)
}

/// Scratch stores made by this process, for unique names.
static SCRATCH: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The data's instruments with the tick and lot `events` show; the same symbol on
/// two venues is told apart as `venue:symbol`, the name a config uses for each.
fn specs_of(metas: &[hft_store::FileMeta], events: &[MarketEvent]) -> Vec<InstrumentSpec> {
    metas
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let id = InstrumentId(i as u32);
            let (tick, lot) = grid(events, id);
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
        .collect()
}

/// [`load`], importing files with `instruments` known (their symbols at their own
/// price and quantity scales, as `hft data import --config` stores them).
pub fn load_with(path: &Path, instruments: &[InstrumentSpec]) -> Result<Loaded, BacktestError> {
    let started = Instant::now();
    let store = store_root(path, instruments)?;
    let mut r = hft_store::MergedReader::open(&store.root, &Default::default(), 0, u64::MAX)?;
    let metas = r.series().to_vec();
    let mut events = Vec::new();
    while r.next_events(&mut events, 65_536)? > 0 {}
    // The store's order is the order the venue's messages must be applied in (a
    // series in file order, series merged by venue time); the run loop never lets the
    // local clock go back, so a receive time out of order is delivered at once.
    if events.is_empty() {
        return Err(BacktestError::Empty(path.display().to_string()));
    }
    let specs = specs_of(&metas, &events);
    let input_messages = match store.input_messages {
        0 => events.len() as u64,
        n => n,
    };
    Ok(Loaded {
        events,
        specs,
        input_messages,
        load_s: started.elapsed().as_secs_f64(),
    })
}

/// Recorded data read as the backtest goes: memory holds a window of events, not the
/// data (see [`run::run_source`]).
pub struct Stream {
    /// The data's instruments (tick and lot from the first events).
    pub specs: Vec<InstrumentSpec>,
    reader: hft_store::MergedReader,
    buf: Vec<MarketEvent>,
    batch: usize,
    done: bool,
    /// Events read so far, for progress in rows.
    loaded: u64,
    error: Option<hft_store::StoreError>,
    _store: StoreRoot,
}

impl Stream {
    /// Opens `path` as [`load_with`] does, reading `batch` events at a time.
    pub fn open(
        path: &Path,
        instruments: &[InstrumentSpec],
        batch: usize,
    ) -> Result<Self, BacktestError> {
        let store = store_root(path, instruments)?;
        let mut reader =
            hft_store::MergedReader::open(&store.root, &Default::default(), 0, u64::MAX)?;
        let metas = reader.series().to_vec();
        let batch = batch.max(1);
        let mut buf = Vec::with_capacity(2 * batch + run::LOOKAHEAD);
        // The grid (tick, lot) is read off the first events, as `load` reads it off
        // its first 200,000 of each instrument.
        while buf.len() < batch.max(200_000) && reader.next_events(&mut buf, batch)? > 0 {}
        if buf.is_empty() {
            return Err(BacktestError::Empty(path.display().to_string()));
        }
        let specs = specs_of(&metas, &buf);
        Ok(Self {
            specs,
            reader,
            loaded: buf.len() as u64,
            buf,
            batch,
            done: false,
            error: None,
            _store: store,
        })
    }

    /// A read error that ended the stream early: the run's results cover only the
    /// events before it, so the caller must report it.
    pub fn take_error(&mut self) -> Option<hft_store::StoreError> {
        self.error.take()
    }
}

impl run::Source for Stream {
    fn events(&self) -> &[MarketEvent] {
        &self.buf
    }
    fn refill(&mut self, keep: usize) -> usize {
        let keep = keep.min(self.buf.len());
        self.buf.drain(..keep);
        if !self.done {
            match self.reader.next_events(&mut self.buf, self.batch) {
                Ok(0) => self.done = true,
                Ok(n) => self.loaded += n as u64,
                Err(e) => {
                    self.error = Some(e);
                    self.done = true;
                }
            }
        }
        keep
    }
    fn exhausted(&self) -> bool {
        self.done
    }
    /// In rows: order-by-order rows become more events than rows.
    fn total(&self) -> Option<u64> {
        Some(self.reader.series().iter().map(|m| m.rows).sum())
    }
    /// The run's events in rows, at the rows-per-event ratio of what was read: exact
    /// where each row is one event, and never past the total on order-by-order data,
    /// whose rows become more events than rows.
    fn done(&self, events: u64) -> u64 {
        let rows = u128::from(self.reader.rows_read());
        (u128::from(events) * rows / u128::from(self.loaded.max(1))) as u64
    }
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
            // Only the orders that rest (a clear's price is undefined).
            MarketEventKind::Order {
                action: MboAction::Add | MboAction::Modify,
                price,
                qty,
                ..
            } => (price.raw(), qty.raw()),
            MarketEventKind::Clear | MarketEventKind::Order { .. } => continue,
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
