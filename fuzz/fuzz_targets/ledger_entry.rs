//! The ledger's entry decoder never panics, and every batch it accepts re-encodes to
//! the same bytes (the encoding is canonical, so every member reads an entry alike).
#![no_main]
use hft_ledger::command::{decode_batch, encode_batch};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(cmds) = decode_batch(data) {
        let mut buf = Vec::new();
        encode_batch(&cmds, &mut buf);
        assert_eq!(buf, data);
    }
});
