//! The Raft log as raft-rs reads it (entries after the latest snapshot, hard state,
//! configuration, the snapshot itself) and the snapshot files on disk.
//!
//! The WAL is the durable copy; this is the in-memory view the driver rebuilds from it
//! at start and keeps in step with every `Ready`.

use std::cell::Cell;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use protobuf::Message as _;
use raft::prelude::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, Storage, StorageError};

use crate::wal::{WalError, sync_dir};

/// In-memory Raft log.
#[derive(Default)]
pub struct LogStore {
    hard_state: HardState,
    conf_state: ConfState,
    snapshot: Snapshot,
    /// Index and term of the entry just before the first one held (the compaction
    /// point); raft-rs matches logs against it.
    offset: (u64, u64),
    entries: Vec<Entry>,
    /// Set when a peer needs a snapshot newer than the latest (one that includes it in
    /// the configuration, or covers a requested index): the driver takes one at once.
    snapshot_wanted: Cell<bool>,
}

impl LogStore {
    fn first(&self) -> u64 {
        self.offset.0 + 1
    }

    /// Index of the last entry (or of the compaction point when the log is empty).
    pub fn last(&self) -> u64 {
        self.entries.last().map_or(self.offset.0, |e| e.index)
    }

    /// Appends entries, replacing any suffix they conflict with; entries at or before
    /// the compaction point are skipped.
    pub fn append(&mut self, ents: &[Entry]) {
        let first = self.first();
        let Some(k) = ents.iter().position(|e| e.index >= first) else {
            return;
        };
        let ents = &ents[k..];
        let e0 = ents[0].index;
        if e0 > self.last() + 1 {
            // raft-rs never appends past a gap; a damaged log could. Refuse the entries
            // and let the leader send them again from where this log really ends.
            tracing::error!(
                last = self.last(),
                next = e0,
                "ledger log gap on append; ignoring the entries"
            );
            return;
        }
        self.entries.truncate((e0 - first) as usize);
        self.entries.extend_from_slice(ents);
    }

    /// Replays one WAL record into the log.
    pub fn replay(&mut self, rec: crate::wal::Record) {
        use crate::wal::Record;
        match rec {
            Record::Entry(e) => self.append(std::slice::from_ref(&e)),
            Record::HardState(hs) => self.set_hard_state(hs),
            // A local snapshot leaves the log as it is.
            Record::Snapshot { .. } => {}
            // An installed snapshot superseded everything written before it (raft-rs
            // installs one only when the log does not already hold its entry).
            Record::Install { .. } => self.entries.clear(),
        }
    }

    /// Current hard state.
    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    /// Records a hard state.
    pub fn set_hard_state(&mut self, hs: HardState) {
        self.hard_state = hs;
    }

    /// Current configuration.
    pub fn conf_state(&self) -> &ConfState {
        &self.conf_state
    }

    /// Records a configuration.
    pub fn set_conf_state(&mut self, cs: ConfState) {
        self.conf_state = cs;
    }

    /// Whether a peer is waiting for a fresher snapshot; clears the request.
    pub fn take_snapshot_request(&self) -> bool {
        self.snapshot_wanted.replace(false)
    }

    /// The latest snapshot (empty before the first).
    pub fn snapshot_ref(&self) -> &Snapshot {
        &self.snapshot
    }

    /// Installs a snapshot from the leader or from disk at start: the log restarts
    /// after it, keeping held entries that continue it.
    pub fn apply_snapshot(&mut self, snap: Snapshot) {
        let meta = snap.get_metadata();
        let (index, term) = (meta.index, meta.term);
        self.hard_state.term = self.hard_state.term.max(term);
        self.hard_state.commit = self.hard_state.commit.max(index);
        self.conf_state = meta.get_conf_state().clone();
        let matches = self
            .entries
            .iter()
            .find(|e| e.index == index)
            .is_some_and(|e| e.term == term);
        if matches {
            self.entries.retain(|e| e.index > index);
        } else {
            self.entries.clear();
        }
        self.offset = (index, term);
        self.snapshot = snap;
    }

    /// Records a snapshot taken locally and drops the entries it covers except the last
    /// `keep`, so a slightly lagging peer catches up from the log, not a snapshot.
    pub fn compact_to(&mut self, snap: Snapshot, keep: u64) {
        let cut = snap.get_metadata().index.saturating_sub(keep);
        if cut >= self.first() && cut <= self.last() {
            let n = (cut - self.offset.0) as usize;
            self.offset = (cut, self.entries[n - 1].term);
            self.entries.drain(..n);
        }
        self.snapshot = snap;
    }
}

impl Storage for LogStore {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(
            self.hard_state.clone(),
            self.conf_state.clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low < self.first() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last() + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let lo = (low - self.first()) as usize;
        let hi = (high - self.first()) as usize;
        let mut ents = self.entries[lo..hi].to_vec();
        raft::util::limit_size(&mut ents, max_size.into());
        Ok(ents)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx == self.offset.0 {
            return Ok(self.offset.1);
        }
        if idx < self.first() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if idx > self.last() {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        Ok(self.entries[(idx - self.first()) as usize].term)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.first())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last())
    }

    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        let meta = self.snapshot.get_metadata();
        let cs = meta.get_conf_state();
        // raft-rs refuses a snapshot whose configuration lacks the receiver, so a member
        // added after the latest snapshot needs a new one.
        let knows = cs.voters.contains(&to) || cs.learners.contains(&to);
        if meta.index < request_index.max(1) || !knows {
            self.snapshot_wanted.set(true);
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        Ok(self.snapshot.clone())
    }
}

const SNAP_MAGIC: &[u8; 8] = b"HFTSNAP1";

/// A snapshot of the ledger state `data` at (`index`, `term`) under configuration `cs`.
pub fn snapshot_of(index: u64, term: u64, cs: ConfState, data: Vec<u8>) -> Snapshot {
    Snapshot {
        data: data.into(),
        metadata: protobuf::SingularPtrField::some(raft::prelude::SnapshotMetadata {
            conf_state: protobuf::SingularPtrField::some(cs),
            index,
            term,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Writes `snap` durably into `dir` (temporary file, fsync, rename, directory fsync) and
/// deletes all but the newest `retain` snapshot files.
pub fn save_snapshot(dir: &Path, snap: &Snapshot, retain: usize) -> Result<PathBuf, WalError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| WalError::Io { path, source }
    };
    fs::create_dir_all(dir).map_err(io(dir))?;
    let meta = snap.get_metadata();
    let name = format!("{:016x}-{:016x}.snap", meta.index, meta.term);
    let path = dir.join(&name);
    let tmp = dir.join(format!("{name}.tmp"));
    let body = snap.write_to_bytes().expect("snapshot encodes");
    let mut f = fs::File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(SNAP_MAGIC).map_err(io(&tmp))?;
    f.write_all(&crc32fast::hash(&body).to_le_bytes())
        .map_err(io(&tmp))?;
    f.write_all(&body).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    fs::rename(&tmp, &path).map_err(io(&path))?;
    sync_dir(dir)?;
    let mut all = snapshot_files(dir)?;
    while all.len() > retain.max(1) {
        let old = all.remove(0);
        fs::remove_file(&old).map_err(io(&old))?;
    }
    Ok(path)
}

/// Snapshot files in `dir`, oldest first.
fn snapshot_files(dir: &Path) -> Result<Vec<PathBuf>, WalError> {
    let mut v: Vec<PathBuf> = match fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "snap"))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(source) => {
            return Err(WalError::Io {
                path: dir.to_owned(),
                source,
            });
        }
    };
    v.sort();
    Ok(v)
}

/// Loads the newest snapshot in `dir`. A damaged newest snapshot refuses start: the log
/// behind it may already be compacted, so an older one could leave a gap.
pub fn load_snapshot(dir: &Path) -> Result<Option<Snapshot>, WalError> {
    match snapshot_files(dir)?.pop() {
        Some(path) => read_snapshot(dir, &path).map(Some),
        None => Ok(None),
    }
}

/// Every retained snapshot in `dir`, oldest first.
pub fn load_snapshots(dir: &Path) -> Result<Vec<Snapshot>, WalError> {
    snapshot_files(dir)?
        .iter()
        .map(|p| read_snapshot(dir, p))
        .collect()
}

fn read_snapshot(dir: &Path, path: &Path) -> Result<Snapshot, WalError> {
    let bytes = fs::read(path).map_err(|source| WalError::Io {
        path: path.to_owned(),
        source,
    })?;
    let corrupt = |reason: &str| WalError::Corrupt {
        path: path.to_owned(),
        offset: 0,
        reason: reason.to_owned(),
        dir: dir.to_owned(),
    };
    if bytes.len() < 12 || &bytes[..8] != SNAP_MAGIC {
        return Err(corrupt("not a ledger snapshot"));
    }
    let crc = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if crc32fast::hash(&bytes[12..]) != crc {
        return Err(corrupt("snapshot checksum mismatch"));
    }
    Snapshot::parse_from_bytes(&bytes[12..]).map_err(|e| corrupt(&e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ent(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            ..Default::default()
        }
    }

    fn snap(index: u64, term: u64) -> Snapshot {
        snapshot_of(index, term, ConfState::default(), vec![1, 2, 3])
    }

    #[test]
    fn appends_replace_conflicting_suffixes() {
        let mut st = LogStore::default();
        st.append(&(1..=5).map(|i| ent(i, 1)).collect::<Vec<_>>());
        st.append(&[ent(4, 2), ent(5, 2), ent(6, 2)]);
        assert_eq!(st.last(), 6);
        assert_eq!(st.term(3).unwrap(), 1);
        assert_eq!(st.term(4).unwrap(), 2);
        // A gap is refused.
        st.append(&[ent(9, 2)]);
        assert_eq!(st.last(), 6);
    }

    #[test]
    fn compaction_keeps_a_tail_and_the_term_before_it() {
        let mut st = LogStore::default();
        st.append(&(1..=10).map(|i| ent(i, 1 + i / 5)).collect::<Vec<_>>());
        st.compact_to(snap(8, 2), 3);
        assert_eq!(st.first_index().unwrap(), 6);
        assert_eq!(st.term(5).unwrap(), 2);
        assert!(st.term(4).is_err());
        assert!(
            st.entries(5, 7, None, GetEntriesContext::empty(false))
                .is_err()
        );
        assert!(
            st.snapshot(0, 2).is_err(),
            "peer 2 is not in the snapshot's configuration"
        );
        assert!(st.take_snapshot_request());
        let mut s8 = snap(8, 2);
        s8.mut_metadata().mut_conf_state().voters = vec![1, 2];
        st.compact_to(s8, 3);
        assert_eq!(st.snapshot(0, 2).unwrap().get_metadata().index, 8);
        assert!(!st.take_snapshot_request());
    }

    #[test]
    fn replay_drops_entries_an_installed_snapshot_superseded() {
        use crate::wal::Record;
        let mut st = LogStore::default();
        for i in 1..=5 {
            st.replay(Record::Entry(ent(i, 1)));
        }
        // Installed from the leader: the follower's old entries 1..=5 are stale.
        st.replay(Record::Install { index: 3, term: 2 });
        st.apply_snapshot(snap(3, 2));
        for i in 4..=6 {
            st.replay(Record::Entry(ent(i, 2)));
        }
        assert_eq!(st.first_index().unwrap(), 4);
        assert_eq!(st.last(), 6);
        assert!((4..=6).all(|i| st.term(i).unwrap() == 2));
        // A local snapshot mark changes nothing.
        st.replay(Record::Snapshot { index: 5, term: 2 });
        assert_eq!(st.last(), 6);
    }

    #[test]
    fn an_installed_snapshot_restarts_the_log() {
        let mut st = LogStore::default();
        st.append(&(1..=3).map(|i| ent(i, 1)).collect::<Vec<_>>());
        st.apply_snapshot(snap(10, 3));
        assert_eq!(st.first_index().unwrap(), 11);
        assert_eq!(st.last(), 10);
        assert_eq!(st.term(10).unwrap(), 3);
        assert_eq!(st.hard_state().commit, 10);
    }

    #[test]
    fn snapshot_files_round_trip_and_damage_is_refused() {
        let d = std::env::temp_dir().join(format!("hft-snap-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        assert!(load_snapshot(&d).unwrap().is_none());
        save_snapshot(&d, &snap(5, 1), 2).unwrap();
        save_snapshot(&d, &snap(9, 1), 2).unwrap();
        let p = save_snapshot(&d, &snap(12, 2), 2).unwrap();
        assert_eq!(snapshot_files(&d).unwrap().len(), 2);
        assert_eq!(load_snapshot(&d).unwrap().unwrap().get_metadata().index, 12);
        let mut b = fs::read(&p).unwrap();
        let n = b.len();
        b[n - 1] ^= 1;
        fs::write(&p, b).unwrap();
        let e = load_snapshot(&d).unwrap_err().to_string();
        assert!(e.contains("checksum"), "{e}");
        fs::remove_dir_all(&d).unwrap();
    }
}
