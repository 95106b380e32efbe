//! Binance's documented order-book synchronisation: buffer depth diffs until the REST
//! snapshot arrives, drop the diffs it already contains, check that the first diff
//! after it overlaps its `lastUpdateId`, and from then on that every diff continues the
//! previous one (`U = u_prev + 1` on spot, `pu = u_prev` on futures). Anything else is
//! a gap: the book must be rebuilt from a new snapshot.

use super::decode::WireLevel;

/// Identity of one depth diff.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiffIds {
    /// First update id (`U`).
    pub first: u64,
    /// Final update id (`u`).
    pub last: u64,
    /// Previous final id (`pu`, futures only).
    pub prev: Option<u64>,
}

/// What to do with a diff.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncAction {
    /// Apply it to the book.
    Apply,
    /// Before the snapshot: keep it until the snapshot arrives.
    Buffer,
    /// Already contained in the snapshot: drop it.
    Drop,
    /// It does not continue the book: resynchronise from a new snapshot.
    Gap,
}

/// The buffered diffs do not continue a snapshot: it is older than the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "depth snapshot {snapshot_id} is older than the first buffered diff (U = {first_buffered})"
)]
pub struct SnapshotTooOld {
    /// The snapshot's `lastUpdateId`.
    pub snapshot_id: u64,
    /// `U` of the first diff that does not continue it.
    pub first_buffered: u64,
}

/// A diff kept while waiting for the snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BufferedDiff {
    /// Its ids.
    pub ids: DiffIds,
    /// Event time, ms.
    pub event_ms: u64,
    /// Local receive time, ns.
    pub local_ts: u64,
    /// Bid levels (1e-8 units).
    pub bids: Vec<WireLevel>,
    /// Ask levels.
    pub asks: Vec<WireLevel>,
}

impl BufferedDiff {
    /// The depth message this diff came from, for normalisation after the snapshot.
    pub fn message<'a>(&self, symbol: &'a str) -> super::BinanceMsg<'a> {
        super::BinanceMsg::Depth {
            symbol,
            event_ms: self.event_ms,
            first_id: self.ids.first,
            final_id: self.ids.last,
            prev_final_id: self.ids.prev,
        }
    }
}

/// The synchronisation state of one symbol's book.
#[derive(Clone, Debug, Default)]
pub struct DepthSync {
    last: Option<u64>,
    snapshot_id: Option<u64>,
    buffer: Vec<BufferedDiff>,
    gaps: u64,
}

impl DepthSync {
    /// Waiting for a snapshot.
    pub fn new() -> Self {
        Self::default()
    }

    /// True once a snapshot was applied and the diffs continue it.
    pub fn is_synced(&self) -> bool {
        self.last.is_some()
    }

    /// Gaps seen so far.
    pub fn gaps(&self) -> u64 {
        self.gaps
    }

    /// Classifies the next diff.
    pub fn on_diff(&mut self, ids: DiffIds) -> SyncAction {
        let Some(last) = self.last else {
            return SyncAction::Buffer;
        };
        if ids.last <= last {
            return SyncAction::Drop;
        }
        let continues = match (self.snapshot_id, ids.prev) {
            // First diff after the snapshot: it must straddle the snapshot's id, or (on
            // futures) name it as its predecessor.
            (Some(s), pu) => {
                pu == Some(s)
                    || (ids.first <= s + 1 && ids.last > s)
                    || (ids.first <= s && ids.last >= s)
            }
            (None, Some(pu)) => pu == last,
            (None, None) => ids.first == last + 1,
        };
        if continues {
            self.snapshot_id = None;
            self.last = Some(ids.last);
            SyncAction::Apply
        } else {
            self.gaps += 1;
            self.last = None;
            SyncAction::Gap
        }
    }

    /// Keeps a diff that arrived before the snapshot.
    pub fn buffer(&mut self, diff: BufferedDiff) {
        self.buffer.push(diff);
    }

    /// The snapshot arrived: returns the buffered diffs to apply after it, in order
    /// (those it already contains are dropped), or `SnapshotTooOld` when the buffered
    /// diffs do not continue it — the venue's procedure then fetches a newer snapshot,
    /// and every diff newer than this snapshot stays buffered for it.
    pub fn on_snapshot(
        &mut self,
        last_update_id: u64,
    ) -> Result<Vec<BufferedDiff>, SnapshotTooOld> {
        self.last = Some(last_update_id);
        self.snapshot_id = Some(last_update_id);
        let mut buffered = std::mem::take(&mut self.buffer).into_iter();
        let mut apply = Vec::with_capacity(buffered.len());
        while let Some(d) = buffered.next() {
            match self.on_diff(d.ids) {
                SyncAction::Apply => apply.push(d),
                SyncAction::Drop => {}
                SyncAction::Gap | SyncAction::Buffer => {
                    let first_buffered = d.ids.first;
                    self.last = None;
                    self.snapshot_id = None;
                    self.buffer = apply;
                    self.buffer.push(d);
                    self.buffer.extend(buffered);
                    return Err(SnapshotTooOld {
                        snapshot_id: last_update_id,
                        first_buffered,
                    });
                }
            }
        }
        Ok(apply)
    }

    /// Continues the chain from `last` without a snapshot: for recorded data after a gap
    /// or a file that starts mid-stream, where no snapshot can be fetched.
    pub fn resume_at(&mut self, last: u64) {
        self.last = Some(last);
        self.snapshot_id = None;
    }

    /// Takes the buffered diffs out (when no snapshot will come).
    pub fn take_buffer(&mut self) -> Vec<BufferedDiff> {
        std::mem::take(&mut self.buffer)
    }

    /// Diffs waiting for the snapshot.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// Forgets everything (after a disconnect).
    pub fn reset(&mut self) {
        self.last = None;
        self.snapshot_id = None;
        self.buffer.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spot(first: u64, last: u64) -> DiffIds {
        DiffIds {
            first,
            last,
            prev: None,
        }
    }

    fn diff(ids: DiffIds) -> BufferedDiff {
        BufferedDiff {
            ids,
            event_ms: 0,
            local_ts: 0,
            bids: vec![],
            asks: vec![],
        }
    }

    #[test]
    fn spot_sync_drops_stale_keeps_straddling_and_chains() {
        let mut s = DepthSync::new();
        for ids in [spot(1, 5), spot(6, 9), spot(10, 14)] {
            assert_eq!(s.on_diff(ids), SyncAction::Buffer);
            s.buffer(diff(ids));
        }
        let apply = s.on_snapshot(8).unwrap();
        assert_eq!(
            apply.iter().map(|d| d.ids.first).collect::<Vec<_>>(),
            vec![6, 10]
        );
        assert!(s.is_synced());
        assert_eq!(s.on_diff(spot(15, 20)), SyncAction::Apply);
        assert_eq!(s.on_diff(spot(22, 25)), SyncAction::Gap);
        assert_eq!(s.gaps(), 1);
        assert!(!s.is_synced());
    }

    #[test]
    fn futures_chain_by_previous_id() {
        let mut s = DepthSync::new();
        s.on_snapshot(100).unwrap();
        assert_eq!(
            s.on_diff(DiffIds {
                first: 90,
                last: 99,
                prev: Some(80)
            }),
            SyncAction::Drop
        );
        assert_eq!(
            s.on_diff(DiffIds {
                first: 95,
                last: 110,
                prev: Some(94)
            }),
            SyncAction::Apply
        );
        assert_eq!(
            s.on_diff(DiffIds {
                first: 111,
                last: 120,
                prev: Some(110)
            }),
            SyncAction::Apply
        );
        assert_eq!(
            s.on_diff(DiffIds {
                first: 130,
                last: 140,
                prev: Some(125)
            }),
            SyncAction::Gap
        );
    }

    #[test]
    fn a_snapshot_older_than_the_buffer_is_refused_and_the_buffer_kept() {
        let mut s = DepthSync::new();
        for ids in [spot(10, 14), spot(15, 19)] {
            s.buffer(diff(ids));
        }
        assert_eq!(
            s.on_snapshot(5),
            Err(SnapshotTooOld {
                snapshot_id: 5,
                first_buffered: 10
            })
        );
        // Buffered diffs continue a snapshot but then break: all of them stay.
        let mut t = DepthSync::new();
        for ids in [spot(10, 14), spot(20, 24)] {
            t.buffer(diff(ids));
        }
        assert!(t.on_snapshot(12).is_err());
        assert_eq!(t.buffered(), 2);
        assert!(!s.is_synced());
        assert_eq!(s.buffered(), 2);
        let apply = s.on_snapshot(12).unwrap();
        assert_eq!(apply.len(), 2);
        assert!(s.is_synced());
    }
}
