//! Why a book refused an update. Each variant carries the offending values so the
//! feed handler can log exactly which message was bad; prices and quantities are
//! shown in raw units because the book does not know the instrument's scale.

use hft_core::{InstrumentId, Price, Qty, Side};
use thiserror::Error;

/// An update the book refused; the book is unchanged when one is returned, so a feed
/// handler can log it and carry on (or resynchronise) without a half-applied update.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum BookError {
    /// A level quantity below zero: a level holds a total resting quantity, which
    /// cannot be negative, so the feed decoder (or its sign handling) is wrong.
    #[error(
        "negative quantity {} (raw) for {side} level at price {} (raw): a level holds the total \
         resting quantity, which must be >= 0; send 0 to delete the level and check the feed \
         decoder's sign handling",
        .qty.raw(),
        .price.raw()
    )]
    NegativeQty {
        /// Side of the refused update.
        side: Side,
        /// Price of the refused update.
        price: Price,
        /// The negative quantity.
        qty: Qty,
    },
    /// A level price of zero or below: no order book this engine trades quotes such
    /// prices, so it signals a decoding or scaling bug rather than market data.
    #[error(
        "price {} (raw) for {side} level is not positive: level prices must be > 0; check the \
         feed decoder and the instrument's price scale",
        .price.raw()
    )]
    BadPrice {
        /// Side of the refused update.
        side: Side,
        /// The non-positive price.
        price: Price,
    },
    /// An event for another instrument: applying it would corrupt this book, so the
    /// event router must have sent it to the wrong book.
    #[error(
        "event for instrument {} applied to the book of instrument {}: route market events \
         to the book whose instrument id matches the event's",
        .got.0,
        .book.0
    )]
    WrongInstrument {
        /// The instrument this book tracks.
        book: InstrumentId,
        /// The instrument named by the event.
        got: InstrumentId,
    },
}
