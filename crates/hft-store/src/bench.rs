//! `hft bench store`: replay from the Parquet store against replay from the raw capture
//! it was imported from, and the import itself, in one run.

use crate::StoreError;
use crate::reader::{MergedReader, SeriesFilter};
use hft_feed::InstrumentRegistry;
use hft_feed::binance::{BinanceDecoder, BinanceNormalizer};
use hft_feed::capture::CaptureReader;
use std::path::Path;
use std::time::Instant;

/// Events a replay consumer takes at a time (what the backtester asks for).
const REPLAY_BATCH: usize = 4096;

/// Result of the store bench.
#[derive(Clone, Debug)]
pub struct StoreBench {
    /// Events in the data set.
    pub events: u64,
    /// Import (decode, normalise, write Parquet) events per second.
    pub import_events_per_s: f64,
    /// Replay from the store, events per second (best of the rounds).
    pub replay_events_per_s: f64,
    /// Replay from the raw capture (gunzip, decode, normalise), events per second.
    pub capture_replay_events_per_s: f64,
}

/// Events of a capture replayed through decode and normalisation.
fn replay_capture(
    path: &Path,
    instruments: &[hft_core::InstrumentSpec],
) -> Result<u64, StoreError> {
    let mut reader = CaptureReader::open(path).map_err(|e| StoreError::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    let mut decoder = BinanceDecoder::with_capacity(1024);
    let mut normalizer = BinanceNormalizer::new(InstrumentRegistry::known_then_auto(
        instruments.to_vec(),
        8,
        8,
    ));
    let mut symbol = String::new();
    let mut events = 0u64;
    while let Some(line) = reader.next() {
        let Ok(line) = line else { continue };
        let Ok(msg) = decoder.decode(line.message) else {
            continue;
        };
        if let Some(s) = msg.symbol() {
            if s != symbol {
                symbol.clear();
                symbol.push_str(s);
            }
        }
        let (b, a) = decoder.levels_mut();
        let _ = normalizer.normalize(&msg, b, a, line.local_ts, Some(symbol.as_str()), &mut |e| {
            events += 1;
            std::hint::black_box(e);
        });
    }
    Ok(events)
}

/// Runs the bench on `capture`, writing the store under `scratch` (removed first);
/// `instruments` are the configured instruments the import resolves symbols against.
pub fn store_bench(
    capture: &Path,
    scratch: &Path,
    rounds: u32,
    instruments: &[hft_core::InstrumentSpec],
) -> Result<StoreBench, StoreError> {
    let _ = std::fs::remove_dir_all(scratch);
    let t = Instant::now();
    let opts = crate::ImportOptions {
        instruments: instruments.to_vec(),
        ..Default::default()
    };
    let imported = crate::import_with(capture, scratch, &opts)?;
    let import_s = t.elapsed().as_secs_f64();
    let (mut best_store, mut best_capture, mut events) = (f64::MAX, f64::MAX, 0u64);
    for _ in 0..rounds.max(1) {
        let t = Instant::now();
        let mut r = MergedReader::open(scratch, &SeriesFilter::default(), 0, u64::MAX)?;
        let mut n = 0u64;
        let mut batch = Vec::with_capacity(REPLAY_BATCH);
        loop {
            batch.clear();
            if r.next_events(&mut batch, REPLAY_BATCH)? == 0 {
                break;
            }
            n += batch.len() as u64;
            std::hint::black_box(&batch);
        }
        best_store = best_store.min(t.elapsed().as_secs_f64());
        events = n;
        let t = Instant::now();
        std::hint::black_box(replay_capture(capture, instruments)?);
        best_capture = best_capture.min(t.elapsed().as_secs_f64());
    }
    let per_s = |secs: f64| events as f64 / secs.max(1e-9);
    Ok(StoreBench {
        events,
        import_events_per_s: imported.rows as f64 / import_s.max(1e-9),
        replay_events_per_s: per_s(best_store),
        capture_replay_events_per_s: per_s(best_capture),
    })
}

/// Writes a synthetic store of at least `target_bytes` under `root` (for long-replay
/// memory runs): one instrument, levels, quotes and trades around a random walk, an
/// event per millisecond across as many days as it takes. Returns the rows written.
pub fn write_synthetic(root: &Path, target_bytes: u64) -> Result<u64, StoreError> {
    use crate::schema::{Row, RowKind};
    use crate::writer::{SeriesMeta, StoreWriter};
    let series = SeriesMeta {
        venue: "synthetic".into(),
        symbol: "SYNUSD".into(),
        price_scale: 2,
        qty_scale: 6,
    };
    let mut w = StoreWriter::create(root)?;
    // xorshift64*: reproducible and fast; quality is irrelevant here.
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    let (mut rows, mut mid, mut ts) = (0u64, 6_000_000i64, 1_700_000_000_000_000_000u64);
    let size = |root: &Path| -> u64 {
        crate::reader::data_files(root)
            .map(|fs| {
                fs.iter()
                    .filter_map(|f| f.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    };
    loop {
        for _ in 0..1_000_000 {
            let r = next();
            ts += 1_000_000;
            mid += (r % 7) as i64 - 3;
            let off = ((r >> 8) % 400) as i64;
            let qty = ((r >> 20) % 5_000_000) as i64;
            let row = match r >> 60 {
                0..=10 => Row {
                    kind: RowKind::Level as u8,
                    side: (r >> 40) as u8 & 1,
                    price: if (r >> 40) & 1 == 0 {
                        mid - off
                    } else {
                        mid + off
                    },
                    qty,
                    ..Row::default()
                },
                11..=13 => Row {
                    kind: RowKind::Quote as u8,
                    price: mid - 1,
                    qty,
                    price2: mid + 1,
                    qty2: qty / 3 + 1,
                    side: crate::schema::SIDE_NONE,
                    ..Row::default()
                },
                _ => Row {
                    kind: RowKind::Trade as u8,
                    side: (r >> 40) as u8 & 1,
                    price: mid,
                    qty: qty / 10 + 1,
                    ..Row::default()
                },
            };
            w.append(
                &series,
                &Row {
                    ts_exchange: ts,
                    ts_recv: ts + (r >> 44) % 500_000,
                    seq: rows,
                    flags: hft_core::FLAG_LAST,
                    ..row
                },
            )?;
            rows += 1;
        }
        // Closed files count; the open ones are flushed row group by row group.
        if size(root) >= target_bytes {
            break;
        }
    }
    w.finish()?;
    Ok(rows)
}
