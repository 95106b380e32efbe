//! A snapshot decoder fed damaged bytes returns an error, never panics; a state it
//! accepts encodes and decodes back to the same state hash.
#![no_main]
use hft_ledger::LedgerState;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(st) = LedgerState::decode(data) {
        let again = LedgerState::decode(&st.encode()).expect("re-encoded state decodes");
        assert_eq!(again.hash(), st.hash());
    }
});
