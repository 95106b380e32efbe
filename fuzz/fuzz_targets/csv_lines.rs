//! The CSV importers (flattened Binance, Binance T_DEPTH, Databento MBO, Tardis
//! snapshots) and the Bybit line parser never panic on arbitrary lines.
#![no_main]
use hft_store::import_csv::{CsvLayout, parse_line};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else { return };
    let Ok(line) = std::str::from_utf8(rest) else { return };
    let layout = match pick % 7 {
        0 => CsvLayout::BinanceTrades,
        1 => CsvLayout::BinanceBbo,
        2 => CsvLayout::BinanceDepth,
        3 => CsvLayout::BinanceVisionDepth,
        4 => CsvLayout::DatabentoMbo,
        5 => CsvLayout::TardisSnapshot(usize::from(pick >> 3) % 30),
        _ => {
            let _ = hft_store::import_bybit::parse_line(line);
            return;
        }
    };
    let _ = parse_line(layout, line);
});
