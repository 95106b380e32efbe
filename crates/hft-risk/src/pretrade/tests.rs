use super::*;
use hft_core::InstrumentId;
use proptest::prelude::*;

fn spec() -> InstrumentSpec {
    InstrumentSpec::new(InstrumentId(0), "T", 2, 0, Price(1), Qty(1))
}

fn limits() -> RiskLimits {
    RiskLimits {
        max_order_qty: Qty(10),
        max_order_notional: Money::parse_quote("2000").unwrap(),
        price_band_bps: 100,
        max_position: Qty(25),
        max_orders_per_sec: 1_000,
        max_open_orders: 5,
        max_daily_loss: Money::parse_quote("100").unwrap(),
    }
}

fn gate() -> PreTradeRisk {
    PreTradeRisk::new(
        limits(),
        KillSwitch::new(false),
        NodeExposure::new(1, Money::parse_quote("1000000").unwrap()),
    )
}

fn ctx() -> RiskContext {
    RiskContext {
        reference: Some(Price(10_000)),
        ..Default::default()
    }
}

fn buy(qty: i64, price: i64) -> OrderIntent {
    OrderIntent {
        side: Side::Buy,
        price: Price(price),
        qty: Qty(qty),
    }
}

#[test]
fn each_limit_rejects_and_is_counted() {
    let s = spec();
    let mut g = gate();
    assert_eq!(
        g.check(&s, &buy(11, 10_000), &ctx(), 0),
        Err(RiskReject::MaxOrderQty)
    );
    assert_eq!(
        g.check(&s, &buy(5, 10_200), &ctx(), 0),
        Err(RiskReject::PriceBand)
    );
    let no_ref = RiskContext {
        reference: None,
        ..ctx()
    };
    assert_eq!(
        g.check(&s, &buy(5, 10_000), &no_ref, 0),
        Err(RiskReject::NoReferencePrice)
    );
    let near_limit = RiskContext {
        position: Qty(20),
        open_buy: Qty(3),
        ..ctx()
    };
    assert_eq!(
        g.check(&s, &buy(3, 10_000), &near_limit, 0),
        Err(RiskReject::PositionLimit)
    );
    let many_open = RiskContext {
        open_orders: 5,
        ..ctx()
    };
    assert_eq!(
        g.check(&s, &buy(1, 10_000), &many_open, 0),
        Err(RiskReject::OpenOrders)
    );
    assert_eq!(g.check(&s, &buy(1, 10_000), &ctx(), 0), Ok(()));
    assert_eq!(g.rejects().get(RiskReject::PriceBand), 1);
    assert_eq!(g.rejects().total(), 5);
}

#[test]
fn notional_limit() {
    let mut l = limits();
    l.max_order_notional = Money::parse_quote("500").unwrap();
    let mut g = PreTradeRisk::new(
        l,
        KillSwitch::new(false),
        NodeExposure::new(1, Money(i64::MAX)),
    );
    assert_eq!(
        g.check(&spec(), &buy(6, 10_000), &ctx(), 0),
        Err(RiskReject::MaxOrderNotional)
    );
}

#[test]
fn kill_switch_halts_everything() {
    let kill = KillSwitch::new(false);
    let mut g = PreTradeRisk::new(
        limits(),
        kill.clone(),
        NodeExposure::new(1, Money(i64::MAX)),
    );
    kill.engage();
    assert_eq!(g.state(), TradingState::Halted);
    assert_eq!(
        g.check(&spec(), &buy(1, 10_000), &ctx(), 0),
        Err(RiskReject::KillSwitch)
    );
    kill.reset();
    assert_eq!(g.check(&spec(), &buy(1, 10_000), &ctx(), 0), Ok(()));
}

#[test]
fn loss_limit_trips_reduce_only() {
    let mut g = gate();
    assert!(!g.on_pnl(Money::parse_quote("-99").unwrap()));
    assert!(g.on_pnl(Money::parse_quote("-101").unwrap()));
    assert_eq!(g.state(), TradingState::Reducing);
    let long = RiskContext {
        position: Qty(4),
        ..ctx()
    };
    assert_eq!(
        g.check(&spec(), &buy(1, 10_000), &long, 0),
        Err(RiskReject::ReduceOnly)
    );
    let sell = OrderIntent {
        side: Side::Sell,
        ..buy(4, 10_000)
    };
    assert_eq!(g.check(&spec(), &sell, &long, 0), Ok(()));
    let oversell = OrderIntent {
        side: Side::Sell,
        ..buy(5, 10_000)
    };
    assert_eq!(
        g.check(&spec(), &oversell, &long, 0),
        Err(RiskReject::ReduceOnly)
    );
}

#[test]
fn order_rate_is_a_rolling_budget() {
    let mut l = limits();
    l.max_orders_per_sec = 10;
    let mut g = PreTradeRisk::new(
        l,
        KillSwitch::new(false),
        NodeExposure::new(1, Money(i64::MAX)),
    );
    let accepted = (0..20)
        .filter(|_| g.check(&spec(), &buy(1, 10_000), &ctx(), 1).is_ok())
        .count();
    assert_eq!(accepted, 10);
    // Half a second later, half the budget is back.
    let later = (0..20)
        .filter(|_| {
            g.check(&spec(), &buy(1, 10_000), &ctx(), 500_000_001)
                .is_ok()
        })
        .count();
    assert_eq!(later, 5);
}

#[test]
fn gross_exposure_counts_other_strategies() {
    let exposure = NodeExposure::new(2, Money::parse_quote("1000").unwrap());
    exposure.publish(1, Money::parse_quote("900").unwrap());
    let mut g = PreTradeRisk::new(limits(), KillSwitch::new(false), exposure);
    // 2 x 100.00 = 200 more would make 1100 > 1000.
    assert_eq!(
        g.check(&spec(), &buy(2, 10_000), &ctx(), 0),
        Err(RiskReject::GrossExposure)
    );
    assert_eq!(g.check(&spec(), &buy(1, 10_000), &ctx(), 0), Ok(()));
}

proptest! {
    /// Whatever a strategy asks for, if every accepted order fills completely the
    /// position never exceeds the limit: the check counts open orders on the same side.
    #[test]
    fn accepted_orders_never_breach_position_limit(
        orders in proptest::collection::vec((any::<bool>(), 1i64..=12, -150i64..=150, any::<bool>()), 1..200)
    ) {
        let s = spec();
        let mut g = gate();
        let mut position = 0i64;
        let mut open: Vec<(Side, i64)> = Vec::new();
        for (i, (is_buy, qty, offset, fill_now)) in orders.into_iter().enumerate() {
            let side = if is_buy { Side::Buy } else { Side::Sell };
            let sum = |sd: Side| open.iter().filter(|(s, _)| *s == sd).map(|(_, q)| *q).sum::<i64>();
            let c = RiskContext {
                position: Qty(position),
                open_buy: Qty(sum(Side::Buy)),
                open_sell: Qty(sum(Side::Sell)),
                open_orders: open.len() as u32,
                reference: Some(Price(10_000)),
                exposure: Money(0),
            };
            let o = OrderIntent { side, price: Price(10_000 + offset), qty: Qty(qty) };
            if g.check(&s, &o, &c, i as u64 * 1_000_000).is_ok() {
                prop_assert!(qty <= 10);
                prop_assert!((offset.abs()) * 10_000 <= 100 * 10_000);
                open.push((side, qty));
            }
            if fill_now && !open.is_empty() {
                let (sd, q) = open.remove(0);
                position += sd.sign() * q;
            }
            // Worst case: everything still open fills.
            let worst_long = position + open.iter().filter(|(s, _)| *s == Side::Buy).map(|(_, q)| q).sum::<i64>();
            let worst_short = position - open.iter().filter(|(s, _)| *s == Side::Sell).map(|(_, q)| q).sum::<i64>();
            prop_assert!(worst_long <= 25 && worst_short >= -25, "worst {worst_long}/{worst_short}");
            prop_assert!(open.len() <= 5);
        }
    }
}
