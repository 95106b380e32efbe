//! Execution: the engine that turns market events into orders, the OMS that tracks
//! them, the simulated price-time-priority venue they trade against, and a
//! deterministic single-threaded session that wires them on a simulated clock.

mod engine;
pub mod link;
pub mod matching;
mod oms;
mod paper;
pub mod port;
mod sim_session;
mod sim_venue;
mod slot;
mod supervision;
pub mod venue_server;
pub mod wire;

pub use engine::{Engine, EngineSetup, EngineStats, OrderSink, StrategyPanic};
pub use oms::{Oms, OmsError, OmsStats};
pub use paper::{Execution, PaperMarket, PaperStats, PaperVenue, TAKE_LEVELS, takeable};
pub use port::{RemoteVenue, SessionError, VenuePort};
pub use sim_session::{SessionVenue, SimSession, SimTiming};
pub use sim_venue::{SIM_VENUE, SimVenue, VenueOutput};
pub use slot::{StrategyFactory, StrategySlot};
pub use supervision::{RestartDecision, RestartPolicy};
