//! Every real Binance capture in the shared data set decodes and normalises without an
//! error, and the decoded depth update ids chain without gaps (the data set's README
//! states each capture's depth stream is gap-free).

use hft_feed::InstrumentRegistry;
use hft_feed::binance::{BinanceDecoder, BinanceMsg, BinanceNormalizer};
use hft_feed::capture::CaptureReader;
use std::path::PathBuf;

fn data_dir() -> PathBuf {
    let dir = std::env::var_os("DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"));
    assert!(
        dir.is_dir(),
        "shared market data not found at {} (set DATA)",
        dir.display()
    );
    dir
}

#[test]
fn every_capture_decodes_and_its_depth_ids_chain() {
    let dir = data_dir().join("binance_ws_raw");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(
        files.len() >= 6,
        "expected the Binance captures in {}",
        dir.display()
    );
    for path in files {
        let mut reader = CaptureReader::open(&path).unwrap();
        let mut decoder = BinanceDecoder::with_capacity(1024);
        let mut normalizer = BinanceNormalizer::new(InstrumentRegistry::auto(8, 8));
        let (mut messages, mut events, mut snapshots) = (0u64, 0u64, 0u64);
        let mut last_final: Option<u64> = None;
        let mut symbol = String::new();
        while let Some(line) = reader.next() {
            let line = line.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let msg = decoder
                .decode(line.message)
                .unwrap_or_else(|e| panic!("{}:{}: {e}", path.display(), line.line));
            messages += 1;
            match msg {
                BinanceMsg::Depth {
                    symbol: s,
                    first_id,
                    final_id,
                    prev_final_id,
                    ..
                } => {
                    symbol = s.to_owned();
                    if let Some(prev) = last_final {
                        // Futures chain by `pu`, spot by `U = previous u + 1`.
                        let chained = prev_final_id.map_or(first_id == prev + 1, |pu| pu == prev);
                        assert!(
                            chained,
                            "{}:{}: depth gap after {prev}",
                            path.display(),
                            line.line
                        );
                    }
                    last_final = Some(final_id);
                }
                BinanceMsg::Snapshot { .. } => snapshots += 1,
                _ => {}
            }
            let snapshot_of = Some(symbol.as_str())
                .filter(|s| !s.is_empty())
                .or(Some("UNKNOWN"));
            let (bids, asks) = decoder.levels_mut();
            events += normalizer
                .normalize(&msg, bids, asks, line.local_ts, snapshot_of, &mut |_| {})
                .unwrap_or_else(|e| panic!("{}:{}: {e}", path.display(), line.line))
                as u64;
        }
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(messages > 30_000, "{name}: only {messages} messages");
        assert!(
            events > messages,
            "{name}: {events} events from {messages} messages"
        );
        assert_eq!(
            snapshots,
            u64::from(name.contains("20240808")),
            "{name}: snapshots"
        );
    }
}
