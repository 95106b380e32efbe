//! Instrument specs: the rules an order must satisfy before any venue sees it, and the
//! only place that converts between raw units and money.

use crate::error::CoreError;
use crate::fixed::{MAX_SCALE, MONEY_SCALE, Money, Price, Qty, div_round, div_round_i64};
use crate::ids::InstrumentId;

/// Static description of a tradable instrument.
///
/// Fees are in hundredths of a basis point (1e-6 of notional) so that common schedules
/// such as a 0.25 bp rebate are exact; a negative fee is a rebate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstrumentSpec {
    /// Index in the node's instrument table.
    pub id: InstrumentId,
    /// Venue symbol, e.g. `BTC-USD`.
    pub symbol: String,
    /// Decimals of raw price units.
    pub price_scale: u8,
    /// Decimals of raw quantity units.
    pub qty_scale: u8,
    /// Smallest price increment, in raw price units.
    pub tick_size: Price,
    /// Smallest quantity increment, in raw quantity units.
    pub lot_size: Qty,
    /// Smallest order quantity.
    pub min_qty: Qty,
    /// Smallest order notional.
    pub min_notional: Money,
    /// Maker fee, 1e-6 of notional (negative = rebate).
    pub maker_fee_micros: i64,
    /// Taker fee, 1e-6 of notional.
    pub taker_fee_micros: i64,
}

/// Why an order does not fit an instrument's rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpecViolation {
    /// Price is not a positive multiple of the tick size.
    Tick,
    /// Quantity is not a positive multiple of the lot size.
    Lot,
    /// Quantity below the minimum.
    MinQty,
    /// Notional below the minimum.
    MinNotional,
}

impl InstrumentSpec {
    /// A spec whose minimum order is one lot, with no minimum notional and no fees;
    /// set those on the returned value where the venue has them.
    pub fn new(
        id: InstrumentId,
        symbol: impl Into<String>,
        price_scale: u8,
        qty_scale: u8,
        tick_size: Price,
        lot_size: Qty,
    ) -> Self {
        Self {
            id,
            symbol: symbol.into(),
            price_scale,
            qty_scale,
            tick_size,
            lot_size,
            min_qty: lot_size,
            min_notional: Money::ZERO,
            maker_fee_micros: 0,
            taker_fee_micros: 0,
        }
    }

    /// The same spec with maker and taker fees (1e-6 of notional; negative = rebate).
    pub fn with_fees(mut self, maker_fee_micros: i64, taker_fee_micros: i64) -> Self {
        self.maker_fee_micros = maker_fee_micros;
        self.taker_fee_micros = taker_fee_micros;
        self
    }

    /// Checks that the spec can be traded at all: a zero tick or lot would make every
    /// rounding divide by zero, so it is refused up front.
    pub fn validate(&self) -> Result<(), CoreError> {
        let err = |field, reason| CoreError::InvalidSpec {
            symbol: self.symbol.clone(),
            field,
            reason,
        };
        if self.symbol.trim().is_empty() {
            return Err(err("symbol", "must not be empty"));
        }
        if self.price_scale > MAX_SCALE || self.qty_scale > MAX_SCALE {
            return Err(err("price_scale/qty_scale", "must be at most 12"));
        }
        if u32::from(self.price_scale) + u32::from(self.qty_scale) > 2 * u32::from(MONEY_SCALE) {
            return Err(err("price_scale + qty_scale", "must be at most 16"));
        }
        if self.tick_size.raw() <= 0 {
            return Err(err("tick_size", "must be greater than zero"));
        }
        if self.lot_size.raw() <= 0 {
            return Err(err("lot_size", "must be greater than zero"));
        }
        if self.min_qty.raw() < 0 || self.min_notional.raw() < 0 {
            return Err(err("min_qty/min_notional", "must not be negative"));
        }
        if self.maker_fee_micros.abs() >= 1_000_000 || self.taker_fee_micros.abs() >= 1_000_000 {
            return Err(err("fees", "must be below 100% of notional"));
        }
        Ok(())
    }

    /// Notional of `qty` at `price` in money units, rounded to the nearest unit.
    /// Saturates rather than wrapping for absurd inputs; risk limits catch those.
    #[inline]
    pub fn notional(&self, price: Price, qty: Qty) -> Money {
        let scale =
            i32::from(self.price_scale) + i32::from(self.qty_scale) - i32::from(MONEY_SCALE);
        // Fast path in i64 (the common case: a 128-bit division is a library call that
        // costs tens of nanoseconds, and this runs several times per event).
        if let Some(prod) = price.raw().checked_mul(qty.raw()) {
            if scale <= 0 {
                if let Some(v) = 10i64
                    .checked_pow((-scale) as u32)
                    .and_then(|m| prod.checked_mul(m))
                {
                    return Money(v.max(i64::MIN + 1));
                }
            } else if scale <= 18 {
                return Money(div_round_i64(prod, 10i64.pow(scale as u32)));
            }
        }
        let prod = i128::from(price.raw()) * i128::from(qty.raw());
        let v = if scale <= 0 {
            prod.saturating_mul(10i128.pow((-scale) as u32))
        } else {
            div_round(prod, 10i128.pow(scale as u32))
        };
        Money(v.clamp(i128::from(i64::MIN + 1), i128::from(i64::MAX)) as i64)
    }

    /// Fee for a fill (positive = paid), at the maker or taker rate.
    #[inline]
    pub fn fee(&self, price: Price, qty: Qty, maker: bool) -> Money {
        let rate = if maker {
            self.maker_fee_micros
        } else {
            self.taker_fee_micros
        };
        let notional = i128::from(self.notional(price, qty).raw().abs());
        Money(div_round(notional * i128::from(rate), 1_000_000) as i64)
    }

    /// Checks an order's price and quantity against tick, lot and minimums.
    #[inline]
    pub fn check_order(&self, price: Price, qty: Qty) -> Result<(), SpecViolation> {
        if price.raw() <= 0 || price.raw() % self.tick_size.raw() != 0 {
            return Err(SpecViolation::Tick);
        }
        if qty.raw() <= 0 || qty.raw() % self.lot_size.raw() != 0 {
            return Err(SpecViolation::Lot);
        }
        if qty < self.min_qty {
            return Err(SpecViolation::MinQty);
        }
        if self.notional(price, qty) < self.min_notional {
            return Err(SpecViolation::MinNotional);
        }
        Ok(())
    }

    /// Rounds a price down to the tick grid (for bids: never pay more than intended).
    #[inline]
    pub fn floor_to_tick(&self, price: Price) -> Price {
        Price(price.raw().div_euclid(self.tick_size.raw()) * self.tick_size.raw())
    }

    /// Rounds a price up to the tick grid (for asks).
    #[inline]
    pub fn ceil_to_tick(&self, price: Price) -> Price {
        let t = self.tick_size.raw();
        Price(-((-price.raw()).div_euclid(t)) * t)
    }

    /// Rounds a quantity down to the lot grid.
    #[inline]
    pub fn floor_to_lot(&self, qty: Qty) -> Qty {
        Qty(qty.raw().div_euclid(self.lot_size.raw()) * self.lot_size.raw())
    }

    /// Size of one raw price unit in currency, for models that work in floating point
    /// (volatility, reservation prices); their output is rounded back to ticks.
    #[inline]
    pub fn price_unit(&self) -> f64 {
        10f64.powi(-i32::from(self.price_scale))
    }

    /// Quantity in natural units as f64, for models only (never for accounting).
    #[inline]
    pub fn qty_unit(&self) -> f64 {
        10f64.powi(-i32::from(self.qty_scale))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> InstrumentSpec {
        InstrumentSpec {
            min_notional: Money::parse_quote("1").unwrap(),
            ..InstrumentSpec::new(InstrumentId(0), "BTC-USD", 2, 4, Price(10), Qty(10))
                .with_fees(-25, 500)
        }
    }

    #[test]
    fn zero_tick_is_refused() {
        let mut s = spec();
        s.tick_size = Price(0);
        let e = s.validate().unwrap_err().to_string();
        assert!(e.contains("tick_size"), "{e}");
    }

    #[test]
    fn notional_and_fees_are_exact() {
        let s = spec();
        // 60000.00 * 0.5000 = 30000.00
        let n = s.notional(Price(6_000_000), Qty(5_000));
        assert_eq!(n, Money::parse_quote("30000").unwrap());
        assert_eq!(
            s.fee(Price(6_000_000), Qty(5_000), false),
            Money::parse_quote("15").unwrap()
        );
        assert_eq!(
            s.fee(Price(6_000_000), Qty(5_000), true),
            Money::parse_quote("-0.75").unwrap()
        );
    }

    #[test]
    fn order_rules() {
        let s = spec();
        assert_eq!(
            s.check_order(Price(6_000_005), Qty(10)),
            Err(SpecViolation::Tick)
        );
        assert_eq!(
            s.check_order(Price(6_000_000), Qty(15)),
            Err(SpecViolation::Lot)
        );
        assert_eq!(
            s.check_order(Price(10), Qty(10)),
            Err(SpecViolation::MinNotional)
        );
        assert_eq!(s.check_order(Price(6_000_000), Qty(10)), Ok(()));
    }

    proptest::proptest! {
        /// The i64 fast path of `notional` agrees with exact 128-bit arithmetic.
        #[test]
        fn notional_fast_path_is_exact(price in proptest::prelude::any::<i64>(), qty in proptest::prelude::any::<i64>(), ps in 0u8..=12, qs in 0u8..=4) {
            let mut s = spec();
            s.price_scale = ps;
            s.qty_scale = qs;
            let scale = i32::from(ps) + i32::from(qs) - 8;
            let prod = i128::from(price) * i128::from(qty);
            let exact = if scale <= 0 { prod.saturating_mul(10i128.pow((-scale) as u32)) } else { div_round(prod, 10i128.pow(scale as u32)) };
            let expected = exact.clamp(i128::from(i64::MIN + 1), i128::from(i64::MAX)) as i64;
            proptest::prop_assert_eq!(s.notional(Price(price), Qty(qty)).raw(), expected);
        }
    }

    #[test]
    fn tick_rounding() {
        let s = spec();
        assert_eq!(s.floor_to_tick(Price(105)), Price(100));
        assert_eq!(s.ceil_to_tick(Price(101)), Price(110));
        assert_eq!(s.ceil_to_tick(Price(110)), Price(110));
        assert_eq!(s.floor_to_tick(Price(-5)), Price(-10));
    }
}
