//! `hft data replay --paper` and `hft feed binance`: strategies and the recorder on
//! recorded or live market data.

use crate::{Exit, load_config};
use hft_book::L2Book;
use hft_cluster::recorder::{Recorder, RecorderArgs, RecorderMsg};
use hft_config::Config;
use hft_core::{InstrumentId, InstrumentSpec, MarketEvent, Price, Qty, Side};
use hft_feed::InstrumentRegistry;
use hft_feed::live::{LiveConfig, LiveCounters, Market};
use hft_store::{MergedReader, SeriesFilter, SeriesMeta};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

fn fail(code: u8, msg: impl std::fmt::Display) -> Exit {
    Exit(code, anyhow::anyhow!("{msg}"))
}

/// The data's instruments as engines see them: a configured instrument of the same
/// symbol (its tick, lot and fees) or, failing that, one made from the data's scales.
pub(crate) fn data_specs(
    config: &Config,
    symbols: &[(String, u8, u8)],
) -> Result<Vec<InstrumentSpec>, Exit> {
    symbols
        .iter()
        .enumerate()
        .map(|(i, (symbol, ps, qs))| {
            let id = InstrumentId(i as u32);
            match config.instruments.iter().find(|c| c.spec.symbol == *symbol) {
                Some(c) if (c.spec.price_scale, c.spec.qty_scale) == (*ps, *qs) => Ok(InstrumentSpec {
                    id,
                    ..c.spec.clone()
                }),
                Some(c) => Err(fail(
                    2,
                    format!(
                        "instrument {symbol}: the data has price/qty scales {ps}/{qs} but the config says {}/{}; import the data with the same config (hft data import --config) or fix the config",
                        c.spec.price_scale, c.spec.qty_scale
                    ),
                )),
                None => Ok(InstrumentSpec::new(id, symbol, *ps, *qs, Price(1), Qty(1))),
            }
        })
        .collect()
}

/// Maps a configured strategy instrument to the data instrument of the same symbol.
pub(crate) fn mapper(
    config: &Config,
    specs: &[InstrumentSpec],
) -> impl Fn(InstrumentId) -> Option<InstrumentId> + use<> {
    let symbols: Vec<Option<usize>> = config
        .instruments
        .iter()
        .map(|c| specs.iter().position(|s| s.symbol == c.spec.symbol))
        .collect();
    move |cfg: InstrumentId| {
        symbols
            .get(cfg.index())
            .copied()
            .flatten()
            .map(|i| InstrumentId(i as u32))
    }
}

/// `hft data replay --paper`: the configured strategies on a store's data.
pub fn replay_paper(
    store: &Path,
    filter: &SeriesFilter,
    range: (u64, u64),
    config: Option<&Path>,
    summary_json: Option<&Path>,
    recorded_speed: bool,
) -> Result<u8, Exit> {
    let config = load_config(config)?;
    let mut reader = MergedReader::open(store, filter, range.0, range.1).map_err(|e| fail(2, e))?;
    let symbols: Vec<(String, u8, u8)> = reader
        .series()
        .iter()
        .map(|m| (m.symbol.clone(), m.price_scale, m.qty_scale))
        .collect();
    let specs = data_specs(&config, &symbols)?;
    let map = mapper(&config, &specs);
    let error = std::cell::RefCell::new(None);
    let (started, mut first_ts) = (std::time::Instant::now(), None);
    let source = std::iter::from_fn(|| {
        loop {
            match reader.next_row() {
                Ok(Some((i, row))) => {
                    if let Some(ev) = row.to_event(InstrumentId(i as u32)) {
                        if recorded_speed {
                            // Events reach the strategies when they did when recorded.
                            let t0 = *first_ts.get_or_insert(ev.ts_recv);
                            let due = Duration::from_nanos(ev.ts_recv.saturating_sub(t0));
                            if let Some(wait) = due.checked_sub(started.elapsed()) {
                                std::thread::sleep(wait);
                            }
                        }
                        return Some(ev);
                    }
                }
                Ok(None) => return None,
                Err(e) => {
                    *error.borrow_mut() = Some(e);
                    return None;
                }
            }
        }
    });
    let report = hft_cluster::paper::run_paper(&config, specs, map, source, "replay")
        .map_err(|e| fail(2, e))?;
    crate::finish_session(&config, &report, summary_json)?;
    if let Some(e) = error.into_inner() {
        return Err(fail(1, format!("replay stopped early: {e}")));
    }
    Ok(0)
}

/// Market of `hft feed binance`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum MarketArg {
    /// Spot.
    Spot,
    /// USD-M futures.
    Usdm,
}

/// Options of `hft feed binance`.
#[derive(clap::Args, Debug)]
pub struct FeedArgs {
    /// Venue symbols (comma separated), e.g. BTCUSDT,ETHUSDT.
    #[arg(long, value_delimiter = ',', required = true)]
    pub symbols: Vec<String>,
    /// Market: spot or usdm (USD-M futures).
    #[arg(long, value_enum, default_value_t = MarketArg::Spot)]
    pub market: MarketArg,
    /// WebSocket base URL (default: the venue's production endpoint).
    #[arg(long)]
    pub ws_url: Option<String>,
    /// REST base URL for depth snapshots (default: production).
    #[arg(long)]
    pub rest_url: Option<String>,
    /// Depth stream speed, e.g. 100ms (spot) or 0ms (futures).
    #[arg(long)]
    pub depth_speed: Option<String>,
    /// Stop after this long (e.g. 30s); default: until Ctrl-C.
    #[arg(long, value_parser = crate::parse_duration)]
    pub duration: Option<Duration>,
    /// Record the feed into this store.
    #[arg(long)]
    pub record: Option<PathBuf>,
    /// Run the configured strategies on the feed through the paper venue.
    #[arg(long)]
    pub paper: bool,
    /// Configuration overlay (instruments, strategies).
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// `hft feed binance`: the live feed, with its status, and optionally the recorder and
/// paper trading.
pub fn feed_binance(args: FeedArgs) -> Result<u8, Exit> {
    let config = load_config(args.config.as_deref())?;
    if args.symbols.is_empty() {
        return Err(fail(2, "name at least one symbol, e.g. --symbols BTCUSDT"));
    }
    let symbols: Vec<String> = args
        .symbols
        .iter()
        .map(|s| s.to_ascii_uppercase())
        .collect();
    let scales: Vec<(String, u8, u8)> = symbols
        .iter()
        .map(|s| {
            config
                .instruments
                .iter()
                .find(|c| c.spec.symbol == *s)
                .map_or((s.clone(), 8, 8), |c| {
                    (s.clone(), c.spec.price_scale, c.spec.qty_scale)
                })
        })
        .collect();
    let specs = data_specs(&config, &scales)?;
    let market = match args.market {
        MarketArg::Spot => Market::Spot,
        MarketArg::Usdm => Market::UsdmFutures,
    };
    let mut cfg = LiveConfig::binance(market, symbols.clone());
    if let Some(u) = args.ws_url {
        cfg.ws_base = u;
    }
    if let Some(u) = args.rest_url {
        cfg.rest_base = u;
    }
    if let Some(d) = args.depth_speed {
        cfg.depth_speed = d;
    }
    let venue = match market {
        Market::Spot => "binance-spot",
        Market::UsdmFutures => "binance-usdm",
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| fail(1, format!("cannot start the runtime: {e}")))?;
    let recorder = match &args.record {
        Some(root) => {
            let series = specs
                .iter()
                .map(|s| SeriesMeta {
                    venue: venue.into(),
                    symbol: s.symbol.clone(),
                    price_scale: s.price_scale,
                    qty_scale: s.qty_scale,
                })
                .collect();
            let rargs = RecorderArgs {
                root: root.clone(),
                series,
            };
            let (actor, handle) = rt
                .block_on(ractor::Actor::spawn(
                    Some("recorder".into()),
                    Recorder,
                    rargs,
                ))
                .map_err(|e| fail(1, format!("cannot start the recorder: {e}")))?;
            Some((actor, handle))
        }
        None => None,
    };
    let (paper_tx, paper) = if args.paper {
        let (tx, rx) = std::sync::mpsc::channel::<MarketEvent>();
        let (config, specs) = (config.clone(), specs.clone());
        let map = mapper(&config, &specs);
        let thread = std::thread::Builder::new()
            .name("paper".into())
            .spawn(move || {
                hft_cluster::paper::run_paper(&config, specs, map, rx.into_iter(), "live-paper")
            })
            .map_err(|e| fail(1, e))?;
        (Some(tx), Some(thread))
    } else {
        (None, None)
    };
    let counters = Arc::new(LiveCounters::default());
    let books = Arc::new(std::sync::Mutex::new(
        specs
            .iter()
            .map(|s| L2Book::for_spec(s, 1024))
            .collect::<Vec<_>>(),
    ));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let registry = InstrumentRegistry::new(specs.clone());
    let rec = recorder.as_ref().map(|(a, _)| a.clone());
    let sink_books = books.clone();
    let mut batch: Vec<MarketEvent> = Vec::with_capacity(1024);
    let sink = move |e: MarketEvent| {
        if let Ok(mut b) = sink_books.lock() {
            if let Some(book) = b.get_mut(e.instrument.index()) {
                let _ = book.apply(&e);
            }
        }
        if let Some(tx) = &paper_tx {
            let _ = tx.send(e);
        }
        if let Some(r) = &rec {
            batch.push(e);
            if e.is_last() {
                let _ = r.cast(RecorderMsg::Events(std::mem::take(&mut batch)));
            }
        }
    };
    let feed = rt.spawn(hft_feed::live::run(
        cfg,
        registry,
        sink,
        counters.clone(),
        stop_rx,
    ));
    let started = std::time::Instant::now();
    let shutdown = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = shutdown.clone();
    rt.spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        flag.store(true, Ordering::SeqCst);
    });
    let mut next_status = started + Duration::from_secs(1);
    loop {
        std::thread::sleep(Duration::from_millis(50));
        if shutdown.load(Ordering::SeqCst) || args.duration.is_some_and(|d| started.elapsed() >= d)
        {
            break;
        }
        if std::time::Instant::now() >= next_status {
            next_status += Duration::from_secs(1);
            let c = &counters;
            let mut line = format!(
                "[{:>5.1}s] frames {} bad {} gaps {} snapshots {} reconnects {}",
                started.elapsed().as_secs_f64(),
                c.frames.load(Ordering::Relaxed),
                c.bad_frames.load(Ordering::Relaxed),
                c.gaps.load(Ordering::Relaxed),
                c.snapshots.load(Ordering::Relaxed),
                c.connects.load(Ordering::Relaxed).saturating_sub(1),
            );
            if let Ok(b) = books.lock() {
                for (book, spec) in b.iter().zip(&specs) {
                    let px = |s| {
                        book.best(s)
                            .map_or("-".into(), |(p, _)| p.display(spec.price_scale).to_string())
                    };
                    line.push_str(&format!(
                        "  {} {} / {}",
                        spec.symbol,
                        px(Side::Buy),
                        px(Side::Sell)
                    ));
                }
            }
            eprintln!("{line}");
        }
    }
    let _ = stop_tx.send(true);
    let stats = rt
        .block_on(feed)
        .map_err(|e| fail(1, format!("the feed task failed: {e}")))?;
    println!(
        "feed: {} frames, {} events, {} bad frames, {} gaps, {} snapshots",
        stats.frames, stats.events, stats.bad_frames, stats.gaps, stats.snapshots
    );
    if let Some((actor, handle)) = recorder {
        let written = rt
            .block_on(async { ractor::call!(actor, RecorderMsg::Finish) })
            .map_err(|e| fail(1, format!("the recorder did not answer: {e}")))?
            .map_err(|e| fail(1, format!("recording failed: {e}")))?;
        let _ = rt.block_on(handle);
        println!(
            "recorded {} rows into {} files",
            written.rows,
            written.files.len()
        );
    }
    if let Some(thread) = paper {
        // The sink (and with it the channel's sender) went with the feed task.
        match thread.join() {
            Ok(Ok(report)) => print!("{}", report.table()),
            Ok(Err(e)) => eprintln!("paper trading: {e}"),
            Err(_) => eprintln!("paper trading thread panicked"),
        }
    }
    Ok(0)
}
