//! Order books: L2 price-level books for the hot path, and the order-by-order L3 book
//! (with queue positions) for market-by-order data and fill simulation.
//!
//! A venue feed is normalised into [`hft_core::MarketEvent`]s; [`L2Book::apply`] folds
//! them into one book per instrument, and strategies read top of book, depth,
//! microprice and imbalance from it. [`SequenceTracker`] tells the feed handler when
//! venue messages were lost, so it can drop the book and recover from a snapshot
//! instead of trading on a silently wrong book.
//!
//! Nothing here allocates per update while a side stays within the capacity it was
//! built with, and nothing panics on bad input: malformed updates come back as
//! [`BookError`] and leave the book untouched.

mod book;
mod cache;
mod error;
mod l3;
mod ladder;
mod sequence;

pub use book::L2Book;
pub use cache::{BookView, CacheSizes, HotCache, TradeTick};
pub use error::BookError;
pub use hft_core::MboAction;
pub use l3::{L3Book, L3Error, MboToL2, QueuePosition, RestingOrder};
pub use sequence::{SequenceGap, SequenceTracker};
