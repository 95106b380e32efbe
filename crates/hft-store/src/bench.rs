//! `hft bench store`: replay from the Parquet store against replay from the raw capture
//! it was imported from, and the import itself, in one run.

use crate::StoreError;
use crate::reader::{MergedReader, SeriesFilter};
use hft_core::InstrumentId;
use hft_feed::InstrumentRegistry;
use hft_feed::binance::{BinanceDecoder, BinanceNormalizer};
use hft_feed::capture::CaptureReader;
use std::path::Path;
use std::time::Instant;

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
        while let Some((_, row)) = r.next_row()? {
            std::hint::black_box(row.to_event(InstrumentId(0)));
            n += 1;
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
