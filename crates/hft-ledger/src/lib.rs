//! The Raft-replicated fill and position ledger.
//!
//! Positions and fills are the one state a trading firm cannot lose or double-count.
//! Every fill is proposed to a Raft group (tikv's raft-rs), made durable in a segmented
//! write-ahead log on a quorum, and applied idempotently by (venue, exec id): a fill
//! proposed twice — by a retry, a replay or a failover — counts once, and any member can
//! die without losing one.

pub mod command;
pub mod member;
pub mod state;
pub mod storage;
pub mod transport;
pub mod verify;
pub mod wal;

pub use command::{Command, DecodeError, KillScope, LedgerFill};
pub use state::{Applied, KillRow, LedgerState, PositionRow, Rejection};

pub use member::{
    Inbox, Ledger, LedgerError, Lone, MemberConfig, MemberThread, Outcome, PeerProgress, Recovery,
    Status, Transport,
};
