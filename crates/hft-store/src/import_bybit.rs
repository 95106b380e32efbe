//! Import of Bybit order-book captures (`orderbook.N.SYMBOL` JSON lines, as Bybit's
//! public archive serves them, plain or zipped): a `snapshot` line replaces the book, a
//! `delta` line sets levels (size 0 deletes). Update ids (`u`) must run on by one
//! between deltas; a break is counted as a gap and the book is held until the next
//! snapshot would be needed — recorded data cannot ask for one, so the rows are kept.

use crate::StoreError;
use crate::import::ImportStats;
use crate::schema::{Row, RowKind, SIDE_NONE};
use crate::writer::{SeriesMeta, StoreWriter};
use hft_core::{FLAG_LAST, FLAG_SNAPSHOT};
use hft_feed::binance::{WIRE_SCALE, parse_wire};
use serde::Deserialize;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

#[derive(Deserialize)]
struct Message<'a> {
    topic: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    ts: u64,
    #[serde(borrow)]
    data: Data<'a>,
}

#[derive(Deserialize)]
struct Data<'a> {
    s: &'a str,
    #[serde(borrow, default)]
    b: Vec<(&'a str, &'a str)>,
    #[serde(borrow, default)]
    a: Vec<(&'a str, &'a str)>,
    u: u64,
}

/// True when the file is a zip archive.
pub(crate) fn is_zip(head: &[u8]) -> bool {
    head.starts_with(b"PK\x03\x04")
}

/// True when a line looks like a Bybit order-book message.
pub(crate) fn is_bybit_line(line: &str) -> bool {
    line.starts_with("{\"topic\":\"orderbook.")
}

/// The first line of the first file of a zip archive (for format detection).
pub(crate) fn zip_first_line(path: &Path) -> Option<String> {
    let file = std::fs::File::open(path).ok()?;
    let mut archive = zip::ZipArchive::new(file).ok()?;
    let entry = archive.by_index(0).ok()?;
    let mut line = String::new();
    BufReader::new(entry.take(1 << 20))
        .read_line(&mut line)
        .ok()?;
    Some(line)
}

/// Imports a Bybit order-book capture, plain or the first file of a zip archive.
pub(crate) fn import_bybit(
    path: &Path,
    writer: &mut StoreWriter,
    venue: Option<&str>,
    skip_bad: bool,
) -> Result<ImportStats, StoreError> {
    let bad = |line: u64, reason: String| StoreError::Input {
        path: path.to_path_buf(),
        at: if line == 0 {
            String::new()
        } else {
            format!("line {line}")
        },
        reason,
    };
    let file = std::fs::File::open(path).map_err(|e| StoreError::io(path, e))?;
    let mut head = [0u8; 4];
    let n = (&file)
        .read(&mut head)
        .map_err(|e| StoreError::io(path, e))?;
    let file = std::fs::File::open(path).map_err(|e| StoreError::io(path, e))?;
    let mut stats = ImportStats::default();
    let mut process = |reader: &mut dyn BufRead| -> Result<(), StoreError> {
        let mut line = String::new();
        let mut n = 0u64;
        let mut last_u: Option<u64> = None;
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(bad(n + 1, format!("read error: {e}"))),
            }
            n += 1;
            let text = line.trim_end();
            if text.is_empty() {
                continue;
            }
            stats.messages += 1;
            match message_rows(text, venue) {
                Ok((series, rows, snapshot, u)) => {
                    if !snapshot && last_u.is_some_and(|l| u != l + 1) {
                        stats.gaps += 1;
                    }
                    last_u = Some(u);
                    for r in &rows {
                        writer.append(&series, r)?;
                    }
                }
                Err(_) if skip_bad => stats.skipped += 1,
                Err(e) => return Err(bad(n, e)),
            }
        }
    };
    if is_zip(&head[..n]) {
        let mut archive = zip::ZipArchive::new(file).map_err(|e| bad(0, format!("zip: {e}")))?;
        if archive.len() != 1 {
            return Err(bad(
                0,
                format!(
                    "the zip holds {} files; unpack it and import them one by one",
                    archive.len()
                ),
            ));
        }
        let entry = archive
            .by_index(0)
            .map_err(|e| bad(0, format!("zip: {e}")))?;
        process(&mut BufReader::new(entry))?;
    } else {
        process(&mut BufReader::new(file))?;
    }
    Ok(stats)
}

/// Parses one Bybit order-book line (for fuzzing and tools): how many rows it makes, or
/// why it is refused.
pub fn parse_line(text: &str) -> Result<usize, String> {
    message_rows(text, None).map(|m| m.1.len())
}

/// The rows of one message: its series, rows, whether it is a snapshot, its update id.
fn message_rows(
    text: &str,
    venue: Option<&str>,
) -> Result<(SeriesMeta, Vec<Row>, bool, u64), String> {
    let m: Message<'_> =
        serde_json::from_str(text).map_err(|e| format!("not a Bybit order-book message: {e}"))?;
    let snapshot = match m.kind {
        "snapshot" => true,
        "delta" => false,
        k => return Err(format!("type '{k}' is neither snapshot nor delta")),
    };
    let series = SeriesMeta {
        venue: venue.map_or_else(|| "bybit".to_owned(), str::to_owned),
        symbol: m.data.s.to_owned(),
        price_scale: WIRE_SCALE,
        qty_scale: WIRE_SCALE,
    };
    let _ = m.topic;
    let ts = m.ts.saturating_mul(1_000_000);
    let flags = if snapshot { FLAG_SNAPSHOT } else { 0 };
    let base = Row {
        ts_exchange: ts,
        ts_recv: ts,
        seq: m.data.u,
        flags,
        ..Row::default()
    };
    let mut rows = Vec::with_capacity(m.data.b.len() + m.data.a.len() + 1);
    if snapshot {
        rows.push(Row {
            kind: RowKind::Clear as u8,
            side: SIDE_NONE,
            ..base
        });
    }
    for (side, levels) in [(0u8, &m.data.b), (1u8, &m.data.a)] {
        for (p, q) in levels {
            let dec = |v: &str, what: &str| {
                parse_wire(v).ok_or_else(|| format!("{what} '{v}' is not a non-negative decimal"))
            };
            rows.push(Row {
                kind: RowKind::Level as u8,
                side,
                price: dec(p, "price")?,
                qty: dec(q, "size")?,
                ..base
            });
        }
    }
    if let Some(last) = rows.last_mut() {
        last.flags |= FLAG_LAST;
    }
    Ok((series, rows, snapshot, m.data.u))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_clear_and_deltas_set_levels() {
        let (s, rows, snap, u) = message_rows(
            r#"{"topic":"orderbook.50.X","type":"snapshot","ts":5,"data":{"s":"X","b":[["1.5","2"]],"a":[["1.6","0"]],"u":7,"seq":1},"cts":4}"#,
            None,
        )
        .unwrap();
        assert_eq!((s.symbol.as_str(), snap, u, rows.len()), ("X", true, 7, 3));
        assert_eq!(rows[0].kind, RowKind::Clear as u8);
        assert!(rows[2].flags & FLAG_LAST != 0 && rows[1].flags & FLAG_LAST == 0);
        assert_eq!((rows[1].price, rows[1].qty), (150_000_000, 200_000_000));
        let e = message_rows(
            r#"{"topic":"orderbook.50.X","type":"delta","ts":5,"data":{"s":"X","b":[["-1","2"]],"a":[],"u":8}}"#,
            None,
        )
        .unwrap_err();
        assert!(e.contains("price '-1'"), "{e}");
    }
}
