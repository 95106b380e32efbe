//! Small integer identifiers: hot-path state is indexed by them, never keyed by strings.

use std::fmt;

/// Nanoseconds since the Unix epoch (live) or since the start of a simulated run.
pub type Nanos = u64;

/// Nanoseconds in one second.
pub const NANOS_PER_SEC: u64 = 1_000_000_000;

/// Index of an instrument in the node's instrument table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InstrumentId(pub u32);

impl InstrumentId {
    /// The id as a table index.
    #[inline]
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

/// Index of a strategy instance on this node; also the owner tag of its orders.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StrategyId(pub u16);

impl StrategyId {
    /// The id as a table index.
    #[inline]
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

/// Client order id: unique per node run, the strategy id in the top 16 bits so a venue
/// report can be routed back to its engine without a lookup.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClientOrderId(pub u64);

impl ClientOrderId {
    /// Builds the id of the `seq`-th order of `strategy`.
    #[inline]
    pub const fn new(strategy: StrategyId, seq: u64) -> Self {
        Self(((strategy.0 as u64) << 48) | (seq & 0xFFFF_FFFF_FFFF))
    }

    /// The strategy that owns the order.
    #[inline]
    pub const fn strategy(self) -> StrategyId {
        StrategyId((self.0 >> 48) as u16)
    }
}

impl fmt::Display for ClientOrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.0 >> 48, self.0 & 0xFFFF_FFFF_FFFF)
    }
}

/// Venue-assigned execution id; with the venue it is the ledger's idempotency key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ExecId(pub u64);

/// Order side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Side {
    /// Bid / buy.
    Buy,
    /// Ask / sell.
    Sell,
}

impl Side {
    /// +1 for buys, -1 for sells: position delta = sign * qty.
    #[inline]
    pub const fn sign(self) -> i64 {
        match self {
            Side::Buy => 1,
            Side::Sell => -1,
        }
    }

    /// The other side.
    #[inline]
    pub const fn opposite(self) -> Side {
        match self {
            Side::Buy => Side::Sell,
            Side::Sell => Side::Buy,
        }
    }

    /// 0 for buy, 1 for sell: index into two-sided arrays.
    #[inline]
    pub const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Side::Buy => "buy",
            Side::Sell => "sell",
        })
    }
}
