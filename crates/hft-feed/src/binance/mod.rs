//! Binance public market data: message decoding and normalisation.

mod decode;
mod normalize;
mod sync;

pub use decode::{BinanceDecoder, BinanceMsg, DecodeError, WIRE_SCALE, WireLevel, parse_wire};
pub use normalize::{BinanceNormalizer, NormalizeError};
pub use sync::{BufferedDiff, DepthSync, DiffIds, SyncAction};
