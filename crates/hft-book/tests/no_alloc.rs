//! Proves the hot-path promise directly: with a counting global allocator, a long
//! stream of updates, snapshots and reads within the pre-sized capacity performs zero
//! heap allocations. Lives in its own test binary so the allocator only wraps this.

use hft_book::L2Book;
use hft_core::{FLAG_LAST, InstrumentId, MarketEvent, MarketEventKind, Price, Qty, Side};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hint::black_box;

/// Counts allocations made by the current thread, so the test harness's own threads
/// cannot disturb the count.
struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn bump() {
    // `try_with`: never panic inside the allocator, even during thread teardown.
    let _ = ALLOCS.try_with(|n| n.set(n.get() + 1));
}

// SAFETY: every method forwards to `System` unchanged; counting has no effect on the
// memory handed out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        bump();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        bump();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        bump();
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.with(Cell::get)
}

#[test]
fn updates_and_reads_within_capacity_do_not_allocate() {
    const DEPTH: u64 = 100;
    let instrument = InstrumentId(3);
    let mut book = L2Book::with_capacity(instrument, DEPTH as usize);
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let before = allocs();
    for i in 0..20_000u64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let offset = (x % DEPTH) as i64;
        let qty = Qty(((x >> 8) % 4) as i64);
        let (side, price) = if x >> 63 == 0 {
            (Side::Buy, Price(10_000 - offset))
        } else {
            (Side::Sell, Price(10_001 + offset))
        };
        let kind = if i % 5_000 == 4_999 {
            MarketEventKind::Clear
        } else {
            MarketEventKind::Level { side, price, qty }
        };
        let ev = MarketEvent {
            ts_exchange: i,
            ts_recv: i,
            seq: i,
            instrument,
            flags: FLAG_LAST,
            kind,
        };
        book.apply(&ev).expect("valid update");
        black_box((
            book.best_bid(),
            book.best_ask(),
            book.microprice(),
            book.imbalance(),
            book.mid_x2(),
            book.depth_qty(Side::Buy, 5),
            book.levels(Side::Sell).take(5).count(),
            book.qty_at(side, price),
            book.is_crossed(),
        ));
    }
    assert_eq!(allocs() - before, 0, "the hot path allocated");
}

#[test]
fn the_counter_does_count() {
    let before = allocs();
    black_box(vec![1u8; 64]);
    assert!(allocs() > before);
}
