//! A backtest on real order-by-order data (CME E-mini S&P futures, Databento MBO): the
//! venue places our orders in the recorded queues and fills them in time priority.

use hft_backtest::run::{Outcome, run};
use hft_backtest::{peer_setup, touch_engines};
use hft_core::{Liquidity, MarketEvent, MarketEventKind, OrderKind, OrderReportKind};
mod common;

fn backtest(loaded: &hft_backtest::Loaded, events: &[MarketEvent]) -> Outcome {
    run(
        peer_setup(),
        loaded.specs.clone(),
        touch_engines(&loaded.specs),
        events,
    )
}

#[test]
fn the_touch_maker_trades_real_mbo_data_with_fills_in_queue_order() {
    let path = common::data("cme_databento/esh4-glbx-mdp3-20231225.mbo.dbn.zst");
    let loaded = hft_backtest::load(&path).unwrap();
    let count =
        |f: fn(&MarketEventKind) -> bool| loaded.events.iter().filter(|e| f(&e.kind)).count();
    let orders = count(|k| matches!(k, MarketEventKind::Order { .. }));
    let levels = count(|k| matches!(k, MarketEventKind::Level { .. }));
    // Every record but the trade prints (which become trades) stays an order event,
    // and the book changes among them become the levels L2 consumers read.
    assert!(orders > 60_000, "{orders} order events");
    assert!(levels > 40_000, "{levels} level events");

    let exact = backtest(&loaded, &loaded.events);
    assert!(exact.fills.len() > 5, "{} fills", exact.fills.len());
    for f in &exact.fills {
        let OrderReportKind::Fill(fill) = f.report.kind else {
            panic!("not a fill: {f:?}");
        };
        let sent = exact
            .orders
            .iter()
            .find(|o| o.cmd.cl_ord_id == f.report.cl_ord_id)
            .expect("a fill of an order we sent");
        let OrderKind::New { price, .. } = sent.cmd.kind else {
            panic!("a fill of a cancel");
        };
        // Post-only orders at the touch: every fill is passive, at the order's price.
        assert_eq!(fill.liquidity, Liquidity::Maker);
        assert_eq!(fill.price, price);
    }
    let key = |o: &Outcome| -> Vec<(u64, u64, i64)> {
        o.fills
            .iter()
            .map(|f| (f.local_ts, f.report.cl_ord_id.0, f.queue_wait as i64))
            .collect()
    };
    assert_eq!(
        key(&backtest(&loaded, &loaded.events)),
        key(&exact),
        "deterministic"
    );

    // The same data as L2 only, with the queue estimated by the risk-averse model:
    // another answer, which is what the exact queue is for.
    let l2: Vec<MarketEvent> = loaded
        .events
        .iter()
        .filter(|e| !matches!(e.kind, MarketEventKind::Order { .. }))
        .copied()
        .collect();
    let model = backtest(&loaded, &l2);
    eprintln!(
        "fills: {} in exact FIFO, {} with the risk-averse L2 model; orders {} and {}",
        exact.fills.len(),
        model.fills.len(),
        exact.orders.len(),
        model.orders.len()
    );
    assert_ne!(key(&model), key(&exact));
}
