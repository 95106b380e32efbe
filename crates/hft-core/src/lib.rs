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
    FLAG_LAST, FLAG_SNAPSHOT, FLAG_WARMUP, Fill, Liquidity, MarketEvent, MarketEventKind,
    MboAction, OrderCommand, OrderKind, OrderReport, OrderReportKind, RejectReason, TimeInForce,
};
pub use fixed::{Decimal, MAX_SCALE, MONEY_SCALE, Money, Price, Qty, div_round, div_round_i64};
pub use ids::{ClientOrderId, ExecId, InstrumentId, NANOS_PER_SEC, Nanos, Side, StrategyId};
pub use instrument::{InstrumentSpec, SpecViolation};
pub use order::{OpenOrder, OrderStatus, TradingState};
pub use position::Position;
