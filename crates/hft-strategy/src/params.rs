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

/// Cross-venue arbitrage between two instruments of the same asset (spot and perpetual,
/// or two venues): when one leg's bid is above the other's ask by more than both legs'
/// taker fees plus `min_edge_bps`, buy the cheap leg and sell the rich one at once.
#[derive(Clone, Debug, PartialEq)]
pub struct CrossArbParams {
    /// The second leg; the strategy's own instrument is the first.
    pub other: hft_core::InstrumentId,
    /// Largest quantity of one pair of orders (the touch may offer less).
    pub order_qty: Qty,
    /// Edge left after both legs' taker fees before it trades, basis points. This is
    /// the margin for the latency between seeing the prices and reaching the venues.
    pub min_edge_bps: f64,
    /// Largest absolute position per leg.
    pub max_position: Qty,
    /// After firing, wait this long for the fills before firing again, ms.
    pub cooldown_ms: u64,
}

/// Triangular arbitrage over `X/Q`, `Y/Q` and the cross `Y/X` (e.g. BTCUSDT,
/// ETHUSDT, ETHBTC): when going round the triangle one way returns more than three
/// taker fees plus `min_edge_bps`, the three legs are sent together.
#[derive(Clone, Debug, PartialEq)]
pub struct TriangularParams {
    /// `Y/Q`; the strategy's own instrument is `X/Q`.
    pub second: hft_core::InstrumentId,
    /// `Y/X`.
    pub cross: hft_core::InstrumentId,
    /// Quantity of `Y` traded per round.
    pub order_qty: Qty,
    /// Edge left after three taker fees before it trades, basis points.
    pub min_edge_bps: f64,
    /// Largest absolute position per leg: rounds accumulate positions in each pair
    /// (the currencies net out, the instruments do not).
    pub max_position: Qty,
    /// After firing, wait this long for the fills before firing again, ms.
    pub cooldown_ms: u64,
}

/// How the pairs strategy estimates its hedge ratio.
#[derive(Clone, Debug, PartialEq)]
pub enum HedgeMethod {
    /// Ordinary least squares over the last `window` samples.
    Ols,
    /// A Kalman filter with state drift `delta` (e.g. 1e-4): adapts as the relation
    /// drifts, at the cost of noisier ratios.
    Kalman {
        /// Relative drift of the state per sample.
        delta: f64,
    },
}

/// Statistical arbitrage on a pair: log prices `ln y = alpha + beta ln x + spread`,
/// enter when the spread's z-score passes `entry_z`, leave inside `exit_z`, and only
/// while an (augmented) Dickey–Fuller test on the window's spread says cointegrated.
#[derive(Clone, Debug, PartialEq)]
pub struct PairsParams {
    /// The hedge leg `x`; the strategy's own instrument is `y`.
    pub other: hft_core::InstrumentId,
    /// Hedge ratio estimator.
    pub hedge: HedgeMethod,
    /// Sampling period of the two mids, ms.
    pub sample_ms: u64,
    /// Samples in the regression and z-score window.
    pub window: usize,
    /// |z| at which a position is opened.
    pub entry_z: f64,
    /// |z| under which it is closed.
    pub exit_z: f64,
    /// Lagged differences in the ADF regression.
    pub adf_lags: usize,
    /// ADF statistic the spread must be below to trade (e.g. -3.34, the 5% value
    /// of the Engle–Granger test for two series).
    pub adf_critical: f64,
    /// Quantity of `y` per position; the `x` leg is sized by the hedge ratio.
    pub order_qty: Qty,
}
/// A machine-learned directional strategy: book and trade-flow features into a
/// logistic model of the next move of the mid; it joins the touch on the side the
/// model favours, with an online update of the model as labels arrive.
#[derive(Clone, Debug, PartialEq)]
pub struct MlParams {
    /// The model (from `hft train`, or untrained zeros).
    pub model: crate::signals::LogisticModel,
    /// Probability above which it bids (and below `1 - threshold` offers).
    pub threshold: f64,
    /// Size of each order.
    pub order_qty: Qty,
    /// Largest absolute position.
    pub max_position: Qty,
    /// Label horizon: the mid this long after a sample says up or down, ms.
    pub horizon_ms: u64,
    /// Online learning rate; 0 keeps the model fixed.
    pub learning_rate: f64,
}
