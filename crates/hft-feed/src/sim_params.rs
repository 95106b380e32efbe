//! Parameters of the simulated market of one instrument.

use hft_core::Price;

/// How the simulator generates order flow for one instrument.
///
/// Rates and volatilities are model parameters (floats); every price the simulator emits
/// is on the instrument's tick grid.
#[derive(Clone, Debug, PartialEq)]
pub struct SimParams {
    /// Starting fair price.
    pub initial_price: Price,
    /// Per-second standard deviation of the fair price in calm regime, basis points.
    pub volatility_bps: f64,
    /// Poisson rate of price jumps per minute.
    pub jump_rate_per_min: f64,
    /// Standard deviation of a jump, basis points.
    pub jump_bps: f64,
    /// Rate of switching between calm and volatile regimes, per minute.
    pub regime_switch_per_min: f64,
    /// Volatility and activity multiplier in the volatile regime (>= 1).
    pub volatile_multiplier: f64,
    /// Limit order arrivals per second.
    pub limit_rate_hz: f64,
    /// Market order arrivals per second.
    pub market_rate_hz: f64,
    /// Cancel rate per resting simulated order per second.
    pub cancel_rate_hz: f64,
    /// Mean order size in lots (geometric distribution).
    pub mean_order_lots: f64,
    /// Limit orders are placed within this many ticks of the fair price.
    pub depth_ticks: u32,
}

impl SimParams {
    /// A liquid market around `initial_price`: about 1,600 order-flow events per second,
    /// mild volatility with occasional jumps and volatile spells. A starting point that
    /// callers adjust field by field.
    pub fn typical(initial_price: Price) -> Self {
        Self {
            initial_price,
            volatility_bps: 1.5,
            jump_rate_per_min: 0.5,
            jump_bps: 20.0,
            regime_switch_per_min: 1.0,
            volatile_multiplier: 3.0,
            limit_rate_hz: 1500.0,
            market_rate_hz: 120.0,
            cancel_rate_hz: 0.8,
            mean_order_lots: 8.0,
            depth_ticks: 40,
        }
    }
}
