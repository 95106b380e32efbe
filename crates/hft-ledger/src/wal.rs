//! Segmented write-ahead log of Raft entries, hard states and snapshot
//! marks, each record checksummed (CRC-32) and synced before the member acknowledges.
//!
//! The log is append-only; a Raft entry written again at an index already present
//! replaces that suffix when the log is replayed, exactly as the in-memory log does.
//! A new segment starts with the current hard state and snapshot mark,
//! so segments whose entries all precede the latest snapshot can be deleted without
//! losing any of them.
//!
//! Segments are preallocated (fallocate) to their full size when created, so that a
//! sync after an append does not also have to commit a new file size: a zero where a
//! record header belongs is the end of the log.
//!
//! Reading tells two failures apart: a record cut short at the very end of the newest
//! segment is the write a crash interrupted — it was never acknowledged, so it is
//! dropped (and logged); a bad record anywhere else is corruption, and the member
//! refuses to start, naming the file, the offset and the repair command.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use protobuf::Message as _;
use raft::prelude::{Entry, HardState};
use thiserror::Error;

/// Default size at which the active segment is closed and a new one started.
pub const SEGMENT_BYTES: u64 = 64 << 20;

const HEADER: usize = 9;
const KIND_ENTRY: u8 = 1;
const KIND_HARD_STATE: u8 = 2;
const KIND_SNAPSHOT: u8 = 4;
const KIND_INSTALL: u8 = 5;

/// One replayed record.
#[derive(Debug)]
pub enum Record {
    /// A Raft log entry.
    Entry(Entry),
    /// Term, vote and commit.
    HardState(HardState),
    /// Entries up to `index` are covered by the snapshot of that index.
    Snapshot {
        /// Snapshot index.
        index: u64,
        /// Term of the entry at `index`.
        term: u64,
    },
    /// A snapshot from the leader was installed: every entry written before this
    /// record is superseded, and the log continues after `index`.
    Install {
        /// Snapshot index.
        index: u64,
        /// Term of the entry at `index`.
        term: u64,
    },
}

/// Why the log cannot be opened or written.
#[derive(Debug, Error)]
pub enum WalError {
    /// The file system refused an operation.
    #[error("ledger log {}: {source}", path.display())]
    Io {
        /// File or directory.
        path: PathBuf,
        /// Cause.
        source: io::Error,
    },
    /// A record inside the log is damaged.
    #[error(
        "ledger log {} is corrupt at byte {offset}: {reason}; this member cannot start \
         from it. Run `hft ledger repair --dir {}` to cut the log at that record (the \
         member then fetches what it lost from its peers), or restore the directory from \
         a backup",
        path.display(),
        dir.display()
    )]
    Corrupt {
        /// Segment file.
        path: PathBuf,
        /// Offset of the bad record.
        offset: u64,
        /// What was wrong.
        reason: String,
        /// The log directory (for the repair command).
        dir: PathBuf,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> WalError + '_ {
    move |source| WalError::Io {
        path: path.to_owned(),
        source,
    }
}

#[derive(Debug)]
struct Segment {
    seq: u64,
    path: PathBuf,
    /// Highest entry index written to the segment (0 if none).
    max_index: u64,
    /// Offset just past its last record (zeros, or nothing, follow).
    end: u64,
}

/// The open log, positioned for appends.
pub struct Wal {
    dir: PathBuf,
    segments: Vec<Segment>,
    file: File,
    size: u64,
    buf: Vec<u8>,
    segment_bytes: u64,
    fsync: bool,
    hard_state: HardState,
    snapshot: (u64, u64),
    /// Highest entry index in `buf`.
    buf_max_index: u64,
}

/// What [`Wal::open`] found besides the records.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct OpenReport {
    /// Segments read.
    pub segments: usize,
    /// Records replayed.
    pub records: u64,
    /// Bytes of an interrupted last write that were dropped.
    pub torn_bytes: u64,
}

impl Wal {
    /// Opens (or creates) the log in `dir`, feeding every valid record to `replay` in
    /// order.
    pub fn open(
        dir: &Path,
        segment_bytes: u64,
        fsync: bool,
        mut replay: impl FnMut(Record),
    ) -> Result<(Self, OpenReport), WalError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let mut segments = list_segments(dir)?;
        let mut report = OpenReport {
            segments: segments.len(),
            ..OpenReport::default()
        };
        let (hard_state, snapshot) =
            replay_segments(dir, &mut segments, &mut report, true, &mut replay)?;
        if segments.is_empty() {
            let seg = new_segment(dir, 1, segment_bytes)?;
            segments.push(seg);
            sync_dir(dir)?;
        }
        let active = segments.last().map(|s| s.path.clone()).unwrap_or_default();
        let file = OpenOptions::new()
            .write(true)
            .open(&active)
            .map_err(io_err(&active))?;
        let size = segments.last().map_or(0, |s| s.end);
        Ok((
            Self {
                dir: dir.to_owned(),
                segments,
                file,
                size,
                buf: Vec::with_capacity(1 << 20),
                segment_bytes,
                fsync,
                hard_state,
                snapshot,
                buf_max_index: 0,
            },
            report,
        ))
    }

    /// Buffers an entry.
    pub fn append_entry(&mut self, e: &Entry) {
        push_record(&mut self.buf, KIND_ENTRY, |out| {
            e.write_to_vec(out).expect("entry encodes")
        });
        // Credited to a segment when written: a roll may put it in the next one.
        self.buf_max_index = self.buf_max_index.max(e.index);
    }

    /// Buffers a hard state.
    pub fn append_hard_state(&mut self, hs: &HardState) {
        self.hard_state = hs.clone();
        push_record(&mut self.buf, KIND_HARD_STATE, |out| {
            hs.write_to_vec(out).expect("hard state encodes")
        });
    }

    /// Buffers a snapshot mark.
    pub fn append_snapshot(&mut self, index: u64, term: u64) {
        self.snapshot = (index, term);
        push_record(&mut self.buf, KIND_SNAPSHOT, |out| {
            out.extend_from_slice(&index.to_le_bytes());
            out.extend_from_slice(&term.to_le_bytes());
        });
    }

    /// Buffers the mark of a snapshot installed from the leader: on replay, entries
    /// written before it are dropped.
    pub fn append_install(&mut self, index: u64, term: u64) {
        self.snapshot = (index, term);
        push_record(&mut self.buf, KIND_INSTALL, |out| {
            out.extend_from_slice(&index.to_le_bytes());
            out.extend_from_slice(&term.to_le_bytes());
        });
    }

    /// Writes what is buffered and, with fsync on, makes it durable. Nothing buffered is
    /// acknowledged to anyone before this returns.
    pub fn sync(&mut self) -> Result<(), WalError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        // A slow disk (`sleep(ms)`) or a failing one (`return`: an I/O error, as from a
        // full or broken disk).
        #[cfg(feature = "failpoints")]
        fail::fail_point!("ledger::wal-sync", |_| Err(WalError::Io {
            path: self.active_path(),
            source: io::Error::other("injected by fail point ledger::wal-sync"),
        }));
        if self.size > 0 && self.size + self.buf.len() as u64 > self.segment_bytes {
            self.roll()?;
        }
        let path = self.active_path();
        self.file
            .write_all_at(&self.buf, self.size)
            .map_err(io_err(&path))?;
        self.size += self.buf.len() as u64;
        self.buf.clear();
        if let Some(seg) = self.segments.last_mut() {
            seg.max_index = seg.max_index.max(self.buf_max_index);
        }
        self.buf_max_index = 0;
        if self.fsync {
            self.file.sync_data().map_err(io_err(&path))?;
        }
        Ok(())
    }

    fn active_path(&self) -> PathBuf {
        self.segments
            .last()
            .map(|s| s.path.clone())
            .unwrap_or_default()
    }

    /// Closes the active segment and starts the next with the current state records,
    /// which the buffered records then follow.
    fn roll(&mut self) -> Result<(), WalError> {
        let seq = self.segments.last().map_or(1, |s| s.seq + 1);
        let seg = new_segment(&self.dir, seq, self.segment_bytes)?;
        let mut head = Vec::new();
        push_record(&mut head, KIND_HARD_STATE, |out| {
            self.hard_state.write_to_vec(out).expect("encodes")
        });
        let (index, term) = self.snapshot;
        push_record(&mut head, KIND_SNAPSHOT, |out| {
            out.extend_from_slice(&index.to_le_bytes());
            out.extend_from_slice(&term.to_le_bytes());
        });
        let file = OpenOptions::new()
            .write(true)
            .open(&seg.path)
            .map_err(io_err(&seg.path))?;
        file.write_all_at(&head, 0).map_err(io_err(&seg.path))?;
        if self.fsync {
            self.file.sync_data().map_err(io_err(&self.active_path()))?;
            file.sync_data().map_err(io_err(&seg.path))?;
            sync_dir(&self.dir)?;
        }
        self.size = head.len() as u64;
        self.file = file;
        self.segments.push(seg);
        Ok(())
    }

    /// Deletes closed segments whose entries are all at or below `index` (covered by a
    /// durable snapshot). Returns how many were deleted.
    pub fn compact(&mut self, index: u64) -> Result<usize, WalError> {
        let mut removed = 0;
        while self.segments.len() > 1 && self.segments[0].max_index <= index {
            let seg = self.segments.remove(0);
            fs::remove_file(&seg.path).map_err(io_err(&seg.path))?;
            removed += 1;
        }
        if removed > 0 && self.fsync {
            sync_dir(&self.dir)?;
        }
        Ok(removed)
    }

    /// Segment files now on disk.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }
}

/// Reads every record of the log in `dir` without changing anything (an interrupted
/// final write is reported in `torn_bytes`, not cut): what `hft ledger verify` checks.
pub fn read(dir: &Path, mut replay: impl FnMut(Record)) -> Result<OpenReport, WalError> {
    let mut segments = list_segments(dir)?;
    let mut report = OpenReport {
        segments: segments.len(),
        ..OpenReport::default()
    };
    replay_segments(dir, &mut segments, &mut report, false, &mut replay)?;
    Ok(report)
}

/// Replays all segments in order; returns the last hard state and snapshot mark. A torn
/// tail of the newest segment is cut when `cut_torn_tail`, reported either way.
fn replay_segments(
    dir: &Path,
    segments: &mut [Segment],
    report: &mut OpenReport,
    cut_torn_tail: bool,
    replay: &mut impl FnMut(Record),
) -> Result<(HardState, (u64, u64)), WalError> {
    let mut hard_state = HardState::default();
    let mut snapshot = (0, 0);
    let n = segments.len();
    for (k, seg) in segments.iter_mut().enumerate() {
        let bytes = fs::read(&seg.path).map_err(io_err(&seg.path))?;
        let mut max_index = 0;
        let scanned = scan(&bytes, |kind, payload| {
            let rec = decode_record(kind, payload)?;
            match &rec {
                Record::Entry(e) => max_index = max_index.max(e.index),
                Record::HardState(h) => hard_state = h.clone(),
                Record::Snapshot { index, term } | Record::Install { index, term } => {
                    snapshot = (*index, *term)
                }
            }
            report.records += 1;
            replay(rec);
            Ok(())
        });
        seg.max_index = max_index;
        seg.end = match scanned {
            Ok(end) => end as u64,
            Err((offset, _)) => offset,
        };
        if let Err((offset, reason)) = scanned {
            if k + 1 != n || !is_torn_tail(&bytes, offset as usize) {
                return Err(WalError::Corrupt {
                    path: seg.path.clone(),
                    offset,
                    reason,
                    dir: dir.to_owned(),
                });
            }
            let last = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
            let cut = (last as u64).saturating_sub(offset);
            report.torn_bytes = cut;
            if cut_torn_tail {
                tracing::warn!(
                    file = %seg.path.display(),
                    offset,
                    bytes = cut,
                    reason = %reason,
                    "ledger log ends in an interrupted write; dropping it"
                );
                // Zeroed, not truncated: the segment keeps its preallocated size, and
                // zeros after the last record are the end of the log.
                zero(&seg.path, offset, cut)?;
            }
        }
    }
    Ok((hard_state, snapshot))
}

/// What `repair` cut from a damaged log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairReport {
    /// Segment cut at the first bad record (None if the log was sound).
    pub cut: Option<(PathBuf, u64)>,
    /// Later segments deleted.
    pub removed: Vec<PathBuf>,
}

/// Cuts the log in `dir` at its first bad record and deletes every later segment, so the
/// member can start; what it loses, it fetches from its peers (a lone member loses the
/// unreplicated tail, which is why the command is never run automatically).
pub fn repair(dir: &Path) -> Result<RepairReport, WalError> {
    let segments = list_segments(dir)?;
    let mut report = RepairReport {
        cut: None,
        removed: Vec::new(),
    };
    for seg in &segments {
        if report.cut.is_some() {
            fs::remove_file(&seg.path).map_err(io_err(&seg.path))?;
            report.removed.push(seg.path.clone());
            continue;
        }
        let bytes = fs::read(&seg.path).map_err(io_err(&seg.path))?;
        if let Err((offset, _)) = scan(&bytes, |kind, payload| {
            decode_record(kind, payload).map(|_| ())
        }) {
            truncate(&seg.path, offset)?;
            report.cut = Some((seg.path.clone(), offset));
        }
    }
    sync_dir(dir)?;
    Ok(report)
}

fn list_segments(dir: &Path) -> Result<Vec<Segment>, WalError> {
    let mut segments = Vec::new();
    for ent in fs::read_dir(dir).map_err(io_err(dir))? {
        let ent = ent.map_err(io_err(dir))?;
        let name = ent.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".wal")) else {
            continue;
        };
        if let Ok(seq) = u64::from_str_radix(stem, 16) {
            segments.push(Segment {
                seq,
                path: ent.path(),
                max_index: 0,
                end: 0,
            });
        }
    }
    segments.sort_by_key(|s| s.seq);
    Ok(segments)
}

fn new_segment(dir: &Path, seq: u64, bytes: u64) -> Result<Segment, WalError> {
    let path = dir.join(format!("{seq:016x}.wal"));
    let f = File::create(&path).map_err(io_err(&path))?;
    preallocate(&f, bytes);
    Ok(Segment {
        seq,
        path,
        max_index: 0,
        end: 0,
    })
}

/// Reserves the segment's blocks up front (Linux `fallocate`); where that is not
/// supported the file simply grows as it is written.
fn preallocate(f: &File, bytes: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: a valid open descriptor; mode 0 allocates and extends the file size.
        let r = unsafe { libc::fallocate(f.as_raw_fd(), 0, 0, bytes as libc::off_t) };
        if r != 0 {
            tracing::debug!(
                error = %io::Error::last_os_error(),
                "cannot preallocate a ledger log segment; it grows as written"
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (f, bytes);
}

/// Overwrites `len` bytes at `at` with zeros and syncs.
fn zero(path: &Path, at: u64, len: u64) -> Result<(), WalError> {
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_err(path))?;
    f.write_all_at(&vec![0u8; len as usize], at)
        .map_err(io_err(path))?;
    f.sync_all().map_err(io_err(path))
}

fn truncate(path: &Path, len: u64) -> Result<(), WalError> {
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_err(path))?;
    f.set_len(len).map_err(io_err(path))?;
    f.sync_all().map_err(io_err(path))
}

/// Makes created, renamed and deleted files in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

fn push_record(out: &mut Vec<u8>, kind: u8, body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0u8; HEADER]);
    out[start + 8] = kind;
    body(out);
    let len = (out.len() - start - 8) as u32;
    let crc = crc32fast::hash(&out[start + 8..]);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Walks the records of one segment; on the first bad one returns its offset and why.
fn scan(
    bytes: &[u8],
    mut each: impl FnMut(u8, &[u8]) -> Result<(), String>,
) -> Result<usize, (u64, String)> {
    let mut at = 0usize;
    while at < bytes.len() {
        let fail = |why: String| Err((at as u64, why));
        // Preallocated space: only zeros from here on is the end of the log.
        if bytes[at] == 0 && bytes[at..].iter().all(|&b| b == 0) {
            return Ok(at);
        }
        if bytes.len() - at < HEADER {
            return fail("record header cut short".into());
        }
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().expect("4 bytes"));
        if len == 0 {
            return fail("zero-length record".into());
        }
        let Some(end) = (at + 8).checked_add(len).filter(|&e| e <= bytes.len()) else {
            return fail(format!(
                "record of {len} bytes runs past the end of the file"
            ));
        };
        let body = &bytes[at + 8..end];
        if crc32fast::hash(body) != crc {
            return fail("checksum mismatch".into());
        }
        if let Err(why) = each(body[0], &body[1..]) {
            return fail(why);
        }
        at = end;
    }
    Ok(at)
}

/// Whether a bad record at `offset` is an interrupted final write: only zeros follow
/// it, or no valid record starts anywhere after it. A damaged length field also makes a
/// record look cut short; the valid records behind it tell the two apart.
fn is_torn_tail(bytes: &[u8], offset: usize) -> bool {
    let rest = &bytes[offset..];
    if rest.iter().all(|&b| b == 0) {
        return true;
    }
    !(offset + 1..bytes.len()).any(|p| valid_record_at(bytes, p))
}

/// Whether a whole record with a matching checksum starts at `p`.
fn valid_record_at(bytes: &[u8], p: usize) -> bool {
    let Some(h) = bytes.get(p..p + HEADER) else {
        return false;
    };
    let len = u32::from_le_bytes(h[..4].try_into().expect("4 bytes")) as usize;
    if len == 0
        || !matches!(
            h[8],
            KIND_ENTRY | KIND_HARD_STATE | KIND_SNAPSHOT | KIND_INSTALL
        )
    {
        return false;
    }
    let Some(body) = (p + 8)
        .checked_add(len)
        .and_then(|end| bytes.get(p + 8..end))
    else {
        return false;
    };
    crc32fast::hash(body) == u32::from_le_bytes(h[4..8].try_into().expect("4 bytes"))
}

fn decode_record(kind: u8, payload: &[u8]) -> Result<Record, String> {
    let pb = |e: protobuf::ProtobufError| e.to_string();
    Ok(match kind {
        KIND_ENTRY => Record::Entry(Entry::parse_from_bytes(payload).map_err(pb)?),
        KIND_HARD_STATE => Record::HardState(HardState::parse_from_bytes(payload).map_err(pb)?),
        KIND_SNAPSHOT | KIND_INSTALL if payload.len() == 16 => {
            let index = u64::from_le_bytes(payload[..8].try_into().expect("8 bytes"));
            let term = u64::from_le_bytes(payload[8..].try_into().expect("8 bytes"));
            if kind == KIND_SNAPSHOT {
                Record::Snapshot { index, term }
            } else {
                Record::Install { index, term }
            }
        }
        _ => return Err(format!("unknown record kind {kind}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64, data: &[u8]) -> Entry {
        Entry {
            index,
            term,
            data: data.to_vec().into(),
            ..Default::default()
        }
    }

    type Replayed = (Vec<(u64, u64)>, Option<HardState>);

    /// Offset just past a segment's last record (the file is preallocated beyond it).
    fn end_of(seg: &Path) -> u64 {
        scan(&fs::read(seg).unwrap(), |_, _| Ok(())).unwrap() as u64
    }

    fn replay_all(dir: &Path) -> Result<Replayed, WalError> {
        let mut ents = Vec::new();
        let mut hs = None;
        Wal::open(dir, SEGMENT_BYTES, false, |r| match r {
            Record::Entry(e) => ents.push((e.index, e.term)),
            Record::HardState(h) => hs = Some(h),
            _ => {}
        })?;
        Ok((ents, hs))
    }

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("hft-wal-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn records_come_back_in_order() {
        let d = tmp("order");
        let (mut w, _) = Wal::open(&d, SEGMENT_BYTES, true, |_| {}).unwrap();
        for i in 1..=5 {
            w.append_entry(&entry(i, 1, b"x"));
        }
        let hs = HardState {
            term: 1,
            commit: 5,
            ..Default::default()
        };
        w.append_hard_state(&hs);
        w.sync().unwrap();
        drop(w);
        let (ents, got) = replay_all(&d).unwrap();
        assert_eq!(ents, (1..=5).map(|i| (i, 1)).collect::<Vec<_>>());
        assert_eq!(got.unwrap().commit, 5);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn an_interrupted_last_write_is_dropped_and_the_log_stays_usable() {
        let d = tmp("torn");
        let (mut w, _) = Wal::open(&d, SEGMENT_BYTES, false, |_| {}).unwrap();
        w.append_entry(&entry(1, 1, b"a"));
        w.append_entry(&entry(2, 1, b"bbbbbbbb"));
        w.sync().unwrap();
        drop(w);
        let seg = d.join(format!("{:016x}.wal", 1));
        // A crash mid-write: the last record's final bytes never reached the disk.
        let len = end_of(&seg);
        zero(&seg, len - 3, 3).unwrap();
        let mut seen = Vec::new();
        let (mut w, rep) = Wal::open(&d, SEGMENT_BYTES, false, |r| {
            if let Record::Entry(e) = r {
                seen.push(e.index)
            }
        })
        .unwrap();
        assert_eq!(seen, vec![1]);
        assert!(rep.torn_bytes > 0);
        w.append_entry(&entry(2, 2, b"c"));
        w.sync().unwrap();
        drop(w);
        assert_eq!(replay_all(&d).unwrap().0, vec![(1, 1), (2, 2)]);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn corruption_inside_the_log_refuses_start_and_repair_cuts_it() {
        let d = tmp("corrupt");
        let (mut w, _) = Wal::open(&d, SEGMENT_BYTES, false, |_| {}).unwrap();
        for i in 1..=3 {
            w.append_entry(&entry(i, 1, b"payload"));
        }
        w.sync().unwrap();
        drop(w);
        let seg = d.join(format!("{:016x}.wal", 1));
        let mut bytes = fs::read(&seg).unwrap();
        let rec = end_of(&seg) as usize / 3;
        bytes[rec + 12] ^= 0xFF; // inside the second record's body
        fs::write(&seg, &bytes).unwrap();
        let err = replay_all(&d).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("corrupt at byte"), "{msg}");
        assert!(msg.contains("hft ledger repair --dir"), "{msg}");
        let rep = repair(&d).unwrap();
        assert_eq!(rep.cut.as_ref().map(|c| c.1), Some(rec as u64));
        assert_eq!(replay_all(&d).unwrap().0, vec![(1, 1)]);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn segments_roll_carry_state_and_compact() {
        let d = tmp("roll");
        let (mut w, _) = Wal::open(&d, 256, false, |_| {}).unwrap();
        let hs = HardState {
            term: 3,
            commit: 2,
            ..Default::default()
        };
        w.append_hard_state(&hs);
        for i in 1..=40 {
            w.append_entry(&entry(i, 3, &[7u8; 40]));
            w.sync().unwrap();
        }
        assert!(w.segment_count() > 5);
        w.append_snapshot(30, 3);
        w.sync().unwrap();
        let removed = w.compact(30).unwrap();
        assert!(removed > 0);
        drop(w);
        let (ents, got) = replay_all(&d).unwrap();
        assert_eq!(got.unwrap().term, 3, "hard state survives compaction");
        assert!(ents.first().unwrap().0 <= 31 && ents.last().unwrap().0 == 40);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_damaged_length_with_records_behind_it_is_corruption_not_a_torn_tail() {
        let d = tmp("length");
        let (mut w, _) = Wal::open(&d, SEGMENT_BYTES, false, |_| {}).unwrap();
        for i in 1..=4 {
            w.append_entry(&entry(i, 1, b"payload"));
        }
        w.sync().unwrap();
        drop(w);
        let seg = d.join(format!("{:016x}.wal", 1));
        let mut bytes = fs::read(&seg).unwrap();
        let rec = end_of(&seg) as usize / 4;
        bytes[rec + 2] = 0x7F; // the second record now claims ~8 MB
        fs::write(&seg, &bytes).unwrap();
        assert!(matches!(replay_all(&d), Err(WalError::Corrupt { .. })));
        // The same damage in the last record is a torn write: dropped, log usable.
        let mut bytes = fs::read(&seg).unwrap();
        bytes[rec + 2] ^= 0x7F;
        bytes[3 * rec + 2] = 0x7F;
        fs::write(&seg, &bytes).unwrap();
        assert_eq!(replay_all(&d).unwrap().0.len(), 3);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn entries_are_credited_to_the_segment_a_roll_puts_them_in() {
        let d = tmp("credit");
        let (mut w, _) = Wal::open(&d, 512, false, |_| {}).unwrap();
        w.append_entry(&entry(1, 1, &[1u8; 100]));
        w.sync().unwrap();
        // One batch that does not fit: it goes to a new segment.
        for i in 2..=5 {
            w.append_entry(&entry(i, 1, &[2u8; 100]));
        }
        w.sync().unwrap();
        assert_eq!(w.segment_count(), 2);
        // A snapshot at 1 may delete the first segment, never the one holding 2..=5.
        w.compact(1).unwrap();
        drop(w);
        let ents = replay_all(&d).unwrap().0;
        assert_eq!(
            ents.iter().map(|e| e.0).collect::<Vec<_>>(),
            vec![2, 3, 4, 5]
        );
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_damaged_older_segment_is_corruption_even_at_its_end() {
        let d = tmp("older");
        let (mut w, _) = Wal::open(&d, 128, false, |_| {}).unwrap();
        for i in 1..=10 {
            w.append_entry(&entry(i, 1, &[1u8; 40]));
            w.sync().unwrap();
        }
        drop(w);
        let first = d.join(format!("{:016x}.wal", 1));
        let len = end_of(&first);
        zero(&first, len - 2, 2).unwrap();
        assert!(matches!(replay_all(&d), Err(WalError::Corrupt { .. })));
        fs::remove_dir_all(&d).unwrap();
    }
}
