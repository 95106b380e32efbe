//! With no feed latency the venue reads the engine's book instead of keeping its own
//! copy. That must not change a single order or fill: the same run with the venue
//! keeping its own book (a constant feed latency of zero takes that path) trades
//! exactly the same.

use hft_backtest::model::{FeedLatency, Latency, QueueModel};
use hft_backtest::run::{BacktestSetup, Outcome, run};
use hft_backtest::{peer_setup, touch_engines};
use hft_core::{
    FLAG_LAST, FLAG_SNAPSHOT, InstrumentId, InstrumentSpec, MarketEvent, MarketEventKind, Price,
    Qty, Side,
};
mod common;

/// Everything a run produced that trading decides: orders with their last report,
/// fills with their times, prices, queue waits and reference mids, and the samples.
type Trace = (
    Vec<(u64, u64, Option<String>)>,
    Vec<(u64, u64, String, u64, Option<i64>, Option<i64>, i64)>,
    Vec<(u64, i64, i64)>,
    Vec<u64>,
);

fn trace(o: &Outcome) -> Trace {
    (
        o.orders
            .iter()
            .map(|s| (s.sent, s.cmd.cl_ord_id.0, s.last.map(|k| format!("{k:?}"))))
            .collect(),
        o.fills
            .iter()
            .map(|f| {
                (
                    f.local_ts,
                    f.report.cl_ord_id.0,
                    format!("{:?}", f.report.kind),
                    f.queue_wait,
                    f.decision_mid_x2,
                    f.fill_mid_x2,
                    f.realized_after,
                )
            })
            .collect(),
        o.samples
            .iter()
            .map(|s| (s.ts, s.pnl, s.position))
            .collect(),
        o.crossed.clone(),
    )
}

fn both(setup: impl Fn() -> BacktestSetup, specs: &[InstrumentSpec], events: &[MarketEvent]) {
    let go = |feed| {
        let mut s = setup();
        s.feed = feed;
        run(s, specs.to_vec(), touch_engines(specs), events)
    };
    let shared = go(FeedLatency::Zero);
    let own = go(FeedLatency::Constant(0));
    assert!(
        shared.fills.len() >= 20,
        "too few fills to compare: {}",
        shared.fills.len()
    );
    assert_eq!(shared.events, own.events);
    let (a, b) = (trace(&shared), trace(&own));
    assert_eq!(a.0, b.0, "orders differ");
    assert_eq!(a.1, b.1, "fills differ");
    assert_eq!(a.2, b.2, "samples differ");
    assert_eq!(a.3, b.3, "crossed counts differ");
    assert_eq!(shared.engines[0].pnl(), own.engines[0].pnl());
}

#[test]
fn the_venue_on_the_engines_book_trades_as_on_its_own_on_a_real_capture() {
    let path = common::capture("usdm_btcusdt_20240808.gz");
    let loaded = hft_backtest::load(&path).unwrap();
    both(peer_setup, &loaded.specs, &loaded.events);
}

/// A seeded market: the touch walks a tick at a time with depth behind it, trades hit
/// either side, several messages share a time, snapshots come now and then, and three
/// quarters of the way in the book is cleared without warning and then rebuilt.
fn walk(seed: u64, n: usize) -> Vec<MarketEvent> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut rnd = move |m: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % m
    };
    let mut v = Vec::new();
    let ev = |ts: u64, flags: u8, kind| MarketEvent {
        ts_exchange: ts,
        ts_recv: ts,
        seq: 0,
        instrument: InstrumentId(0),
        flags,
        kind,
    };
    let level = |side, price: i64, qty: i64| MarketEventKind::Level {
        side,
        price: Price(price),
        qty: Qty(qty),
    };
    let snapshot = |v: &mut Vec<MarketEvent>, ts, bid: i64| {
        v.push(ev(ts, FLAG_SNAPSHOT, MarketEventKind::Clear));
        for d in 0..5 {
            v.push(ev(ts, FLAG_SNAPSHOT, level(Side::Buy, bid - d, 5 + d)));
            let last = if d == 4 { FLAG_LAST } else { 0 };
            v.push(ev(
                ts,
                FLAG_SNAPSHOT | last,
                level(Side::Sell, bid + 1 + d, 5 + d),
            ));
        }
    };
    let (mut ts, mut bid) = (1_000_000u64, 1_000i64);
    snapshot(&mut v, ts, bid);
    for k in 0..n {
        // Often the same time as the message before: ties between the clocks.
        ts += [0, 0, 50_000, 100_000, 1_000_000][rnd(5) as usize];
        if k % 1_000 == 999 {
            // A snapshot heals the book (the venue still reads the engine's).
            snapshot(&mut v, ts, bid);
            continue;
        }
        if k == n * 3 / 4 {
            // A clear no snapshot announced: from here the venue keeps its own book.
            v.push(ev(ts, FLAG_LAST, MarketEventKind::Clear));
            snapshot(&mut v, ts + 1, bid);
            continue;
        }
        match rnd(20) {
            0..=7 => {
                let side = if rnd(2) == 0 { Side::Sell } else { Side::Buy };
                let price = if side == Side::Sell { bid } else { bid + 1 };
                let trade = MarketEventKind::Trade {
                    aggressor: side,
                    price: Price(price),
                    qty: Qty(1 + rnd(6) as i64),
                };
                v.push(ev(ts, FLAG_LAST, trade));
            }
            8..=11 => {
                // The touch moves one tick: one side's best goes, the other gains one.
                let up = rnd(2) == 0;
                let (gone, new) = if up {
                    ((Side::Sell, bid + 1), (Side::Buy, bid + 1))
                } else {
                    ((Side::Buy, bid), (Side::Sell, bid))
                };
                v.push(ev(ts, 0, level(gone.0, gone.1, 0)));
                v.push(ev(ts, 0, level(new.0, new.1, 1 + rnd(9) as i64)));
                let far = if up { bid - 4 } else { bid + 5 };
                let far_side = if up { Side::Buy } else { Side::Sell };
                v.push(ev(ts, FLAG_LAST, level(far_side, far, 1 + rnd(9) as i64)));
                bid += if up { 1 } else { -1 };
            }
            _ => {
                // Sizes at the touch change, the same level twice in one message.
                let side = if rnd(2) == 0 { Side::Buy } else { Side::Sell };
                let price = if side == Side::Buy { bid } else { bid + 1 };
                v.push(ev(ts, 0, level(side, price, 1 + rnd(9) as i64)));
                v.push(ev(ts, FLAG_LAST, level(side, price, 1 + rnd(9) as i64)));
            }
        }
    }
    v
}

#[test]
fn the_venue_on_the_engines_book_trades_as_on_its_own_through_ties_and_clears() {
    let spec = InstrumentSpec::new(InstrumentId(0), "SYN", 0, 0, Price(1), Qty(1));
    // The models that read a level's old size when it shrinks, and the one that does not.
    for (seed, latency, queue) in [
        (1, 0, QueueModel::Power(2.0)),
        (2, 0, QueueModel::Log),
        (3, 50_000, QueueModel::RiskAverse),
        (4, 100_000, QueueModel::Power(1.0)),
    ] {
        let setup = || {
            let mut s = peer_setup();
            s.entry = Latency::Constant(latency);
            s.response = Latency::Constant(latency);
            s.queue = queue;
            s
        };
        both(setup, std::slice::from_ref(&spec), &walk(seed, 20_000));
    }
}
