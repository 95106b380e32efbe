//! Strategies on external market data — a recorded store or a live feed — through the
//! paper venue, with the same engines, strategies and session loop as the simulator:
//! a strategy runs on recorded or live data without a code change.

use crate::node::{BOOK_DEPTH, build_slots};
use crate::report::SessionReport;
use hft_config::Config;
use hft_core::{InstrumentId, InstrumentSpec, MarketEvent, NANOS_PER_SEC, Nanos};
use hft_exec::{PaperMarket, PaperVenue, SessionVenue, SimSession, SimTiming};

/// Runs the enabled strategies of `config` whose instrument `instrument_of` maps onto
/// `specs` (the data's instruments, indexed by the events' instrument ids) over `source`
/// to its end. `mode` names the data in the report (e.g. "replay", "live-paper").
pub fn run_paper<I: Iterator<Item = MarketEvent>>(
    config: &Config,
    specs: Vec<InstrumentSpec>,
    instrument_of: impl Fn(InstrumentId) -> Option<InstrumentId>,
    source: I,
    mode: &'static str,
) -> Result<SessionReport, String> {
    let (slots, kill) = build_slots(config, &specs, instrument_of);
    if slots.is_empty() {
        let wanted: Vec<&str> = config
            .strategies
            .iter()
            .filter(|s| s.enabled)
            .filter_map(|s| config.instruments.get(s.instrument.index()))
            .map(|i| i.spec.symbol.as_str())
            .collect();
        let have: Vec<&str> = specs.iter().map(|s| s.symbol.as_str()).collect();
        return Err(format!(
            "no enabled strategy trades an instrument of this data: strategies trade {wanted:?}, the data holds {have:?}; configure an [[instruments]] entry with the data's symbol and point a strategy at it"
        ));
    }
    let market = PaperMarket::new(PaperVenue::new(specs, BOOK_DEPTH), source);
    let start = market.next_flow_ts();
    if start == Nanos::MAX {
        return Err("the data holds no market events".into());
    }
    let timing = SimTiming {
        md_latency: config.simulator.md_latency_us * 1_000,
        order_latency: config.simulator.order_latency_us * 1_000,
        timer_interval: config.engine.timer_interval_ms * 1_000_000,
    };
    let mut session = SimSession::new(market, slots, timing, start);
    let mut pnl_path = crate::report::PnlPath::new(crate::report::PNL_SAMPLE_INTERVAL_NS);
    pnl_path.offer_slots(session.slots());
    session.run_sampled(Nanos::MAX, crate::report::PNL_SAMPLE_INTERVAL_NS, |s| {
        pnl_path.offer_slots(s.slots());
    });
    session.shutdown();
    let venue_events = session.venue().venue().stats().events;
    let duration = session.now().saturating_sub(start) as f64 / NANOS_PER_SEC as f64;
    let slots = session.into_slots();
    Ok(SessionReport::build(
        mode,
        0,
        duration,
        venue_events,
        &slots,
        kill.is_engaged(),
        pnl_path,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hft_core::{FLAG_LAST, FLAG_SNAPSHOT, MarketEventKind, Price, Qty, Side};

    /// A market around 60,000.00 (the default config's BTC-USD scales) that trades
    /// through both sides of a market maker's quotes.
    fn market() -> Vec<MarketEvent> {
        let mut out = Vec::new();
        let mut ev = |ts: u64, flags, kind| {
            out.push(MarketEvent {
                ts_exchange: ts,
                ts_recv: ts,
                seq: 0,
                instrument: InstrumentId(0),
                flags,
                kind,
            })
        };
        let lvl = |side, p: i64, q| MarketEventKind::Level {
            side,
            price: Price(p),
            qty: Qty(q),
        };
        ev(1, FLAG_SNAPSHOT, MarketEventKind::Clear);
        for k in 1..=10 {
            ev(1, FLAG_SNAPSHOT, lvl(Side::Buy, 6_000_000 - 50 * k, 50_000));
            ev(
                1,
                FLAG_SNAPSHOT,
                lvl(Side::Sell, 6_000_000 + 50 * k, 50_000),
            );
        }
        ev(1, FLAG_SNAPSHOT | FLAG_LAST, lvl(Side::Sell, 6_001_000, 1));
        // The touch walks in a sawtooth (so volatility can be estimated) and trades
        // print well through both sides.
        let mut touch = (6_000_000 - 50, 6_000_000 + 50);
        for step in 0..4_000u64 {
            let ts = 1 + step * 50_000_000;
            let mid = 6_000_000 + 50 * ((step / 5) % 20) as i64;
            let next = (mid - 50, mid + 50);
            if next != touch {
                ev(ts, 0, lvl(Side::Buy, touch.0, 0));
                ev(ts, 0, lvl(Side::Sell, touch.1, 0));
                ev(ts, 0, lvl(Side::Buy, next.0, 50_000));
                ev(ts, FLAG_LAST, lvl(Side::Sell, next.1, 50_000));
                touch = next;
            }
            if step % 4 == 0 {
                let side = if step % 8 == 0 { Side::Buy } else { Side::Sell };
                let through = if side == Side::Buy {
                    mid + 3_000
                } else {
                    mid - 3_000
                };
                ev(
                    ts,
                    FLAG_LAST,
                    MarketEventKind::Trade {
                        aggressor: side,
                        price: Price(through),
                        qty: Qty(100_000),
                    },
                );
            }
        }
        out
    }

    #[test]
    fn the_configured_market_maker_trades_recorded_data_through_the_paper_venue() {
        let config = hft_config::load(None, Vec::new()).unwrap();
        let specs = vec![config.instruments[0].spec.clone()];
        let btc = InstrumentId(0);
        let map = |i: InstrumentId| (i == btc).then_some(btc);
        let r = run_paper(&config, specs.clone(), map, market().into_iter(), "replay").unwrap();
        assert_eq!(r.mode, "replay");
        assert_eq!(r.strategies.len(), 1, "only the BTC strategy has data");
        assert!(
            r.orders() > 0 && r.fills() > 0,
            "orders {} fills {}",
            r.orders(),
            r.fills()
        );
        // Same data, same fills.
        let again = run_paper(&config, specs, map, market().into_iter(), "replay").unwrap();
        assert_eq!(again.fills_hash, r.fills_hash);
        let none = run_paper(&config, vec![], |_| None, market().into_iter(), "replay");
        assert!(none.unwrap_err().contains("no enabled strategy"));
    }
}
