//! Fixed-point money: `Price`, `Qty` and `Money` are integers, so sums are exact and
//! two runs on two machines agree to the last unit.
//!
//! `Price` and `Qty` carry raw units whose scale (number of decimals) belongs to the
//! instrument; the instrument spec is the only place that knows how to print them.
//! `Money` has one fixed scale (`MONEY_SCALE` decimals) so cash and PnL of different
//! instruments add up without conversion.

use crate::error::CoreError;
use std::fmt;

/// Decimals of [`Money`]: 1e-8 of the quote currency, enough for crypto fees and
/// rebates without rounding, and still ±92 billion units of headroom in an i64.
pub const MONEY_SCALE: u8 = 8;

/// Largest scale accepted for prices and quantities; beyond it `10^scale` overflows
/// the intermediate products used for notional.
pub const MAX_SCALE: u8 = 12;

macro_rules! fixed_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[repr(transparent)]
        pub struct $name(pub i64);

        impl $name {
            /// Zero in any scale.
            pub const ZERO: Self = Self(0);

            /// The raw integer, in units of `10^-scale`.
            #[inline]
            pub const fn raw(self) -> i64 {
                self.0
            }

            /// Adds, or reports overflow instead of wrapping.
            #[inline]
            pub fn checked_add(self, rhs: Self) -> Result<Self, CoreError> {
                self.0.checked_add(rhs.0).map(Self).ok_or(CoreError::Overflow {
                    op: concat!(stringify!($name), " add"),
                })
            }

            /// Subtracts, or reports overflow instead of wrapping.
            #[inline]
            pub fn checked_sub(self, rhs: Self) -> Result<Self, CoreError> {
                self.0.checked_sub(rhs.0).map(Self).ok_or(CoreError::Overflow {
                    op: concat!(stringify!($name), " sub"),
                })
            }

            /// Negates, or reports overflow for `i64::MIN`.
            #[inline]
            pub fn checked_neg(self) -> Result<Self, CoreError> {
                self.0.checked_neg().map(Self).ok_or(CoreError::Overflow {
                    op: concat!(stringify!($name), " neg"),
                })
            }

            /// Magnitude; `i64::MIN` saturates, which no valid instrument can reach.
            #[inline]
            pub const fn abs(self) -> Self {
                Self(self.0.saturating_abs())
            }

            /// True for exactly zero.
            #[inline]
            pub const fn is_zero(self) -> bool {
                self.0 == 0
            }

            /// Parses a decimal string exactly into raw units of `scale` decimals.
            pub fn parse(s: &str, scale: u8) -> Result<Self, CoreError> {
                parse_decimal(s, scale).map(Self)
            }

            /// Renders the value with exactly `scale` decimals.
            pub fn display(self, scale: u8) -> Decimal {
                Decimal { raw: self.0 as i128, scale }
            }
        }
    };
}

fixed_newtype!(
    /// A price in raw units of the instrument's price scale.
    Price
);
fixed_newtype!(
    /// A quantity (or signed position) in raw units of the instrument's quantity scale.
    Qty
);
fixed_newtype!(
    /// Cash, fees and PnL in units of `10^-MONEY_SCALE` of the quote currency.
    Money
);

impl Money {
    /// Parses a decimal amount of quote currency.
    pub fn parse_quote(s: &str) -> Result<Self, CoreError> {
        Self::parse(s, MONEY_SCALE)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Two decimals are what a trader reads; full precision is in the raw value.
        let cents = div_round(self.0 as i128, 10i128.pow(u32::from(MONEY_SCALE) - 2));
        fmt::Display::fmt(
            &Decimal {
                raw: cents,
                scale: 2,
            },
            f,
        )
    }
}

/// A fixed-point number ready for printing; produced by `display(scale)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decimal {
    raw: i128,
    scale: u8,
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let neg = self.raw < 0;
        let mag = self.raw.unsigned_abs();
        let div = 10u128.pow(u32::from(self.scale));
        let int = mag / div;
        let frac = mag % div;
        let sign = if neg { "-" } else { "" };
        let body = if self.scale == 0 {
            format!("{sign}{int}")
        } else {
            format!("{sign}{int}.{frac:0width$}", width = self.scale as usize)
        };
        f.pad(&body)
    }
}

/// Rounds `num / den` half away from zero; `den` must be positive.
#[inline]
pub fn div_round(num: i128, den: i128) -> i128 {
    debug_assert!(den > 0);
    let q = num / den;
    let r = num % den;
    if 2 * r.abs() >= den {
        q + num.signum()
    } else {
        q
    }
}

/// `div_round` for i64 operands: the hot-path form, one hardware division.
#[inline]
pub fn div_round_i64(num: i64, den: i64) -> i64 {
    debug_assert!(den > 0);
    let q = num / den;
    let r = num % den;
    if r.unsigned_abs() * 2 >= den.unsigned_abs() {
        q + num.signum()
    } else {
        q
    }
}

fn parse_decimal(input: &str, scale: u8) -> Result<i64, CoreError> {
    let bad = |reason: &'static str| CoreError::Parse {
        input: input.chars().take(64).collect(),
        reason,
    };
    if scale > MAX_SCALE {
        return Err(bad("scale exceeds 12 decimals"));
    }
    let s = input.trim();
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        Some(_) => (false, s),
        None => return Err(bad("empty number")),
    };
    let (int_part, frac_part) = match body.split_once('.') {
        Some((i, f)) => (i, f),
        None => (body, ""),
    };
    if int_part.is_empty() && frac_part.is_empty() {
        return Err(bad("no digits"));
    }
    if !int_part.bytes().all(|b| b.is_ascii_digit())
        || !frac_part.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad(
            "expected digits with at most one '.' (no exponent, no separators)",
        ));
    }
    let significant = frac_part.trim_end_matches('0');
    if significant.len() > scale as usize {
        return Err(bad("more decimals than the instrument's scale allows"));
    }
    let mut raw: i128 = 0;
    for b in int_part.bytes().chain(significant.bytes()) {
        raw = raw * 10 + i128::from(b - b'0');
        if raw > i128::from(i64::MAX) {
            return Err(bad("value out of range for a 64-bit fixed-point number"));
        }
    }
    let shift = u32::from(scale) - significant.len() as u32;
    raw = raw
        .checked_mul(10i128.pow(shift))
        .filter(|v| *v <= i128::from(i64::MAX))
        .ok_or_else(|| bad("value out of range for a 64-bit fixed-point number"))?;
    Ok(if neg { -(raw as i64) } else { raw as i64 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_exactly() {
        assert_eq!(Price::parse("123.45", 2).unwrap(), Price(12345));
        assert_eq!(Price::parse("123.450", 2).unwrap(), Price(12345));
        assert_eq!(Price::parse("-0.5", 2).unwrap(), Price(-50));
        assert_eq!(Price::parse(".5", 1).unwrap(), Price(5));
        assert_eq!(Qty::parse("7", 3).unwrap(), Qty(7000));
    }

    #[test]
    fn rejects_inexact_and_malformed() {
        for s in [
            "123.455",
            "",
            "-",
            "1e5",
            "1,000",
            "1.2.3",
            "abc",
            "99999999999999999999",
        ] {
            assert!(Price::parse(s, 2).is_err(), "{s} should not parse");
        }
    }

    #[test]
    fn overflow_is_an_error() {
        assert!(Price(i64::MAX).checked_add(Price(1)).is_err());
        assert!(Qty(i64::MIN).checked_neg().is_err());
    }

    #[test]
    fn money_prints_cents() {
        assert_eq!(Money(123_456_789).to_string(), "1.23");
        assert_eq!(Money(-150_000_000).to_string(), "-1.50");
    }

    proptest! {
        #[test]
        fn display_then_parse_round_trips(raw in any::<i64>().prop_filter("min", |v| *v != i64::MIN), scale in 0u8..=8) {
            let text = Price(raw).display(scale).to_string();
            prop_assert_eq!(Price::parse(&text, scale).unwrap(), Price(raw));
        }

        #[test]
        fn div_round_i64_matches_i128(num in any::<i64>(), den in 1i64..=1_000_000_000_000_000_000) {
            prop_assert_eq!(i128::from(div_round_i64(num, den)), div_round(i128::from(num), i128::from(den)));
        }

        #[test]
        fn div_round_is_nearest(num in -1_000_000i128..1_000_000, den in 1i128..1000) {
            let q = div_round(num, den);
            prop_assert!((q * den - num).abs() * 2 <= den);
        }
    }
}
