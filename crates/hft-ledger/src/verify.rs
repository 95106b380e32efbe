//! `hft ledger verify`: rebuild a member's state from its files and check it.
//!
//! Reads the snapshots and the WAL without changing them, checks every record's CRC,
//! replays the committed entries from the oldest retained snapshot, and at each newer
//! snapshot compares the rebuilt state's hash with the snapshot's: a mismatch means
//! the snapshot or the log was altered, or apply is not deterministic.

use std::path::Path;

use raft::Storage as _;
use raft::prelude::EntryType;

use crate::command::decode_batch;
use crate::member::LedgerError;
use crate::state::LedgerState;
use crate::storage::{LogStore, load_snapshots};
use crate::wal::{self, Record};

/// What verification found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    /// Snapshots read.
    pub snapshots: usize,
    /// Snapshot hashes compared with the rebuilt state (all matched, or this is an
    /// error).
    pub snapshots_checked: usize,
    /// WAL records read.
    pub records: u64,
    /// Index the rebuilt state reaches (the commit index on disk).
    pub applied: u64,
    /// Fills in the rebuilt state.
    pub fills: u64,
    /// Hash of the rebuilt state.
    pub hash: [u8; 32],
    /// Bytes of an interrupted last write (dropped at the next start).
    pub torn_bytes: u64,
    /// Entries that did not decode (skipped alike by every member).
    pub undecodable: u64,
}

/// Verifies the member directory `dir` (the one holding `wal/` and `snap/`).
pub fn verify(dir: &Path) -> Result<VerifyReport, LedgerError> {
    rebuild(dir).map(|(r, _)| r)
}

/// [`verify`], also returning the rebuilt state (what a stopped member holds), for
/// offline audits that compare the ledger with a venue's record.
pub fn rebuild(dir: &Path) -> Result<(VerifyReport, LedgerState), LedgerError> {
    let snaps = load_snapshots(&dir.join("snap"))?;
    let mut entries = Vec::new();
    let mut hard_state = None;
    let rep = wal::read(&dir.join("wal"), |rec| match rec {
        Record::Entry(e) => entries.push(e),
        Record::HardState(hs) => hard_state = Some(hs),
        Record::Snapshot { .. } => {}
        // Entries before an installed snapshot were superseded by it.
        Record::Install { .. } => entries.clear(),
    })?;
    // Start from the oldest snapshot the log still reaches back to, so that every newer
    // snapshot can be checked against a rebuild.
    let log_start = entries.iter().map(|e| e.index).min().unwrap_or(u64::MAX);
    let start = snaps
        .iter()
        .position(|s| s.get_metadata().index + 1 >= log_start)
        .unwrap_or(snaps.len().saturating_sub(1));
    let mut store = LogStore::default();
    let mut state = LedgerState::new();
    let mut index = 0;
    if let Some(s) = snaps.get(start) {
        state = LedgerState::decode(&s.data)?;
        index = s.get_metadata().index;
        store.apply_snapshot(s.clone());
    }
    for e in &entries {
        store.append(std::slice::from_ref(e));
    }
    if let Some(hs) = hard_state {
        store.set_hard_state(hs);
    }
    let commit = store.hard_state().commit.min(store.last()).max(index);
    let mut checked = 0;
    let mut undecodable = 0;
    let mut later = snaps.iter().skip(start + 1).peekable();
    while index < commit {
        index += 1;
        let ents = store
            .entries(
                index,
                index + 1,
                None,
                raft::GetEntriesContext::empty(false),
            )
            .map_err(|e| LedgerError::Raft(format!("entry {index}: {e}")))?;
        let e = &ents[0];
        if e.get_entry_type() == EntryType::EntryNormal && !e.data.is_empty() {
            match decode_batch(&e.data) {
                Ok(cmds) => {
                    for c in &cmds {
                        state.apply(c);
                    }
                }
                Err(_) => undecodable += 1,
            }
        }
        while let Some(s) = later.peek() {
            let si = s.get_metadata().index;
            if si > index {
                break;
            }
            if si == index {
                let theirs = LedgerState::decode(&s.data)?;
                if theirs.hash() != state.hash() {
                    return Err(LedgerError::Invalid(format!(
                        "snapshot at index {si} does not match the state rebuilt from the \
                         log: the snapshot or the log in {} was altered",
                        dir.display()
                    )));
                }
                checked += 1;
            }
            later.next();
        }
    }
    let report = VerifyReport {
        snapshots: snaps.len(),
        snapshots_checked: checked,
        records: rep.records,
        applied: index,
        fills: state.fill_count(),
        hash: state.hash(),
        torn_bytes: rep.torn_bytes,
        undecodable,
    };
    Ok((report, state))
}
