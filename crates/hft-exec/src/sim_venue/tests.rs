use super::*;
use hft_core::{ClientOrderId, SpecViolation, StrategyId};

#[derive(Default)]
struct Rec {
    md: Vec<MarketEvent>,
    reports: Vec<OrderReport>,
}

impl VenueOutput for Rec {
    fn market(&mut self, e: &MarketEvent) {
        self.md.push(*e);
    }
    fn report(&mut self, r: &OrderReport) {
        self.reports.push(*r);
    }
}

fn spec() -> InstrumentSpec {
    InstrumentSpec::new(InstrumentId(0), "T", 2, 0, Price(10), Qty(1)).with_fees(-20, 500)
}

fn params() -> SimParams {
    SimParams {
        volatility_bps: 1.0,
        jump_rate_per_min: 0.0,
        jump_bps: 0.0,
        regime_switch_per_min: 0.0,
        volatile_multiplier: 1.0,
        limit_rate_hz: 1000.0,
        market_rate_hz: 100.0,
        cancel_rate_hz: 0.5,
        mean_order_lots: 4.0,
        depth_ticks: 20,
        ..SimParams::typical(Price(100_000))
    }
}

fn venue() -> SimVenue {
    SimVenue::new(9, 0, &[(spec(), params())], 10)
}

fn new_order(seq: u64, side: Side, price: i64, qty: i64, post_only: bool) -> OrderCommand {
    OrderCommand {
        ts: 0,
        tick_ts: 0,
        instrument: InstrumentId(0),
        cl_ord_id: ClientOrderId::new(StrategyId(1), seq),
        epoch: 0,
        kind: OrderKind::New {
            side,
            price: Price(price),
            qty: Qty(qty),
            tif: TimeInForce::Gtc,
            post_only,
        },
    }
}

#[test]
fn rejects_spec_violations_and_crossing_post_only() {
    let mut v = venue();
    let mut r = Rec::default();
    let (ask, _) = v.book(InstrumentId(0)).unwrap().best(Side::Sell).unwrap();
    v.submit(&new_order(1, Side::Buy, 99_995, 1, false), 1, &mut r);
    v.submit(&new_order(2, Side::Buy, ask.raw(), 1, true), 1, &mut r);
    let kinds: Vec<_> = r.reports.iter().map(|x| x.kind).collect();
    assert_eq!(
        kinds,
        vec![
            OrderReportKind::Rejected(RejectReason::Spec(SpecViolation::Tick)),
            OrderReportKind::Rejected(RejectReason::PostOnlyWouldCross)
        ]
    );
}

#[test]
fn taker_order_fills_at_once_with_taker_fee() {
    let mut v = venue();
    let mut r = Rec::default();
    let (ask, ask_qty) = v.book(InstrumentId(0)).unwrap().best(Side::Sell).unwrap();
    v.submit(&new_order(1, Side::Buy, ask.raw(), 1, false), 5, &mut r);
    assert_eq!(r.reports[0].kind, OrderReportKind::Accepted);
    let OrderReportKind::Fill(f) = r.reports[1].kind else {
        panic!("expected a fill: {:?}", r.reports)
    };
    assert_eq!(
        (f.price, f.qty, f.leaves, f.liquidity),
        (ask, Qty(1), Qty(0), Liquidity::Taker)
    );
    assert!(f.fee.raw() > 0);
    assert!(
        r.md.iter()
            .any(|e| matches!(e.kind, MarketEventKind::Trade { .. }))
    );
    assert!(r.md.last().unwrap().is_last());
    let _ = ask_qty;
}

#[test]
fn passive_order_fills_only_after_the_queue_ahead() {
    let mut v = venue();
    let mut r = Rec::default();
    let (bid, bid_qty) = v.book(InstrumentId(0)).unwrap().best(Side::Buy).unwrap();
    let ours = new_order(1, Side::Buy, bid.raw(), 2, true);
    v.submit(&ours, 1, &mut r);
    let owner = Owner::Client(ours.cl_ord_id);
    assert_eq!(
        v.book(InstrumentId(0)).unwrap().queue_ahead(owner),
        Some(bid_qty)
    );
    // Run the simulated market until our order fills; every fill must come when no
    // quantity was queued ahead of us any more.
    let mut filled = 0;
    for _ in 0..200_000 {
        let ahead = v.book(InstrumentId(0)).unwrap().queue_ahead(owner);
        let (before_r, before_md) = (r.reports.len(), r.md.len());
        v.step_flow(&mut r);
        let traded_at_our_price: i64 = r.md[before_md..]
            .iter()
            .filter_map(|e| match e.kind {
                MarketEventKind::Trade { price, qty, .. } if price == bid => Some(qty.raw()),
                _ => None,
            })
            .sum();
        for rep in &r.reports[before_r..] {
            if let OrderReportKind::Fill(f) = rep.kind {
                assert_eq!(f.liquidity, Liquidity::Maker);
                assert!(f.fee.raw() <= 0, "maker rebate");
                let ahead = ahead.expect("fill of an order that was resting");
                // The step's trades at our price consumed everything queued ahead first.
                assert!(
                    traded_at_our_price >= ahead.raw() + f.qty.raw(),
                    "ahead {ahead:?} traded {traded_at_our_price}"
                );
                filled += f.qty.raw();
            }
        }
        if filled == 2 || !v.book(InstrumentId(0)).unwrap().contains(owner) {
            break;
        }
    }
    assert!(filled > 0, "simulated market never reached our bid");
}

#[test]
fn fenced_epoch_is_refused() {
    let mut v = venue();
    v.set_min_epoch(5);
    let mut r = Rec::default();
    v.submit(&new_order(1, Side::Buy, 90_000, 1, true), 0, &mut r);
    assert_eq!(
        r.reports[0].kind,
        OrderReportKind::Rejected(RejectReason::Fenced)
    );
}

#[test]
fn cancel_of_unknown_order_is_reported() {
    let mut v = venue();
    let mut r = Rec::default();
    let mut c = new_order(7, Side::Buy, 90_000, 1, true);
    c.kind = OrderKind::Cancel;
    v.submit(&c, 0, &mut r);
    assert_eq!(
        r.reports[0].kind,
        OrderReportKind::CancelRejected(RejectReason::UnknownOrder)
    );
}
