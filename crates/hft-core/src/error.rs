//! Errors of the core types; every variant says what was wrong so a caller can
//! turn it into a message with a location.

use thiserror::Error;

/// What can go wrong when building or combining core values.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CoreError {
    /// Arithmetic that would wrap; money never wraps silently.
    #[error("arithmetic overflow in {op}")]
    Overflow {
        /// The operation that overflowed.
        op: &'static str,
    },
    /// A decimal string that is not an exact fixed-point number at the wanted scale.
    #[error("cannot parse '{input}': {reason}")]
    Parse {
        /// The offending text (first 64 characters).
        input: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// An instrument spec that cannot be traded.
    #[error("instrument {symbol}: {field} {reason}")]
    InvalidSpec {
        /// The instrument's symbol.
        symbol: String,
        /// The spec field at fault.
        field: &'static str,
        /// Why it is invalid.
        reason: &'static str,
    },
}
