//! The venue's order decoder never panics, and every message it accepts re-encodes to
//! the same bytes.
#![no_main]
use hft_exec::wire::{ORDER_WIRE_LEN, decode_order, encode_order};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(cmd) = decode_order(data) {
        let mut buf = [0u8; ORDER_WIRE_LEN];
        encode_order(&cmd, &mut buf);
        assert_eq!(&buf[..], &data[..ORDER_WIRE_LEN]);
    }
});
