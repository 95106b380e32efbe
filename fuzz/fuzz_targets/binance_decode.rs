//! The Binance decoder and normaliser never panic on arbitrary messages.
#![no_main]
use hft_feed::InstrumentRegistry;
use hft_feed::binance::{BinanceDecoder, BinanceNormalizer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut d = BinanceDecoder::default();
    if let Ok(msg) = d.decode(text) {
        let mut n = BinanceNormalizer::new(InstrumentRegistry::auto(2, 3));
        let (bids, asks) = d.levels_mut();
        let _ = n.normalize(&msg, bids, asks, 0, Some("X"), &mut |_| {});
    }
});
