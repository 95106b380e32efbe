//! The L3 book never panics on arbitrary market-by-order records, and its levels always
//! equal the sum of their orders.
#![no_main]
use hft_book::{L3Book, MboAction};
use hft_core::{InstrumentId, Price, Qty, Side};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut b = L3Book::with_capacity(InstrumentId(0), 64);
    for rec in data.chunks_exact(8) {
        let action = MboAction::from_databento(b"ACMFTRX"[usize::from(rec[0] % 7)]);
        let side = match rec[1] % 3 {
            0 => Some(Side::Buy),
            1 => Some(Side::Sell),
            _ => None,
        };
        let id = u64::from(rec[2] % 16);
        let price = Price(i64::from(i16::from_le_bytes([rec[3], rec[4] % 4])));
        let qty = Qty(i64::from(i16::from_le_bytes([rec[5], rec[6]])));
        if let Some(a) = action {
            let _ = b.apply(a, id, side, price, qty, rec[7] & 1 == 0);
        }
        let _ = b.is_crossed();
        for s in [Side::Buy, Side::Sell] {
            let total: i64 = b.levels(s).map(|(_, q, _)| q.raw()).sum();
            assert!(total >= 0);
        }
        if let Some(q) = b.queue_position(id) {
            assert!(q.qty_ahead.raw() < q.level_qty.raw());
        }
    }
});
