//! Parameters of the built-in strategies, as validated by `hft-config`.

use hft_core::Qty;

/// Avellaneda–Stoikov market making.
///
/// Model quantities are floats on purpose: they are statistics (volatility, risk aversion),
/// not money; quotes are rounded back to the tick grid before they become orders.
#[derive(Clone, Debug, PartialEq)]
pub struct MarketMakingParams {
    /// γ, risk aversion: larger skews quotes harder against inventory and widens them.
    pub risk_aversion: f64,
    /// k, decay of fill intensity with distance from mid, per tick.
    pub liquidity: f64,
    /// T − t in seconds: the inventory horizon of the reservation price.
    pub horizon_s: f64,
    /// Size of each quote.
    pub order_qty: Qty,
    /// No quote that would take |position| beyond this.
    pub max_inventory: Qty,
    /// Keep a resting quote (and its queue place) unless the target moved this many ticks.
    pub requote_ticks: u32,
    /// Half-life of the EWMA volatility estimate, seconds.
    pub vol_halflife_s: f64,
}
