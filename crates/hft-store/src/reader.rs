//! Reading a store back: row streams per file, and `inspect` summaries.

use crate::StoreError;
use crate::schema::{Row, RowKind, SCHEMA_VERSION};
use arrow_array::{Array, Int64Array, RecordBatch, UInt8Array, UInt64Array};
use hft_book::{L2Book, MboToL2};
use hft_core::{FLAG_LAST, InstrumentId};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

/// Every data file under `root` (or `root` itself if it is a file), in path order, which
/// for one series is chronological (date partitions, then part numbers).
pub fn data_files(root: &Path) -> Result<Vec<PathBuf>, StoreError> {
    if root.is_file() {
        return Ok(vec![root.to_path_buf()]);
    }
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).map_err(|e| StoreError::io(&dir, e))? {
            let p = entry.map_err(|e| StoreError::io(&dir, e))?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "parquet") {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The `hft.*` metadata of a file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileMeta {
    /// Venue.
    pub venue: String,
    /// Symbol.
    pub symbol: String,
    /// Price decimals.
    pub price_scale: u8,
    /// Quantity decimals.
    pub qty_scale: u8,
    /// Rows in the file.
    pub rows: u64,
}

fn col<'a, T: 'static>(b: &'a RecordBatch, name: &str, path: &Path) -> Result<&'a T, StoreError> {
    b.column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| StoreError::Input {
            path: path.to_path_buf(),
            at: format!("column {name}"),
            reason: "missing or of the wrong type".into(),
        })
}

/// Opens a data file: its metadata and a batch reader limited to the row groups that
/// can hold exchange timestamps in `[from, to]` (from the row groups' statistics).
fn open_file(
    path: &Path,
    from: u64,
    to: u64,
) -> Result<(FileMeta, ParquetRecordBatchReader), StoreError> {
    let file = File::open(path).map_err(|e| StoreError::io(path, e))?;
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| StoreError::parquet(path, e))?;
    let md = builder.metadata().file_metadata();
    let kv = |k: &str| {
        md.key_value_metadata().and_then(|kvs| {
            kvs.iter()
                .find(|x| x.key == k)
                .and_then(|x| x.value.clone())
        })
    };
    let version: u32 = kv("hft.schema_version")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if version != SCHEMA_VERSION {
        return Err(StoreError::Input {
            path: path.to_path_buf(),
            at: "metadata".into(),
            reason: format!("schema version {version}, this build reads {SCHEMA_VERSION}"),
        });
    }
    let meta = FileMeta {
        venue: kv("hft.venue").unwrap_or_default(),
        symbol: kv("hft.symbol").unwrap_or_default(),
        price_scale: kv("hft.price_scale")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        qty_scale: kv("hft.qty_scale")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        rows: md.num_rows().max(0) as u64,
    };
    let groups: Vec<usize> = builder
        .metadata()
        .row_groups()
        .iter()
        .enumerate()
        .filter(|(_, rg)| {
            let stats = rg.column(0).statistics();
            let bound =
                |b: Option<&[u8]>| b.and_then(|b| b.try_into().ok()).map(u64::from_le_bytes);
            match stats.map(|s| (bound(s.min_bytes_opt()), bound(s.max_bytes_opt()))) {
                Some((Some(min), Some(max))) => max >= from && min <= to,
                _ => true,
            }
        })
        .map(|(i, _)| i)
        .collect();
    // Files without order-by-order rows (the `kind` column never reaches `Order`) skip
    // the order columns; the rows read back with zeros there, as written.
    let has_orders = builder.metadata().row_groups().iter().any(|rg| {
        rg.column(KIND_COLUMN)
            .statistics()
            .and_then(|s| s.max_bytes_opt().and_then(|b| b.first().copied()))
            .is_none_or(|max| max >= RowKind::Order as u8)
    });
    let columns = if has_orders { 12 } else { 10 };
    let mask = ProjectionMask::roots(builder.parquet_schema(), 0..columns);
    let reader = builder
        .with_row_groups(groups)
        .with_projection(mask)
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(|e| StoreError::parquet(path, e))?;
    Ok((meta, reader))
}

/// Position of `kind` in the schema.
const KIND_COLUMN: usize = 4;

/// Rows decoded at a time per series: the reader's memory is this many rows per open
/// series, whatever the file size.
const BATCH_ROWS: usize = 32_768;

/// The columns of one decoded batch; rows are read out of them in place.
struct Columns {
    te: UInt64Array,
    tr: UInt64Array,
    sq: UInt64Array,
    fl: UInt8Array,
    kd: UInt8Array,
    sd: UInt8Array,
    px: Int64Array,
    qt: Int64Array,
    px2: Int64Array,
    qt2: Int64Array,
    /// Absent when the file has no order-by-order rows.
    orders: Option<(UInt64Array, UInt8Array)>,
    len: usize,
}

impl Columns {
    fn of(b: &RecordBatch, path: &Path) -> Result<Self, StoreError> {
        let orders = if b.column_by_name("order_id").is_some() {
            Some((
                col::<UInt64Array>(b, "order_id", path)?.clone(),
                col::<UInt8Array>(b, "action", path)?.clone(),
            ))
        } else {
            None
        };
        Ok(Self {
            te: col::<UInt64Array>(b, "ts_exchange", path)?.clone(),
            tr: col::<UInt64Array>(b, "ts_recv", path)?.clone(),
            sq: col::<UInt64Array>(b, "seq", path)?.clone(),
            fl: col::<UInt8Array>(b, "flags", path)?.clone(),
            kd: col::<UInt8Array>(b, "kind", path)?.clone(),
            sd: col::<UInt8Array>(b, "side", path)?.clone(),
            px: col::<Int64Array>(b, "price", path)?.clone(),
            qt: col::<Int64Array>(b, "qty", path)?.clone(),
            px2: col::<Int64Array>(b, "price2", path)?.clone(),
            qt2: col::<Int64Array>(b, "qty2", path)?.clone(),
            orders,
            len: b.num_rows(),
        })
    }

    /// The market event of row `i` (`i < len`), read straight from the columns; the
    /// same as `row(i).to_event(id)`, without the row.
    #[inline]
    fn event(&self, i: usize, id: InstrumentId) -> Option<hft_core::MarketEvent> {
        use hft_core::{MarketEventKind as K, Price, Qty, Side};
        let side = if self.sd.values()[i] == 1 {
            Side::Sell
        } else {
            Side::Buy
        };
        let (price, qty) = (Price(self.px.values()[i]), Qty(self.qt.values()[i]));
        let kind = match RowKind::from_u8(self.kd.values()[i])? {
            RowKind::Clear => K::Clear,
            RowKind::Level => K::Level { side, price, qty },
            RowKind::Trade => K::Trade {
                aggressor: side,
                price,
                qty,
            },
            RowKind::Quote => K::Quote {
                bid: price,
                bid_qty: qty,
                ask: Price(self.px2.values()[i]),
                ask_qty: Qty(self.qt2.values()[i]),
            },
            RowKind::Order => {
                let (ids, actions) = self.orders.as_ref()?;
                K::Order {
                    action: hft_core::MboAction::from_databento(actions.values()[i])?,
                    side: crate::schema::side_from_byte(self.sd.values()[i]),
                    order_id: ids.values()[i],
                    price,
                    qty,
                }
            }
        };
        Some(hft_core::MarketEvent {
            ts_exchange: self.te.values()[i],
            ts_recv: self.tr.values()[i],
            seq: self.sq.values()[i],
            instrument: id,
            flags: self.fl.values()[i],
            kind,
        })
    }

    /// Row `i` (`i < len`).
    #[inline]
    fn row(&self, i: usize) -> Row {
        let (order_id, action) = self
            .orders
            .as_ref()
            .map_or((0, 0), |(o, a)| (o.values()[i], a.values()[i]));
        let kind = self.kd.values()[i];
        let (price2, qty2) = if kind == RowKind::Quote as u8 {
            (self.px2.values()[i], self.qt2.values()[i])
        } else {
            (0, 0)
        };
        Row {
            ts_exchange: self.te.values()[i],
            ts_recv: self.tr.values()[i],
            seq: self.sq.values()[i],
            flags: self.fl.values()[i],
            kind,
            side: self.sd.values()[i],
            price: self.px.values()[i],
            qty: self.qt.values()[i],
            price2,
            qty2,
            order_id,
            action,
        }
    }
}

/// Streams the rows of one file to `f`, with its metadata first.
pub fn read_file(path: &Path, mut f: impl FnMut(&FileMeta, &Row)) -> Result<FileMeta, StoreError> {
    let (meta, reader) = open_file(path, 0, u64::MAX)?;
    for batch in reader {
        let b = batch.map_err(|e| StoreError::Format(format!("{}: {e}", path.display())))?;
        let cols = Columns::of(&b, path)?;
        for i in 0..cols.len {
            f(&meta, &cols.row(i));
        }
    }
    Ok(meta)
}

/// The rows of one series in time order, a batch in memory at a time.
struct SeriesCursor {
    files: std::collections::VecDeque<PathBuf>,
    reader: Option<(PathBuf, ParquetRecordBatchReader)>,
    batch: Option<Columns>,
    pos: usize,
    from: u64,
    to: u64,
}

impl SeriesCursor {
    fn next_row(&mut self) -> Result<Option<Row>, StoreError> {
        loop {
            if let Some(cols) = &self.batch {
                while self.pos < cols.len {
                    let i = self.pos;
                    self.pos += 1;
                    let ts = cols.te.values()[i];
                    if ts >= self.from && ts <= self.to {
                        return Ok(Some(cols.row(i)));
                    }
                }
            }
            self.batch = None;
            self.pos = 0;
            if let Some((path, reader)) = self.reader.as_mut() {
                match reader.next() {
                    Some(batch) => {
                        let b = batch
                            .map_err(|e| StoreError::Format(format!("{}: {e}", path.display())))?;
                        self.batch = Some(Columns::of(&b, path)?);
                        continue;
                    }
                    None => self.reader = None,
                }
            }
            let Some(next) = self.files.pop_front() else {
                return Ok(None);
            };
            let (_, reader) = open_file(&next, self.from, self.to)?;
            self.reader = Some((next, reader));
        }
    }
}

/// Which series to read.
#[derive(Clone, Debug, Default)]
pub struct SeriesFilter {
    /// Only this venue.
    pub venue: Option<String>,
    /// Only these symbols (all when empty).
    pub symbols: Vec<String>,
}

/// Rows of several series merged in exchange-timestamp order (a k-way merge over one
/// cursor per series), restricted to a time range; memory is one batch per series.
///
/// The series that supplied the last row stays out of the heap while its next row is
/// still the earliest, so runs from one series (and a lone series) cost no heap work.
pub struct MergedReader {
    series: Vec<FileMeta>,
    cursors: Vec<SeriesCursor>,
    heap: std::collections::BinaryHeap<std::cmp::Reverse<(u64, usize)>>,
    heads: Vec<Option<Row>>,
    current: Option<usize>,
    /// Per series, the L3 book that turns its order rows into L2 levels (made at the
    /// series' first order row).
    mbo: Vec<Option<MboToL2>>,
    /// Rows [`MergedReader::next_events`] has taken so far.
    rows_read: u64,
}

/// Appends `e` to `out`, with the L2 events an order event amounts to.
#[inline(always)]
fn emit(mbo: &mut Option<MboToL2>, e: hft_core::MarketEvent, out: &mut Vec<hft_core::MarketEvent>) {
    if matches!(e.kind, hft_core::MarketEventKind::Order { .. }) {
        expand(mbo, &e, out);
    } else {
        out.push(e);
    }
}

/// The order-event half of [`emit`], out of line so that the common path stays small.
#[inline(never)]
fn expand(
    mbo: &mut Option<MboToL2>,
    e: &hft_core::MarketEvent,
    out: &mut Vec<hft_core::MarketEvent>,
) {
    mbo.get_or_insert_with(|| MboToL2::new(e.instrument))
        .push(e, &mut |x| out.push(x));
}

impl MergedReader {
    /// Opens the series under `root` that pass `filter`, for exchange times in `[from, to]`.
    pub fn open(
        root: &Path,
        filter: &SeriesFilter,
        from: u64,
        to: u64,
    ) -> Result<Self, StoreError> {
        let mut by_series: BTreeMap<(String, String), (FileMeta, Vec<PathBuf>)> = BTreeMap::new();
        for path in data_files(root)? {
            let (meta, _) = open_file(&path, u64::MAX, 0)?;
            if filter.venue.as_ref().is_some_and(|v| *v != meta.venue)
                || (!filter.symbols.is_empty() && !filter.symbols.contains(&meta.symbol))
            {
                continue;
            }
            // The series' meta counts the rows of all its files.
            let entry = by_series
                .entry((meta.venue.clone(), meta.symbol.clone()))
                .or_insert_with(|| {
                    (
                        FileMeta {
                            rows: 0,
                            ..meta.clone()
                        },
                        Vec::new(),
                    )
                });
            entry.0.rows += meta.rows;
            entry.1.push(path);
        }
        let mut me = Self {
            series: Vec::new(),
            cursors: Vec::new(),
            heap: std::collections::BinaryHeap::new(),
            heads: Vec::new(),
            current: None,
            mbo: Vec::new(),
            rows_read: 0,
        };
        for (_, (meta, files)) in by_series {
            me.series.push(meta);
            me.cursors.push(SeriesCursor {
                files: files.into(),
                reader: None,
                batch: None,
                pos: 0,
                from,
                to,
            });
            me.heads.push(None);
            me.mbo.push(None);
        }
        for i in 0..me.cursors.len() {
            me.heads[i] = me.cursors[i].next_row()?;
            if let Some(r) = &me.heads[i] {
                me.heap.push(std::cmp::Reverse((r.ts_exchange, i)));
            }
        }
        Ok(me)
    }

    /// The series being read, indexed as in `next`'s result; `rows` counts every
    /// file of the series (before any time filter).
    pub fn series(&self) -> &[FileMeta] {
        &self.series
    }

    /// The next row in time order (ties: series order), with its series index.
    #[inline]
    pub fn next_row(&mut self) -> Result<Option<(usize, Row)>, StoreError> {
        let i = match self.current.take() {
            Some(c) => {
                let ts = self.heads[c].map_or(u64::MAX, |r| r.ts_exchange);
                match self.heap.peek() {
                    Some(&std::cmp::Reverse(top)) if top < (ts, c) => {
                        self.heap.pop();
                        self.heap.push(std::cmp::Reverse((ts, c)));
                        top.1
                    }
                    _ => c,
                }
            }
            None => match self.heap.pop() {
                Some(std::cmp::Reverse((_, i))) => i,
                None => return Ok(None),
            },
        };
        let Some(row) = self.heads[i].take() else {
            return Ok(None);
        };
        self.heads[i] = self.cursors[i].next_row()?;
        if self.heads[i].is_some() {
            self.current = Some(i);
        }
        Ok(Some((i, row)))
    }
}

impl MergedReader {
    /// Rows taken by [`MergedReader::next_events`] so far: progress against the rows of
    /// [`MergedReader::series`], which the events outnumber on order-by-order data.
    pub fn rows_read(&self) -> u64 {
        self.rows_read
    }

    /// Appends the next market events in time order to `out`, each with its series
    /// index as instrument id; returns how many. That is up to `max`, and up to two
    /// more when the last row is an order record: each is followed by the `Level`
    /// events it amounts to ([`MboToL2`]), so L2 consumers run on MBO data as is.
    /// Runs of one series are copied straight out of the decoded columns, which makes
    /// this the fast way to replay.
    pub fn next_events(
        &mut self,
        out: &mut Vec<hft_core::MarketEvent>,
        max: usize,
    ) -> Result<usize, StoreError> {
        let start = out.len();
        while out.len() - start < max {
            let Some((i, row)) = self.next_row()? else {
                break;
            };
            self.rows_read += 1;
            let id = InstrumentId(i as u32);
            if let Some(e) = row.to_event(id) {
                emit(&mut self.mbo[i], e, out);
            }
            if self.current != Some(i) {
                continue;
            }
            // Rows of series `i` that still come before every other series' head: its
            // head, then straight from the decoded columns.
            let bound = self.heap.peek().map_or((u64::MAX, usize::MAX), |r| r.0);
            let Some(head) = self.heads[i] else { continue };
            if (head.ts_exchange, i) > bound {
                continue;
            }
            if let Some(e) = head.to_event(id) {
                emit(&mut self.mbo[i], e, out);
            }
            self.rows_read += 1;
            let c = &mut self.cursors[i];
            let mbo = &mut self.mbo[i];
            let pos = c.pos;
            if let Some(cols) = &c.batch {
                while c.pos < cols.len && out.len() - start < max {
                    let ts = cols.te.values()[c.pos];
                    if (ts, i) > bound {
                        break;
                    }
                    if ts >= c.from && ts <= c.to {
                        if let Some(e) = cols.event(c.pos, id) {
                            emit(mbo, e, out);
                        }
                    }
                    c.pos += 1;
                }
            }
            self.rows_read += (c.pos - pos) as u64;
            self.heads[i] = self.cursors[i].next_row()?;
            if self.heads[i].is_none() {
                self.current = None;
            }
        }
        Ok(out.len() - start)
    }
}

/// Summary of one series (venue + symbol).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SeriesSummary {
    /// Venue.
    pub venue: String,
    /// Symbol.
    pub symbol: String,
    /// Files.
    pub files: u64,
    /// Rows.
    pub rows: u64,
    /// Rows by kind: clear, level, trade, quote, order.
    pub by_kind: [u64; 5],
    /// First exchange timestamp, ns.
    pub first_ts: u64,
    /// Last exchange timestamp, ns.
    pub last_ts: u64,
    /// Exchange timestamps that went backwards.
    pub ts_regressions: u64,
    /// Venue messages after which the L2 book built from the rows was crossed.
    pub crossed_moments: u64,
    /// Price and quantity decimals.
    pub scales: (u8, u8),
}

/// Reads every file under `root` and summarises each series.
pub fn inspect(root: &Path) -> Result<Vec<SeriesSummary>, StoreError> {
    let files = data_files(root)?;
    if files.is_empty() {
        return Err(StoreError::Input {
            path: root.to_path_buf(),
            at: "".into(),
            reason: "no .parquet files found".into(),
        });
    }
    let mut series: BTreeMap<(String, String), (SeriesSummary, L2Book)> = BTreeMap::new();
    for path in files {
        let mut current: Option<(String, String)> = None;
        let meta = read_file(&path, |meta, row| {
            let key = (meta.venue.clone(), meta.symbol.clone());
            if current.as_ref() != Some(&key) {
                current = Some(key.clone());
            }
            let (s, book) = series.entry(key).or_insert_with(|| {
                (
                    SeriesSummary {
                        venue: meta.venue.clone(),
                        symbol: meta.symbol.clone(),
                        scales: (meta.price_scale, meta.qty_scale),
                        first_ts: u64::MAX,
                        ..Default::default()
                    },
                    L2Book::with_capacity(InstrumentId(0), 1024),
                )
            });
            s.rows += 1;
            if let Some(k) = s.by_kind.get_mut(usize::from(row.kind)) {
                *k += 1;
            }
            if row.ts_exchange < s.last_ts && s.rows > 1 {
                s.ts_regressions += 1;
            }
            s.first_ts = s.first_ts.min(row.ts_exchange);
            s.last_ts = s.last_ts.max(row.ts_exchange);
            if matches!(
                RowKind::from_u8(row.kind),
                Some(RowKind::Clear | RowKind::Level)
            ) {
                if let Some(ev) = row.to_event(InstrumentId(0)) {
                    let _ = book.apply(&ev);
                    if ev.flags & FLAG_LAST != 0 && book.is_crossed() {
                        s.crossed_moments += 1;
                    }
                }
            }
        })?;
        if let Some(entry) = series.get_mut(&(meta.venue.clone(), meta.symbol.clone())) {
            entry.0.files += 1;
        }
    }
    Ok(series.into_values().map(|(s, _)| s).collect())
}
