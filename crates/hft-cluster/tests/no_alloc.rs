//! The hot path allocates nothing per event: a counting global allocator is armed while
//! the core loop (book update, strategy, risk, OMS, order encode, acknowledgements)
//! replays recorded market data.

use hft_cluster::bench::CoreLoop;
use hft_config::Config;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

struct Counting;
static ARMED: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if ARMED.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        if ARMED.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn hot_path_makes_no_heap_allocation_per_event() {
    let config = Config::default_embedded();
    let mut core = CoreLoop::new(&config, 3).unwrap();
    // A warm-up pass over the whole recorded buffer sizes every pre-sized structure.
    core.run(100_000);
    ALLOCS.store(0, Ordering::SeqCst);
    ARMED.store(true, Ordering::SeqCst);
    let orders = core.run(100_000);
    ARMED.store(false, Ordering::SeqCst);
    assert!(
        orders > 100,
        "the strategy must actually trade for the test to mean anything ({orders} orders)"
    );
    assert_eq!(
        ALLOCS.load(Ordering::SeqCst),
        0,
        "allocations on the hot path"
    );
}
