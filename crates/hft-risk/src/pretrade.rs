//! The per-strategy pre-trade gate: limits, trading state, rate limit, circuit breaker.

use crate::limits::RiskLimits;
use crate::shared::{KillSwitch, NodeExposure};
use hft_core::{
    InstrumentSpec, Money, NANOS_PER_SEC, Nanos, Price, Qty, Side, SpecViolation, TradingState,
};
use std::fmt;

/// Why the gate refused an order. The discriminant indexes [`RejectCounts`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum RiskReject {
    /// The node's kill switch is engaged.
    KillSwitch = 0,
    /// The strategy is halted.
    Halted,
    /// The strategy may only reduce its position.
    ReduceOnly,
    /// Order quantity above `max_order_qty`.
    MaxOrderQty,
    /// Order notional above `max_order_notional`.
    MaxOrderNotional,
    /// Limit price outside the band around the reference price.
    PriceBand,
    /// No reference price yet (empty book): the band cannot be checked.
    NoReferencePrice,
    /// Position plus open orders on that side would exceed `max_position`.
    PositionLimit,
    /// Node gross exposure would exceed its limit.
    GrossExposure,
    /// Too many order messages in the last second.
    OrderRate,
    /// Too many open orders.
    OpenOrders,
    /// Price not on the tick grid.
    Tick,
    /// Quantity not on the lot grid.
    Lot,
    /// Quantity below the instrument minimum.
    MinQty,
    /// Notional below the instrument minimum.
    MinNotional,
    /// The venue refused the order.
    Venue,
}

impl RiskReject {
    /// Number of reasons, for counter arrays.
    pub const COUNT: usize = 16;
    /// All reasons in discriminant order.
    pub const ALL: [RiskReject; Self::COUNT] = [
        RiskReject::KillSwitch,
        RiskReject::Halted,
        RiskReject::ReduceOnly,
        RiskReject::MaxOrderQty,
        RiskReject::MaxOrderNotional,
        RiskReject::PriceBand,
        RiskReject::NoReferencePrice,
        RiskReject::PositionLimit,
        RiskReject::GrossExposure,
        RiskReject::OrderRate,
        RiskReject::OpenOrders,
        RiskReject::Tick,
        RiskReject::Lot,
        RiskReject::MinQty,
        RiskReject::MinNotional,
        RiskReject::Venue,
    ];

    /// Stable snake_case name used in metrics labels and summaries.
    pub const fn name(self) -> &'static str {
        match self {
            RiskReject::KillSwitch => "kill_switch",
            RiskReject::Halted => "halted",
            RiskReject::ReduceOnly => "reduce_only",
            RiskReject::MaxOrderQty => "max_order_qty",
            RiskReject::MaxOrderNotional => "max_order_notional",
            RiskReject::PriceBand => "price_band",
            RiskReject::NoReferencePrice => "no_reference_price",
            RiskReject::PositionLimit => "position_limit",
            RiskReject::GrossExposure => "gross_exposure",
            RiskReject::OrderRate => "order_rate",
            RiskReject::OpenOrders => "open_orders",
            RiskReject::Tick => "tick",
            RiskReject::Lot => "lot",
            RiskReject::MinQty => "min_qty",
            RiskReject::MinNotional => "min_notional",
            RiskReject::Venue => "venue",
        }
    }
}

impl From<SpecViolation> for RiskReject {
    fn from(v: SpecViolation) -> Self {
        match v {
            SpecViolation::Tick => RiskReject::Tick,
            SpecViolation::Lot => RiskReject::Lot,
            SpecViolation::MinQty => RiskReject::MinQty,
            SpecViolation::MinNotional => RiskReject::MinNotional,
        }
    }
}

impl fmt::Display for RiskReject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// Rejections counted by reason; a fixed array so counting never allocates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RejectCounts(pub [u64; RiskReject::COUNT]);

impl RejectCounts {
    /// Counts one rejection.
    #[inline]
    pub fn add(&mut self, r: RiskReject) {
        self.0[r as usize] += 1;
    }

    /// Count for one reason.
    pub fn get(&self, r: RiskReject) -> u64 {
        self.0[r as usize]
    }

    /// Sum over all reasons.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// Non-zero counts with their names, for reports.
    pub fn nonzero(&self) -> impl Iterator<Item = (RiskReject, u64)> + '_ {
        RiskReject::ALL
            .iter()
            .map(|r| (*r, self.get(*r)))
            .filter(|(_, n)| *n > 0)
    }

    /// Adds another set of counts (node totals).
    pub fn merge(&mut self, other: &RejectCounts) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a += b;
        }
    }
}

/// A new order as the gate sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderIntent {
    /// Side.
    pub side: Side,
    /// Limit price.
    pub price: Price,
    /// Quantity.
    pub qty: Qty,
}

/// The engine's view of the strategy's state at check time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RiskContext {
    /// Net position.
    pub position: Qty,
    /// Open buy quantity (not yet filled).
    pub open_buy: Qty,
    /// Open sell quantity.
    pub open_sell: Qty,
    /// Open orders.
    pub open_orders: u32,
    /// Reference price for the fat-finger band (mid), if the book has both sides.
    pub reference: Option<Price>,
    /// Current exposure of this strategy (|position| x mark).
    pub exposure: Money,
}

/// Token bucket over order messages, in nanoseconds so it needs no clock of its own.
#[derive(Clone, Debug)]
struct RateLimiter {
    capacity_nanos: u64,
    cost_nanos: u64,
    level_nanos: u64,
    last: Nanos,
}

impl RateLimiter {
    fn new(per_sec: u32) -> Self {
        let per_sec = u64::from(per_sec.max(1));
        let cost = NANOS_PER_SEC / per_sec;
        Self {
            capacity_nanos: cost * per_sec,
            cost_nanos: cost,
            level_nanos: cost * per_sec,
            last: 0,
        }
    }

    #[inline]
    fn refill(&mut self, now: Nanos) {
        let dt = now.saturating_sub(self.last);
        self.last = self.last.max(now);
        self.level_nanos = (self.level_nanos.saturating_add(dt)).min(self.capacity_nanos);
    }

    #[inline]
    fn try_take(&mut self, now: Nanos) -> bool {
        self.refill(now);
        if self.level_nanos >= self.cost_nanos {
            self.level_nanos -= self.cost_nanos;
            true
        } else {
            false
        }
    }

    /// Cancels always go out (blocking a cancel adds risk) but still use up budget.
    #[inline]
    fn take_forced(&mut self, now: Nanos) {
        self.refill(now);
        self.level_nanos = self.level_nanos.saturating_sub(self.cost_nanos);
    }
}

/// The pre-trade gate of one strategy instance.
#[derive(Clone, Debug)]
pub struct PreTradeRisk {
    limits: RiskLimits,
    state: TradingState,
    rate: RateLimiter,
    kill: KillSwitch,
    exposure: NodeExposure,
    rejects: RejectCounts,
    breaker_trips: u32,
}

impl PreTradeRisk {
    /// A gate with the strategy's limits and the node's shared state.
    pub fn new(limits: RiskLimits, kill: KillSwitch, exposure: NodeExposure) -> Self {
        Self {
            rate: RateLimiter::new(limits.max_orders_per_sec),
            limits,
            state: TradingState::Active,
            kill,
            exposure,
            rejects: RejectCounts::default(),
            breaker_trips: 0,
        }
    }

    /// Current trading state; the kill switch reads as `Halted`.
    #[inline]
    pub fn state(&self) -> TradingState {
        if self.kill.is_engaged() {
            TradingState::Halted
        } else {
            self.state
        }
    }

    /// Sets the state (operator action, crash supervisor).
    pub fn set_state(&mut self, state: TradingState) {
        self.state = state;
    }

    /// Limits in force.
    pub fn limits(&self) -> &RiskLimits {
        &self.limits
    }

    /// Replaces the limits (hot reload); the rate bucket restarts full.
    pub fn set_limits(&mut self, limits: RiskLimits) {
        self.rate = RateLimiter::new(limits.max_orders_per_sec);
        self.limits = limits;
    }

    /// Rejections so far.
    pub fn rejects(&self) -> &RejectCounts {
        &self.rejects
    }

    /// Counts a rejection decided elsewhere (venue refusals).
    pub fn count_reject(&mut self, r: RiskReject) {
        self.rejects.add(r);
    }

    /// How often the loss circuit breaker tripped.
    pub fn breaker_trips(&self) -> u32 {
        self.breaker_trips
    }

    /// Feeds the strategy's PnL (realized + unrealized, after fees). Trips the circuit
    /// breaker into `Reducing` when the daily loss limit is crossed; returns true on the
    /// trip so the engine can flatten.
    #[inline]
    pub fn on_pnl(&mut self, pnl: Money) -> bool {
        if self.state == TradingState::Active && pnl.raw() < -self.limits.max_daily_loss.raw() {
            self.state = TradingState::Reducing;
            self.breaker_trips += 1;
            return true;
        }
        false
    }

    /// Publishes this strategy's exposure to the node-wide gross check.
    #[inline]
    pub fn publish_exposure(&self, slot: usize, exposure: Money) {
        self.exposure.publish(slot, exposure);
    }

    /// Counts a cancel against the message rate; cancels are never refused.
    #[inline]
    pub fn on_cancel(&mut self, now: Nanos) {
        self.rate.take_forced(now);
    }

    /// Checks a new order. On refusal the reason is counted and returned.
    #[inline]
    pub fn check(
        &mut self,
        spec: &InstrumentSpec,
        order: &OrderIntent,
        ctx: &RiskContext,
        now: Nanos,
    ) -> Result<(), RiskReject> {
        let r = self.evaluate(spec, order, ctx, now);
        if let Err(reason) = r {
            self.rejects.add(reason);
        }
        r
    }

    fn evaluate(
        &mut self,
        spec: &InstrumentSpec,
        o: &OrderIntent,
        ctx: &RiskContext,
        now: Nanos,
    ) -> Result<(), RiskReject> {
        if self.kill.is_engaged() {
            return Err(RiskReject::KillSwitch);
        }
        let signed = o.side.sign() * o.qty.raw();
        let pos = ctx.position.raw();
        match self.state {
            TradingState::Halted => return Err(RiskReject::Halted),
            TradingState::Reducing => {
                let open_same = match o.side {
                    Side::Buy => ctx.open_buy.raw(),
                    Side::Sell => ctx.open_sell.raw(),
                };
                let reduces = pos != 0
                    && pos.signum() != o.side.sign()
                    && o.qty.raw() + open_same <= pos.abs();
                if !reduces {
                    return Err(RiskReject::ReduceOnly);
                }
            }
            TradingState::Active => {}
        }
        spec.check_order(o.price, o.qty).map_err(RiskReject::from)?;
        if o.qty > self.limits.max_order_qty {
            return Err(RiskReject::MaxOrderQty);
        }
        let notional = spec.notional(o.price, o.qty);
        if notional > self.limits.max_order_notional {
            return Err(RiskReject::MaxOrderNotional);
        }
        let reference = ctx.reference.ok_or(RiskReject::NoReferencePrice)?;
        let dev = i128::from((o.price.raw() - reference.raw()).abs()) * 10_000;
        if dev > i128::from(self.limits.price_band_bps) * i128::from(reference.raw().abs()) {
            return Err(RiskReject::PriceBand);
        }
        // One-sided: the worst case if every open order on this side fills. A position
        // already beyond the limit (limits lowered live) may still be reduced.
        let max = self.limits.max_position.raw();
        let breach = match o.side {
            Side::Buy => pos + ctx.open_buy.raw() + o.qty.raw() > max,
            Side::Sell => pos - ctx.open_sell.raw() - o.qty.raw() < -max,
        };
        if breach {
            return Err(RiskReject::PositionLimit);
        }
        let increases = (pos + signed).abs() > pos.abs();
        if ctx.open_orders + 1 > self.limits.max_open_orders {
            return Err(RiskReject::OpenOrders);
        }
        if increases {
            let others = self.exposure.gross().raw() - ctx.exposure.raw();
            let after = spec
                .notional(reference, Qty(pos + signed))
                .raw()
                .saturating_abs();
            if others.saturating_add(after) > self.exposure.limit().raw() {
                return Err(RiskReject::GrossExposure);
            }
        }
        if !self.rate.try_take(now) {
            return Err(RiskReject::OrderRate);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
