//! Writes rows into Parquet files partitioned as
//! `<root>/venue=<venue>/symbol=<symbol>/date=<YYYY-MM-DD>/part-<n>.parquet`, zstd
//! compressed, one row group per `row_group_rows` rows. Each open partition buffers at
//! most one row group, so memory stays bounded whatever the input size.

use crate::StoreError;
use crate::schema::{Row, RowKind, SCHEMA_VERSION, arrow_schema, utc_date};
use arrow_array::{ArrayRef, Int64Array, RecordBatch, UInt8Array, UInt64Array};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Rows per row group by default: large enough for good compression, small enough that
/// time-range reads skip most of a file.
pub const DEFAULT_ROW_GROUP_ROWS: usize = 65_536;

/// zstd level of the store's files. A store is written once and replayed many times:
/// level 9 makes import about a sixth slower than the default 3 and replay about a
/// twentieth faster (longer matches, fewer sequences to decode).
const STORE_ZSTD_LEVEL: i32 = 9;

/// Identity and units of the rows of one instrument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeriesMeta {
    /// Venue name, e.g. `binance`.
    pub venue: String,
    /// Venue symbol.
    pub symbol: String,
    /// Decimals of `price`.
    pub price_scale: u8,
    /// Decimals of `qty`.
    pub qty_scale: u8,
}

#[derive(Default)]
struct Columns {
    ts_exchange: Vec<u64>,
    ts_recv: Vec<u64>,
    seq: Vec<u64>,
    flags: Vec<u8>,
    kind: Vec<u8>,
    side: Vec<u8>,
    price: Vec<i64>,
    qty: Vec<i64>,
    price2: Vec<i64>,
    qty2: Vec<i64>,
    order_id: Vec<u64>,
    action: Vec<u8>,
}

impl Columns {
    fn push(&mut self, r: &Row) {
        self.ts_exchange.push(r.ts_exchange);
        self.ts_recv.push(r.ts_recv);
        self.seq.push(r.seq);
        self.flags.push(r.flags);
        self.kind.push(r.kind);
        self.side.push(r.side);
        self.price.push(r.price);
        self.qty.push(r.qty);
        // Only quotes use the second price and size; other rows repeat the last quote's
        // so the delta encoding sees zeros instead of jumps to 0 and back (the reader
        // restores the zeros).
        if r.kind == RowKind::Quote as u8 {
            self.price2.push(r.price2);
            self.qty2.push(r.qty2);
        } else {
            self.price2.push(self.price2.last().copied().unwrap_or(0));
            self.qty2.push(self.qty2.last().copied().unwrap_or(0));
        }
        self.order_id.push(r.order_id);
        self.action.push(r.action);
    }

    fn len(&self) -> usize {
        self.ts_exchange.len()
    }

    fn take_batch(&mut self) -> Result<RecordBatch, StoreError> {
        let t = std::mem::take(self);
        let cols: Vec<ArrayRef> = vec![
            Arc::new(UInt64Array::from(t.ts_exchange)),
            Arc::new(UInt64Array::from(t.ts_recv)),
            Arc::new(UInt64Array::from(t.seq)),
            Arc::new(UInt8Array::from(t.flags)),
            Arc::new(UInt8Array::from(t.kind)),
            Arc::new(UInt8Array::from(t.side)),
            Arc::new(Int64Array::from(t.price)),
            Arc::new(Int64Array::from(t.qty)),
            Arc::new(Int64Array::from(t.price2)),
            Arc::new(Int64Array::from(t.qty2)),
            Arc::new(UInt64Array::from(t.order_id)),
            Arc::new(UInt8Array::from(t.action)),
        ];
        RecordBatch::try_new(arrow_schema(), cols).map_err(|e| StoreError::Format(e.to_string()))
    }
}

struct Partition {
    path: PathBuf,
    writer: ArrowWriter<File>,
    buf: Columns,
}

impl Partition {
    /// Writes what is buffered and the file footer.
    fn close(mut self) -> Result<(), StoreError> {
        if self.buf.len() > 0 {
            let batch = self.buf.take_batch()?;
            self.writer
                .write(&batch)
                .map_err(|e| StoreError::parquet(&self.path, e))?;
        }
        self.writer
            .close()
            .map_err(|e| StoreError::parquet(&self.path, e))?;
        Ok(())
    }
}

/// Counts of a write session.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Rows written.
    pub rows: u64,
    /// Files written.
    pub files: Vec<PathBuf>,
}

/// Writer of one store.
pub struct StoreWriter {
    root: PathBuf,
    row_group_rows: usize,
    /// Open partitions with their (venue, symbol, UTC day number).
    open: Vec<((String, String, u64), Partition)>,
    /// Index in `open` of the partition the last row went to.
    last: usize,
    stats: WriteStats,
}

impl StoreWriter {
    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A writer into `root` (created if missing).
    pub fn create(root: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(root).map_err(|e| StoreError::io(root, e))?;
        Ok(Self {
            root: root.to_path_buf(),
            row_group_rows: DEFAULT_ROW_GROUP_ROWS,
            open: Vec::new(),
            last: 0,
            stats: WriteStats::default(),
        })
    }

    /// Rows per row group (and the most rows buffered per open partition).
    pub fn with_row_group_rows(mut self, rows: usize) -> Self {
        self.row_group_rows = rows.max(1);
        self
    }

    /// Appends a row of `series`; its partition is chosen by the row's exchange date.
    pub fn append(&mut self, series: &SeriesMeta, row: &Row) -> Result<(), StoreError> {
        let day = row.ts_exchange / 86_400_000_000_000;
        let is =
            |k: &(String, String, u64)| k.2 == day && k.1 == series.symbol && k.0 == series.venue;
        // Rows come in runs of one series and day: the last partition is checked first,
        // and nothing is allocated unless a partition is opened.
        let i = match self.open.get(self.last) {
            Some((k, _)) if is(k) => self.last,
            _ => match self.open.iter().position(|(k, _)| is(k)) {
                Some(i) => i,
                None => {
                    // A series moves on to a new day: its earlier days are complete, so
                    // close them, which keeps memory to one partition per series.
                    let mut k = 0;
                    while k < self.open.len() {
                        let key = &self.open[k].0;
                        if key.0 == series.venue && key.1 == series.symbol && key.2 < day {
                            let (_, p) = self.open.swap_remove(k);
                            p.close()?;
                        } else {
                            k += 1;
                        }
                    }
                    let p = self.open_partition(series, &utc_date(row.ts_exchange))?;
                    self.open
                        .push(((series.venue.clone(), series.symbol.clone(), day), p));
                    self.open.len() - 1
                }
            },
        };
        self.last = i;
        let rows = self.row_group_rows;
        let p = &mut self.open[i].1;
        p.buf.push(row);
        self.stats.rows += 1;
        if p.buf.len() >= rows {
            let batch = p.buf.take_batch()?;
            p.writer
                .write(&batch)
                .map_err(|e| StoreError::parquet(&p.path, e))?;
            p.writer
                .flush()
                .map_err(|e| StoreError::parquet(&p.path, e))?;
        }
        Ok(())
    }

    fn open_partition(&mut self, s: &SeriesMeta, date: &str) -> Result<Partition, StoreError> {
        let dir = self
            .root
            .join(format!("venue={}", s.venue))
            .join(format!("symbol={}", s.symbol))
            .join(format!("date={date}"));
        std::fs::create_dir_all(&dir).map_err(|e| StoreError::io(&dir, e))?;
        let mut n = 0;
        let path = loop {
            let p = dir.join(format!("part-{n:04}.parquet"));
            if !p.exists() {
                break p;
            }
            n += 1;
        };
        let file = File::create(&path).map_err(|e| StoreError::io(&path, e))?;
        let kv = |k: &str, v: String| KeyValue::new(k.to_owned(), v);
        // Timestamps, sequence numbers, prices and quantities move in small steps:
        // delta encoding makes them a few bits each, so there is little left for zstd to
        // inflate on replay. The byte columns (flags, kind, side, action) take few values
        // and stay dictionary/RLE encoded.
        let mut props = WriterProperties::builder();
        for c in [
            "ts_exchange",
            "ts_recv",
            "seq",
            "price",
            "qty",
            "price2",
            "qty2",
            "order_id",
        ] {
            props = props
                .set_column_dictionary_enabled(ColumnPath::from(c), false)
                .set_column_encoding(ColumnPath::from(c), Encoding::DELTA_BINARY_PACKED);
        }
        // Price and size deltas of book levels are close to random: zstd takes a fifth
        // off them but inflating them was two thirds of its replay work, so they are
        // stored bit-packed only.
        for c in ["price", "qty"] {
            props = props.set_column_compression(ColumnPath::from(c), Compression::UNCOMPRESSED);
        }
        let props = props
            .set_compression(Compression::ZSTD(
                ZstdLevel::try_new(STORE_ZSTD_LEVEL).map_err(|e| StoreError::parquet(&path, e))?,
            ))
            .set_max_row_group_row_count(Some(self.row_group_rows))
            .set_data_page_size_limit(crate::pages::PAGE_BYTES)
            .set_dictionary_page_size_limit(crate::pages::PAGE_BYTES)
            .set_key_value_metadata(Some(vec![
                kv("hft.schema_version", SCHEMA_VERSION.to_string()),
                kv("hft.venue", s.venue.clone()),
                kv("hft.symbol", s.symbol.clone()),
                kv("hft.price_scale", s.price_scale.to_string()),
                kv("hft.qty_scale", s.qty_scale.to_string()),
            ]))
            .build();
        let writer = ArrowWriter::try_new(file, arrow_schema(), Some(props))
            .map_err(|e| StoreError::parquet(&path, e))?;
        self.stats.files.push(path.clone());
        Ok(Partition {
            path,
            writer,
            buf: Columns::default(),
        })
    }

    /// Drops everything this writer wrote: an import that fails part-way must not
    /// leave half-written files that make the whole store unreadable.
    pub fn abort(mut self) {
        self.open.clear();
        for f in &self.stats.files {
            let _ = std::fs::remove_file(f);
        }
    }

    /// Flushes and closes every partition.
    pub fn finish(mut self) -> Result<WriteStats, StoreError> {
        for (_, p) in self.open.drain(..) {
            p.close()?;
        }
        self.stats.files.sort();
        Ok(self.stats)
    }
}
