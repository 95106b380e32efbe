//! Any overlay text loads or is refused with an error; it never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = hft_config::load_str("fuzz.toml", text, std::iter::empty());
    }
});
