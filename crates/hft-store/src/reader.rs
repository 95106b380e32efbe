//! Reading a store back: row streams per file, and `inspect` summaries.

use crate::StoreError;
use crate::pages;
use crate::schema::{Row, RowKind, SCHEMA_VERSION, SIDE_NONE};
use hft_book::{L2Book, MboToL2};
use hft_core::{FLAG_LAST, InstrumentId};
use parquet::basic::Type as PhysicalType;
use parquet::column::reader::{ColumnReader, ColumnReaderImpl};
use parquet::data_type::{Int32Type, Int64Type};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::statistics::Statistics;
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

/// Position of `seq` in the schema.
const SEQ_COLUMN: usize = 2;

/// Position of `kind` in the schema.
const KIND_COLUMN: usize = 4;

/// Rows decoded at a time per series: the reader's memory is this many rows per open
/// series, whatever the file size, and a batch's columns stay in the core's cache
/// between decoding them and building events from them.
const BATCH_ROWS: usize = 4_096;

/// The stored columns in schema order, with their physical types (`true`: INT64).
const COLUMNS: [(&str, bool); 12] = [
    ("ts_exchange", true),
    ("ts_recv", true),
    ("seq", true),
    ("flags", false),
    ("kind", false),
    ("side", false),
    ("price", true),
    ("qty", true),
    ("price2", true),
    ("qty2", true),
    ("order_id", true),
    ("action", false),
];

/// Columns read when a file has no order-by-order rows.
const L2_COLUMNS: usize = 10;

/// The decoded values of one batch of rows. Rows are read out of them in place, and
/// the buffers are reused from batch to batch, so replay allocates per file, not per
/// batch. Parquet is read through its column readers rather than Arrow arrays: the
/// arrays would be built, cast from INT32 and reference-counted per batch only to be
/// read back here.
#[derive(Default)]
struct Columns {
    te: Vec<i64>,
    tr: Vec<i64>,
    sq: Vec<i64>,
    fl: Vec<i32>,
    kd: Vec<i32>,
    sd: Vec<i32>,
    px: Vec<i64>,
    qt: Vec<i64>,
    px2: Vec<i64>,
    qt2: Vec<i64>,
    /// Empty when the file has no order-by-order rows.
    oid: Vec<i64>,
    act: Vec<i32>,
    len: usize,
}

impl Columns {
    /// Exchange timestamp of row `i`.
    #[inline(always)]
    fn ts(&self, i: usize) -> u64 {
        self.te[i] as u64
    }

    /// Row `i` (`i < len`).
    #[inline]
    fn row(&self, i: usize) -> Row {
        let (order_id, action) = (
            self.oid.get(i).map_or(0, |&v| v as u64),
            self.act.get(i).map_or(0, |&v| v as u8),
        );
        let kind = self.kd[i] as u8;
        let (price2, qty2) = if kind == RowKind::Quote as u8 {
            (self.px2[i], self.qt2[i])
        } else {
            (0, 0)
        };
        Row {
            ts_exchange: self.ts(i),
            ts_recv: self.tr[i] as u64,
            seq: self.sq[i] as u64,
            flags: self.fl[i] as u8,
            kind,
            side: self.sd[i] as u8,
            price: self.px[i],
            qty: self.qt[i],
            price2,
            qty2,
            order_id,
            action,
        }
    }
}

/// Where a run of one series' rows stops: before the first row that comes after `bound`
/// (exchange time, then series), once `out` holds `limit` events; rows outside
/// `[from, to]` are passed over.
#[derive(Clone, Copy)]
struct Run {
    /// The cursor the rows come from (ties with the heap's top are broken on it).
    cursor: usize,
    /// Their series: the events' instrument id.
    series: usize,
    bound: (u64, usize),
    from: u64,
    to: u64,
    limit: usize,
}

/// A decoded batch as slices of one length, so that reading row `i < len` out of them
/// needs one bounds check, not one per column.
struct View<'a> {
    te: &'a [i64],
    tr: &'a [i64],
    sq: &'a [i64],
    fl: &'a [i32],
    kd: &'a [i32],
    sd: &'a [i32],
    px: &'a [i64],
    qt: &'a [i64],
    px2: &'a [i64],
    qt2: &'a [i64],
    oid: &'a [i64],
    act: &'a [i32],
}

impl Columns {
    fn view(&self) -> View<'_> {
        let n = self.len;
        View {
            te: &self.te[..n],
            tr: &self.tr[..n],
            sq: &self.sq[..n],
            fl: &self.fl[..n],
            kd: &self.kd[..n],
            sd: &self.sd[..n],
            px: &self.px[..n],
            qt: &self.qt[..n],
            px2: &self.px2[..n],
            qt2: &self.qt2[..n],
            oid: &self.oid[..self.oid.len().min(n)],
            act: &self.act[..self.act.len().min(n)],
        }
    }
}

impl View<'_> {
    /// The market event of row `i`, read straight from the columns; the same as
    /// `row(i).to_event(id)`, without the row.
    #[inline(always)]
    fn event(&self, i: usize, id: InstrumentId) -> Option<hft_core::MarketEvent> {
        use hft_core::{MarketEventKind as K, Price, Qty, Side};
        let side = if self.sd[i] == 1 {
            Side::Sell
        } else {
            Side::Buy
        };
        let (price, qty) = (Price(self.px[i]), Qty(self.qt[i]));
        let kind = match RowKind::from_u8(self.kd[i] as u8)? {
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
                ask: Price(self.px2[i]),
                ask_qty: Qty(self.qt2[i]),
            },
            RowKind::Order => K::Order {
                action: hft_core::MboAction::from_databento(*self.act.get(i)? as u8)?,
                side: crate::schema::side_from_byte(self.sd[i] as u8),
                order_id: *self.oid.get(i)? as u64,
                price,
                qty,
            },
        };
        Some(hft_core::MarketEvent {
            ts_exchange: self.te[i] as u64,
            ts_recv: self.tr[i] as u64,
            seq: self.sq[i] as u64,
            instrument: id,
            flags: self.fl[i] as u8,
            kind,
        })
    }

    /// Appends the events of rows `pos..` that `run` lets through; returns the first row
    /// not taken.
    #[inline(always)]
    fn run(
        &self,
        mut pos: usize,
        run: &Run,
        mbo: &mut Option<MboToL2>,
        out: &mut Vec<hft_core::MarketEvent>,
    ) -> usize {
        let Run {
            cursor,
            series,
            bound,
            from,
            to,
            limit,
        } = *run;
        let id = InstrumentId(series as u32);
        if self.oid.is_empty() && from == 0 && to == u64::MAX {
            // No order rows and no time filter: a row is an event, so the run's end is
            // found on the timestamps alone and the rows up to it go out unchecked.
            let room = limit.saturating_sub(out.len());
            let last = self.te.len().min(pos.saturating_add(room));
            let end = self.te[pos..last]
                .iter()
                .position(|&ts| (ts as u64, cursor) > bound)
                .map_or(last, |k| pos + k);
            out.extend((pos..end).filter_map(|i| self.event(i, id)));
            return end;
        }
        while pos < self.te.len() && out.len() < limit {
            let ts = self.te[pos] as u64;
            if (ts, cursor) > bound {
                break;
            }
            if ts >= from && ts <= to {
                if let Some(e) = self.event(pos, id) {
                    emit(mbo, e, out);
                }
            }
            pos += 1;
        }
        pos
    }
}

/// The first and last exchange times of a row group, from its statistics.
fn ts_bounds(rg: &parquet::file::metadata::RowGroupMetaData) -> (Option<u64>, Option<u64>) {
    let bound = |b: Option<&[u8]>| b.and_then(|b| b.try_into().ok()).map(u64::from_le_bytes);
    rg.column(0).statistics().map_or((None, None), |s| {
        (bound(s.min_bytes_opt()), bound(s.max_bytes_opt()))
    })
}

/// Runs a step of Parquet decoding, turning a panic inside the parquet crate into an
/// error naming the file: it asserts on some corrupt pages (a varint longer than ten
/// bytes, found by fuzzing) instead of returning an error, and bad input must never
/// stop a replay or an import with a panic.
fn guarded<T>(path: &Path, f: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|p| {
        let why = p
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(StoreError::Input {
            path: path.to_path_buf(),
            at: "Parquet data".into(),
            reason: format!("corrupt: the Parquet decoder failed ({why}); import the file again"),
        })
    })
}

/// A column reader of either physical type the schema uses, or the one value a column
/// holds throughout a row group (its statistics' minimum and maximum are equal): the
/// second price and size of row groups without quotes, say, are filled in, not decoded.
enum ColReader {
    I64(ColumnReaderImpl<Int64Type>),
    I32(ColumnReaderImpl<Int32Type>),
    Const64(i64),
    Const32(i32),
}

/// The single value of a column chunk whose statistics bound it to one, if they do.
fn constant_of(chunk: &parquet::file::metadata::ColumnChunkMetaData) -> Option<Statistics> {
    let s = chunk.statistics()?;
    if s.null_count_opt().is_some_and(|n| n > 0) {
        return None;
    }
    match (s.min_bytes_opt(), s.max_bytes_opt()) {
        (Some(min), Some(max)) if min == max => Some(s.clone()),
        _ => None,
    }
}

/// The rows of a data file, decoded a batch at a time from the row groups that can hold
/// the time range asked for.
struct FileRows {
    path: PathBuf,
    file: SerializedFileReader<File>,
    /// The same file, for the page header checks ([`crate::pages`]), and a buffer they
    /// reuse.
    raw: File,
    scratch: Vec<u8>,
    /// Row groups still to read, with their row counts.
    groups: std::collections::VecDeque<(usize, usize)>,
    /// Columns to read: all, or the L2 ones when the file has no order rows.
    columns: usize,
    /// Readers of the current row group's columns, and the rows it has left.
    group: Vec<ColReader>,
    left: usize,
}

impl FileRows {
    /// Opens a data file for exchange times in `[from, to]`; row groups outside the range
    /// (by their statistics) are skipped unread.
    fn open(path: &Path, from: u64, to: u64) -> Result<(FileMeta, Self), StoreError> {
        guarded(path, || Self::open_unguarded(path, from, to))
    }

    fn open_unguarded(path: &Path, from: u64, to: u64) -> Result<(FileMeta, Self), StoreError> {
        let raw = File::open(path).map_err(|e| StoreError::io(path, e))?;
        let len = raw.metadata().map_err(|e| StoreError::io(path, e))?.len();
        pages::check_footer(&raw, len).map_err(|reason| StoreError::Input {
            path: path.to_path_buf(),
            at: "footer".into(),
            reason: format!("{reason}; import the file again"),
        })?;
        let file = raw.try_clone().map_err(|e| StoreError::io(path, e))?;
        let file = SerializedFileReader::new(file).map_err(|e| StoreError::parquet(path, e))?;
        let bad = |at: String, reason: String| StoreError::Input {
            path: path.to_path_buf(),
            at,
            reason,
        };
        let md = file.metadata().file_metadata();
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
            return Err(bad(
                "metadata".into(),
                format!("schema version {version}, this build reads {SCHEMA_VERSION}"),
            ));
        }
        let schema = md.schema_descr();
        if schema.num_columns() != COLUMNS.len() {
            return Err(bad(
                "schema".into(),
                format!(
                    "{} columns, expected {}",
                    schema.num_columns(),
                    COLUMNS.len()
                ),
            ));
        }
        for (i, (name, wide)) in COLUMNS.iter().enumerate() {
            let c = schema.column(i);
            let ty = if *wide {
                PhysicalType::INT64
            } else {
                PhysicalType::INT32
            };
            if c.name() != *name || c.physical_type() != ty || c.max_def_level() != 0 {
                return Err(bad(
                    format!("column {i}"),
                    format!(
                        "{} {:?} (optional: {}), expected required {name} {ty:?}",
                        c.name(),
                        c.physical_type(),
                        c.max_def_level() != 0
                    ),
                ));
            }
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
        let row_groups = file.metadata().row_groups();
        // A footer may not claim more rows than a file of its size can hold: decoding
        // them all could take minutes.
        let claimed = row_groups.iter().try_fold(0u64, |sum, rg| {
            sum.checked_add(u64::try_from(rg.num_rows()).ok()?)
        });
        if claimed.is_none_or(|rows| rows > len.saturating_mul(pages::MAX_ROWS_PER_BYTE)) {
            return Err(bad(
                "metadata".into(),
                format!(
                    "its row groups claim more rows than a file of {len} bytes holds ({} per byte at most); the file is corrupt, import it again",
                    pages::MAX_ROWS_PER_BYTE
                ),
            ));
        }
        // Every column chunk must lie inside the file: the parquet crate allocates what
        // a chunk's metadata claims before reading it, so a corrupt footer could ask
        // for gigabytes.
        for (g, rg) in row_groups.iter().enumerate() {
            for c in rg.columns() {
                let (start, size) = c.byte_range();
                if start.checked_add(size).is_none_or(|end| end > len) {
                    return Err(bad(
                        format!("row group {g}, column {}", c.column_path()),
                        format!(
                            "its data ({size} bytes at {start}) lies past the end of the file ({len} bytes); the file is corrupt or cut short, import it again"
                        ),
                    ));
                }
            }
        }
        let groups = row_groups
            .iter()
            .enumerate()
            .filter(|(_, rg)| match ts_bounds(rg) {
                (Some(min), Some(max)) => max >= from && min <= to,
                _ => true,
            })
            .map(|(i, rg)| (i, rg.num_rows().max(0) as usize))
            .collect();
        // Files without order-by-order rows (the `kind` column never reaches `Order`) skip
        // the order columns; the rows read back with zeros there, as written.
        let has_orders = row_groups.iter().any(|rg| {
            rg.column(KIND_COLUMN)
                .statistics()
                .and_then(|s| s.max_bytes_opt().and_then(|b| b.first().copied()))
                .is_none_or(|max| max >= RowKind::Order as u8)
        });
        let rows = Self {
            path: path.to_path_buf(),
            file,
            raw,
            scratch: Vec::new(),
            groups,
            columns: if has_orders {
                COLUMNS.len()
            } else {
                L2_COLUMNS
            },
            group: Vec::new(),
            left: 0,
        };
        Ok((meta, rows))
    }

    /// The file's last exchange time (from its row groups' statistics; the largest
    /// time when they have none, so that the file is never taken for ending early).
    fn last_ts(&self) -> u64 {
        self.file
            .metadata()
            .row_groups()
            .iter()
            .map(|rg| ts_bounds(rg).1.unwrap_or(u64::MAX))
            .max()
            .unwrap_or(0)
    }

    /// The file's first exchange time (0 when a row group has no statistics, so that
    /// the file is never taken for starting late).
    fn first_ts(&self) -> u64 {
        self.file
            .metadata()
            .row_groups()
            .iter()
            .map(|rg| ts_bounds(rg).0.unwrap_or(0))
            .min()
            .unwrap_or(0)
    }

    /// Whether a row group that ends before `from` holds a clear (its `kind` statistics
    /// reach `Clear`).
    fn clears_before(&self, from: u64) -> bool {
        self.file.metadata().row_groups().iter().any(|rg| {
            let ends_before = ts_bounds(rg).1.is_some_and(|max| max < from);
            let clears = rg
                .column(KIND_COLUMN)
                .statistics()
                .and_then(|s| s.min_bytes_opt().and_then(|b| b.first().copied()))
                .is_some_and(|min| min == RowKind::Clear as u8);
            ends_before && clears
        })
    }

    /// Decodes the next batch into `cols`; false at the end of the file.
    fn next_batch(&mut self, cols: &mut Columns) -> Result<bool, StoreError> {
        let path = self.path.clone();
        let r = guarded(&path, || self.next_batch_unguarded(cols));
        if r.is_err() {
            // A failed decode leaves the column readers mid-page: nothing more is read.
            self.groups.clear();
            self.left = 0;
            self.group.clear();
        }
        r
    }

    fn next_batch_unguarded(&mut self, cols: &mut Columns) -> Result<bool, StoreError> {
        while self.left == 0 {
            let Some((g, rows)) = self.groups.pop_front() else {
                return Ok(false);
            };
            let rg = self
                .file
                .get_row_group(g)
                .map_err(|e| StoreError::parquet(&self.path, e))?;
            self.group.clear();
            for c in 0..self.columns {
                // The exchange times are always decoded: their pages prove the row
                // count, which a corrupt footer could inflate without limit.
                let stats = (c != 0)
                    .then(|| constant_of(rg.metadata().column(c)))
                    .flatten();
                let reader = match stats {
                    Some(Statistics::Int64(v)) => v.min_opt().map(|&v| ColReader::Const64(v)),
                    Some(Statistics::Int32(v)) => v.min_opt().map(|&v| ColReader::Const32(v)),
                    _ => None,
                };
                let reader = match reader {
                    Some(r) => r,
                    None => {
                        // The parquet crate trusts page headers; they are checked first.
                        let chunk = rg.metadata().column(c);
                        let (start, size) = chunk.byte_range();
                        let rows = rg.metadata().num_rows();
                        pages::check_chunk(&self.raw, start, size, rows, &mut self.scratch)
                            .map_err(|reason| StoreError::Input {
                                path: self.path.clone(),
                                at: format!("row group {g}, column {}", chunk.column_path()),
                                reason,
                            })?;
                        match rg
                            .get_column_reader(c)
                            .map_err(|e| StoreError::parquet(&self.path, e))?
                        {
                            ColumnReader::Int64ColumnReader(r) => ColReader::I64(r),
                            ColumnReader::Int32ColumnReader(r) => ColReader::I32(r),
                            _ => {
                                return Err(StoreError::Format(format!(
                                    "{}: column {c} has an unexpected type",
                                    self.path.display()
                                )));
                            }
                        }
                    }
                };
                self.group.push(reader);
            }
            self.left = rows;
        }
        let n = self.left.min(BATCH_ROWS);
        // Order columns not read stay empty, and their rows read back as zeros.
        cols.oid.clear();
        cols.act.clear();
        let Columns {
            te,
            tr,
            sq,
            fl,
            kd,
            sd,
            px,
            qt,
            px2,
            qt2,
            oid,
            act,
            ..
        } = cols;
        let (mut wide, mut narrow) = (
            [te, tr, sq, px, qt, px2, qt2, oid].into_iter(),
            [fl, kd, sd, act].into_iter(),
        );
        for (c, reader) in self.group.iter_mut().enumerate() {
            let read = match reader {
                ColReader::I64(r) => wide.next().map(|v| {
                    v.clear();
                    r.read_records(n, None, None, v)
                }),
                ColReader::I32(r) => narrow.next().map(|v| {
                    v.clear();
                    r.read_records(n, None, None, v)
                }),
                ColReader::Const64(c) => wide.next().map(|v| {
                    v.clear();
                    v.resize(n, *c);
                    Ok((n, n, n))
                }),
                ColReader::Const32(c) => narrow.next().map(|v| {
                    v.clear();
                    v.resize(n, *c);
                    Ok((n, n, n))
                }),
            };
            let got = match read {
                Some(Ok((rows, _, _))) => rows,
                Some(Err(e)) => return Err(StoreError::parquet(&self.path, e)),
                None => 0,
            };
            if got != n {
                return Err(StoreError::Format(format!(
                    "{}: column {} gave {got} of {n} rows",
                    self.path.display(),
                    COLUMNS[c].0
                )));
            }
        }
        cols.len = n;
        self.left -= n;
        Ok(true)
    }
}

/// The highest sequence number stored for `venue`/`symbol` under `root` (from the files'
/// statistics, without reading their rows), or `None` when the store has no rows of it.
pub fn last_seq(root: &Path, venue: &str, symbol: &str) -> Result<Option<u64>, StoreError> {
    let dir = root
        .join(format!("venue={venue}"))
        .join(format!("symbol={symbol}"));
    if !dir.is_dir() {
        return Ok(None);
    }
    let mut last = None;
    for path in data_files(&dir)? {
        let (_, rows) = FileRows::open(&path, 0, u64::MAX)?;
        for (g, rg) in rows.file.metadata().row_groups().iter().enumerate() {
            match rg.column(SEQ_COLUMN).statistics() {
                Some(Statistics::Int64(v)) => {
                    if let Some(&max) = v.max_opt() {
                        last = last.max(Some(max as u64));
                    }
                }
                _ if rg.num_rows() == 0 => {}
                _ => {
                    return Err(StoreError::Input {
                        path: path.clone(),
                        at: format!("row group {g}, seq statistics"),
                        reason: "missing; import the file again to rewrite it".into(),
                    });
                }
            }
        }
    }
    Ok(last)
}

/// Streams the rows of one file to `f`, with its metadata first.
pub fn read_file(path: &Path, mut f: impl FnMut(&FileMeta, &Row)) -> Result<FileMeta, StoreError> {
    let (meta, mut rows) = FileRows::open(path, 0, u64::MAX)?;
    let mut cols = Columns::default();
    while rows.next_batch(&mut cols)? {
        for i in 0..cols.len {
            f(&meta, &cols.row(i));
        }
    }
    Ok(meta)
}

/// The book of a series as its rows before a replay's start leave it. A replay from the
/// middle of the data starts with this book as a snapshot, so that consumers begin with
/// the book as it stood, not with the partial book the deltas after the start would
/// build.
struct WarmUp {
    l2: L2Book,
    /// For order-by-order series: the L3 book, with every order's queue place.
    l3: Option<MboToL2>,
    /// The last row taken: the snapshot carries its sequence number.
    last: Option<Row>,
    /// Whether any row changed the L2 book (series of trades or quotes alone have no
    /// book to warm up).
    levels: bool,
}

impl WarmUp {
    fn new() -> Self {
        Self {
            l2: L2Book::with_capacity(InstrumentId(0), 1024),
            l3: None,
            last: None,
            levels: false,
        }
    }

    fn absorb(&mut self, row: &Row) {
        let Some(ev) = row.to_event(InstrumentId(0)) else {
            return;
        };
        match RowKind::from_u8(row.kind) {
            Some(RowKind::Order) => self
                .l3
                .get_or_insert_with(|| MboToL2::new(InstrumentId(0)))
                .push(&ev, &mut |_| {}),
            Some(RowKind::Clear | RowKind::Level) => {
                // A level the book cannot hold is what the replay itself would refuse.
                let _ = self.l2.apply(&ev);
                self.levels = true;
            }
            _ => {}
        }
        self.last = Some(*row);
    }

    /// Queues the snapshot rows of the book at time `at`: the resting orders as adds for
    /// an order-by-order series (a clear when none rest), else a clear and the levels.
    /// Nothing when no row before the start built a book.
    fn snapshot(&self, at: u64, out: &mut std::collections::VecDeque<Row>) {
        use hft_core::{FLAG_LAST, FLAG_SNAPSHOT};
        let Some(last) = self.last else { return };
        let base = Row {
            ts_exchange: at,
            ts_recv: last.ts_recv.max(at),
            seq: last.seq,
            flags: FLAG_SNAPSHOT,
            side: SIDE_NONE,
            ..Row::default()
        };
        let start = out.len();
        if let Some(l3) = &self.l3 {
            for (id, o) in l3.book().orders() {
                out.push_back(Row {
                    kind: RowKind::Order as u8,
                    side: o.side as u8,
                    price: o.price.raw(),
                    qty: o.qty.raw(),
                    order_id: id,
                    action: hft_core::MboAction::Add.as_databento(),
                    ..base
                });
            }
            if out.len() == start {
                out.push_back(Row {
                    kind: RowKind::Order as u8,
                    action: hft_core::MboAction::Clear.as_databento(),
                    ..base
                });
            }
        } else if self.levels {
            out.push_back(Row {
                kind: RowKind::Clear as u8,
                ..base
            });
            for side in [hft_core::Side::Buy, hft_core::Side::Sell] {
                for (price, qty) in self.l2.levels(side) {
                    out.push_back(Row {
                        kind: RowKind::Level as u8,
                        side: side as u8,
                        price: price.raw(),
                        qty: qty.raw(),
                        ..base
                    });
                }
            }
        }
        if out.len() > start {
            if let Some(r) = out.back_mut() {
                r.flags |= FLAG_LAST;
            }
        }
    }
}

/// The rows of one series in time order, a batch in memory at a time.
struct SeriesCursor {
    files: std::collections::VecDeque<PathBuf>,
    reader: Option<FileRows>,
    batch: Columns,
    pos: usize,
    from: u64,
    to: u64,
    /// Until the first row at or after `from`: the book the rows before it build.
    warm: Option<WarmUp>,
    /// Rows to hand out before the batch's (the warm-up's snapshot).
    queued: std::collections::VecDeque<Row>,
}

impl SeriesCursor {
    fn next_row(&mut self) -> Result<Option<Row>, StoreError> {
        if let Some(r) = self.queued.pop_front() {
            return Ok(Some(r));
        }
        loop {
            while self.pos < self.batch.len {
                let i = self.pos;
                self.pos += 1;
                let ts = self.batch.ts(i);
                if ts >= self.from && ts <= self.to {
                    let row = self.batch.row(i);
                    if let Some(warm) = self.warm.take() {
                        warm.snapshot(self.from, &mut self.queued);
                        self.queued.push_back(row);
                        return Ok(self.queued.pop_front());
                    }
                    return Ok(Some(row));
                }
                if ts < self.from {
                    if let Some(warm) = self.warm.as_mut() {
                        warm.absorb(&self.batch.row(i));
                    }
                }
            }
            self.batch.len = 0;
            self.pos = 0;
            if let Some(reader) = self.reader.as_mut() {
                if reader.next_batch(&mut self.batch)? {
                    continue;
                }
                self.reader = None;
            }
            let Some(next) = self.files.pop_front() else {
                return Ok(None);
            };
            // While warming up, the row groups before the start are read too.
            let from = if self.warm.is_some() { 0 } else { self.from };
            self.reader = Some(FileRows::open(&next, from, self.to)?.1);
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
/// cursor per chain of files), restricted to a time range; memory is one batch per
/// cursor. A series' files that do not overlap in time form one chain, read one after
/// the other; files that do (a day's trades imported apart from its book) are chains
/// of their own, merged like series.
///
/// The series that supplied the last row stays out of the heap while its next row is
/// still the earliest, so runs from one series (and a lone series) cost no heap work.
pub struct MergedReader {
    series: Vec<FileMeta>,
    cursors: Vec<SeriesCursor>,
    /// The series of each cursor.
    series_of: Vec<usize>,
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
        // Per series: its files, each with its first and last exchange times.
        type Files = Vec<(PathBuf, u64, u64)>;
        let mut by_series: BTreeMap<(String, String), (FileMeta, Files)> = BTreeMap::new();
        for path in data_files(root)? {
            let (meta, rows) = FileRows::open(&path, u64::MAX, 0)?;
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
            // A replay from the middle warms up from the last file before the start
            // with a clear (a snapshot): the files before it that end before the start
            // cannot change the book (one holding later rows, trades imported apart
            // from the book, say, stays).
            if from > 0 && rows.clears_before(from) {
                entry.1.retain(|(_, _, last)| *last >= from);
            }
            entry.1.push((path, rows.first_ts(), rows.last_ts()));
        }
        let mut me = Self {
            series: Vec::new(),
            cursors: Vec::new(),
            series_of: Vec::new(),
            heap: std::collections::BinaryHeap::new(),
            heads: Vec::new(),
            current: None,
            mbo: Vec::new(),
            rows_read: 0,
        };
        for (_, (meta, files)) in by_series {
            // Each file goes to the first chain it follows in time, in file order.
            let mut chains: Vec<(u64, std::collections::VecDeque<PathBuf>)> = Vec::new();
            for (path, first, last) in files {
                match chains.iter_mut().find(|(end, _)| *end <= first) {
                    Some((end, chain)) => {
                        *end = last;
                        chain.push_back(path);
                    }
                    None => chains.push((last, [path].into())),
                }
            }
            for (_, files) in chains {
                me.series_of.push(me.series.len());
                me.cursors.push(SeriesCursor {
                    files,
                    reader: None,
                    batch: Columns::default(),
                    pos: 0,
                    from,
                    to,
                    warm: (from > 0).then(WarmUp::new),
                    queued: std::collections::VecDeque::new(),
                });
                me.heads.push(None);
            }
            me.series.push(meta);
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
        Ok(self.next_cursor_row()?.map(|(c, r)| (self.series_of[c], r)))
    }

    /// The next row in time order, with the cursor it came from.
    #[inline]
    fn next_cursor_row(&mut self) -> Result<Option<(usize, Row)>, StoreError> {
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
        out.reserve(max + 2);
        while out.len() - start < max {
            let Some((i, row)) = self.next_cursor_row()? else {
                break;
            };
            self.rows_read += 1;
            let series = self.series_of[i];
            let id = InstrumentId(series as u32);
            if let Some(e) = row.to_event(id) {
                emit(&mut self.mbo[series], e, out);
            }
            if self.current != Some(i) {
                continue;
            }
            // Rows of cursor `i` that still come before every other cursor's head: its
            // head, then straight from the decoded columns.
            if !self.cursors[i].queued.is_empty() {
                // Queued rows (a warm-up snapshot) come before the batch's.
                continue;
            }
            let bound = self.heap.peek().map_or((u64::MAX, usize::MAX), |r| r.0);
            let Some(head) = self.heads[i] else { continue };
            if (head.ts_exchange, i) > bound {
                continue;
            }
            if let Some(e) = head.to_event(id) {
                emit(&mut self.mbo[series], e, out);
            }
            self.rows_read += 1;
            let c = &mut self.cursors[i];
            let pos = c.pos;
            let run = Run {
                cursor: i,
                series,
                bound,
                from: c.from,
                to: c.to,
                limit: start + max,
            };
            c.pos = c.batch.view().run(pos, &run, &mut self.mbo[series], out);
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
