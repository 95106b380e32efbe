//! Position accounting of one instrument with average cost, exact to the money unit.

use crate::Price;
use crate::event::Fill;
use crate::fixed::{Money, Qty, div_round};
use crate::instrument::InstrumentSpec;

/// Net position, cost basis and realized PnL of one instrument.
///
/// The cost basis is kept as total money (not a per-unit price), so repeated partial
/// closes never accumulate rounding error beyond one money unit per fill.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Position {
    /// Net quantity (long > 0).
    pub qty: Qty,
    /// Signed cost of the open quantity (long: paid, short: negative of received).
    pub cost: Money,
    /// Realized trading PnL before fees.
    pub realized: Money,
    /// Fees paid (negative when rebates dominate).
    pub fees: Money,
    /// Quantity traded, both sides.
    pub volume: Qty,
    /// Largest |qty| seen.
    pub max_abs_qty: Qty,
}

impl Position {
    /// Applies one fill.
    pub fn apply(&mut self, spec: &InstrumentSpec, fill: &Fill) {
        let signed = fill.side.sign() * fill.qty.raw();
        let pos = self.qty.raw();
        self.fees = Money(self.fees.raw().saturating_add(fill.fee.raw()));
        self.volume = Qty(self.volume.raw().saturating_add(fill.qty.raw()));
        let (close, open) = if pos != 0 && pos.signum() != signed.signum() {
            let c = signed.abs().min(pos.abs());
            (c, signed.abs() - c)
        } else {
            (0, signed.abs())
        };
        if close > 0 {
            let cost_closed = div_round(
                i128::from(self.cost.raw()) * i128::from(close),
                i128::from(pos.abs()),
            ) as i64;
            let value = spec.notional(fill.price, Qty(close)).raw();
            self.realized = Money(
                self.realized
                    .raw()
                    .saturating_add(pos.signum() * value - cost_closed),
            );
            self.cost = Money(self.cost.raw() - cost_closed);
            self.qty = Qty(pos - pos.signum() * close);
        }
        if open > 0 {
            let value = spec.notional(fill.price, Qty(open)).raw();
            self.cost = Money(self.cost.raw().saturating_add(fill.side.sign() * value));
            self.qty = Qty(self.qty.raw() + fill.side.sign() * open);
        }
        if self.qty.raw() == 0 {
            // Residual rounding of the basis belongs to realized PnL once flat.
            self.realized = Money(self.realized.raw() - self.cost.raw());
            self.cost = Money::ZERO;
        }
        self.max_abs_qty = self.max_abs_qty.max(self.qty.abs());
    }

    /// Mark-to-market PnL of the open quantity at `mark`.
    #[inline]
    pub fn unrealized(&self, spec: &InstrumentSpec, mark: Price) -> Money {
        Money(
            spec.notional(mark, self.qty)
                .raw()
                .saturating_sub(self.cost.raw()),
        )
    }

    /// Realized PnL after fees.
    #[inline]
    pub fn realized_net(&self) -> Money {
        Money(self.realized.raw().saturating_sub(self.fees.raw()))
    }

    /// Total PnL after fees at `mark`.
    #[inline]
    pub fn total_pnl(&self, spec: &InstrumentSpec, mark: Price) -> Money {
        Money(
            self.realized_net()
                .raw()
                .saturating_add(self.unrealized(spec, mark).raw()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ExecId, InstrumentId, Liquidity, Side};
    use proptest::prelude::*;

    fn spec() -> InstrumentSpec {
        InstrumentSpec::new(InstrumentId(0), "T", 2, 0, Price(1), Qty(1))
    }

    fn fill(side: Side, price: i64, qty: i64) -> Fill {
        Fill {
            exec_id: ExecId(0),
            side,
            price: Price(price),
            qty: Qty(qty),
            leaves: Qty(0),
            liquidity: Liquidity::Maker,
            fee: Money(0),
        }
    }

    #[test]
    fn round_trip_realizes_the_difference() {
        let s = spec();
        let mut p = Position::default();
        p.apply(&s, &fill(Side::Buy, 10_000, 3));
        p.apply(&s, &fill(Side::Sell, 10_100, 1));
        assert_eq!(p.realized, Money::parse_quote("1").unwrap());
        assert_eq!(
            p.unrealized(&s, Price(10_100)),
            Money::parse_quote("2").unwrap()
        );
        // Flip to short through zero.
        p.apply(&s, &fill(Side::Sell, 9_900, 4));
        assert_eq!(p.qty, Qty(-2));
        assert_eq!(p.realized, Money::parse_quote("-1").unwrap());
        p.apply(&s, &fill(Side::Buy, 9_800, 2));
        assert_eq!(p.realized, Money::parse_quote("1").unwrap());
        assert_eq!(p.cost, Money::ZERO);
        assert_eq!(p.max_abs_qty, Qty(3));
    }

    proptest! {
        /// PnL is conserved: realized + unrealized equals the cash flow of all fills
        /// valued at the mark, to within one money unit per fill of rounding.
        #[test]
        fn pnl_matches_cash_flow(fills in proptest::collection::vec((any::<bool>(), 9_000i64..11_000, 1i64..50), 1..100), mark in 9_000i64..11_000) {
            let s = spec();
            let mut p = Position::default();
            let mut cash: i64 = 0;
            let mut qty: i64 = 0;
            for (b, px, q) in &fills {
                let side = if *b { Side::Buy } else { Side::Sell };
                p.apply(&s, &fill(side, *px, *q));
                cash -= side.sign() * s.notional(Price(*px), Qty(*q)).raw();
                qty += side.sign() * q;
            }
            prop_assert_eq!(p.qty, Qty(qty));
            let expected = cash + s.notional(Price(mark), Qty(qty)).raw();
            let got = p.realized.raw() + p.unrealized(&s, Price(mark)).raw();
            prop_assert!((got - expected).abs() <= fills.len() as i64, "got {got} expected {expected}");
        }
    }
}
