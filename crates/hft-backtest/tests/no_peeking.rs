//! A strategy cannot see the future: on real data, every event reaches it only when
//! its clock has reached the event's receive time, every report comes at least the
//! round-trip latency after its order, and identical runs give identical fills.

use hft_backtest::model::{FeedLatency, Latency, QueueModel};
use hft_backtest::run::{BacktestSetup, run};
use hft_core::{MarketEvent, OrderReport, Qty, TimeInForce};
use hft_risk::RiskLimits;
use hft_strategy::{Context, Strategy};
mod common;
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct Seen {
    late_events: u64,
    events: u64,
    early_reports: u64,
    reports: u64,
    sent: Vec<(u64, u64)>,
}

/// Tries to peek: it looks at every event's time against its clock, and sends an
/// order now and then to time the answers.
struct Peeker(Arc<Mutex<Seen>>, u64);

impl Strategy for Peeker {
    fn on_market(&mut self, ctx: &mut Context<'_>, ev: &MarketEvent) {
        let mut s = self.0.lock().unwrap();
        s.events += 1;
        s.late_events += u64::from(ev.ts_recv > ctx.now());
        self.1 += 1;
        if self.1 % 500 == 0 {
            let id = ev.instrument;
            if let Some((bid, _)) = ctx.book(id).best_bid() {
                let lot = ctx.spec(id).lot_size;
                if let Some(c) =
                    ctx.place(id, hft_core::Side::Buy, bid, lot, TimeInForce::Gtc, true)
                {
                    s.sent.push((c.0, ctx.now()));
                }
            }
        }
    }

    fn on_order_update(&mut self, ctx: &mut Context<'_>, r: &OrderReport) {
        let mut s = self.0.lock().unwrap();
        s.reports += 1;
        if let Some(&(_, sent)) = s.sent.iter().find(|(id, _)| *id == r.cl_ord_id.0) {
            s.early_reports += u64::from(ctx.now() < sent + 2 * 250_000);
        }
    }
}

#[test]
fn events_arrive_on_time_and_answers_after_the_round_trip() {
    let loaded = hft_backtest::load(&common::capture("spot_ethusdt_20240808.gz")).unwrap();
    assert_eq!(loaded.input_messages, 33_618);
    let seen = Arc::new(Mutex::new(Seen::default()));
    let spec = loaded.specs[0].clone();
    let limits = RiskLimits {
        max_order_qty: Qty(spec.lot_size.raw() * 10),
        max_open_orders: 64,
        max_orders_per_sec: 1_000,
        ..hft_backtest::loose_limits(Qty(i64::MAX / 4))
    };
    let engine = hft_backtest::engine_with(
        &loaded.specs,
        0,
        spec.id,
        Box::new(Peeker(seen.clone(), 0)),
        limits,
    );
    let setup = BacktestSetup {
        entry: Latency::Constant(250_000),
        response: Latency::Constant(250_000),
        feed: FeedLatency::FromData,
        queue: QueueModel::Power(2.0),
        timer_interval: 1_000_000_000,
        sample_interval: 1_000_000_000,
        progress: None,
    };
    let o = run(setup, loaded.specs.clone(), vec![engine], &loaded.events);
    let s = seen.lock().unwrap();
    assert!(s.events > 10_000, "{} events", s.events);
    assert_eq!(
        s.late_events, 0,
        "an event reached the strategy before its time"
    );
    assert!(s.reports > 10, "{} reports", s.reports);
    assert_eq!(
        s.early_reports, 0,
        "a report came back faster than the round trip"
    );
    assert!(o.orders.len() > 10);
    // Determinism: the touch maker twice on the same data.
    let a = run(
        hft_backtest::peer_setup(),
        loaded.specs.clone(),
        hft_backtest::touch_engines(&loaded.specs),
        &loaded.events,
    );
    let b = run(
        hft_backtest::peer_setup(),
        loaded.specs.clone(),
        hft_backtest::touch_engines(&loaded.specs),
        &loaded.events,
    );
    let key = |o: &hft_backtest::run::Outcome| {
        o.fills
            .iter()
            .map(|f| (f.local_ts, f.report.cl_ord_id.0))
            .collect::<Vec<_>>()
    };
    assert!(!a.fills.is_empty());
    assert_eq!(key(&a), key(&b));
}
