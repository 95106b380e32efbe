//! The live feed's state machine never panics, whatever frames and snapshot bodies
//! arrive in whatever order, with failed snapshot requests and reconnects between them;
//! every frame is counted.
#![no_main]
use hft_core::{InstrumentId, InstrumentSpec, Price, Qty};
use hft_feed::InstrumentRegistry;
use hft_feed::binance::FeedHandler;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let spec = InstrumentSpec::new(InstrumentId(0), "BTCUSDT", 2, 5, Price(1), Qty(1));
    let mut h = FeedHandler::new(&["btcusdt".into()], InstrumentRegistry::new(vec![spec]));
    // Lines starting with '#' are snapshot bodies, the rest stream frames.
    for (k, line) in text.lines().enumerate() {
        let _ = h.take_snapshot_requests();
        let r = match line.strip_prefix('#') {
            Some(body) => h.on_snapshot(0, body, k as u64, &mut |_| {}),
            None => h.on_frame(line, k as u64, &mut |_| {}),
        };
        let _ = r;
        if k % 7 == 3 {
            h.snapshot_failed(0);
        }
        if k % 11 == 5 {
            h.reset(k as u64, &mut |_| {});
        }
    }
    let frames = text.lines().filter(|l| !l.starts_with('#')).count() as u64;
    assert_eq!(h.stats().frames, frames);
});
