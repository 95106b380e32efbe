//! The order record the OMS keeps and strategies read.

use crate::fixed::{Price, Qty};
use crate::ids::{ClientOrderId, InstrumentId, Nanos, Side};
use std::fmt;

/// Life cycle of an order: `PendingNew → Acked → PartiallyFilled → Filled`, or
/// `Canceled` / `Rejected`. The OMS refuses any other transition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderStatus {
    /// Sent, not yet acknowledged.
    PendingNew,
    /// Acknowledged and resting.
    Acked,
    /// Partly executed, the rest resting.
    PartiallyFilled,
    /// Fully executed.
    Filled,
    /// Cancelled (on request or as an IOC remainder).
    Canceled,
    /// Refused by the venue.
    Rejected,
}

impl OrderStatus {
    /// No further report can change the order.
    #[inline]
    pub const fn is_terminal(self) -> bool {
        matches!(
            self,
            OrderStatus::Filled | OrderStatus::Canceled | OrderStatus::Rejected
        )
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            OrderStatus::PendingNew => "pending_new",
            OrderStatus::Acked => "acked",
            OrderStatus::PartiallyFilled => "partially_filled",
            OrderStatus::Filled => "filled",
            OrderStatus::Canceled => "canceled",
            OrderStatus::Rejected => "rejected",
        })
    }
}

/// One live order as the OMS tracks it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenOrder {
    /// Client order id.
    pub cl_ord_id: ClientOrderId,
    /// Instrument.
    pub instrument: InstrumentId,
    /// Side.
    pub side: Side,
    /// Limit price.
    pub price: Price,
    /// Original quantity.
    pub qty: Qty,
    /// Executed so far.
    pub filled: Qty,
    /// Where it is in its life cycle.
    pub status: OrderStatus,
    /// A cancel was sent and not yet answered.
    pub cancel_pending: bool,
    /// When it was sent.
    pub sent_ts: Nanos,
}

impl OpenOrder {
    /// Quantity still open.
    #[inline]
    pub fn leaves(&self) -> Qty {
        Qty(self.qty.raw() - self.filled.raw())
    }
}

/// What a strategy may do right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TradingState {
    /// Any order that passes the limits.
    Active,
    /// Only orders that bring the position towards zero (after the loss limit tripped).
    Reducing,
    /// Nothing (kill switch, repeated crashes, operator).
    Halted,
}

impl fmt::Display for TradingState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            TradingState::Active => "active",
            TradingState::Reducing => "reducing",
            TradingState::Halted => "halted",
        })
    }
}
