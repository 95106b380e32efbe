//! What the multi-leg strategies (arbitrage, pairs) share: reading a leg's touch and
//! fees, and moving a leg's position towards a target with a marketable order.

use crate::Context;
use hft_core::{InstrumentId, Price, Qty, Side, TimeInForce};

/// The touch of one leg: best bid and ask with their sizes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Touch {
    pub(crate) bid: Price,
    pub(crate) bid_qty: Qty,
    pub(crate) ask: Price,
    pub(crate) ask_qty: Qty,
}

impl Touch {
    /// The touch of `id`, if both sides are present and not crossed.
    pub(crate) fn of(ctx: &Context<'_>, id: InstrumentId) -> Option<Self> {
        let book = ctx.book(id);
        let (bid, bid_qty) = book.best_bid()?;
        let (ask, ask_qty) = book.best_ask()?;
        (bid < ask).then_some(Self {
            bid,
            bid_qty,
            ask,
            ask_qty,
        })
    }

    /// Mid as a float in price units (raw / 10^scale): model input, never money.
    pub(crate) fn mid(&self, price_scale: u8) -> f64 {
        (self.bid.raw() as f64 + self.ask.raw() as f64) / 2.0 / 10f64.powi(i32::from(price_scale))
    }
}

/// Taker fee of `id` in basis points (the spec holds millionths of notional).
pub(crate) fn taker_bps(ctx: &Context<'_>, id: InstrumentId) -> f64 {
    ctx.spec(id).taker_fee_micros as f64 / 100.0
}

/// `qty` rounded down to a multiple of `lot` (a non-positive lot leaves it as is).
pub(crate) fn round_lot(qty: i64, lot: Qty) -> i64 {
    if lot.raw() <= 0 {
        qty
    } else {
        qty / lot.raw() * lot.raw()
    }
}

/// True while any order of ours on `id` is open: its outcome is not known yet, so
/// the position it may change is not known either.
pub(crate) fn working(ctx: &Context<'_>, id: InstrumentId) -> bool {
    ctx.open_orders()
        .iter()
        .any(|o| o.instrument == id && !o.status.is_terminal())
}

/// Sends one immediate-or-cancel order at the touch of `id` that moves its position
/// towards `target` (raw quantity), by at most what the touch shows. Nothing is sent
/// while an order of ours on `id` is working, or when the step rounds to zero lots.
/// Returns whether an order was queued.
pub(crate) fn trade_toward(ctx: &mut Context<'_>, id: InstrumentId, target: i64) -> bool {
    if working(ctx, id) {
        return false;
    }
    let Some(t) = Touch::of(ctx, id) else {
        return false;
    };
    let diff = target - ctx.position(id).qty.raw();
    let (side, price, avail) = if diff > 0 {
        (Side::Buy, t.ask, t.ask_qty)
    } else {
        (Side::Sell, t.bid, t.bid_qty)
    };
    let qty = round_lot(diff.abs().min(avail.raw()), ctx.spec(id).lot_size);
    // An order the venue would refuse (below the minimum size or notional) is not
    // sent: it would come back refused, and be sent again on the next step.
    if qty <= 0 || ctx.spec(id).check_order(price, Qty(qty)).is_err() {
        return false;
    }
    ctx.place(id, side, price, Qty(qty), TimeInForce::Ioc, false)
        .is_some()
}

/// The smallest quantity that is a whole number of lots of both `a` and `b`.
pub(crate) fn common_lot(a: Qty, b: Qty) -> Qty {
    fn gcd(a: i64, b: i64) -> i64 {
        if b == 0 { a.abs() } else { gcd(b, a % b) }
    }
    let (a, b) = (a.raw().max(1), b.raw().max(1));
    Qty(a / gcd(a, b) * b)
}
