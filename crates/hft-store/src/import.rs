//! Import of vendor and raw data into the store, streaming: raw Binance captures
//! (`<local_ts_ns> <json>` lines, gzip or plain) and Databento DBN (MBO, MBP-1, trades).

use crate::StoreError;
use crate::schema::{Row, RowKind, SIDE_NONE, flags_from_databento};
use crate::writer::{SeriesMeta, StoreWriter};
use dbn::decode::{DbnMetadata, DecodeRecordRef};
use hft_feed::InstrumentRegistry;
use hft_feed::binance::{
    BinanceDecoder, BinanceMsg, BinanceNormalizer, BufferedDiff, DepthSync, SyncAction, WIRE_SCALE,
};
use hft_feed::capture::CaptureReader;
use std::io::Read;
use std::path::Path;

/// Formats `hft data import` understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Raw Binance WebSocket capture.
    BinanceCapture,
    /// Databento Binary Encoding, plain or zstd.
    Dbn,
    /// Tardis.dev CSV (`incremental_book_L2` or `trades`), plain or gzip.
    TardisCsv,
    /// Another CSV layout told by its header: flattened Binance captures, Binance
    /// `T_DEPTH`, Databento MBO, Tardis `book_snapshot_N` (plain or gzip).
    Csv,
    /// Bybit order-book JSON lines (`orderbook.N.SYMBOL`), plain or zipped.
    Bybit,
}

impl Format {
    /// Guesses the format from the name and first bytes.
    pub fn detect(path: &Path) -> Result<Format, StoreError> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        if name.ends_with(".dbn") || name.ends_with(".dbn.zst") {
            return Ok(Format::Dbn);
        }
        let mut head = [0u8; 4];
        let n = std::fs::File::open(path)
            .and_then(|mut f| f.read(&mut head))
            .map_err(|e| StoreError::io(path, e))?;
        let head = &head[..n];
        if head.starts_with(b"DBN") || head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            return Ok(Format::Dbn);
        }
        if crate::import_bybit::is_zip(head) {
            return match crate::import_bybit::zip_first_line(path) {
                Some(l) if crate::import_bybit::is_bybit_line(&l) => Ok(Format::Bybit),
                _ => Err(StoreError::Input {
                    path: path.to_path_buf(),
                    at: "zip entry 0".into(),
                    reason: "a zip archive whose first file is not a Bybit order-book capture; unpack it and import the files".into(),
                }),
            };
        }
        // Text, plain or gzip: the first line tells.
        let first = hft_feed::capture::LineReader::open(path)
            .ok()
            .and_then(|mut r| {
                r.next_line()
                    .and_then(Result::ok)
                    .map(|(_, l)| l.to_owned())
            })
            .unwrap_or_default();
        if hft_feed::tardis::TardisKind::from_header(&first).is_some() {
            return Ok(Format::TardisCsv);
        }
        if crate::import_csv::CsvLayout::from_header(&first).is_some() {
            return Ok(Format::Csv);
        }
        if crate::import_bybit::is_bybit_line(&first) {
            return Ok(Format::Bybit);
        }
        if first.as_bytes().first().is_some_and(u8::is_ascii_digit) && first.contains(" {") {
            return Ok(Format::BinanceCapture);
        }
        Err(StoreError::Input {
            path: path.to_path_buf(),
            at: "byte 0".into(),
            reason: format!(
                "unknown format: expected a Binance capture (.gz or text lines '<ns> <json>'), a DBN file (.dbn, .dbn.zst), a Tardis CSV (incremental_book_L2, trades, book_snapshot_N) or a CSV with one of these headers:\n  {}",
                crate::import_csv::CsvLayout::known_headers()
            ),
        })
    }
}

/// What an import did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportStats {
    /// Input messages or records read.
    pub messages: u64,
    /// Rows written.
    pub rows: u64,
    /// Bad messages skipped (with `skip_bad`), and depth diffs already in the snapshot.
    pub skipped: u64,
    /// Depth update id gaps in the capture.
    pub gaps: u64,
    /// Files written.
    pub files: Vec<std::path::PathBuf>,
}

/// Imports `path` into the store at `root`. Bad input stops the import with its location
/// unless `skip_bad`, which counts and skips it. `venue` overrides the venue name.
pub fn import(
    path: &Path,
    root: &Path,
    venue: Option<&str>,
    skip_bad: bool,
) -> Result<ImportStats, StoreError> {
    import_with(
        path,
        root,
        &ImportOptions {
            venue: venue.map(str::to_owned),
            skip_bad,
            instruments: Vec::new(),
        },
    )
}

/// How to import.
#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    /// Venue name instead of the one derived from the file.
    pub venue: Option<String>,
    /// Count and skip bad input instead of stopping at it.
    pub skip_bad: bool,
    /// Known instruments (from the config): their symbols are stored at their own price
    /// and quantity scales, which are exact and encode smaller; other symbols of a raw
    /// capture are stored at the wire's 8 decimals.
    pub instruments: Vec<hft_core::InstrumentSpec>,
}

/// [`import`] with every option.
pub fn import_with(
    path: &Path,
    root: &Path,
    opts: &ImportOptions,
) -> Result<ImportStats, StoreError> {
    let (venue, skip_bad) = (opts.venue.as_deref(), opts.skip_bad);
    let mut writer = StoreWriter::create(root)?;
    let done = match Format::detect(path) {
        Ok(Format::BinanceCapture) => {
            import_binance(path, &mut writer, venue, skip_bad, &opts.instruments)
        }
        Ok(Format::Dbn) => import_dbn(path, &mut writer, venue, skip_bad),
        Ok(Format::TardisCsv) => import_tardis(path, &mut writer, venue, skip_bad),
        Ok(Format::Csv) => crate::import_csv::import_csv(path, &mut writer, venue, skip_bad),
        Ok(Format::Bybit) => crate::import_bybit::import_bybit(path, &mut writer, venue, skip_bad),
        Err(e) => Err(e),
    };
    let mut stats = match done {
        Ok(s) => s,
        Err(e) => {
            writer.abort();
            return Err(e);
        }
    };
    let w = writer.finish()?;
    stats.rows = w.rows;
    stats.files = w.files;
    Ok(stats)
}

/// Venue of a Binance capture: from the file name's market prefix when it has one.
fn binance_venue(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    for (prefix, venue) in [
        ("spot", "binance-spot"),
        ("usdm", "binance-usdm"),
        ("cm", "binance-coinm"),
    ] {
        if name.starts_with(prefix) {
            return venue.to_owned();
        }
    }
    "binance".to_owned()
}

/// Diffs held while waiting for the capture's depth snapshot; a capture that starts
/// mid-stream has none, and then they are written as they came.
const MAX_PRESNAPSHOT_DIFFS: usize = 5_000;

/// The known instruments as one venue sees them: `venue:SYMBOL` names (how a config
/// tells apart the same symbol on two venues) apply to that venue only, as `SYMBOL`,
/// and come before plain names, which apply to every venue.
fn for_venue(
    instruments: &[hft_core::InstrumentSpec],
    venue: &str,
) -> Vec<hft_core::InstrumentSpec> {
    let qualified = instruments.iter().filter_map(|s| {
        let (v, symbol) = s.symbol.split_once(':')?;
        (v == venue).then(|| hft_core::InstrumentSpec {
            symbol: symbol.to_owned(),
            ..s.clone()
        })
    });
    let plain = instruments
        .iter()
        .filter(|s| !s.symbol.contains(':'))
        .cloned();
    qualified.chain(plain).collect()
}

fn import_binance(
    path: &Path,
    writer: &mut StoreWriter,
    venue: Option<&str>,
    skip_bad: bool,
    instruments: &[hft_core::InstrumentSpec],
) -> Result<ImportStats, StoreError> {
    let venue = venue.map_or_else(|| binance_venue(path), str::to_owned);
    let instruments = &for_venue(instruments, &venue);
    let mut reader = CaptureReader::open(path).map_err(|e| StoreError::io(path, e))?;
    let mut decoder = BinanceDecoder::with_capacity(1024);
    let scales_of = |symbol: &str| {
        instruments
            .iter()
            .find(|s| s.symbol == symbol)
            .map_or((WIRE_SCALE, WIRE_SCALE), |s| (s.price_scale, s.qty_scale))
    };
    let mut normalizer = BinanceNormalizer::new(InstrumentRegistry::known_then_auto(
        instruments.to_vec(),
        WIRE_SCALE,
        WIRE_SCALE,
    ));
    let mut sync = DepthSync::new();
    let mut waiting_for_snapshot = true;
    let mut stats = ImportStats::default();
    let mut symbol = String::new();
    let mut rows: Vec<Row> = Vec::with_capacity(4096);
    let bad = |line: u64, reason: String| StoreError::Input {
        path: path.to_path_buf(),
        at: format!("line {line}"),
        reason,
    };
    let series = |symbol: &str| {
        let (price_scale, qty_scale) = scales_of(symbol);
        SeriesMeta {
            venue: venue.clone(),
            symbol: symbol.to_owned(),
            price_scale,
            qty_scale,
        }
    };
    while let Some(line) = reader.next() {
        let line = match line {
            Ok(l) => l,
            Err(e @ hft_feed::capture::CaptureError::Format { .. }) => {
                if skip_bad {
                    stats.skipped += 1;
                    continue;
                }
                return Err(StoreError::Input {
                    path: path.to_path_buf(),
                    at: String::new(),
                    reason: e.to_string(),
                });
            }
            Err(e) => {
                return Err(StoreError::Input {
                    path: path.to_path_buf(),
                    at: String::new(),
                    reason: e.to_string(),
                });
            }
        };
        stats.messages += 1;
        let (n, local_ts) = (line.line, line.local_ts);
        let decoded = match decoder.decode(line.message) {
            Ok(m) => m,
            Err(_) if skip_bad => {
                stats.skipped += 1;
                continue;
            }
            Err(e) => return Err(bad(n, e.to_string())),
        };
        if let Some(s) = decoded.symbol() {
            if s != symbol {
                symbol.clear();
                symbol.push_str(s);
            }
        }
        rows.clear();
        let emit = |normalizer: &mut BinanceNormalizer,
                    msg: &BinanceMsg<'_>,
                    bids: &mut [hft_feed::binance::WireLevel],
                    asks: &mut [hft_feed::binance::WireLevel],
                    ts: u64,
                    rows: &mut Vec<Row>| {
            normalizer.normalize(msg, bids, asks, ts, Some(symbol.as_str()), &mut |e| {
                rows.push(Row::from_event(&e))
            })
        };
        let result = match decoded.diff_ids() {
            Some((ids, event_ms)) => {
                if waiting_for_snapshot {
                    let (b, a) = (decoder.bids().to_vec(), decoder.asks().to_vec());
                    sync.buffer(BufferedDiff {
                        ids,
                        event_ms,
                        local_ts,
                        bids: b,
                        asks: a,
                    });
                    if sync.buffered() > MAX_PRESNAPSHOT_DIFFS {
                        // No snapshot in this capture: write what was held, as it came.
                        waiting_for_snapshot = false;
                        let held = sync.take_buffer();
                        let last = held.last().map(|d| d.ids.last);
                        normalize_buffered(&mut normalizer, &symbol, held, &mut rows)
                            .map_err(|e| bad(n, e.to_string()))?;
                        if let Some(l) = last {
                            sync.resume_at(l);
                        }
                    }
                    Ok(0)
                } else {
                    match sync.on_diff(ids) {
                        SyncAction::Drop => {
                            stats.skipped += 1;
                            Ok(0)
                        }
                        SyncAction::Gap => {
                            // Recorded data cannot fetch a new snapshot: count, keep going.
                            stats.gaps += 1;
                            sync.resume_at(ids.last);
                            let (b, a) = decoder.levels_mut();
                            emit(&mut normalizer, &decoded, b, a, local_ts, &mut rows)
                        }
                        SyncAction::Apply | SyncAction::Buffer => {
                            let (b, a) = decoder.levels_mut();
                            emit(&mut normalizer, &decoded, b, a, local_ts, &mut rows)
                        }
                    }
                }
            }
            None => match decoded {
                BinanceMsg::Snapshot { last_update_id } => {
                    if symbol.is_empty() {
                        if skip_bad {
                            stats.skipped += 1;
                            continue;
                        }
                        return Err(bad(
                            n,
                            "depth snapshot before any message names its symbol".into(),
                        ));
                    }
                    waiting_for_snapshot = false;
                    let after = match sync.on_snapshot(last_update_id) {
                        Ok(after) => after,
                        Err(_) => {
                            // Recorded data cannot fetch a newer snapshot: count the gap and
                            // write the held diffs as they came.
                            stats.gaps += 1;
                            let held = sync.take_buffer();
                            if let Some(l) = held.last().map(|d| d.ids.last) {
                                sync.resume_at(l);
                            }
                            held
                        }
                    };
                    // The snapshot precedes the diffs it is followed by in book time.
                    let ts = after
                        .first()
                        .map_or(local_ts, |d| d.event_ms.saturating_mul(1_000_000));
                    let (b, a) = decoder.levels_mut();
                    emit(&mut normalizer, &decoded, b, a, ts, &mut rows)
                        .map_err(|e| bad(n, e.to_string()))?;
                    // It was received when its line was, whatever book time it stands for.
                    for r in rows.iter_mut() {
                        r.ts_recv = local_ts;
                    }
                    normalize_buffered(&mut normalizer, &symbol, after, &mut rows)
                        .map_err(|e| bad(n, e.to_string()))?;
                    Ok(0)
                }
                _ => {
                    let (b, a) = decoder.levels_mut();
                    emit(&mut normalizer, &decoded, b, a, local_ts, &mut rows)
                }
            },
        };
        match result {
            Ok(_) => {}
            Err(_) if skip_bad => {
                stats.skipped += 1;
                continue;
            }
            Err(e) => return Err(bad(n, e.to_string())),
        }
        let s = series(&symbol);
        for r in &rows {
            writer.append(&s, r)?;
        }
    }
    // End of file while still waiting: write what was held.
    rows.clear();
    normalize_buffered(&mut normalizer, &symbol, sync.take_buffer(), &mut rows)
        .map_err(|e| bad(0, e.to_string()))?;
    let s = series(&symbol);
    for r in &rows {
        writer.append(&s, r)?;
    }
    Ok(stats)
}

/// Normalises diffs that were held back, in order, into `rows`.
fn normalize_buffered(
    normalizer: &mut BinanceNormalizer,
    symbol: &str,
    diffs: Vec<BufferedDiff>,
    rows: &mut Vec<Row>,
) -> Result<(), hft_feed::binance::NormalizeError> {
    for mut d in diffs {
        let m = d.message(symbol);
        normalizer.normalize(
            &m,
            &mut d.bids,
            &mut d.asks,
            d.local_ts,
            Some(symbol),
            &mut |e| rows.push(Row::from_event(&e)),
        )?;
    }
    Ok(())
}

fn import_tardis(
    path: &Path,
    writer: &mut StoreWriter,
    venue: Option<&str>,
    skip_bad: bool,
) -> Result<ImportStats, StoreError> {
    use hft_core::{FLAG_LAST, FLAG_SNAPSHOT};
    use hft_feed::tardis::{TardisKind, parse_line};
    let mut lines =
        hft_feed::capture::LineReader::open(path).map_err(|e| StoreError::io(path, e))?;
    let bad = |line: u64, reason: String| StoreError::Input {
        path: path.to_path_buf(),
        at: format!("line {line}"),
        reason,
    };
    let kind = match lines.next_line() {
        Some(Ok((_, header))) => TardisKind::from_header(header).ok_or_else(|| {
            bad(
                1,
                format!(
                    "unsupported Tardis header; expected '{}' or '{}'",
                    hft_feed::tardis::L2_HEADER,
                    hft_feed::tardis::TRADES_HEADER
                ),
            )
        })?,
        Some(Err((line, e))) => return Err(bad(line, e.to_string())),
        None => return Err(bad(1, "empty file".into())),
    };
    let mut stats = ImportStats::default();
    // One row is held back so the last row of each message (same local time, same
    // snapshot state) can carry FLAG_LAST.
    let mut pending: Option<(SeriesMeta, Row)> = None;
    let mut in_snapshot = false;
    let mut numbers = MessageNumbers::new(writer.root());
    while let Some(next) = lines.next_line() {
        let (n, text) = next.map_err(|(line, e)| bad(line, e.to_string()))?;
        stats.messages += 1;
        let r = match parse_line(kind, text) {
            Ok(r) => r,
            Err(_) if skip_bad => {
                stats.skipped += 1;
                continue;
            }
            Err(e) => return Err(bad(n, e.to_string())),
        };
        let series = SeriesMeta {
            venue: venue.map_or_else(|| format!("tardis-{}", r.exchange), str::to_owned),
            symbol: r.symbol.to_owned(),
            price_scale: WIRE_SCALE,
            qty_scale: WIRE_SCALE,
        };
        let (row_kind, flags) = match kind {
            TardisKind::Trades => (RowKind::Trade, 0),
            TardisKind::IncrementalBookL2 => (
                RowKind::Level,
                if r.is_snapshot { FLAG_SNAPSHOT } else { 0 },
            ),
        };
        let starts_snapshot = r.is_snapshot && !in_snapshot;
        in_snapshot = r.is_snapshot;
        let row = Row {
            ts_exchange: r.ts_exchange,
            ts_recv: r.ts_local,
            seq: 0,
            flags,
            kind: row_kind as u8,
            side: r.side as u8,
            price: r.price,
            qty: r.amount,
            ..Row::default()
        };
        if let Some((ps, mut pr)) = pending.take() {
            let same_message = kind == TardisKind::IncrementalBookL2
                && !starts_snapshot
                && ps.symbol == series.symbol
                && pr.ts_recv == row.ts_recv
                && pr.flags == row.flags;
            if !same_message {
                pr.flags |= FLAG_LAST;
                *numbers.current(&ps)? += 1;
            }
            writer.append(&ps, &pr)?;
        }
        let seq = *numbers.current(&series)?;
        if starts_snapshot {
            let clear = Row {
                kind: RowKind::Clear as u8,
                flags: FLAG_SNAPSHOT,
                side: SIDE_NONE,
                seq,
                ..row
            };
            writer.append(&series, &clear)?;
        }
        pending = Some((series, Row { seq, ..row }));
    }
    if let Some((ps, mut pr)) = pending {
        pr.flags |= FLAG_LAST;
        writer.append(&ps, &pr)?;
    }
    Ok(stats)
}

/// Numbers each series' messages 1, 2, 3..., the records of one message sharing a
/// number, for sources whose own numbers cannot serve as a gap-free message sequence.
/// Numbering continues from the highest number the store already holds for the series,
/// so files imported one after another (one per day, say) replay as one unbroken
/// sequence: a consumer takes a number that goes back, or skips, for lost messages and
/// stops trusting its book until the next snapshot.
pub(crate) struct MessageNumbers {
    root: std::path::PathBuf,
    next: Vec<((String, String), u64)>,
}

impl MessageNumbers {
    pub(crate) fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
            next: Vec::new(),
        }
    }

    /// The number of the current message of `series`.
    pub(crate) fn current(&mut self, series: &SeriesMeta) -> Result<&mut u64, StoreError> {
        let k = match self
            .next
            .iter()
            .position(|((v, s), _)| *v == series.venue && *s == series.symbol)
        {
            Some(k) => k,
            None => {
                let last = crate::reader::last_seq(&self.root, &series.venue, &series.symbol)?;
                self.next.push((
                    (series.venue.clone(), series.symbol.clone()),
                    last.map_or(1, |l| l.saturating_add(1)),
                ));
                self.next.len() - 1
            }
        };
        Ok(&mut self.next[k].1)
    }
}

fn side_of(c: std::ffi::c_char) -> u8 {
    match c as u8 {
        b'B' => 0,
        b'A' => 1,
        _ => SIDE_NONE,
    }
}

/// A zstd-compressed file must decompress to its end: the DBN decoder takes a stream
/// cut short for a clean end of file, which would silently lose the rest of the data.
fn check_zstd_stream(path: &Path) -> Result<(), StoreError> {
    let mut file = std::fs::File::open(path).map_err(|e| StoreError::io(path, e))?;
    let mut magic = [0u8; 4];
    let n = file.read(&mut magic).map_err(|e| StoreError::io(path, e))?;
    if magic[..n] != [0x28, 0xb5, 0x2f, 0xfd] {
        return Ok(());
    }
    let file = std::fs::File::open(path).map_err(|e| StoreError::io(path, e))?;
    let mut d = zstd::stream::read::Decoder::new(file).map_err(|e| StoreError::io(path, e))?;
    std::io::copy(&mut d, &mut std::io::sink())
        .map(|_| ())
        .map_err(|e| StoreError::Input {
            path: path.to_path_buf(),
            at: "zstd stream".into(),
            reason: format!("truncated or corrupt compressed data ({e}); fetch the file again"),
        })
}

fn import_dbn(
    path: &Path,
    writer: &mut StoreWriter,
    venue: Option<&str>,
    skip_bad: bool,
) -> Result<ImportStats, StoreError> {
    let dbn_err = |e: dbn::Error| StoreError::Input {
        path: path.to_path_buf(),
        at: "".into(),
        reason: e.to_string(),
    };
    check_zstd_stream(path)?;
    let mut decoder = dbn::decode::DynDecoder::from_file(path, dbn::VersionUpgradePolicy::AsIs)
        .map_err(dbn_err)?;
    let meta = decoder.metadata().clone();
    let venue = venue.map_or_else(
        || format!("databento-{}", meta.dataset.to_lowercase()),
        str::to_owned,
    );
    // instrument_id -> raw symbol from the file's symbology, else the id itself.
    let symbol_of = |id: u32| -> String {
        let key = id.to_string();
        meta.mappings
            .iter()
            .find(|m| m.intervals.iter().any(|i| i.symbol == key))
            .map_or(key, |m| m.raw_symbol.clone())
    };
    let mut series_cache: Vec<(u32, SeriesMeta)> = Vec::new();
    // Databento's sequence numbers count a whole venue channel, so one instrument's
    // messages skip numbers and a consumer would take every skip for a lost message.
    // Historical files come gap-free, and each series' messages are numbered instead
    // (a message ends with the record flagged last). A series is a symbol: two
    // instrument ids the symbology maps to one symbol (a contract re-listed under a
    // new id) share its numbering.
    let mut numbers = MessageNumbers::new(writer.root());
    let mut stats = ImportStats::default();
    loop {
        let rec = match decoder.decode_record_ref() {
            Ok(Some(r)) => r,
            Ok(None) => break,
            Err(e) if skip_bad => {
                stats.skipped += 1;
                let _ = e;
                break;
            }
            Err(e) => {
                return Err(StoreError::Input {
                    path: path.to_path_buf(),
                    at: format!("record {}", stats.messages + 1),
                    reason: e.to_string(),
                });
            }
        };
        stats.messages += 1;
        let (id, row) = if let Some(m) = rec.get::<dbn::MboMsg>() {
            let row = Row {
                ts_exchange: m.hd.ts_event,
                ts_recv: m.ts_recv,
                seq: u64::from(m.sequence),
                flags: flags_from_databento(m.flags.raw()),
                kind: RowKind::Order as u8,
                side: side_of(m.side),
                price: m.price,
                qty: i64::from(m.size),
                order_id: m.order_id,
                action: m.action as u8,
                ..Row::default()
            };
            (m.hd.instrument_id, row)
        } else if let Some(t) = rec.get::<dbn::TradeMsg>() {
            let row = Row {
                ts_exchange: t.hd.ts_event,
                ts_recv: t.ts_recv,
                seq: u64::from(t.sequence),
                flags: flags_from_databento(t.flags.raw()),
                kind: RowKind::Trade as u8,
                side: side_of(t.side),
                price: t.price,
                qty: i64::from(t.size),
                ..Row::default()
            };
            (t.hd.instrument_id, row)
        } else if let Some(q) = rec.get::<dbn::Mbp1Msg>() {
            let l = &q.levels[0];
            let row = Row {
                ts_exchange: q.hd.ts_event,
                ts_recv: q.ts_recv,
                seq: u64::from(q.sequence),
                flags: flags_from_databento(q.flags.raw()),
                kind: RowKind::Quote as u8,
                side: SIDE_NONE,
                price: l.bid_px,
                qty: i64::from(l.bid_sz),
                price2: l.ask_px,
                qty2: i64::from(l.ask_sz),
                ..Row::default()
            };
            (q.hd.instrument_id, row)
        } else {
            // Other record types (status, definitions, statistics) are not market events.
            stats.skipped += 1;
            continue;
        };
        let series = match series_cache.iter().find(|(i, _)| *i == id) {
            Some((_, s)) => s.clone(),
            None => {
                let s = SeriesMeta {
                    venue: venue.clone(),
                    symbol: symbol_of(id),
                    price_scale: 9,
                    qty_scale: 0,
                };
                series_cache.push((id, s.clone()));
                s
            }
        };
        let number = numbers.current(&series)?;
        let row = Row {
            seq: *number,
            ..row
        };
        if row.flags & hft_core::FLAG_LAST != 0 {
            *number += 1;
        }
        writer.append(&series, &row)?;
    }
    Ok(stats)
}
