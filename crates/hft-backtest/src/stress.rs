//! Stress scenarios: recorded data rewritten to what a bad day looks like, so a
//! backtest shows what the risk layer does under it. Each scenario keeps the data a
//! consistent venue feed: where prices jump or the feed stops, a snapshot of the
//! (rewritten) book follows, as a venue would send after a halt.

use hft_book::L2Book;
use hft_core::{
    FLAG_LAST, FLAG_SNAPSHOT, InstrumentId, MarketEvent, MarketEventKind, Nanos, Price, Qty, Side,
};

/// A scenario.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Scenario {
    /// From the middle of the data on, every price moves by this many basis points.
    PriceGap(i64),
    /// Every displayed size is cut to this fraction.
    LiquidityDrought(f64),
    /// From 40% to 60% of the data, order entry takes this long.
    LatencySpike(Nanos),
    /// From 40% to 60% of the data, the venue sends nothing.
    VenueOutage,
}

impl Scenario {
    /// A short name for reports.
    pub fn name(&self) -> String {
        match self {
            Scenario::PriceGap(bps) => format!("price gap {bps:+} bps"),
            Scenario::LiquidityDrought(f) => format!("liquidity drought x{f}"),
            Scenario::LatencySpike(l) => format!("latency spike {} ms", l / 1_000_000),
            Scenario::VenueOutage => "venue outage 20%".into(),
        }
    }

    /// The entry latency series of the scenario over `[start, end]`, if it changes it.
    pub fn entry_latency(
        &self,
        base: Nanos,
        start: Nanos,
        end: Nanos,
    ) -> Option<Vec<(Nanos, Nanos)>> {
        let Scenario::LatencySpike(l) = *self else {
            return None;
        };
        let (a, b) = (start + (end - start) * 2 / 5, start + (end - start) * 3 / 5);
        Some(vec![(a - 1, base), (a, l), (b, l), (b + 1, base)])
    }

    /// The rewritten events. Order-by-order events are left out: a scenario rewrites
    /// levels and trades, which the recorded orders would no longer add up to, so the
    /// venue queues by its L2 model under stress.
    pub fn apply(&self, events: &[MarketEvent], instruments: usize) -> Vec<MarketEvent> {
        let events: Vec<MarketEvent> = events
            .iter()
            .filter(|e| !matches!(e.kind, MarketEventKind::Order { .. }))
            .copied()
            .collect();
        let events = &events[..];
        let (Some(first), Some(last)) = (events.first(), events.last()) else {
            return Vec::new();
        };
        let (start, end) = (first.ts_recv, last.ts_recv.max(first.ts_recv));
        let mut books: Vec<L2Book> = (0..instruments)
            .map(|i| L2Book::with_capacity(InstrumentId(i as u32), 1024))
            .collect();
        let mut out = Vec::with_capacity(events.len() + 64);
        let (from, to) = match self {
            Scenario::PriceGap(_) => (start + (end - start) / 2, Nanos::MAX),
            Scenario::VenueOutage => (start + (end - start) * 2 / 5, start + (end - start) * 3 / 5),
            _ => (Nanos::MAX, Nanos::MAX),
        };
        let mut switched = false;
        for e in events {
            let in_window = e.ts_recv >= from && e.ts_recv < to;
            let mut ev = *e;
            match *self {
                Scenario::LiquidityDrought(f) => scale_sizes(&mut ev, f),
                Scenario::PriceGap(bps) if in_window => shift_prices(&mut ev, bps),
                _ => {}
            }
            if in_window && !switched {
                switched = true;
                if let Scenario::PriceGap(bps) = *self {
                    // The venue reopens at the new level: a snapshot of the shifted book.
                    for b in &books {
                        snapshot(b, e.ts_recv, bps, &mut out);
                    }
                }
            }
            if *self == Scenario::VenueOutage && switched && e.ts_recv >= to {
                // The feed is back: the venue's book as it now is.
                switched = false;
                for b in &books {
                    snapshot(b, e.ts_recv, 0, &mut out);
                }
            }
            if let Some(b) = books.get_mut(ev.instrument.index()) {
                // The tracked book is the venue's own, before any rewriting of prices.
                let source = if matches!(self, Scenario::PriceGap(_)) {
                    *e
                } else {
                    ev
                };
                let _ = b.apply(&source);
            }
            if *self == Scenario::VenueOutage && in_window {
                // Lost: the venue's book moved on without us.
                continue;
            }
            out.push(ev);
        }
        out
    }
}

fn shift(p: Price, bps: i64) -> Price {
    Price(p.raw() + (i128::from(p.raw()) * i128::from(bps) / 10_000) as i64)
}

fn shift_prices(e: &mut MarketEvent, bps: i64) {
    match &mut e.kind {
        MarketEventKind::Level { price, .. } | MarketEventKind::Trade { price, .. } => {
            *price = shift(*price, bps)
        }
        MarketEventKind::Quote { bid, ask, .. } => {
            *bid = shift(*bid, bps);
            *ask = shift(*ask, bps);
        }
        // Order events are left out before any rewrite (see `apply`).
        MarketEventKind::Clear | MarketEventKind::Order { .. } => {}
    }
}

fn scale_sizes(e: &mut MarketEvent, f: f64) {
    let s = |q: &mut Qty| {
        if q.raw() > 0 {
            *q = Qty(((q.raw() as f64 * f).round() as i64).max(1));
        }
    };
    match &mut e.kind {
        MarketEventKind::Level { qty, .. } => s(qty),
        MarketEventKind::Quote {
            bid_qty, ask_qty, ..
        } => {
            s(bid_qty);
            s(ask_qty);
        }
        MarketEventKind::Trade { .. } | MarketEventKind::Clear | MarketEventKind::Order { .. } => {}
    }
}

/// A venue snapshot of `book` (prices shifted by `bps`) at `ts`.
fn snapshot(book: &L2Book, ts: Nanos, bps: i64, out: &mut Vec<MarketEvent>) {
    let ev = |flags, kind| MarketEvent {
        ts_exchange: ts,
        ts_recv: ts,
        seq: 0,
        instrument: book.instrument(),
        flags,
        kind,
    };
    out.push(ev(FLAG_SNAPSHOT, MarketEventKind::Clear));
    for side in [Side::Buy, Side::Sell] {
        for (p, q) in book.levels(side) {
            out.push(ev(
                FLAG_SNAPSHOT,
                MarketEventKind::Level {
                    side,
                    price: shift(p, bps),
                    qty: q,
                },
            ));
        }
    }
    if let Some(l) = out.last_mut() {
        l.flags |= FLAG_LAST;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lvl(ts: u64, side: Side, p: i64, q: i64) -> MarketEvent {
        MarketEvent {
            ts_exchange: ts,
            ts_recv: ts,
            seq: 0,
            instrument: InstrumentId(0),
            flags: FLAG_LAST,
            kind: MarketEventKind::Level {
                side,
                price: Price(p),
                qty: Qty(q),
            },
        }
    }

    #[test]
    fn a_gap_reopens_with_a_shifted_snapshot_and_the_book_stays_consistent() {
        let mut ev = vec![lvl(0, Side::Buy, 10_000, 5), lvl(0, Side::Sell, 10_010, 5)];
        for t in 1..=10 {
            ev.push(lvl(t, Side::Buy, 10_000, 5 + t as i64));
        }
        let out = Scenario::PriceGap(-1_000).apply(&ev, 1);
        let mut b = L2Book::with_capacity(InstrumentId(0), 16);
        for e in &out {
            b.apply(e).unwrap();
            assert!(!b.is_crossed());
        }
        assert_eq!(b.best_bid(), Some((Price(9_000), Qty(15))));
        assert_eq!(b.best_ask().map(|l| l.0), Some(Price(9_009)));
        let dry = Scenario::LiquidityDrought(0.1).apply(&ev, 1);
        assert!(matches!(
            dry[0].kind,
            MarketEventKind::Level { qty: Qty(1), .. }
        ));
        let out = Scenario::VenueOutage.apply(&ev, 1);
        assert!(out.len() < ev.len() + 4 && out.iter().any(|e| e.flags & FLAG_SNAPSHOT != 0));
    }
}
