//! Decimal parsing never panics, and what parses prints back to the same value.
#![no_main]
use hft_core::Price;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&scale, text)) = data.split_first() else { return };
    let scale = scale % 14;
    let Ok(s) = std::str::from_utf8(text) else { return };
    if let Ok(p) = Price::parse(s, scale) {
        let again = Price::parse(&p.display(scale).to_string(), scale).expect("printed value parses");
        assert_eq!(again, p);
    }
});
