//! The Tardis CSV line parser never panics.
#![no_main]
use hft_feed::tardis::{TardisKind, parse_line};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = parse_line(TardisKind::IncrementalBookL2, text);
        let _ = parse_line(TardisKind::Trades, text);
    }
});
