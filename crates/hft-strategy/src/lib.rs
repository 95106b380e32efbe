//! The one trait every strategy implements, the context it trades through, and the
//! built-in strategies. Strategy code never learns whether it runs live, in a
//! deterministic simulation or in a backtest: it only sees [`Context`].

pub mod arbitrage;
mod context;
mod legs;
pub mod market_making;
pub mod ml;
pub mod pairs;
pub mod params;
pub mod signals;
pub mod touch;

pub use arbitrage::{CrossVenueArb, TriangularArb};
pub use context::{Action, ActionBuffer, Context, ContextParts, NewOrder};
pub use market_making::MarketMaking;
pub use ml::MlTrader;
pub use pairs::PairsTrader;
pub use params::MarketMakingParams;
pub use touch::{TouchMaker, TouchParams};

use hft_core::{Fill, MarketEvent, OpenOrder, OrderReport};

/// A trading strategy. Callbacks run on the engine's thread, one at a time, and must
/// not block: they read state through the context and queue orders on it. The engine
/// then runs each queued order through pre-trade risk and the OMS.
pub trait Strategy: Send {
    /// Called once before the first event, and again after a restart.
    fn on_start(&mut self, _ctx: &mut Context<'_>) {}

    /// A market event; the book in the context already includes it. Called for the
    /// last event of each venue message only, when the book is consistent.
    fn on_market(&mut self, ctx: &mut Context<'_>, event: &MarketEvent);

    /// An execution of one of our orders; position and PnL already include it.
    fn on_fill(&mut self, _ctx: &mut Context<'_>, _order: &OpenOrder, _fill: &Fill) {}

    /// Any other venue report (ack, cancel, reject) for one of our orders.
    fn on_order_update(&mut self, _ctx: &mut Context<'_>, _report: &OrderReport) {}

    /// Periodic timer (`engine.timer_interval_ms`).
    fn on_timer(&mut self, _ctx: &mut Context<'_>) {}

    /// Called once at shutdown; the engine cancels open orders after it returns.
    fn on_stop(&mut self, _ctx: &mut Context<'_>) {}
}
