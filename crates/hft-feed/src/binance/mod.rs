//! Binance public market data: message decoding and normalisation.

mod decode;
mod handler;
mod normalize;
mod sync;

pub use decode::{BinanceDecoder, BinanceMsg, DecodeError, WIRE_SCALE, WireLevel, parse_wire};
pub use handler::{BookState, FeedHandler, FrameError, HandlerStats, MAX_BUFFERED_DIFFS};
pub use normalize::{BinanceNormalizer, NormalizeError};
pub use sync::{BufferedDiff, DepthSync, DiffIds, SnapshotTooOld, SyncAction};
