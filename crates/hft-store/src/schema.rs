//! The stored row: one normalised market event (L2 level, trade, quote, snapshot clear)
//! or one order-by-order record, in the instrument's raw fixed-point units.

use arrow_schema::{DataType, Field, Schema};
use hft_core::{MarketEvent, MarketEventKind, Side};
use std::sync::Arc;

/// Version written into every file; readers refuse versions they do not know.
pub const SCHEMA_VERSION: u32 = 2;

/// Databento's record flags that mean something here: the last record of a venue
/// event, and a record of a snapshot.
const DBN_F_LAST: u8 = 1 << 7;
const DBN_F_SNAPSHOT: u8 = 1 << 5;

/// A Databento record's flags as `FLAG_*` bits (every row stores hft's flags; version
/// 1 kept the vendor's on order rows, where its `F_MAYBE_BAD_BOOK` read as warm-up).
pub fn flags_from_databento(raw: u8) -> u8 {
    let mut f = 0;
    if raw & DBN_F_LAST != 0 {
        f |= hft_core::FLAG_LAST;
    }
    if raw & DBN_F_SNAPSHOT != 0 {
        f |= hft_core::FLAG_SNAPSHOT;
    }
    f
}

/// What a row holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum RowKind {
    /// Snapshot start: the book is cleared.
    Clear = 0,
    /// An L2 level now holds `qty` at `price`.
    Level = 1,
    /// A trade; `side` is the aggressor.
    Trade = 2,
    /// Best bid (`price`, `qty`) and ask (`price2`, `qty2`).
    Quote = 3,
    /// An order-by-order record (`order_id`, `action`).
    Order = 4,
}

impl RowKind {
    /// From the stored byte.
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => RowKind::Clear,
            1 => RowKind::Level,
            2 => RowKind::Trade,
            3 => RowKind::Quote,
            4 => RowKind::Order,
            _ => return None,
        })
    }
}

/// Side byte: 0 buy, 1 sell, 2 none.
pub const SIDE_NONE: u8 = 2;

/// The side a stored side byte names (`None` for [`SIDE_NONE`]).
pub(crate) fn side_from_byte(b: u8) -> Option<Side> {
    match b {
        0 => Some(Side::Buy),
        1 => Some(Side::Sell),
        _ => None,
    }
}

/// One stored row.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Row {
    /// Venue timestamp, ns.
    pub ts_exchange: u64,
    /// Local receive timestamp, ns.
    pub ts_recv: u64,
    /// Venue sequence number.
    pub seq: u64,
    /// `FLAG_*` bits.
    pub flags: u8,
    /// `RowKind` byte.
    pub kind: u8,
    /// Side byte.
    pub side: u8,
    /// Price (or best bid).
    pub price: i64,
    /// Quantity (or best bid size).
    pub qty: i64,
    /// Best ask for quotes.
    pub price2: i64,
    /// Best ask size for quotes.
    pub qty2: i64,
    /// Venue order id for order records.
    pub order_id: u64,
    /// Order action for order records (`A`dd, `C`ancel, `M`odify, `F`ill, `T`rade, `R` clear).
    pub action: u8,
}

fn side_byte(s: Side) -> u8 {
    s as u8
}

impl Row {
    /// The row of a normalised event.
    pub fn from_event(e: &MarketEvent) -> Self {
        let base = Row {
            ts_exchange: e.ts_exchange,
            ts_recv: e.ts_recv,
            seq: e.seq,
            flags: e.flags,
            side: SIDE_NONE,
            ..Row::default()
        };
        match e.kind {
            MarketEventKind::Clear => Row {
                kind: RowKind::Clear as u8,
                ..base
            },
            MarketEventKind::Level { side, price, qty } => Row {
                kind: RowKind::Level as u8,
                side: side_byte(side),
                price: price.raw(),
                qty: qty.raw(),
                ..base
            },
            MarketEventKind::Trade {
                aggressor,
                price,
                qty,
            } => Row {
                kind: RowKind::Trade as u8,
                side: side_byte(aggressor),
                price: price.raw(),
                qty: qty.raw(),
                ..base
            },
            MarketEventKind::Quote {
                bid,
                bid_qty,
                ask,
                ask_qty,
            } => Row {
                kind: RowKind::Quote as u8,
                price: bid.raw(),
                qty: bid_qty.raw(),
                price2: ask.raw(),
                qty2: ask_qty.raw(),
                ..base
            },
            MarketEventKind::Order {
                action,
                side,
                order_id,
                price,
                qty,
            } => Row {
                kind: RowKind::Order as u8,
                side: side.map_or(SIDE_NONE, side_byte),
                price: price.raw(),
                qty: qty.raw(),
                order_id,
                action: action.as_databento(),
                ..base
            },
        }
    }

    /// The normalised event of a row (`None` for an order record with an unknown action).
    pub fn to_event(&self, instrument: hft_core::InstrumentId) -> Option<MarketEvent> {
        use hft_core::{Price, Qty};
        let side = match self.side {
            0 => Side::Buy,
            1 => Side::Sell,
            _ => Side::Buy,
        };
        let kind = match RowKind::from_u8(self.kind)? {
            RowKind::Clear => MarketEventKind::Clear,
            RowKind::Level => MarketEventKind::Level {
                side,
                price: Price(self.price),
                qty: Qty(self.qty),
            },
            RowKind::Trade => MarketEventKind::Trade {
                aggressor: side,
                price: Price(self.price),
                qty: Qty(self.qty),
            },
            RowKind::Quote => MarketEventKind::Quote {
                bid: Price(self.price),
                bid_qty: Qty(self.qty),
                ask: Price(self.price2),
                ask_qty: Qty(self.qty2),
            },
            RowKind::Order => MarketEventKind::Order {
                action: hft_core::MboAction::from_databento(self.action)?,
                side: side_from_byte(self.side),
                order_id: self.order_id,
                price: Price(self.price),
                qty: Qty(self.qty),
            },
        };
        Some(MarketEvent {
            ts_exchange: self.ts_exchange,
            ts_recv: self.ts_recv,
            seq: self.seq,
            instrument,
            flags: self.flags,
            kind,
        })
    }
}

/// The Arrow schema of a data file.
pub fn arrow_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("ts_exchange", DataType::UInt64, false),
        Field::new("ts_recv", DataType::UInt64, false),
        Field::new("seq", DataType::UInt64, false),
        Field::new("flags", DataType::UInt8, false),
        Field::new("kind", DataType::UInt8, false),
        Field::new("side", DataType::UInt8, false),
        Field::new("price", DataType::Int64, false),
        Field::new("qty", DataType::Int64, false),
        Field::new("price2", DataType::Int64, false),
        Field::new("qty2", DataType::Int64, false),
        Field::new("order_id", DataType::UInt64, false),
        Field::new("action", DataType::UInt8, false),
    ]))
}

/// Civil date (UTC) of a nanosecond timestamp, `YYYY-MM-DD` (Hinnant's algorithm).
pub fn utc_date(ts_ns: u64) -> String {
    let days = (ts_ns / 86_400_000_000_000) as i64;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use hft_core::{FLAG_LAST, InstrumentId, Price, Qty};

    #[test]
    fn dates() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(1_723_161_253_937_085_768), "2024-08-08");
        assert_eq!(utc_date(1_723_161_600_000_000_000), "2024-08-09");
        assert_eq!(utc_date(951_782_400_000_000_000), "2000-02-29");
    }

    #[test]
    fn events_round_trip_through_rows() {
        let id = InstrumentId(0);
        for kind in [
            MarketEventKind::Clear,
            MarketEventKind::Level {
                side: Side::Sell,
                price: Price(5),
                qty: Qty(7),
            },
            MarketEventKind::Trade {
                aggressor: Side::Buy,
                price: Price(5),
                qty: Qty(7),
            },
            MarketEventKind::Quote {
                bid: Price(1),
                bid_qty: Qty(2),
                ask: Price(3),
                ask_qty: Qty(4),
            },
        ] {
            let e = MarketEvent {
                ts_exchange: 1,
                ts_recv: 2,
                seq: 3,
                instrument: id,
                flags: FLAG_LAST,
                kind,
            };
            assert_eq!(Row::from_event(&e).to_event(id), Some(e));
        }
    }
}
