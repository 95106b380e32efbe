//! Pre-trade risk: every order an engine wants to send passes [`PreTradeRisk::check`]
//! first. Checks run on the engine's thread against state the engine owns, plus a few
//! atomics shared across the node (kill switch, gross exposure), so they take no lock.

pub mod limits;
mod pretrade;
mod shared;

pub use hft_core::TradingState;
pub use limits::{NodeRiskLimits, RiskLimits};
pub use pretrade::{OrderIntent, PreTradeRisk, RejectCounts, RiskContext, RiskReject};
pub use shared::{KillSwitch, NodeExposure};
