//! Hot-path cost of the L2 book: updates at the top of the book (the common case on
//! real feeds), a mixed stream over a realistically deep book, and the reads a
//! strategy does on every tick.

use criterion::Criterion;
use hft_book::L2Book;
use hft_core::{InstrumentId, Price, Qty, Side};
use std::hint::black_box;

/// Levels per side of the benchmark book, about what a liquid crypto venue sends.
const DEPTH: i64 = 200;
/// Best bid of the seeded book; the best ask is one tick above it.
const BID: i64 = 1_000_000;

/// Deterministic xorshift, so every run benchmarks the same stream.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// A book with `DEPTH` levels on each side around a one-tick spread.
fn seeded_book() -> L2Book {
    let mut book = L2Book::with_capacity(InstrumentId(0), 2 * DEPTH as usize);
    for i in 0..DEPTH {
        book.apply_level(Side::Buy, Price(BID - i), Qty(10 + i))
            .unwrap();
        book.apply_level(Side::Sell, Price(BID + 1 + i), Qty(10 + i))
            .unwrap();
    }
    book
}

/// Update stream skewed towards the top of the book as real feeds are: the distance
/// from the touch is the smaller of two uniform draws, and one update in eight
/// deletes its level (the next update at that price re-creates it).
fn mixed_stream(n: usize) -> Vec<(Side, Price, Qty)> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    (0..n)
        .map(|_| {
            let r = rng.next();
            let a = (r % DEPTH as u64) as i64;
            let b = ((r >> 16) % DEPTH as u64) as i64;
            let distance = a.min(b);
            let qty = if (r >> 32) % 8 == 0 {
                0
            } else {
                1 + ((r >> 40) % 1_000) as i64
            };
            if (r >> 63) == 0 {
                (Side::Buy, Price(BID - distance), Qty(qty))
            } else {
                (Side::Sell, Price(BID + 1 + distance), Qty(qty))
            }
        })
        .collect()
}

fn bench_updates(c: &mut Criterion) {
    let mut book = seeded_book();
    let mut qty = 0i64;
    c.bench_function("apply_level/top_of_book", |b| {
        b.iter(|| {
            qty = qty % 1_000 + 1;
            book.apply_level(
                black_box(Side::Buy),
                black_box(Price(BID)),
                black_box(Qty(qty)),
            )
        })
    });

    let stream = mixed_stream(4_096);
    let mut book = seeded_book();
    let mut i = 0;
    c.bench_function("apply_level/mixed_200_levels", |b| {
        b.iter(|| {
            let (side, price, qty) = stream[i];
            i = (i + 1) % stream.len();
            book.apply_level(black_box(side), black_box(price), black_box(qty))
        })
    });
}

fn bench_reads(c: &mut Criterion) {
    let book = seeded_book();
    c.bench_function("read/best_bid_ask", |b| {
        b.iter(|| (black_box(&book).best_bid(), black_box(&book).best_ask()))
    });
    c.bench_function("read/microprice", |b| {
        b.iter(|| black_box(&book).microprice())
    });
}

// What `criterion_group!`/`criterion_main!` expand to, written out because the
// macro's generated `pub fn` trips the workspace's `missing_docs` lint.
fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench_updates(&mut c);
    bench_reads(&mut c);
    c.final_summary();
}
