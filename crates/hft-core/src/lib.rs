//! The vocabulary every hft crate shares: exact fixed-point money, instrument specs,
//! small integer ids, nanosecond time and the events that flow through the hot path.
//! Nothing here does I/O or allocates per event.

mod error;
mod event;
mod fixed;
mod ids;
mod instrument;
mod order;
mod position;

pub use error::CoreError;
pub use event::{
    Fill, Liquidity, MarketEvent, MarketEventKind, OrderCommand, OrderKind, OrderReport, OrderReportKind,
    RejectReason, TimeInForce, FLAG_LAST, FLAG_SNAPSHOT,
};
pub use fixed::{div_round, Decimal, Money, Price, Qty, MAX_SCALE, MONEY_SCALE};
pub use ids::{ClientOrderId, ExecId, InstrumentId, Nanos, Side, StrategyId, NANOS_PER_SEC};
pub use instrument::{InstrumentSpec, SpecViolation};
pub use order::{OpenOrder, OrderStatus, TradingState};
pub use position::Position;
