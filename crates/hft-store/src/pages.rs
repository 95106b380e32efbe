//! Checks of a column chunk's page headers before the parquet crate reads its pages.
//!
//! The parquet crate takes a page header at its word: it allocates the uncompressed size
//! a header claims before inflating the page, sizes a dictionary by the value count its
//! header claims, and a delta-encoded page of a few bytes may claim billions of values. A
//! corrupt store file could so make a replay allocate gigabytes or decode for minutes
//! (fuzzing found both). The reader therefore decodes each page header of a column chunk
//! here first — the Thrift compact protocol, only the fields that size a page — and
//! refuses the chunk unless its pages lie inside it, none inflates past
//! [`MAX_PAGE_BYTES`], its dictionary holds no more entries than its bytes can, and the
//! data pages' values add up to the row group's rows.
//! The headers are a few dozen bytes per page, read once per row group and column.
//!
//! The file's footer is walked the same way before the parquet crate decodes it: its
//! Thrift skipper takes a list of booleans to hold no bytes, so a corrupt footer
//! claiming billions of them kept it busy for minutes (fuzzing found this too).
//! Neither a footer nor a page header holds a list of booleans or a map, so one that
//! does is refused.

use std::fs::File;
use std::os::unix::fs::FileExt;

/// The page size hft's writer aims at (parquet's default limit, set explicitly so the
/// reader's bound below stays tied to it).
pub(crate) const PAGE_BYTES: usize = 1 << 20;

/// The largest uncompressed page the reader accepts. A writer overshoots its page limit
/// by at most one write batch (1,024 values of 8 bytes), so four times the limit is
/// never reached by a file hft wrote.
pub(crate) const MAX_PAGE_BYTES: i64 = 4 * PAGE_BYTES as i64;

/// The most rows a store file may hold per byte of its size. A file whose every column
/// is constant still stores its price and size columns delta-encoded without zstd, at
/// least 5 bytes per 128 rows each: under 13 rows per byte. A footer claiming more rows
/// than this is corrupt, and decoding them could take minutes.
pub(crate) const MAX_ROWS_PER_BYTE: u64 = 64;

/// The longest page header read: hft's headers are under a hundred bytes (no page
/// statistics), so a longer one is corrupt.
const MAX_HEADER_BYTES: usize = 64 << 10;

/// The longest footer read: a store file's footer takes a few kilobytes per thousand
/// rows groups.
const MAX_FOOTER_BYTES: u64 = 64 << 20;

/// Nesting depth of Thrift structs and containers the skipper follows.
const MAX_DEPTH: u8 = 16;

/// The sizes a page header declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PageSizes {
    /// Parquet's page type: 0 data, 2 dictionary, 3 data v2.
    pub kind: i32,
    /// Bytes once inflated.
    pub uncompressed: i32,
    /// Bytes stored after the header.
    pub compressed: i32,
    /// Values in the page (the `num_values` of its data or dictionary header).
    pub values: i32,
}

/// Why a header could not be decoded from the bytes at hand.
#[derive(Debug, PartialEq, Eq)]
enum Stop {
    /// More bytes are needed.
    More,
    /// The bytes are not a valid header.
    Bad(&'static str),
}

/// A reader of the Thrift compact protocol over a byte slice.
struct Compact<'a> {
    buf: &'a [u8],
    at: usize,
}

impl Compact<'_> {
    fn byte(&mut self) -> Result<u8, Stop> {
        let b = *self.buf.get(self.at).ok_or(Stop::More)?;
        self.at += 1;
        Ok(b)
    }

    fn bytes(&mut self, n: u64) -> Result<(), Stop> {
        let left = (self.buf.len() - self.at) as u64;
        if n > left {
            return Err(Stop::More);
        }
        self.at += n as usize;
        Ok(())
    }

    fn varint(&mut self) -> Result<u64, Stop> {
        let mut v = 0u64;
        for shift in (0..70).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift.min(63);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(Stop::Bad("a varint longer than ten bytes"))
    }

    fn zigzag(&mut self) -> Result<i64, Stop> {
        let v = self.varint()?;
        Ok((v >> 1) as i64 ^ -((v & 1) as i64))
    }

    fn i32(&mut self) -> Result<i32, Stop> {
        i32::try_from(self.zigzag()?).map_err(|_| Stop::Bad("an i32 field out of range"))
    }

    /// The next field's id and type, or `None` at the struct's end.
    fn field(&mut self, last: &mut i64) -> Result<Option<(i64, u8)>, Stop> {
        let b = self.byte()?;
        if b == 0 {
            return Ok(None);
        }
        let delta = i64::from(b >> 4);
        *last = if delta == 0 {
            self.zigzag()?
        } else {
            *last + delta
        };
        Ok(Some((*last, b & 0x0f)))
    }

    /// Skips a value of compact type `ty`; `in_list` for container elements, where a
    /// boolean takes a byte of its own.
    fn skip(&mut self, ty: u8, in_list: bool, depth: u8) -> Result<(), Stop> {
        if depth > MAX_DEPTH {
            return Err(Stop::Bad("structs nested too deep"));
        }
        match ty {
            1 | 2 if in_list => self.byte().map(drop),
            1 | 2 => Ok(()),
            3 => self.byte().map(drop),
            4..=6 => self.varint().map(drop),
            7 => self.bytes(8),
            8 => {
                let n = self.varint()?;
                self.bytes(n)
            }
            9 | 10 => {
                let h = self.byte()?;
                if matches!(h & 0x0f, 1 | 2) {
                    return Err(Stop::Bad("a list of booleans"));
                }
                let n = match h >> 4 {
                    15 => self.varint()?,
                    n => u64::from(n),
                };
                // Every element takes at least a byte, so a count past the bytes left
                // ends in `More` within that many steps.
                for _ in 0..n {
                    self.skip(h & 0x0f, true, depth + 1)?;
                }
                Ok(())
            }
            11 => Err(Stop::Bad("a map")),
            12 => {
                let mut last = 0;
                while let Some((_, t)) = self.field(&mut last)? {
                    self.skip(t, false, depth + 1)?;
                }
                Ok(())
            }
            _ => Err(Stop::Bad("an unknown Thrift type")),
        }
    }

    /// A whole struct, skipped.
    fn skip_struct(&mut self) -> Result<(), Stop> {
        self.skip(12, false, 0)
    }

    /// The `num_values` (field 1) of a data, dictionary or data v2 page header.
    fn num_values(&mut self) -> Result<Option<i32>, Stop> {
        let (mut last, mut values) = (0, None);
        while let Some((id, t)) = self.field(&mut last)? {
            match (id, t) {
                (1, 5) => values = Some(self.i32()?),
                _ => self.skip(t, false, 1)?,
            }
        }
        Ok(values)
    }

    /// A `PageHeader` struct's sizes.
    fn page_header(&mut self) -> Result<PageSizes, Stop> {
        let (mut last, mut kind, mut unc, mut comp, mut values) = (0, None, None, None, None);
        while let Some((id, t)) = self.field(&mut last)? {
            match (id, t) {
                (1, 5) => kind = Some(self.i32()?),
                (2, 5) => unc = Some(self.i32()?),
                (3, 5) => comp = Some(self.i32()?),
                (5 | 7 | 8, 12) => values = self.num_values()?,
                _ => self.skip(t, false, 0)?,
            }
        }
        match (kind, unc, comp, values) {
            (Some(kind), Some(uncompressed), Some(compressed), Some(values)) => Ok(PageSizes {
                kind,
                uncompressed,
                compressed,
                values,
            }),
            _ => Err(Stop::Bad(
                "a page header without its type, sizes or value count",
            )),
        }
    }
}

/// Decodes the page header at the start of `buf`: its sizes and its length in bytes.
/// `Ok(None)` when `buf` ends inside the header.
fn decode_header(buf: &[u8]) -> Result<Option<(PageSizes, usize)>, &'static str> {
    let mut c = Compact { buf, at: 0 };
    match c.page_header() {
        Ok(h) => Ok(Some((h, c.at))),
        Err(Stop::More) => Ok(None),
        Err(Stop::Bad(why)) => Err(why),
    }
}

/// Checks the footer of the Parquet file `file` of `len` bytes: its length and magic,
/// and that it is one Thrift struct made of what a footer holds.
pub(crate) fn check_footer(file: &File, len: u64) -> Result<(), String> {
    let mut tail = [0u8; 8];
    if len < 12 {
        return Err(format!("{len} bytes: too short for a Parquet file"));
    }
    file.read_exact_at(&mut tail, len - 8)
        .map_err(|e| format!("footer: {e}"))?;
    if &tail[4..] != b"PAR1" {
        return Err("no Parquet magic at the end: the file is cut short or not Parquet".into());
    }
    let n = u64::from(u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]));
    if n + 12 > len || n > MAX_FOOTER_BYTES {
        return Err(format!(
            "a footer of {n} bytes in a file of {len} (at most {MAX_FOOTER_BYTES})"
        ));
    }
    let mut footer = vec![0u8; n as usize];
    file.read_exact_at(&mut footer, len - 8 - n)
        .map_err(|e| format!("footer: {e}"))?;
    let mut c = Compact {
        buf: &footer,
        at: 0,
    };
    match c.skip_struct() {
        Ok(()) => Ok(()),
        Err(Stop::More) => Err("the footer ends inside its metadata".into()),
        Err(Stop::Bad(why)) => Err(format!("a corrupt footer ({why})")),
    }
}

/// Checks the pages of the column chunk at `[start, start + len)` of `file` against a
/// row group of `rows` rows; the error says which page and what is wrong. `scratch` is
/// reused between calls.
pub(crate) fn check_chunk(
    file: &File,
    start: u64,
    len: u64,
    rows: i64,
    scratch: &mut Vec<u8>,
) -> Result<(), String> {
    let end = start + len;
    let (mut at, mut values, mut first) = (start, 0i64, true);
    while at < end {
        let left = end - at;
        let (h, header_len) = read_header(file, at, left, scratch)?;
        let page = |what: String| format!("page at byte {at}: {what}");
        if h.compressed < 0 || header_len + h.compressed as u64 > left {
            return Err(page(format!(
                "its {} bytes run past the column chunk's end (byte {end})",
                h.compressed
            )));
        }
        if !(0..=MAX_PAGE_BYTES).contains(&i64::from(h.uncompressed)) {
            return Err(page(format!(
                "it claims {} bytes uncompressed; hft writes pages of at most {PAGE_BYTES}",
                h.uncompressed
            )));
        }
        if h.values < 0 {
            return Err(page(format!("it claims {} values", h.values)));
        }
        match h.kind {
            0 | 3 => values += i64::from(h.values),
            // The parquet crate sizes a dictionary by its header's value count; every
            // entry of hft's integer columns takes at least 4 plain-encoded bytes.
            2 if first && i64::from(h.values) * 4 > i64::from(h.uncompressed) => {
                return Err(page(format!(
                    "a dictionary of {} values in {} bytes",
                    h.values, h.uncompressed
                )));
            }
            2 if first => {}
            2 => return Err(page("a dictionary page after the first page".into())),
            k => return Err(page(format!("page type {k}, which hft never writes"))),
        }
        if values > rows {
            return Err(page(format!(
                "the chunk's pages hold more values than the row group's {rows} rows"
            )));
        }
        at += header_len + h.compressed as u64;
        first = false;
    }
    if values != rows {
        return Err(format!(
            "its pages hold {values} values, the row group {rows} rows"
        ));
    }
    Ok(())
}

/// Reads and decodes the page header at `at`, `left` bytes before the chunk's end.
fn read_header(
    file: &File,
    at: u64,
    left: u64,
    scratch: &mut Vec<u8>,
) -> Result<(PageSizes, u64), String> {
    let mut want = 256usize;
    loop {
        let n = want.min(usize::try_from(left).unwrap_or(usize::MAX));
        scratch.resize(n, 0);
        file.read_exact_at(scratch, at)
            .map_err(|e| format!("page at byte {at}: {e}"))?;
        match decode_header(scratch) {
            Ok(Some((h, len))) => return Ok((h, len as u64)),
            Ok(None) if n < want || want >= MAX_HEADER_BYTES => {
                return Err(format!(
                    "page at byte {at}: its header is cut short or longer than {MAX_HEADER_BYTES} bytes"
                ));
            }
            Ok(None) => want *= 4,
            Err(why) => return Err(format!("page at byte {at}: a corrupt header ({why})")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A compact-protocol writer of the few shapes the tests need.
    #[derive(Default)]
    struct Enc(Vec<u8>);

    impl Enc {
        fn varint(&mut self, mut v: u64) -> &mut Self {
            while v >= 0x80 {
                self.0.push(v as u8 | 0x80);
                v >>= 7;
            }
            self.0.push(v as u8);
            self
        }
        fn i32_field(&mut self, delta: u8, v: i64) -> &mut Self {
            self.0.push(delta << 4 | 5);
            self.varint(((v << 1) ^ (v >> 63)) as u64)
        }
        fn raw(&mut self, b: &[u8]) -> &mut Self {
            self.0.extend_from_slice(b);
            self
        }
    }

    /// A page header as parquet writes it: type, sizes, then the data (field 5) or
    /// dictionary (field 7) header with its value count and encoding, and a binary and
    /// a list field the decoder must skip.
    fn header(kind: i64, unc: i64, comp: i64, values: i64) -> Vec<u8> {
        let mut e = Enc::default();
        e.i32_field(1, kind).i32_field(1, unc).i32_field(1, comp);
        let sub = if kind == 2 { 4 } else { 2 };
        e.raw(&[sub << 4 | 12]).i32_field(1, values).i32_field(1, 0);
        // fields 3 (binary "ab") and 4 (list<i32> [1, 2]) of that header, skipped
        e.raw(&[0x18, 2, b'a', b'b', 0x19, 0x25])
            .varint(2)
            .varint(4);
        e.raw(&[0, 0]);
        e.0
    }

    #[test]
    fn decodes_the_sizes_and_length_of_a_header() {
        let h = header(0, 4096, 1000, 512);
        let (sizes, len) = decode_header(&h).unwrap().unwrap();
        assert_eq!(len, h.len());
        assert_eq!(
            sizes,
            PageSizes {
                kind: 0,
                uncompressed: 4096,
                compressed: 1000,
                values: 512
            }
        );
        for cut in 0..h.len() {
            assert_eq!(decode_header(&h[..cut]), Ok(None), "cut at {cut}");
        }
    }

    #[test]
    fn malformed_headers_are_errors_not_panics() {
        let mut endless = vec![0x15];
        endless.extend([0xff; 11]);
        assert!(decode_header(&endless).is_err(), "endless varint");
        assert!(decode_header(&[0x1d]).is_err(), "unknown type");
        let mut deep = vec![0x1c; 40];
        deep.push(0);
        assert!(decode_header(&deep).is_err(), "nesting");
        assert!(decode_header(&[0]).is_err(), "no fields");
        // A huge list count on few bytes ends at the buffer, not in a long loop.
        assert_eq!(
            decode_header(&[0x19, 0xf5, 0xff, 0xff, 0xff, 0xff, 0x0f]),
            Ok(None)
        );
        // Lists of booleans and maps, which the parquet crate's skipper would loop
        // over without reading a byte, are refused.
        for ty in [1, 2] {
            let list = [0x19, 0xf0 | ty, 0xff, 0xff, 0xff, 0xff, 0x0f];
            assert!(decode_header(&list).is_err(), "list of type {ty}");
        }
        assert!(decode_header(&[0x1b, 0x02, 0x55, 0, 0, 0]).is_err(), "map");
    }

    /// A store file of `rows` rows that change only in their times, sequence and price
    /// by one step each: about as dense as hft's files get.
    fn dense_store(name: &str, rows: u64) -> (std::path::PathBuf, std::path::PathBuf) {
        let root = std::env::temp_dir().join(format!("hft-pages-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let series = crate::SeriesMeta {
            venue: "v".into(),
            symbol: "K".into(),
            price_scale: 2,
            qty_scale: 3,
        };
        let mut w = crate::StoreWriter::create(&root).unwrap();
        for n in 0..rows {
            let row = crate::Row {
                ts_exchange: 1_000_000 + n * 10,
                ts_recv: 1_000_500 + n * 10,
                seq: n,
                kind: crate::RowKind::Level as u8,
                price: 4_000 + n as i64,
                qty: 9,
                ..Default::default()
            };
            w.append(&series, &row).unwrap();
        }
        w.finish().unwrap();
        let file = crate::data_files(&root).unwrap().remove(0);
        (root, file)
    }

    #[test]
    fn the_densest_files_hft_writes_stay_well_inside_the_rows_per_byte_bound() {
        let (root, file) = dense_store("dense", 400_000);
        let len = std::fs::metadata(&file).unwrap().len();
        let per_byte = 400_000 / len;
        assert!(
            per_byte * 4 <= MAX_ROWS_PER_BYTE,
            "{per_byte} rows per byte: the reader's bound of {MAX_ROWS_PER_BYTE} is too tight"
        );
        let mut n = 0;
        crate::read_file(&file, |_, _| n += 1).unwrap();
        assert_eq!(n, 400_000);
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn a_page_that_miscounts_its_values_is_refused_with_its_place() {
        use parquet::file::reader::FileReader;
        let (root, file) = dense_store("miscount", 5_000);
        let good = std::fs::read(&file).unwrap();
        let reader =
            parquet::file::reader::SerializedFileReader::new(File::open(&file).unwrap()).unwrap();
        let (start, _) = reader.metadata().row_group(0).column(0).byte_range();
        let start = start as usize;
        let (h, len) = decode_header(&good[start..]).unwrap().unwrap();
        assert_eq!((h.kind, h.values), (0, 5_000));
        // The data page header's first field is its value count: 5,000 becomes 4,999 or
        // 5,001, varints of the same length.
        let zig = |v: u64| {
            let mut e = Enc::default();
            e.varint(v << 1);
            e.0
        };
        for (values, why) in [
            (4_999, "its pages hold 4999 values, the row group 5000 rows"),
            (
                5_001,
                "the chunk's pages hold more values than the row group's 5000 rows",
            ),
        ] {
            let mut bytes = good.clone();
            let (old, new) = (zig(5_000), zig(values));
            let header = &mut bytes[start..start + len];
            let at = header
                .windows(old.len() + 1)
                .position(|w| w[0] == 0x15 && w[1..] == old[..])
                .expect("num_values field");
            header[at + 1..at + 1 + new.len()].copy_from_slice(&new);
            std::fs::write(&file, &bytes).unwrap();
            let e = crate::read_file(&file, |_, _| {}).unwrap_err().to_string();
            assert!(e.contains("row group 0, column \"ts_exchange\""), "{e}");
            assert!(e.contains(why), "{e}");
        }
        let _ = std::fs::remove_dir_all(&root);
    }

    /// A page: its header and the length of its body.
    type Page = (Vec<u8>, usize);

    /// An unlinked file holding the pages (headers and bodies) and their length.
    fn chunk(pages: &[Page]) -> (File, u64) {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("hft-pages-{}-{n}", std::process::id()));
        let mut f = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        std::fs::remove_file(&path).unwrap();
        let mut len = 0;
        for (h, body) in pages {
            f.write_all(h).unwrap();
            f.write_all(&vec![7u8; *body]).unwrap();
            len += (h.len() + body) as u64;
        }
        (f, len)
    }

    #[test]
    fn a_chunk_is_refused_unless_its_pages_fit_and_count_the_rows() {
        let mut s = Vec::new();
        let ok = [(header(2, 80, 10, 10), 10), (header(0, 900, 40, 300), 40)];
        let (f, len) = chunk(&ok);
        check_chunk(&f, 0, len, 300, &mut s).unwrap();
        let why = check_chunk(&f, 0, len, 301, &mut s).unwrap_err();
        assert!(why.contains("300 values, the row group 301"), "{why}");
        let why = check_chunk(&f, 0, len, 299, &mut s).unwrap_err();
        assert!(why.contains("more values than"), "{why}");

        let cases: [(&[Page], &str); 6] = [
            (&[(header(0, 1 << 30, 40, 300), 40)], "uncompressed"),
            (&[(header(0, 900, 41, 300), 40)], "run past"),
            (&[(header(0, 900, -1, 300), 0)], "run past"),
            (
                &[(header(0, 900, 0, 150), 0), (header(2, 9, 0, 1), 0)],
                "dictionary page after",
            ),
            (&[(header(1, 9, 0, 300), 0)], "page type 1"),
            (
                &[(header(2, 80, 10, 21), 10), (header(0, 900, 40, 300), 40)],
                "dictionary of 21 values in 80 bytes",
            ),
        ];
        for (pages, want) in cases {
            let (f, len) = chunk(pages);
            let why = check_chunk(&f, 0, len, 300, &mut s).unwrap_err();
            assert!(why.contains(want), "{why} (wanted {want})");
        }
        // A header cut by the chunk's end.
        let h = header(0, 900, 0, 300);
        let (f, _) = chunk(&[(h.clone(), 0)]);
        let why = check_chunk(&f, 0, h.len() as u64 - 2, 300, &mut s).unwrap_err();
        assert!(why.contains("cut short"), "{why}");
    }
}
