//! The fixed-size, `Copy` messages of the hot path. They travel through lock-free rings
//! by value, so none of them owns heap memory.

use crate::fixed::{Money, Price, Qty};
use crate::ids::{ClientOrderId, ExecId, InstrumentId, Nanos, Side};
use crate::instrument::SpecViolation;

/// Flag: last event of a venue message; the book is consistent after it, so strategies
/// are called then and never on a half-applied update.
pub const FLAG_LAST: u8 = 1;
/// Flag: part of a snapshot (after a `Clear`), not an incremental update.
pub const FLAG_SNAPSHOT: u8 = 2;
/// Flag: recent history replayed to an engine that takes a strategy over, so that its
/// books and estimators are warm when it starts trading; an engine never trades on it.
pub const FLAG_WARMUP: u8 = 4;

/// One normalised market data event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MarketEvent {
    /// Venue timestamp.
    pub ts_exchange: Nanos,
    /// When the feed handed the event to the engines; tick-to-order starts here.
    pub ts_recv: Nanos,
    /// Venue sequence number of the message the event came from (gap detection).
    pub seq: u64,
    /// Instrument.
    pub instrument: InstrumentId,
    /// `FLAG_*` bits.
    pub flags: u8,
    /// What happened.
    pub kind: MarketEventKind,
}

impl MarketEvent {
    /// True when the event closes a venue message.
    #[inline]
    pub const fn is_last(&self) -> bool {
        self.flags & FLAG_LAST != 0
    }
}

/// The payload of a [`MarketEvent`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MarketEventKind {
    /// Start of a snapshot: both sides of the book are dropped.
    Clear,
    /// A price level now holds `qty` (0 deletes the level).
    Level {
        /// Book side.
        side: Side,
        /// Level price.
        price: Price,
        /// Total quantity resting at the level.
        qty: Qty,
    },
    /// Best bid and offer as the venue published them (a quote stream, not a book
    /// update: books are built from `Clear`/`Level` only).
    Quote {
        /// Best bid price.
        bid: Price,
        /// Quantity at the best bid.
        bid_qty: Qty,
        /// Best ask price.
        ask: Price,
        /// Quantity at the best ask.
        ask_qty: Qty,
    },
    /// A trade printed.
    Trade {
        /// Side of the aggressive order.
        aggressor: Side,
        /// Trade price.
        price: Price,
        /// Trade quantity.
        qty: Qty,
    },
    /// One change to one order, from a market-by-order feed (Databento MBO). Readers
    /// follow it with the `Level` events it amounts to, so L2 books ignore it; it is
    /// there for whoever needs each order's place in its queue (the backtest venue's
    /// exact FIFO fills).
    Order {
        /// What happened to the order.
        action: MboAction,
        /// The order's side (`None` where the venue does not say, e.g. auction fills).
        side: Option<Side>,
        /// The venue's order id.
        order_id: u64,
        /// Limit price (the fill price for `Fill`).
        price: Price,
        /// Size: added, cancelled, executed, or the new size for `Modify`.
        qty: Qty,
    },
}

/// An order-by-order action as market-by-order feeds send it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MboAction {
    /// A new order rests.
    Add,
    /// `size` of the order is cancelled (the rest stays).
    Cancel,
    /// The order now has this price and size.
    Modify,
    /// A resting order traded (`size` executed). On feeds that also send the book change
    /// as its own cancel or modify (Databento/CME), pass those and not the fill.
    Fill,
    /// A trade print: no book change.
    Trade,
    /// The book is cleared (start of a snapshot or a reset).
    Clear,
}

impl MboAction {
    /// From Databento's action character (`A`, `C`, `M`, `F`, `T`, `R`).
    pub fn from_databento(c: u8) -> Option<Self> {
        Some(match c {
            b'A' => MboAction::Add,
            b'C' => MboAction::Cancel,
            b'M' => MboAction::Modify,
            b'F' => MboAction::Fill,
            b'T' => MboAction::Trade,
            b'R' => MboAction::Clear,
            _ => return None,
        })
    }

    /// Databento's action character: how the store keeps it.
    pub const fn as_databento(self) -> u8 {
        match self {
            MboAction::Add => b'A',
            MboAction::Cancel => b'C',
            MboAction::Modify => b'M',
            MboAction::Fill => b'F',
            MboAction::Trade => b'T',
            MboAction::Clear => b'R',
        }
    }
}

/// Time in force of a new order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeInForce {
    /// Rests until filled or cancelled.
    Gtc,
    /// Fills what it can at once, the rest is cancelled.
    Ioc,
}

/// What an order command asks of the venue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderKind {
    /// A new limit order.
    New {
        /// Side.
        side: Side,
        /// Limit price.
        price: Price,
        /// Quantity.
        qty: Qty,
        /// Time in force.
        tif: TimeInForce,
        /// Refuse instead of crossing the spread (guarantees maker fees).
        post_only: bool,
    },
    /// Cancel the order with the command's client id.
    Cancel,
}

/// An order instruction from an engine to a venue session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderCommand {
    /// When the engine decided.
    pub ts: Nanos,
    /// `ts_recv` of the market event that triggered the decision (0 if none).
    pub tick_ts: Nanos,
    /// Instrument.
    pub instrument: InstrumentId,
    /// Client order id of the order created or cancelled.
    pub cl_ord_id: ClientOrderId,
    /// Fencing epoch of the sender's assignment; a venue refuses stale epochs.
    pub epoch: u64,
    /// New or cancel.
    pub kind: OrderKind,
}

/// Whether a fill added or removed liquidity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liquidity {
    /// Resting order was hit.
    Maker,
    /// Order crossed the spread.
    Taker,
}

/// A (partial) execution of one of our orders.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fill {
    /// Venue execution id, unique per venue.
    pub exec_id: ExecId,
    /// Side of our order.
    pub side: Side,
    /// Execution price.
    pub price: Price,
    /// Executed quantity.
    pub qty: Qty,
    /// Quantity still open after this fill.
    pub leaves: Qty,
    /// Maker or taker.
    pub liquidity: Liquidity,
    /// Fee charged (negative = rebate).
    pub fee: Money,
}

/// Why a venue refused an order or a cancel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectReason {
    /// The order breaks the instrument's rules.
    Spec(SpecViolation),
    /// A post-only order would have crossed the spread.
    PostOnlyWouldCross,
    /// The client order id is already in use.
    DuplicateId,
    /// Cancel for an order the venue does not know (already done or never acked).
    UnknownOrder,
    /// The sender's epoch is stale or trading is halted at the venue.
    Fenced,
    /// The venue could not decode the message.
    Malformed,
    /// The order would have traded against another order of ours.
    SelfTrade,
    /// The engine's pre-trade risk checks refused it before it left (the engine
    /// counts which check).
    Risk,
}

/// What happened to an order, reported by the venue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderReportKind {
    /// Order accepted and, if not filled at once, resting.
    Accepted,
    /// Order refused.
    Rejected(RejectReason),
    /// Order cancelled (by request or an IOC remainder).
    Canceled,
    /// Cancel refused; the order may have filled meanwhile.
    CancelRejected(RejectReason),
    /// An execution.
    Fill(Fill),
}

/// A venue report for one order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderReport {
    /// Venue time of the report.
    pub ts: Nanos,
    /// Instrument.
    pub instrument: InstrumentId,
    /// Our order.
    pub cl_ord_id: ClientOrderId,
    /// What happened.
    pub kind: OrderReportKind,
}
