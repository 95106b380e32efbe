//! Tardis.dev CSV datasets: `incremental_book_L2` and `trades`. Each line is parsed
//! without allocation into a typed row with prices and amounts in exact 1e-8 units.

use crate::binance::parse_wire;
use hft_core::Side;
use thiserror::Error;

/// Which Tardis dataset a file holds, from its header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TardisKind {
    /// `exchange,symbol,timestamp,local_timestamp,is_snapshot,side,price,amount`.
    IncrementalBookL2,
    /// `exchange,symbol,timestamp,local_timestamp,id,side,price,amount`.
    Trades,
}

/// Header of `incremental_book_L2` files.
pub const L2_HEADER: &str =
    "exchange,symbol,timestamp,local_timestamp,is_snapshot,side,price,amount";
/// Header of `trades` files.
pub const TRADES_HEADER: &str = "exchange,symbol,timestamp,local_timestamp,id,side,price,amount";

impl TardisKind {
    /// The dataset of a header line, if it is one this parser reads.
    pub fn from_header(header: &str) -> Option<Self> {
        match header.trim() {
            L2_HEADER => Some(TardisKind::IncrementalBookL2),
            TRADES_HEADER => Some(TardisKind::Trades),
            _ => None,
        }
    }
}

/// Why a line could not be parsed; `column` is 1-based.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("column {column} ({name}): {reason}")]
pub struct TardisError {
    /// Column number.
    pub column: usize,
    /// Column name.
    pub name: &'static str,
    /// What is wrong.
    pub reason: &'static str,
}

/// One parsed line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TardisRow<'a> {
    /// Exchange name.
    pub exchange: &'a str,
    /// Exchange symbol.
    pub symbol: &'a str,
    /// Exchange timestamp, ns (Tardis gives µs).
    pub ts_exchange: u64,
    /// Local receive timestamp, ns.
    pub ts_local: u64,
    /// Book side, or the aggressor for trades.
    pub side: Side,
    /// Price, 1e-8 units.
    pub price: i64,
    /// Amount, 1e-8 units (0 deletes a level).
    pub amount: i64,
    /// Part of a snapshot (book rows only).
    pub is_snapshot: bool,
}

/// Parses one data line of a file of `kind`.
pub fn parse_line(kind: TardisKind, line: &str) -> Result<TardisRow<'_>, TardisError> {
    let names: [&'static str; 8] = match kind {
        TardisKind::IncrementalBookL2 => [
            "exchange",
            "symbol",
            "timestamp",
            "local_timestamp",
            "is_snapshot",
            "side",
            "price",
            "amount",
        ],
        TardisKind::Trades => [
            "exchange",
            "symbol",
            "timestamp",
            "local_timestamp",
            "id",
            "side",
            "price",
            "amount",
        ],
    };
    let mut cols = [""; 8];
    let mut n = 0;
    for (i, c) in line.split(',').enumerate() {
        if i == 8 {
            return Err(TardisError {
                column: 9,
                name: "(extra)",
                reason: "more than 8 columns",
            });
        }
        cols[i] = c;
        n = i + 1;
    }
    if n != 8 {
        return Err(TardisError {
            column: n + 1,
            name: names.get(n).copied().unwrap_or("(missing)"),
            reason: "missing column",
        });
    }
    let err = |i: usize, reason| TardisError {
        column: i + 1,
        name: names[i],
        reason,
    };
    let micros = |i: usize| {
        cols[i]
            .parse::<u64>()
            .ok()
            .and_then(|v| v.checked_mul(1_000))
            .ok_or_else(|| err(i, "expected microseconds since the epoch"))
    };
    let side = match (kind, cols[5]) {
        (TardisKind::IncrementalBookL2, "bid") | (TardisKind::Trades, "buy") => Side::Buy,
        (TardisKind::IncrementalBookL2, "ask") | (TardisKind::Trades, "sell") => Side::Sell,
        _ => return Err(err(5, "expected bid/ask (book) or buy/sell (trades)")),
    };
    let is_snapshot = match (kind, cols[4]) {
        (TardisKind::IncrementalBookL2, "true") => true,
        (TardisKind::IncrementalBookL2, "false") | (TardisKind::Trades, _) => false,
        _ => return Err(err(4, "expected true or false")),
    };
    if cols[0].is_empty() || cols[1].is_empty() {
        return Err(err(
            if cols[0].is_empty() { 0 } else { 1 },
            "must not be empty",
        ));
    }
    Ok(TardisRow {
        exchange: cols[0],
        symbol: cols[1],
        ts_exchange: micros(2)?,
        ts_local: micros(3)?,
        side,
        price: parse_wire(cols[6])
            .ok_or_else(|| err(6, "expected a non-negative decimal with at most 8 decimals"))?,
        amount: parse_wire(cols[7])
            .ok_or_else(|| err(7, "expected a non-negative decimal with at most 8 decimals"))?,
        is_snapshot,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_book_and_trade_rows() {
        let r = parse_line(
            TardisKind::IncrementalBookL2,
            "deribit,BTC-PERPETUAL,1585699200245000,1585699200355684,true,ask,6421.5,18640",
        )
        .unwrap();
        assert_eq!(r.symbol, "BTC-PERPETUAL");
        assert_eq!(
            (r.ts_exchange, r.ts_local),
            (1_585_699_200_245_000_000, 1_585_699_200_355_684_000)
        );
        assert_eq!(
            (r.side, r.price, r.amount, r.is_snapshot),
            (Side::Sell, 642_150_000_000, 1_864_000_000_000, true)
        );
        let t = parse_line(
            TardisKind::Trades,
            "bitmex,XBTUSD,1583020803145000,1583020803307160,ccc3c1fa,sell,8531.5,2152",
        )
        .unwrap();
        assert_eq!((t.side, t.price), (Side::Sell, 853_150_000_000));
    }

    #[test]
    fn bad_rows_name_their_column() {
        let bad = [
            ("deribit,BTC,1,2,maybe,ask,1,1", 5),
            ("deribit,BTC,x,2,true,ask,1,1", 3),
            ("deribit,BTC,1,2,true,up,1,1", 6),
            ("deribit,BTC,1,2,true,ask,-1,1", 7),
            ("deribit,BTC,1,2,true,ask,1,NaN", 8),
            ("deribit,BTC,1,2,true", 6),
            ("deribit,BTC,1,2,true,ask,1,1,9", 9),
        ];
        for (line, column) in bad {
            assert_eq!(
                parse_line(TardisKind::IncrementalBookL2, line)
                    .unwrap_err()
                    .column,
                column,
                "{line}"
            );
        }
        assert_eq!(
            TardisKind::from_header(L2_HEADER),
            Some(TardisKind::IncrementalBookL2)
        );
        assert_eq!(TardisKind::from_header("a,b"), None);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in ".{0,120}") {
            let _ = parse_line(TardisKind::IncrementalBookL2, &s);
            let _ = parse_line(TardisKind::Trades, &s);
        }
    }
}
