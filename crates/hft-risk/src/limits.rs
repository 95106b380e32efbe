//! Pre-trade limits of one strategy instance and of the node.

use hft_core::{Money, Qty};

/// Limits checked before every order of one strategy instance leaves the engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RiskLimits {
    /// Largest quantity of a single order.
    pub max_order_qty: Qty,
    /// Largest notional of a single order.
    pub max_order_notional: Money,
    /// Fat-finger band: a limit price further than this from the reference (mid) is refused.
    pub price_band_bps: u32,
    /// Largest absolute position in the instrument, counting open orders on the same side.
    pub max_position: Qty,
    /// Order messages (new + cancel) per rolling second.
    pub max_orders_per_sec: u32,
    /// Open orders at once.
    pub max_open_orders: u32,
    /// Loss (realized + unrealized, after fees) that trips the circuit breaker.
    pub max_daily_loss: Money,
}

/// Limits across all strategies of the node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeRiskLimits {
    /// Sum over instruments of |net position| x mark, across strategies.
    pub max_gross_notional: Money,
    /// Start with the kill switch engaged (nothing trades until it is reset).
    pub kill_switch: bool,
}
