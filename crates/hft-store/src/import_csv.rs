//! Import of the CSV layouts quants hold besides Tardis (whose incremental book and trade
//! files have their own importer): flattened Binance captures (trades, best bid/offer,
//! depth), Binance's public `T_DEPTH` files (data.binance.vision), Databento MBO as CSV,
//! and Tardis `book_snapshot_N`. The layout is told by the header; plain or gzip.
//!
//! Prices and quantities are read as exact decimals at 8 places (9 for Databento's
//! fixed-point integers), the widest these sources use. Rows that form one venue message
//! (one depth update or snapshot) are written with `FLAG_LAST` on the last.

use crate::StoreError;
use crate::import::ImportStats;
use crate::schema::{Row, RowKind, SIDE_NONE, flags_from_databento};
use crate::writer::{SeriesMeta, StoreWriter};
use hft_core::{FLAG_LAST, FLAG_SNAPSHOT};
use hft_feed::binance::{WIRE_SCALE, parse_wire};
use hft_feed::capture::LineReader;
use std::path::Path;

/// A CSV layout, told by its header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CsvLayout {
    /// Flattened Binance trades.
    BinanceTrades,
    /// Flattened Binance `bookTicker`.
    BinanceBbo,
    /// Flattened Binance depth (snapshot and update rows, one per level).
    BinanceDepth,
    /// data.binance.vision `T_DEPTH` (snap and set rows).
    BinanceVisionDepth,
    /// Databento MBO as CSV.
    DatabentoMbo,
    /// Tardis `book_snapshot_N` with N levels a side.
    TardisSnapshot(usize),
}

const BINANCE_TRADES: &str = "local_ts_ns,event_ts_ms,trade_ts_ms,market,symbol,trade_id,price,qty,is_buyer_maker,trade_type";
const BINANCE_BBO: &str =
    "local_ts_ns,event_ts_ms,transact_ts_ms,market,symbol,update_id,bid_px,bid_qty,ask_px,ask_qty";
const BINANCE_DEPTH: &str = "local_ts_ns,event_ts_ms,transact_ts_ms,market,symbol,msg_type,first_update_id,final_update_id,prev_final_update_id,side,price,qty";
const VISION_DEPTH: &str =
    "symbol,timestamp,first_update_id,last_update_id,side,update_type,price,qty,pu";
const DATABENTO_MBO: &str = "ts_recv,ts_event,rtype,publisher_id,instrument_id,symbol,action,side,price,size,channel_id,order_id,flags,ts_in_delta,sequence";

impl CsvLayout {
    /// The layout of a header line, if known.
    pub fn from_header(header: &str) -> Option<Self> {
        let h = header.trim_end();
        Some(match h {
            BINANCE_TRADES => CsvLayout::BinanceTrades,
            BINANCE_BBO => CsvLayout::BinanceBbo,
            BINANCE_DEPTH => CsvLayout::BinanceDepth,
            VISION_DEPTH => CsvLayout::BinanceVisionDepth,
            DATABENTO_MBO => CsvLayout::DatabentoMbo,
            _ if h.starts_with("exchange,symbol,timestamp,local_timestamp,asks[0].price") => {
                let levels = h.split(',').filter(|c| c.starts_with("asks[")).count() / 2;
                CsvLayout::TardisSnapshot(levels)
            }
            _ => return None,
        })
    }

    /// Every header this importer reads, for the error message of an unknown one.
    pub fn known_headers() -> String {
        [
            BINANCE_TRADES,
            BINANCE_BBO,
            BINANCE_DEPTH,
            VISION_DEPTH,
            DATABENTO_MBO,
            "exchange,symbol,timestamp,local_timestamp,asks[0].price,... (Tardis book_snapshot_N)",
        ]
        .join("\n  ")
    }
}

/// Why a field could not be read.
fn field_err(col: &str, value: &str, want: &str) -> String {
    format!("column '{col}': '{value}' is not {want}")
}

struct Fields<'a> {
    cols: Vec<&'a str>,
    names: &'static [&'static str],
}

impl<'a> Fields<'a> {
    fn of(line: &'a str, names: &'static [&'static str]) -> Self {
        Self {
            cols: line.split(',').collect(),
            names,
        }
    }

    fn get(&self, i: usize) -> &'a str {
        self.cols.get(i).copied().unwrap_or("")
    }

    fn u64(&self, i: usize) -> Result<u64, String> {
        let v = self.get(i);
        v.parse()
            .map_err(|_| field_err(self.names[i], v, "a non-negative integer"))
    }

    fn opt_u64(&self, i: usize) -> Result<Option<u64>, String> {
        match self.get(i) {
            "" | "-1" => Ok(None),
            _ => self.u64(i).map(Some),
        }
    }

    fn dec(&self, i: usize) -> Result<i64, String> {
        let v = self.get(i);
        parse_wire(v).ok_or_else(|| {
            field_err(
                self.names[i],
                v,
                "a non-negative decimal with at most 8 places",
            )
        })
    }
}

const TRADES_COLS: &[&str] = &[
    "local_ts_ns",
    "event_ts_ms",
    "trade_ts_ms",
    "market",
    "symbol",
    "trade_id",
    "price",
    "qty",
    "is_buyer_maker",
    "trade_type",
];
const BBO_COLS: &[&str] = &[
    "local_ts_ns",
    "event_ts_ms",
    "transact_ts_ms",
    "market",
    "symbol",
    "update_id",
    "bid_px",
    "bid_qty",
    "ask_px",
    "ask_qty",
];
const DEPTH_COLS: &[&str] = &[
    "local_ts_ns",
    "event_ts_ms",
    "transact_ts_ms",
    "market",
    "symbol",
    "msg_type",
    "first_update_id",
    "final_update_id",
    "prev_final_update_id",
    "side",
    "price",
    "qty",
];
const VISION_COLS: &[&str] = &[
    "symbol",
    "timestamp",
    "first_update_id",
    "last_update_id",
    "side",
    "update_type",
    "price",
    "qty",
    "pu",
];
const MBO_COLS: &[&str] = &[
    "ts_recv",
    "ts_event",
    "rtype",
    "publisher_id",
    "instrument_id",
    "symbol",
    "action",
    "side",
    "price",
    "size",
    "channel_id",
    "order_id",
    "flags",
    "ts_in_delta",
    "sequence",
];
const TARDIS_COLS: &[&str] = &["exchange", "symbol", "timestamp", "local_timestamp"];

fn venue_of_market(market: &str) -> String {
    match market {
        "spot" => "binance-spot".into(),
        "usdm" => "binance-usdm".into(),
        "cm" => "binance-coinm".into(),
        m => format!("binance-{m}"),
    }
}

fn side_byte(s: &str) -> Result<u8, String> {
    match s {
        "bid" | "b" | "B" => Ok(0),
        "ask" | "a" | "A" => Ok(1),
        "N" | "" => Ok(SIDE_NONE),
        other => Err(field_err("side", other, "bid/ask (b/a, B/A/N)")),
    }
}

/// One level row of a depth file: `(venue, receive)` times, update id, whether it is
/// part of a snapshot, side byte and `(price, qty)`.
fn level_row(ts: (u64, u64), seq: u64, snapshot: bool, side: u8, level: (i64, i64)) -> Row {
    Row {
        ts_exchange: ts.0,
        ts_recv: ts.1,
        seq,
        flags: if snapshot { FLAG_SNAPSHOT } else { 0 },
        kind: RowKind::Level as u8,
        side,
        price: level.0,
        qty: level.1,
        ..Row::default()
    }
}

/// One parsed line: its series, its rows, and the key of the venue message it belongs
/// to (`None`: a message on its own).
struct Parsed {
    series: SeriesMeta,
    rows: Vec<Row>,
    message: Option<(u64, u64)>,
    snapshot: bool,
}

fn series(venue: String, symbol: &str, price_scale: u8, qty_scale: u8) -> SeriesMeta {
    SeriesMeta {
        venue,
        symbol: symbol.to_owned(),
        price_scale,
        qty_scale,
    }
}

/// Parses one data line of `layout` into rows (for fuzzing and tools): how many rows it
/// makes, or why it is refused.
pub fn parse_line(layout: CsvLayout, line: &str) -> Result<usize, String> {
    parse(layout, line, None).map(|p| p.rows.len())
}

fn parse(layout: CsvLayout, line: &str, venue: Option<&str>) -> Result<Parsed, String> {
    let venue_or = |default: String| venue.map_or(default, str::to_owned);
    let ms = |v: u64| v.saturating_mul(1_000_000);
    match layout {
        CsvLayout::BinanceTrades => {
            let f = Fields::of(line, TRADES_COLS);
            let local = f.u64(0)?;
            let trade_ms = f.u64(2)?;
            let sell = match f.get(8) {
                "1" | "true" => true,
                "0" | "false" => false,
                v => return Err(field_err("is_buyer_maker", v, "0 or 1")),
            };
            Ok(Parsed {
                series: series(
                    venue_or(venue_of_market(f.get(3))),
                    f.get(4),
                    WIRE_SCALE,
                    WIRE_SCALE,
                ),
                rows: vec![Row {
                    ts_exchange: ms(trade_ms),
                    ts_recv: local,
                    seq: f.u64(5)?,
                    flags: FLAG_LAST,
                    kind: RowKind::Trade as u8,
                    side: u8::from(sell),
                    price: f.dec(6)?,
                    qty: f.dec(7)?,
                    ..Row::default()
                }],
                message: None,
                snapshot: false,
            })
        }
        CsvLayout::BinanceBbo => {
            let f = Fields::of(line, BBO_COLS);
            let local = f.u64(0)?;
            Ok(Parsed {
                series: series(
                    venue_or(venue_of_market(f.get(3))),
                    f.get(4),
                    WIRE_SCALE,
                    WIRE_SCALE,
                ),
                rows: vec![Row {
                    ts_exchange: f.opt_u64(1)?.map_or(local, ms),
                    ts_recv: local,
                    seq: f.u64(5)?,
                    flags: FLAG_LAST,
                    kind: RowKind::Quote as u8,
                    side: SIDE_NONE,
                    price: f.dec(6)?,
                    qty: f.dec(7)?,
                    price2: f.dec(8)?,
                    qty2: f.dec(9)?,
                    ..Row::default()
                }],
                message: None,
                snapshot: false,
            })
        }
        CsvLayout::BinanceDepth => {
            let f = Fields::of(line, DEPTH_COLS);
            let local = f.u64(0)?;
            let snapshot = match f.get(5) {
                "snapshot" => true,
                "update" => false,
                v => return Err(field_err("msg_type", v, "snapshot or update")),
            };
            let last_id = f.u64(7)?;
            Ok(Parsed {
                series: series(
                    venue_or(venue_of_market(f.get(3))),
                    f.get(4),
                    WIRE_SCALE,
                    WIRE_SCALE,
                ),
                rows: vec![level_row(
                    (f.opt_u64(1)?.map_or(local, ms), local),
                    last_id,
                    snapshot,
                    side_byte(f.get(9))?,
                    (f.dec(10)?, f.dec(11)?),
                )],
                message: Some((local, last_id)),
                snapshot,
            })
        }
        CsvLayout::BinanceVisionDepth => {
            let f = Fields::of(line, VISION_COLS);
            let ts = ms(f.u64(1)?);
            let snapshot = match f.get(5) {
                "snap" => true,
                "set" => false,
                v => return Err(field_err("update_type", v, "snap or set")),
            };
            let last_id = f.u64(3)?;
            let venue = if f.opt_u64(8)?.is_some() {
                "binance-usdm"
            } else {
                "binance"
            };
            Ok(Parsed {
                series: series(venue_or(venue.into()), f.get(0), WIRE_SCALE, WIRE_SCALE),
                rows: vec![level_row(
                    (ts, ts),
                    last_id,
                    snapshot,
                    side_byte(f.get(4))?,
                    (f.dec(6)?, f.dec(7)?),
                )],
                message: Some((ts, last_id)),
                snapshot,
            })
        }
        CsvLayout::DatabentoMbo => {
            let f = Fields::of(line, MBO_COLS);
            let int = |i: usize| -> Result<i64, String> {
                let v = f.get(i);
                v.parse()
                    .map_err(|_| field_err(MBO_COLS[i], v, "an integer"))
            };
            let action = match f.get(6).as_bytes() {
                [c @ (b'A' | b'C' | b'M' | b'F' | b'T' | b'R')] => *c,
                _ => return Err(field_err("action", f.get(6), "one of A C M F T R")),
            };
            let flags = flags_from_databento(
                u8::try_from(f.u64(12)?).map_err(|_| field_err("flags", f.get(12), "a byte"))?,
            );
            Ok(Parsed {
                series: series(venue_or("databento".into()), f.get(5), 9, 0),
                rows: vec![Row {
                    ts_exchange: f.u64(1)?,
                    ts_recv: f.u64(0)?,
                    seq: f.u64(14)?,
                    flags,
                    kind: RowKind::Order as u8,
                    side: side_byte(f.get(7))?,
                    price: int(8)?,
                    qty: int(9)?,
                    order_id: f.u64(11)?,
                    action,
                    ..Row::default()
                }],
                message: None,
                snapshot: false,
            })
        }
        CsvLayout::TardisSnapshot(levels) => {
            let f = Fields::of(line, TARDIS_COLS);
            let us = |i: usize| -> Result<u64, String> {
                let v = f.get(i);
                v.parse::<u64>()
                    .map(|t| t.saturating_mul(1_000))
                    .map_err(|_| field_err(TARDIS_COLS[i], v, "microseconds since the epoch"))
            };
            let (ts, local) = (us(2)?, us(3)?);
            let base = Row {
                ts_exchange: ts,
                ts_recv: local,
                flags: FLAG_SNAPSHOT,
                kind: RowKind::Level as u8,
                ..Row::default()
            };
            let mut rows = vec![Row {
                kind: RowKind::Clear as u8,
                side: SIDE_NONE,
                ..base
            }];
            for k in 0..levels {
                // Columns per level: asks price, asks amount, bids price, bids amount.
                for (side, off) in [(1u8, 0usize), (0u8, 2usize)] {
                    let (p, q) = (f.get(4 + 4 * k + off), f.get(5 + 4 * k + off));
                    if p.is_empty() || q.is_empty() {
                        continue;
                    }
                    let dec = |v: &str, what: &str| {
                        parse_wire(v).ok_or_else(|| {
                            format!("level {k} {what}: '{v}' is not a non-negative decimal")
                        })
                    };
                    rows.push(Row {
                        side,
                        price: dec(p, "price")?,
                        qty: dec(q, "amount")?,
                        ..base
                    });
                }
            }
            if let Some(last) = rows.last_mut() {
                last.flags |= FLAG_LAST;
            }
            Ok(Parsed {
                series: series(
                    venue_or(format!("tardis-{}", f.get(0))),
                    f.get(1),
                    WIRE_SCALE,
                    WIRE_SCALE,
                ),
                rows,
                message: None,
                snapshot: true,
            })
        }
    }
}

/// Diff rows held while waiting for a capture's first depth snapshot (as in the raw
/// capture import); a file that never brings one writes them as they came.
const MAX_HELD_ROWS: usize = 500_000;

/// Binance's book synchronisation for flattened depth rows: updates before the first
/// snapshot are held, and every update the snapshot already contains (final id at or
/// below its `lastUpdateId`) is dropped, so the stored book is the venue's.
#[derive(Default)]
struct DepthBridge {
    held: Option<Vec<(SeriesMeta, Row)>>,
    snapshot_id: Option<u64>,
    flush_pending: bool,
}

impl DepthBridge {
    fn new(active: bool) -> Self {
        Self {
            held: active.then(Vec::new),
            ..Self::default()
        }
    }

    fn write(
        &mut self,
        writer: &mut StoreWriter,
        series: &SeriesMeta,
        row: Row,
        stats: &mut ImportStats,
    ) -> Result<(), StoreError> {
        let snapshot = row.flags & FLAG_SNAPSHOT != 0;
        if snapshot {
            if row.kind == RowKind::Clear as u8 {
                self.snapshot_id = Some(row.seq);
                self.flush_pending = self.held.is_some();
            }
            return writer.append(series, &row);
        }
        if self.flush_pending {
            self.flush_pending = false;
            let id = self.snapshot_id.unwrap_or(0);
            for (s, r) in self.held.take().unwrap_or_default() {
                if r.seq > id {
                    writer.append(&s, &r)?;
                } else {
                    stats.skipped += 1;
                }
            }
        }
        if let Some(held) = self.held.as_mut() {
            held.push((series.clone(), row));
            if held.len() > MAX_HELD_ROWS {
                for (s, r) in self.held.take().unwrap_or_default() {
                    writer.append(&s, &r)?;
                }
            }
            return Ok(());
        }
        if self.snapshot_id.is_some_and(|id| row.seq <= id) {
            stats.skipped += 1;
            return Ok(());
        }
        writer.append(series, &row)
    }

    fn finish(
        &mut self,
        writer: &mut StoreWriter,
        stats: &mut ImportStats,
    ) -> Result<(), StoreError> {
        let id = self.snapshot_id.filter(|_| self.flush_pending);
        for (s, r) in self.held.take().unwrap_or_default() {
            if id.is_some_and(|id| r.seq <= id) {
                stats.skipped += 1;
            } else {
                writer.append(&s, &r)?;
            }
        }
        Ok(())
    }
}

/// Imports a CSV of a known layout.
pub(crate) fn import_csv(
    path: &Path,
    writer: &mut StoreWriter,
    venue: Option<&str>,
    skip_bad: bool,
) -> Result<ImportStats, StoreError> {
    let mut lines = LineReader::open(path).map_err(|e| StoreError::io(path, e))?;
    let bad = |line: u64, reason: String| StoreError::Input {
        path: path.to_path_buf(),
        at: format!("line {line}"),
        reason,
    };
    let layout = match lines.next_line() {
        Some(Ok((_, header))) => CsvLayout::from_header(header).ok_or_else(|| {
            bad(
                1,
                format!(
                    "unknown CSV header; known layouts:\n  {}",
                    CsvLayout::known_headers()
                ),
            )
        })?,
        Some(Err((line, e))) => return Err(bad(line, e.to_string())),
        None => return Err(bad(1, "empty file".into())),
    };
    let mut stats = ImportStats::default();
    let mut bridge = DepthBridge::new(layout == CsvLayout::BinanceDepth);
    // The last row of a multi-row message is held back until the next line tells
    // whether the message goes on, so it can carry FLAG_LAST.
    let mut pending: Option<(SeriesMeta, Row, (u64, u64))> = None;
    let mut numbers = crate::import::MessageNumbers::new(writer.root());
    while let Some(next) = lines.next_line() {
        let (n, text) = next.map_err(|(line, e)| bad(line, e.to_string()))?;
        stats.messages += 1;
        let p = match parse(layout, text, venue) {
            Ok(p) => p,
            Err(_) if skip_bad => {
                stats.skipped += 1;
                continue;
            }
            Err(e) => return Err(bad(n, e)),
        };
        let continues = match (&pending, p.message) {
            (Some((s, _, key)), Some(k)) => *key == k && s.symbol == p.series.symbol,
            _ => false,
        };
        if let Some((s, mut r, _)) = pending.take() {
            if !continues {
                r.flags |= FLAG_LAST;
            }
            bridge.write(writer, &s, r, &mut stats)?;
        }
        let Some(key) = p.message else {
            for mut r in p.rows {
                if layout == CsvLayout::DatabentoMbo {
                    // As for DBN files: the channel's numbers skip between one
                    // instrument's messages, so each series' messages are numbered.
                    let number = numbers.current(&p.series)?;
                    r.seq = *number;
                    if r.flags & FLAG_LAST != 0 {
                        *number += 1;
                    }
                }
                bridge.write(writer, &p.series, r, &mut stats)?;
            }
            continue;
        };
        let mut rows = p.rows.into_iter();
        let Some(row) = rows.next() else { continue };
        if p.snapshot && !continues {
            // A snapshot message starts by clearing the book.
            let clear = Row {
                kind: RowKind::Clear as u8,
                side: SIDE_NONE,
                price: 0,
                qty: 0,
                ..row
            };
            bridge.write(writer, &p.series, clear, &mut stats)?;
        }
        pending = Some((p.series, row, key));
    }
    if let Some((s, mut r, _)) = pending {
        r.flags |= FLAG_LAST;
        bridge.write(writer, &s, r, &mut stats)?;
    }
    bridge.finish(writer, &mut stats)?;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_are_told_by_their_header() {
        assert_eq!(
            CsvLayout::from_header(BINANCE_DEPTH),
            Some(CsvLayout::BinanceDepth)
        );
        assert_eq!(
            CsvLayout::from_header(&format!("{DATABENTO_MBO}\r")),
            Some(CsvLayout::DatabentoMbo)
        );
        assert_eq!(
            CsvLayout::from_header(
                "exchange,symbol,timestamp,local_timestamp,asks[0].price,asks[0].amount,bids[0].price,bids[0].amount,asks[1].price,asks[1].amount,bids[1].price,bids[1].amount"
            ),
            Some(CsvLayout::TardisSnapshot(2))
        );
        assert_eq!(CsvLayout::from_header("a,b,c"), None);
    }

    #[test]
    fn bad_fields_name_their_column() {
        let e = parse(
            CsvLayout::BinanceTrades,
            "1,2,3,spot,BTCUSDT,9,NaN,0.1,1,",
            None,
        )
        .err()
        .unwrap();
        assert!(e.contains("column 'price'") && e.contains("NaN"), "{e}");
        let e = parse(
            CsvLayout::BinanceDepth,
            "1,2,,spot,X,maybe,1,2,,bid,1,1",
            None,
        )
        .err()
        .unwrap();
        assert!(e.contains("msg_type"), "{e}");
        let e = parse(
            CsvLayout::DatabentoMbo,
            "1,2,160,1,17077,ESH4,Z,B,1,1,0,5,128,0,9",
            None,
        )
        .err()
        .unwrap();
        assert!(e.contains("action"), "{e}");
    }
}
