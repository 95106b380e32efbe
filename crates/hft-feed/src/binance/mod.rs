//! Binance public market data: message decoding and normalisation.

mod decode;
mod normalize;

pub use decode::{BinanceDecoder, BinanceMsg, DecodeError, WIRE_SCALE, WireLevel, parse_wire};
pub use normalize::{BinanceNormalizer, NormalizeError};
