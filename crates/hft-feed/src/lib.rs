//! Market data sources. The default source is a seeded market simulator that generates
//! order flow (limit orders, cancels, market orders) for the simulated venue, whose
//! matching engine turns it into the book and trade events every engine consumes.

pub mod binance;
pub mod capture;
#[cfg(feature = "live")]
pub mod live;
pub mod registry;
pub mod sim;
pub mod sim_params;
pub mod tardis;

pub use registry::InstrumentRegistry;
pub use sim::{FlowAction, FlowEvent, MarketSimulator};
pub use sim_params::SimParams;
