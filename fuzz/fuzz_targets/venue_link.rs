//! The venue link's decoders never panic, and what decodes re-encodes to the same event.
#![no_main]
use hft_exec::link;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut at = 0;
    while let Ok(Some((kind, payload, n))) = link::split(&data[at..]) {
        match kind {
            link::kind::MARKET => {
                if let Ok(e) = link::decode_market(payload) {
                    let mut b = [0u8; link::MARKET_LEN];
                    link::encode_market(&e, &mut b);
                    assert_eq!(link::decode_market(&b), Ok(e));
                }
            }
            link::kind::REPORT | link::kind::REPLAY => {
                if let Ok(r) = link::decode_report(payload) {
                    let mut b = [0u8; link::REPORT_LEN];
                    link::encode_report(&r, &mut b);
                    assert_eq!(link::decode_report(&b), Ok(r));
                }
            }
            link::kind::LOGON => {
                let _ = link::decode_logon(payload);
            }
            link::kind::ORDER => {
                let _ = hft_exec::wire::decode_order(payload);
            }
            _ => {}
        }
        at += n;
    }
});
