//! The hot path allocates nothing per event: a counting global allocator is armed only
//! around the engine's calls (book update, strategy, risk, OMS, order encode) while it
//! replays recorded market data and receives acknowledgements.

use hft_config::Config;
use hft_core::{OrderCommand, OrderKind, OrderReport, OrderReportKind};
use hft_exec::OrderSink;
use hft_exec::wire::{ORDER_WIRE_LEN, encode_order};
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

struct Echo {
    pending: [Option<OrderCommand>; 64],
    n: usize,
    wire: [u8; ORDER_WIRE_LEN],
}

impl OrderSink for Echo {
    fn send(&mut self, cmd: &OrderCommand) -> bool {
        if self.n == 64 {
            return false;
        }
        encode_order(cmd, &mut self.wire);
        self.pending[self.n] = Some(*cmd);
        self.n += 1;
        true
    }
}

#[test]
fn hot_path_makes_no_heap_allocation_per_event() {
    let config = Config::default_embedded();
    let events = hft_cluster::bench::record_market_data(&config, 3, 60_000);
    let mut parts = hft_cluster::node::build(&config, 3, 0);
    let mut slot = parts.slots.swap_remove(0);
    let mut echo = Echo {
        pending: [None; 64],
        n: 0,
        wire: [0; ORDER_WIRE_LEN],
    };
    slot.start(0, &mut echo).unwrap();
    let mut orders = 0u64;
    // Warm-up pass sizes everything; the measured pass must not allocate at all.
    for pass in 0..2 {
        ALLOCS.store(0, Ordering::SeqCst);
        for ev in &events {
            let now = ev.ts_exchange + pass * 1_000_000_000_000;
            let mut e = *ev;
            e.ts_exchange = now;
            ARMED.store(pass == 1, Ordering::SeqCst);
            slot.engine.on_market(&e, now, &mut echo).unwrap();
            let mut k = 0;
            while k < echo.n {
                if let Some(cmd) = echo.pending[k].take() {
                    orders += 1;
                    let kind = match cmd.kind {
                        OrderKind::New { .. } => OrderReportKind::Accepted,
                        OrderKind::Cancel => OrderReportKind::Canceled,
                    };
                    let r = OrderReport {
                        ts: now,
                        instrument: cmd.instrument,
                        cl_ord_id: cmd.cl_ord_id,
                        kind,
                    };
                    slot.engine.on_report(&r, now, &mut echo).unwrap();
                }
                k += 1;
            }
            echo.n = 0;
            ARMED.store(false, Ordering::SeqCst);
        }
    }
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
