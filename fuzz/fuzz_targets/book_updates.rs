//! Arbitrary level updates never panic the book, and valid ones keep it ordered.
#![no_main]
use hft_book::L2Book;
use hft_core::{InstrumentId, Price, Qty, Side};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut book = L2Book::with_capacity(InstrumentId(0), 8);
    for chunk in data.chunks_exact(9) {
        let side = if chunk[0] & 1 == 0 { Side::Buy } else { Side::Sell };
        if chunk[0] & 0x80 != 0 {
            book.clear();
            continue;
        }
        let price = i64::from(i32::from_le_bytes([chunk[1], chunk[2], chunk[3], chunk[4]]));
        let qty = i64::from(i32::from_le_bytes([chunk[5], chunk[6], chunk[7], chunk[8]]));
        let _ = book.apply_level(side, Price(price), Qty(qty));
        for s in [Side::Buy, Side::Sell] {
            let levels: Vec<_> = book.levels(s).collect();
            assert!(levels.iter().all(|(p, q)| p.raw() > 0 && q.raw() > 0));
            let sorted = levels.windows(2).all(|w| match s {
                Side::Buy => w[0].0 > w[1].0,
                Side::Sell => w[0].0 < w[1].0,
            });
            assert!(sorted);
        }
        let _ = (book.microprice(), book.imbalance(), book.spread(), book.mid_x2());
    }
});
