//! One ledger member: the thread that drives raft-rs (ticks, proposals, `Ready`
//! handling: persist, send, apply), and the handle the rest of the node talks to.
//!
//! Proposals that arrive while the member is busy are merged into one entry, so under
//! load one fsync and one replication round commit many fills (group commit). A caller
//! hears back only when its commands are committed on a quorum and applied here.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use protobuf::Message as _;
use raft::prelude::{
    ConfChange, ConfChangeType, ConfState, Entry, EntryType, Message, MessageType, Snapshot,
};
use raft::{RawNode, SnapshotStatus, StateRole, Storage as _};
use thiserror::Error;
use tokio::sync::oneshot;

use crate::command::{
    Command, DecodeError, begin_batch, decode_batch, encode_command, set_batch_len,
};
use crate::state::{Applied, LedgerState};
use crate::storage::{LogStore, load_snapshot, save_snapshot, snapshot_of};
use crate::wal::{self, Wal, WalError};

/// How a member is set up.
#[derive(Clone, Debug)]
pub struct MemberConfig {
    /// Raft id of this member (non-zero, unique in the cluster).
    pub id: u64,
    /// Voters of a cluster created from nothing; empty for a member that joins an
    /// existing cluster (it learns the configuration from the leader).
    pub bootstrap: Vec<u64>,
    /// Directory of the WAL and snapshots.
    pub dir: PathBuf,
    /// Raft tick.
    pub tick: Duration,
    /// Ticks without a leader before an election (randomized up to twice this).
    pub election_ticks: usize,
    /// Ticks between leader heartbeats.
    pub heartbeat_ticks: usize,
    /// Applied entries between snapshots.
    pub snapshot_every: u64,
    /// Entries kept in the log behind a snapshot for lagging peers.
    pub keep_entries: u64,
    /// Largest merged proposal, bytes.
    pub max_entry_bytes: usize,
    /// Sync the WAL before acknowledging (off only for tests that measure logic).
    pub fsync: bool,
    /// WAL segment size.
    pub segment_bytes: u64,
    /// Instruments a fill may name, with their (price, qty) scales; `None` accepts any.
    pub instruments: Option<BTreeMap<String, (u8, u8)>>,
    /// This member held a log once and lost it (its disk was replaced): it may still be
    /// a voter in the leader's configuration, with entries it no longer has counted as
    /// its own. Until it sees itself removed and added back as a learner it stays
    /// [`Status::rejoining`]: it grants no vote (an empty log would vote for a
    /// candidate missing committed entries), never campaigns, and takes a heartbeat's
    /// commit index only up to the entries it holds. Kept across restarts by a marker
    /// file in `dir`.
    pub rejoin: bool,
}

/// The marker file of a member that lost its log and has not been added back yet.
const REJOINING: &str = "REJOINING";

impl MemberConfig {
    /// Defaults tuned for a LAN: 20 ms ticks, election after 200–400 ms, heartbeats
    /// every 40 ms, fsync on.
    pub fn new(id: u64, bootstrap: Vec<u64>, dir: impl Into<PathBuf>) -> Self {
        Self {
            id,
            bootstrap,
            dir: dir.into(),
            tick: Duration::from_millis(20),
            election_ticks: 10,
            heartbeat_ticks: 2,
            snapshot_every: 20_000,
            keep_entries: 5_000,
            max_entry_bytes: 1 << 20,
            fsync: true,
            segment_bytes: wal::SEGMENT_BYTES,
            instruments: None,
            rejoin: false,
        }
    }
}

/// Delivers Raft messages to peers. Implementations must not block: a slow or dead peer
/// is Raft's problem (it retries), never the member's.
pub trait Transport: Send + 'static {
    /// Sends messages; each carries its destination in `to`.
    fn send(&mut self, msgs: Vec<Message>);
    /// Learns (or, with `None`, forgets) a peer's address after a membership change.
    fn set_peer(&mut self, id: u64, addr: Option<String>);
}

/// Why a ledger call failed.
#[derive(Debug, Error)]
pub enum LedgerError {
    /// No leader is known (election in progress or no quorum); retry shortly.
    #[error("ledger has no leader (election in progress or no quorum); retry")]
    NoLeader,
    /// Leadership changed before the call completed; it may or may not have taken
    /// effect, so retry: fills and reservations are idempotent.
    #[error("ledger leadership changed before the call completed; retry (it is idempotent)")]
    Retry,
    /// The call was refused before it was proposed.
    #[error("ledger refused the request: {0}")]
    Invalid(String),
    /// The member has stopped.
    #[error("ledger member stopped")]
    Stopped,
    /// The log or a snapshot could not be read or written.
    #[error(transparent)]
    Storage(#[from] WalError),
    /// A snapshot or entry could not be decoded.
    #[error("ledger data: {0}")]
    Decode(#[from] DecodeError),
    /// raft-rs refused an operation.
    #[error("raft: {0}")]
    Raft(String),
}

/// What a proposal did once committed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Log index of the entry that carried it.
    pub index: u64,
    /// Commands that changed the state.
    pub applied: u32,
    /// Fills already booked.
    pub duplicates: u32,
    /// Commands the state machine refused.
    pub rejected: u32,
}

/// Replication progress of one peer, as the leader sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerProgress {
    /// Member id.
    pub id: u64,
    /// Highest index known replicated.
    pub matched: u64,
    /// Entries behind the leader's last index.
    pub lag: u64,
    /// Voter or learner.
    pub learner: bool,
}

/// A member's view of the cluster.
#[derive(Clone, Debug)]
pub struct Status {
    /// This member.
    pub id: u64,
    /// Leader, follower, candidate or pre-candidate.
    pub role: String,
    /// Current term.
    pub term: u64,
    /// Known leader (0 if none).
    pub leader: u64,
    /// Commit index.
    pub commit: u64,
    /// Applied index.
    pub applied: u64,
    /// Last log index.
    pub last_index: u64,
    /// Index of the latest snapshot.
    pub snapshot_index: u64,
    /// Voters.
    pub voters: Vec<u64>,
    /// Learners.
    pub learners: Vec<u64>,
    /// Per-peer progress (leader only).
    pub peers: Vec<PeerProgress>,
    /// Fills booked.
    pub fills: u64,
    /// Duplicate fills ignored.
    pub duplicates: u64,
    /// It lost its log and waits to be removed and added back as a learner
    /// ([`MemberConfig::rejoin`]).
    pub rejoining: bool,
}

type ReadFn = Box<dyn FnOnce(Result<&LedgerState, LedgerError>) + Send>;

enum Input {
    Raft(Box<Message>),
    Propose(Vec<Command>, oneshot::Sender<Result<Outcome, LedgerError>>),
    Read(ReadFn, bool),
    Status(oneshot::Sender<Status>),
    ConfChange(
        ConfChange,
        Option<String>,
        oneshot::Sender<Result<ConfState, LedgerError>>,
    ),
    Transfer(u64),
    Campaign,
    SnapshotStatus(u64, bool),
    Stop,
}

/// Hands Raft messages received from peers to the member.
#[derive(Clone)]
pub struct Inbox(mpsc::Sender<Input>);

impl Inbox {
    /// Delivers one message from a peer; false once the member has stopped.
    pub fn deliver(&self, m: Message) -> bool {
        self.0.send(Input::Raft(Box::new(m))).is_ok()
    }

    /// Tells the member whether a snapshot it sent to `to` arrived.
    pub fn snapshot_status(&self, to: u64, delivered: bool) {
        let _ = self.0.send(Input::SnapshotStatus(to, delivered));
    }
}

/// Handle to a running member; cheap to clone, usable from any thread or task.
#[derive(Clone)]
pub struct Ledger {
    tx: mpsc::Sender<Input>,
    id: u64,
    instruments: Option<std::sync::Arc<BTreeMap<String, (u8, u8)>>>,
}

/// The member's thread; dropping it stops the member and waits for it.
pub struct MemberThread {
    tx: mpsc::Sender<Input>,
    join: Option<JoinHandle<()>>,
}

impl MemberThread {
    /// Whether the member stopped by itself: its storage failed (a full or broken disk)
    /// and it neither persists nor acknowledges anything any more. The process that
    /// holds it should stop too, so that its work moves to healthy members.
    pub fn is_finished(&self) -> bool {
        self.join.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Stops the member and waits for its thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let _ = self.tx.send(Input::Stop);
        if let Some(j) = self.join.take() {
            let _ = j.join();
        }
    }
}

impl Drop for MemberThread {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// What recovery found on disk.
#[derive(Clone, Copy, Debug, Default)]
pub struct Recovery {
    /// Index of the snapshot loaded (0 if none).
    pub snapshot_index: u64,
    /// WAL records replayed.
    pub records: u64,
    /// Bytes of an interrupted final write dropped.
    pub torn_bytes: u64,
}

impl Ledger {
    /// Recovers the member from its directory and starts its thread. `transport` is
    /// built from the member's inbox (where it delivers what peers send). Returns the
    /// handle, the thread (stop it to shut down) and what recovery found.
    pub fn start<T: Transport>(
        cfg: MemberConfig,
        transport: impl FnOnce(Inbox) -> T,
    ) -> Result<(Ledger, MemberThread, Recovery), LedgerError> {
        let (tx, rx) = mpsc::channel();
        let transport = transport(Inbox(tx.clone()));
        let (driver, recovery) = Driver::open(cfg.clone(), Box::new(transport))?;
        let join = std::thread::Builder::new()
            .name(format!("ledger-{}", cfg.id))
            .spawn(move || driver.run(rx))
            .map_err(|e| LedgerError::Raft(format!("cannot start the member thread: {e}")))?;
        Ok((
            Ledger {
                tx: tx.clone(),
                id: cfg.id,
                instruments: cfg.instruments.map(std::sync::Arc::new),
            },
            MemberThread {
                tx,
                join: Some(join),
            },
            recovery,
        ))
    }

    /// This member's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Proposes commands; resolves once they are committed and applied on this member.
    /// Fills naming an instrument this ledger does not know are refused here, before
    /// anything is proposed.
    pub fn propose(&self, cmds: Vec<Command>) -> oneshot::Receiver<Result<Outcome, LedgerError>> {
        let (tx, rx) = oneshot::channel();
        if let Err(why) = self.validate(&cmds) {
            let _ = tx.send(Err(LedgerError::Invalid(why)));
            return rx;
        }
        if let Err(mpsc::SendError(Input::Propose(_, tx))) = self.tx.send(Input::Propose(cmds, tx))
        {
            let _ = tx.send(Err(LedgerError::Stopped));
        }
        rx
    }

    /// [`Ledger::propose`] for synchronous callers.
    pub fn propose_blocking(&self, cmds: Vec<Command>) -> Result<Outcome, LedgerError> {
        self.propose(cmds)
            .blocking_recv()
            .unwrap_or(Err(LedgerError::Stopped))
    }

    fn validate(&self, cmds: &[Command]) -> Result<(), String> {
        for c in cmds {
            if let Command::Fill(f) = c {
                for (what, name) in [
                    ("venue", &f.venue),
                    ("account", &f.account),
                    ("strategy", &f.strategy),
                    ("instrument", &f.instrument),
                ] {
                    if name.is_empty() || name.len() > 255 {
                        return Err(format!(
                            "fill {}/{}: {what} name must be 1 to 255 bytes",
                            f.venue, f.exec_id
                        ));
                    }
                }
                if !crate::state::amounts_in_range(f) {
                    return Err(format!(
                        "fill {}/{}: quantity must be positive, price not negative, \
                         amounts at most {} raw units and scales within the instrument \
                         rules (each <= 12, together <= 16)",
                        f.venue,
                        f.exec_id,
                        crate::state::MAX_AMOUNT
                    ));
                }
                if let Some(known) = &self.instruments {
                    match known.get(&f.instrument) {
                        None => {
                            return Err(format!(
                                "fill {}/{}: unknown instrument {:?}; add it to the config's \
                                 instruments first",
                                f.venue, f.exec_id, f.instrument
                            ));
                        }
                        Some(&(ps, qs)) if (ps, qs) != (f.price_scale, f.qty_scale) => {
                            return Err(format!(
                                "fill {}/{}: {} has price/qty scales {ps}/{qs}, the fill says \
                                 {}/{}",
                                f.venue, f.exec_id, f.instrument, f.price_scale, f.qty_scale
                            ));
                        }
                        Some(_) => {}
                    }
                }
            }
        }
        Ok(())
    }

    /// Runs `f` on the state once it reflects every write committed before the call
    /// (ReadIndex: the leader confirms it still leads before answering).
    pub fn read<R: Send + 'static>(
        &self,
        f: impl FnOnce(&LedgerState) -> R + Send + 'static,
    ) -> oneshot::Receiver<Result<R, LedgerError>> {
        self.read_with(f, true)
    }

    /// Runs `f` on this member's state as applied now, without asking the leader: fast,
    /// possibly stale.
    pub fn read_local<R: Send + 'static>(
        &self,
        f: impl FnOnce(&LedgerState) -> R + Send + 'static,
    ) -> oneshot::Receiver<Result<R, LedgerError>> {
        self.read_with(f, false)
    }

    fn read_with<R: Send + 'static>(
        &self,
        f: impl FnOnce(&LedgerState) -> R + Send + 'static,
        linearizable: bool,
    ) -> oneshot::Receiver<Result<R, LedgerError>> {
        let (tx, rx) = oneshot::channel();
        let run: ReadFn = Box::new(move |st: Result<&LedgerState, LedgerError>| {
            let _ = tx.send(st.map(f));
        });
        let _ = self.tx.send(Input::Read(run, linearizable));
        rx
    }

    /// This member's status.
    pub fn status(&self) -> oneshot::Receiver<Status> {
        let (tx, rx) = oneshot::channel();
        let _ = self.tx.send(Input::Status(tx));
        rx
    }

    /// Adds `id` (reachable at `addr`) as a learner: it receives the log but does not
    /// vote until promoted.
    pub fn add_learner(
        &self,
        id: u64,
        addr: &str,
    ) -> oneshot::Receiver<Result<ConfState, LedgerError>> {
        self.conf_change(ConfChangeType::AddLearnerNode, id, Some(addr.to_owned()))
    }

    /// Makes a learner (or a new member at `addr`) a voter.
    pub fn promote(
        &self,
        id: u64,
        addr: Option<&str>,
    ) -> oneshot::Receiver<Result<ConfState, LedgerError>> {
        self.conf_change(ConfChangeType::AddNode, id, addr.map(str::to_owned))
    }

    /// Removes a member.
    pub fn remove(&self, id: u64) -> oneshot::Receiver<Result<ConfState, LedgerError>> {
        self.conf_change(ConfChangeType::RemoveNode, id, None)
    }

    fn conf_change(
        &self,
        kind: ConfChangeType,
        id: u64,
        addr: Option<String>,
    ) -> oneshot::Receiver<Result<ConfState, LedgerError>> {
        let (tx, rx) = oneshot::channel();
        let mut cc = ConfChange::default();
        cc.set_change_type(kind);
        cc.node_id = id;
        let _ = self.tx.send(Input::ConfChange(cc, addr, tx));
        rx
    }

    /// Asks the leader to hand leadership to `to` (it must be a caught-up voter).
    pub fn transfer_leader(&self, to: u64) {
        let _ = self.tx.send(Input::Transfer(to));
    }

    /// Starts an election now (tests and operators forcing a leader).
    pub fn campaign(&self) {
        let _ = self.tx.send(Input::Campaign);
    }
}

struct PendingProposal {
    reply: oneshot::Sender<Result<Outcome, LedgerError>>,
    outcome: Outcome,
    since: Instant,
}

/// A linearizable read waiting for its read index.
struct WaitingRead {
    f: ReadFn,
    since: Instant,
    /// When the read index was last asked for (None: not yet).
    asked: Option<Instant>,
}

/// How long a linearizable read may wait for the leader before it fails with `Retry`.
const READ_DEADLINE: Duration = Duration::from_secs(5);
/// How long a proposal may wait for its commit before it is answered `Retry`.
const PROPOSE_DEADLINE: Duration = Duration::from_secs(5);

/// Refuses a membership change raft-rs would refuse only when applying it.
fn check_conf_change(cs: &ConfState, cc: &ConfChange) -> Result<(), String> {
    let (id, voter, learner) = (
        cc.node_id,
        cs.voters.contains(&cc.node_id),
        cs.learners.contains(&cc.node_id),
    );
    if id == 0 {
        return Err("member ids start at 1".into());
    }
    match cc.get_change_type() {
        ConfChangeType::AddLearnerNode if voter => Err(format!(
            "member {id} is a voter; remove it first to demote it"
        )),
        ConfChangeType::RemoveNode if !voter && !learner => {
            Err(format!("member {id} is not in the configuration"))
        }
        ConfChangeType::RemoveNode if voter && cs.voters.len() == 1 => {
            Err(format!("member {id} is the last voter"))
        }
        _ => Ok(()),
    }
}

struct PendingConf {
    reply: oneshot::Sender<Result<ConfState, LedgerError>>,
}

struct Driver {
    cfg: MemberConfig,
    node: RawNode<LogStore>,
    wal: Wal,
    state: LedgerState,
    applied: u64,
    transport: Box<dyn Transport>,
    seq: u64,
    batch: Vec<u8>,
    batch_ctx: Vec<u8>,
    batch_len: u32,
    proposals: HashMap<u64, PendingProposal>,
    confs: HashMap<u64, PendingConf>,
    reads_waiting: HashMap<u64, WaitingRead>,
    reads_ready: Vec<(u64, ReadFn)>,
    leader: u64,
    term: u64,
    /// See [`MemberConfig::rejoin`].
    rejoining: bool,
}

const CTX_PROPOSAL: u8 = 1;
const CTX_CONF: u8 = 2;

impl Driver {
    fn open(
        cfg: MemberConfig,
        transport: Box<dyn Transport>,
    ) -> Result<(Self, Recovery), LedgerError> {
        if cfg.id == 0 {
            return Err(LedgerError::Invalid("member id must not be 0".into()));
        }
        let snap_dir = cfg.dir.join("snap");
        let mut store = LogStore::default();
        let mut state = LedgerState::new();
        let mut recovery = Recovery::default();
        if let Some(snap) = load_snapshot(&snap_dir)? {
            state = LedgerState::decode(&snap.data)?;
            recovery.snapshot_index = snap.get_metadata().index;
            store.apply_snapshot(snap);
        }
        let (mut wal, rep) =
            Wal::open(&cfg.dir.join("wal"), cfg.segment_bytes, cfg.fsync, |rec| {
                store.replay(rec)
            })?;
        recovery.records = rep.records;
        recovery.torn_bytes = rep.torn_bytes;
        if recovery.snapshot_index == 0 && rep.records == 0 && !cfg.bootstrap.is_empty() {
            // A new cluster starts from a snapshot at index 1 holding the voters and an
            // empty ledger (as raft-rs recommends): a member that joins later has an
            // empty log, so the leader sends it this snapshot, configuration included.
            let cs = ConfState {
                voters: cfg.bootstrap.clone(),
                ..Default::default()
            };
            let snap = snapshot_of(1, 1, cs, LedgerState::new().encode());
            save_snapshot(&snap_dir, &snap, 2)?;
            wal.append_snapshot(1, 1);
            wal.sync()?;
            store.apply_snapshot(snap);
            recovery.snapshot_index = 1;
        }
        let marker = cfg.dir.join(REJOINING);
        let io = |source| WalError::Io {
            path: marker.clone(),
            source,
        };
        if cfg.rejoin && recovery.snapshot_index == 0 && rep.records == 0 {
            // Durable before anything else is written: a crash must not leave a log
            // without its marker.
            std::fs::File::create(&marker)
                .and_then(|f| f.sync_all())
                .and_then(|()| std::fs::File::open(&cfg.dir)?.sync_all())
                .map_err(io)?;
        }
        let rejoining = marker.try_exists().map_err(io)?;
        if rejoining {
            tracing::warn!(
                member = cfg.id,
                "this member lost its log: it votes for no one until it is removed and added back as a learner"
            );
        }
        let applied = recovery.snapshot_index;
        let mut hs = store.hard_state().clone();
        if hs.commit < applied {
            hs.commit = applied;
        }
        // A commit index recorded ahead of the entries the torn tail kept is clamped:
        // raft-rs re-learns it from the leader.
        hs.commit = hs.commit.min(store.last());
        store.set_hard_state(hs);
        let rcfg = raft::Config {
            id: cfg.id,
            election_tick: cfg.election_ticks,
            heartbeat_tick: cfg.heartbeat_ticks,
            applied,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            check_quorum: true,
            pre_vote: true,
            ..raft::Config::default()
        };
        rcfg.validate()
            .map_err(|e| LedgerError::Raft(e.to_string()))?;
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let node =
            RawNode::new(&rcfg, store, &logger).map_err(|e| LedgerError::Raft(e.to_string()))?;
        Ok((
            Self {
                cfg,
                node,
                wal,
                state,
                applied,
                transport,
                // Sequence numbers of this run start above any earlier run's, so an
                // old entry re-applied after a restart never answers a new caller.
                seq: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_nanos() as u64,
                batch: Vec::new(),
                batch_ctx: Vec::new(),
                batch_len: 0,
                proposals: HashMap::new(),
                confs: HashMap::new(),
                reads_waiting: HashMap::new(),
                reads_ready: Vec::new(),
                leader: 0,
                term: 0,
                rejoining,
            },
            recovery,
        ))
    }

    fn run(mut self, rx: mpsc::Receiver<Input>) {
        let mut next_tick = Instant::now() + self.cfg.tick;
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(Input::Stop) => break,
                Ok(i) => self.handle(i),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            let mut stop = false;
            for _ in 0..4096 {
                match rx.try_recv() {
                    Ok(Input::Stop) => {
                        stop = true;
                        break;
                    }
                    Ok(i) => self.handle(i),
                    Err(_) => break,
                }
            }
            self.flush_batch();
            if Instant::now() >= next_tick {
                // A rejoining member never campaigns: ticks drive only elections on a
                // follower.
                if !self.rejoining {
                    self.node.tick();
                }
                next_tick += self.cfg.tick;
                if next_tick < Instant::now() {
                    next_tick = Instant::now() + self.cfg.tick;
                }
            }
            if let Err(e) = self.on_ready() {
                tracing::error!(member = self.cfg.id, error = %e, "ledger member stops: storage failed");
                break;
            }
            self.watch_leadership();
            self.ask_reads(Instant::now());
            self.expire_proposals();
            if stop {
                break;
            }
        }
        if let Err(e) = self.wal.sync() {
            tracing::error!(member = self.cfg.id, error = %e, "ledger log not synced at stop");
        }
        self.fail_all(|| LedgerError::Stopped);
    }

    fn handle(&mut self, input: Input) {
        match input {
            Input::Raft(mut m) => {
                if self.rejoining {
                    match m.get_msg_type() {
                        // No vote, and no campaign on a leadership transfer either.
                        MessageType::MsgRequestVote
                        | MessageType::MsgRequestPreVote
                        | MessageType::MsgTimeoutNow => return,
                        MessageType::MsgHeartbeat => {
                            // The leader's progress may still hold what this member
                            // acknowledged before its log was lost.
                            m.commit = m.commit.min(self.node.store().last());
                        }
                        _ => {}
                    }
                }
                if let Err(e) = self.node.step(*m) {
                    tracing::debug!(member = self.cfg.id, error = %e, "raft message refused");
                }
            }
            Input::Propose(cmds, reply) => self.add_to_batch(&cmds, reply),
            Input::Read(f, linearizable) => {
                if !linearizable {
                    f(Ok(&self.state));
                } else if self.node.raft.leader_id == 0 {
                    f(Err(LedgerError::NoLeader));
                } else {
                    self.seq += 1;
                    let now = Instant::now();
                    self.reads_waiting.insert(
                        self.seq,
                        WaitingRead {
                            f,
                            since: now,
                            asked: None,
                        },
                    );
                    self.ask_reads(now);
                }
            }
            Input::Status(reply) => {
                let _ = reply.send(self.status());
            }
            Input::ConfChange(cc, addr, reply) => {
                if let Err(why) = check_conf_change(self.node.store().conf_state(), &cc) {
                    let _ = reply.send(Err(LedgerError::Invalid(why)));
                    return;
                }
                self.seq += 1;
                let mut ctx = vec![CTX_CONF];
                ctx.extend_from_slice(&self.cfg.id.to_le_bytes());
                ctx.extend_from_slice(&self.seq.to_le_bytes());
                if let Some(a) = &addr {
                    ctx.extend_from_slice(a.as_bytes());
                }
                match self.node.propose_conf_change(ctx, cc) {
                    Ok(()) => {
                        self.confs.insert(self.seq, PendingConf { reply });
                    }
                    Err(raft::Error::ProposalDropped) => {
                        let _ = reply.send(Err(LedgerError::NoLeader));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(LedgerError::Raft(e.to_string())));
                    }
                }
            }
            Input::Transfer(to) => self.node.transfer_leader(to),
            Input::Campaign if self.rejoining => {}
            Input::Campaign => {
                let _ = self.node.campaign();
            }
            Input::SnapshotStatus(to, ok) => self.node.report_snapshot(
                to,
                if ok {
                    SnapshotStatus::Finish
                } else {
                    SnapshotStatus::Failure
                },
            ),
            Input::Stop => {}
        }
    }

    fn add_to_batch(
        &mut self,
        cmds: &[Command],
        reply: oneshot::Sender<Result<Outcome, LedgerError>>,
    ) {
        if self.batch.len() >= self.cfg.max_entry_bytes {
            self.flush_batch();
        }
        if self.batch.is_empty() {
            begin_batch(&mut self.batch);
            self.batch_ctx.clear();
            self.batch_ctx.push(CTX_PROPOSAL);
            self.batch_ctx.extend_from_slice(&self.cfg.id.to_le_bytes());
            self.batch_len = 0;
        }
        for c in cmds {
            encode_command(c, &mut self.batch);
        }
        self.batch_len += cmds.len() as u32;
        self.seq += 1;
        self.batch_ctx.extend_from_slice(&self.seq.to_le_bytes());
        self.batch_ctx
            .extend_from_slice(&(cmds.len() as u32).to_le_bytes());
        self.proposals.insert(
            self.seq,
            PendingProposal {
                reply,
                outcome: Outcome::default(),
                since: Instant::now(),
            },
        );
    }

    fn flush_batch(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        set_batch_len(&mut self.batch, 0, self.batch_len);
        let data = std::mem::take(&mut self.batch);
        let ctx = std::mem::take(&mut self.batch_ctx);
        if let Err(e) = self.node.propose(ctx.clone(), data) {
            let err = || match e {
                raft::Error::ProposalDropped => LedgerError::NoLeader,
                ref other => LedgerError::Raft(other.to_string()),
            };
            for (seq, _) in proposal_ranges(&ctx) {
                if let Some(p) = self.proposals.remove(&seq) {
                    let _ = p.reply.send(Err(err()));
                }
            }
        }
    }

    fn on_ready(&mut self) -> Result<(), LedgerError> {
        if !self.node.has_ready() {
            return Ok(());
        }
        let mut rd = self.node.ready();
        if !rd.messages().is_empty() {
            self.transport.send(rd.take_messages());
        }
        if !rd.snapshot().is_empty() {
            self.install_snapshot(rd.snapshot().clone())?;
        }
        self.apply_entries(rd.take_committed_entries())?;
        let appended = !rd.entries().is_empty();
        if appended {
            for e in rd.entries() {
                self.wal.append_entry(e);
            }
            self.node.mut_store().append(rd.entries());
        }
        if let Some(hs) = rd.hs() {
            self.wal.append_hard_state(hs);
            self.node.mut_store().set_hard_state(hs.clone());
        }
        self.wal.sync()?;
        // Entries durable, neither applied nor acknowledged: a crash here loses nothing.
        #[cfg(feature = "failpoints")]
        if appended {
            fail::fail_point!("ledger::after-append", |_| std::process::abort());
        }
        #[cfg(not(feature = "failpoints"))]
        let _ = appended;
        if !rd.persisted_messages().is_empty() {
            self.transport.send(rd.take_persisted_messages());
        }
        for rs in rd.take_read_states() {
            let seq = u64::from_le_bytes(
                rs.request_ctx
                    .get(..8)
                    .and_then(|b| b.try_into().ok())
                    .unwrap_or_default(),
            );
            if let Some(w) = self.reads_waiting.remove(&seq) {
                self.reads_ready.push((rs.index, w.f));
            }
        }
        let mut light = self.node.advance(rd);
        if let Some(commit) = light.commit_index() {
            let mut hs = self.node.store().hard_state().clone();
            hs.commit = commit;
            // Written with the next sync (or at stop): a commit index that lags on disk
            // is re-learnt from the leader, so it needs no fsync of its own.
            self.wal.append_hard_state(&hs);
            self.node.mut_store().set_hard_state(hs);
        }
        self.transport.send(light.take_messages());
        self.apply_entries(light.take_committed_entries())?;
        self.node.advance_apply();
        self.serve_reads();
        self.maybe_snapshot()?;
        Ok(())
    }

    fn install_snapshot(&mut self, snap: Snapshot) -> Result<(), LedgerError> {
        let meta = snap.get_metadata();
        let (index, term) = (meta.index, meta.term);
        let state = LedgerState::decode(&snap.data)?;
        save_snapshot(&self.cfg.dir.join("snap"), &snap, 2)?;
        self.wal.append_install(index, term);
        self.wal.sync()?;
        let learner = snap
            .get_metadata()
            .get_conf_state()
            .learners
            .contains(&self.cfg.id);
        self.node.mut_store().apply_snapshot(snap);
        self.state = state;
        self.applied = index;
        if self.rejoining && learner {
            // Taken after it was added back (a founder was never a learner before).
            self.end_rejoin()?;
        }
        tracing::info!(
            member = self.cfg.id,
            index,
            term,
            "installed a ledger snapshot from the leader"
        );
        Ok(())
    }

    fn apply_entries(&mut self, entries: Vec<Entry>) -> Result<(), LedgerError> {
        for e in entries {
            if e.index <= self.applied {
                continue;
            }
            self.applied = e.index;
            match e.get_entry_type() {
                EntryType::EntryNormal => self.apply_normal(&e)?,
                EntryType::EntryConfChange => self.apply_conf(&e)?,
                EntryType::EntryConfChangeV2 => {
                    tracing::error!(
                        member = self.cfg.id,
                        index = e.index,
                        "joint configuration changes are not used by hft; entry ignored"
                    );
                }
            }
        }
        Ok(())
    }

    fn apply_normal(&mut self, e: &Entry) -> Result<(), LedgerError> {
        if e.data.is_empty() {
            return Ok(());
        }
        let ctx = &e.context[..];
        let mine =
            ctx.len() >= 9 && ctx[0] == CTX_PROPOSAL && ctx[1..9] == self.cfg.id.to_le_bytes();
        let ranges: Vec<(u64, u32)> = if mine {
            proposal_ranges(ctx).collect()
        } else {
            Vec::new()
        };
        let cmds = match decode_batch(&e.data) {
            Ok(c) => c,
            Err(err)
                if e.data
                    .first()
                    .is_some_and(|&v| v > crate::command::FORMAT_VERSION) =>
            {
                // Written by a newer release: skipping it would let this member's state
                // part from the upgraded members'. Stop instead; upgrade, then restart.
                return Err(LedgerError::Decode(err));
            }
            Err(err) => {
                // Committed everywhere alike, so every member skips it alike.
                tracing::error!(member = self.cfg.id, index = e.index, error = %err, "undecodable ledger entry skipped");
                for (seq, _) in ranges {
                    if let Some(p) = self.proposals.remove(&seq) {
                        let _ = p.reply.send(Err(LedgerError::Decode(err)));
                    }
                }
                return Ok(());
            }
        };
        let mut r = ranges.into_iter();
        let mut cur = r.next();
        let mut left = cur.map_or(0, |c| c.1);
        for c in &cmds {
            while cur.is_some() && left == 0 {
                self.finish_proposal(cur.map(|c| c.0), e.index);
                cur = r.next();
                left = cur.map_or(0, |c| c.1);
            }
            let res = self.state.apply(c);
            if let Some((seq, _)) = cur {
                left -= 1;
                if let Some(p) = self.proposals.get_mut(&seq) {
                    match res {
                        Applied::Done => p.outcome.applied += 1,
                        Applied::Duplicate => p.outcome.duplicates += 1,
                        Applied::Rejected(_) => p.outcome.rejected += 1,
                    }
                }
            }
        }
        self.finish_proposal(cur.map(|c| c.0), e.index);
        for (seq, _) in r {
            self.finish_proposal(Some(seq), e.index);
        }
        Ok(())
    }

    fn finish_proposal(&mut self, seq: Option<u64>, index: u64) {
        if let Some(p) = seq.and_then(|s| self.proposals.remove(&s)) {
            let mut o = p.outcome;
            o.index = index;
            let _ = p.reply.send(Ok(o));
        }
    }

    fn apply_conf(&mut self, e: &Entry) -> Result<(), LedgerError> {
        let cc = ConfChange::parse_from_bytes(&e.data).map_err(|err| {
            LedgerError::Raft(format!("configuration change at {}: {err}", e.index))
        })?;
        let ctx = &e.context[..];
        let addr = (ctx.len() > 17 && ctx[0] == CTX_CONF)
            .then(|| String::from_utf8_lossy(&ctx[17..]).into_owned());
        match cc.get_change_type() {
            ConfChangeType::AddNode | ConfChangeType::AddLearnerNode => {
                if cc.node_id != self.cfg.id && addr.is_some() {
                    self.transport.set_peer(cc.node_id, addr.clone());
                }
            }
            ConfChangeType::RemoveNode => {
                if cc.node_id != self.cfg.id {
                    self.transport.set_peer(cc.node_id, None);
                }
            }
        }
        let mine = ctx.len() >= 17 && ctx[0] == CTX_CONF && ctx[1..9] == self.cfg.id.to_le_bytes();
        let pending = mine
            .then(|| u64::from_le_bytes(ctx[9..17].try_into().expect("8 bytes")))
            .and_then(|seq| self.confs.remove(&seq));
        match self.node.apply_conf_change(&cc) {
            Ok(cs) => {
                self.node.mut_store().set_conf_state(cs.clone());
                if self.rejoining
                    && cc.node_id == self.cfg.id
                    && cc.get_change_type() == ConfChangeType::AddLearnerNode
                {
                    self.end_rejoin()?;
                }
                if let Some(p) = pending {
                    let _ = p.reply.send(Ok(cs));
                }
            }
            Err(err) => {
                // Committed alike everywhere, refused alike everywhere: skipped, the
                // configuration unchanged (stopping would stop every member for good).
                tracing::error!(member = self.cfg.id, index = e.index, error = %err, "configuration change refused by raft; skipped");
                if let Some(p) = pending {
                    let _ = p.reply.send(Err(LedgerError::Invalid(err.to_string())));
                }
            }
        }
        Ok(())
    }

    /// Ends [`MemberConfig::rejoin`]: this member was added back as a learner.
    fn end_rejoin(&mut self) -> Result<(), LedgerError> {
        let marker = self.cfg.dir.join(REJOINING);
        match std::fs::remove_file(&marker) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(WalError::Io {
                    path: marker,
                    source,
                }
                .into());
            }
        }
        self.rejoining = false;
        tracing::info!(
            member = self.cfg.id,
            "added back as a learner: rejoined the ledger"
        );
        Ok(())
    }

    fn serve_reads(&mut self) {
        if self.reads_ready.is_empty() {
            return;
        }
        let applied = self.applied;
        let (now, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.reads_ready)
            .into_iter()
            .partition(|(i, _)| *i <= applied);
        self.reads_ready = later;
        for (_, f) in now {
            f(Ok(&self.state));
        }
    }

    fn maybe_snapshot(&mut self) -> Result<(), LedgerError> {
        let snap_index = self.node.store().snapshot_ref().get_metadata().index;
        let wanted = self.node.store().take_snapshot_request() && self.applied > snap_index;
        if !wanted && self.applied < snap_index + self.cfg.snapshot_every {
            return Ok(());
        }
        let index = self.applied;
        let term = self
            .node
            .store()
            .term(index)
            .map_err(|_| LedgerError::Raft(format!("no term for applied index {index}")))?;
        let cs = self.node.store().conf_state().clone();
        let snap = snapshot_of(index, term, cs, self.state.encode());
        save_snapshot(&self.cfg.dir.join("snap"), &snap, 2)?;
        self.wal.append_snapshot(index, term);
        self.wal.sync()?;
        let keep = self.cfg.keep_entries;
        self.node.mut_store().compact_to(snap, keep);
        self.wal.compact(index.saturating_sub(keep))?;
        tracing::debug!(member = self.cfg.id, index, "ledger snapshot taken");
        Ok(())
    }

    fn watch_leadership(&mut self) {
        let (leader, term) = (self.node.raft.leader_id, self.node.raft.term);
        if leader != self.leader || term != self.term {
            if self.leader != 0 || self.term != 0 {
                // Proposals in flight may have been lost with the old leader: callers
                // retry, and idempotent apply makes that safe.
                let lost: Vec<u64> = self.proposals.keys().copied().collect();
                for seq in lost {
                    if let Some(p) = self.proposals.remove(&seq) {
                        let _ = p.reply.send(Err(LedgerError::Retry));
                    }
                }
                for (_, w) in self.reads_waiting.drain() {
                    (w.f)(Err(LedgerError::Retry));
                }
                for (_, p) in self.confs.drain() {
                    let _ = p.reply.send(Err(LedgerError::Retry));
                }
            }
            self.leader = leader;
            self.term = term;
        }
    }

    /// Asks for the read index of waiting reads. raft-rs drops a read request that
    /// reaches a leader before it has committed an entry of its term (and a request
    /// forwarded by a follower can be lost), so a read is asked for only when the
    /// leader can answer, asked again after an election timeout without an answer, and
    /// failed with `Retry` after [`READ_DEADLINE`].
    fn ask_reads(&mut self, now: Instant) {
        if self.reads_waiting.is_empty() {
            return;
        }
        let raft = &self.node.raft;
        let can_ask = raft.leader_id != 0
            && (raft.state != StateRole::Leader || raft.commit_to_current_term());
        let again = self.cfg.tick * self.cfg.election_ticks as u32;
        let mut ask = Vec::new();
        let mut expired = Vec::new();
        for (&seq, w) in &mut self.reads_waiting {
            if now.duration_since(w.since) > READ_DEADLINE {
                expired.push(seq);
            } else if can_ask && w.asked.is_none_or(|t| now.duration_since(t) >= again) {
                w.asked = Some(now);
                ask.push(seq);
            }
        }
        for seq in ask {
            self.node.read_index(seq.to_le_bytes().to_vec());
        }
        for seq in expired {
            if let Some(w) = self.reads_waiting.remove(&seq) {
                (w.f)(Err(if self.node.raft.leader_id == 0 {
                    LedgerError::NoLeader
                } else {
                    LedgerError::Retry
                }));
            }
        }
    }

    /// Answers `Retry` to proposals older than [`PROPOSE_DEADLINE`]: raft-rs drops a
    /// proposal forwarded to a leader that is handing over, and a transport drops
    /// messages to an unreachable peer, without telling anyone. The caller retries; a
    /// proposal that did commit after all is booked once.
    fn expire_proposals(&mut self) {
        let late: Vec<u64> = self
            .proposals
            .iter()
            .filter(|(_, p)| p.since.elapsed() > PROPOSE_DEADLINE)
            .map(|(&seq, _)| seq)
            .collect();
        for seq in late {
            if let Some(p) = self.proposals.remove(&seq) {
                let _ = p.reply.send(Err(LedgerError::Retry));
            }
        }
    }

    fn fail_all(&mut self, err: impl Fn() -> LedgerError) {
        for (_, p) in self.proposals.drain() {
            let _ = p.reply.send(Err(err()));
        }
        for (_, p) in self.confs.drain() {
            let _ = p.reply.send(Err(err()));
        }
        for (_, w) in self.reads_waiting.drain() {
            (w.f)(Err(err()));
        }
        for (_, f) in self.reads_ready.drain(..) {
            f(Err(err()));
        }
    }

    fn status(&self) -> Status {
        let raft = &self.node.raft;
        let store = self.node.store();
        let last = store.last();
        let cs = store.conf_state();
        let mut peers = Vec::new();
        if raft.state == StateRole::Leader {
            for (&id, pr) in raft.prs().iter() {
                peers.push(PeerProgress {
                    id,
                    matched: pr.matched,
                    lag: last.saturating_sub(pr.matched),
                    learner: cs.learners.contains(&id),
                });
            }
            peers.sort_by_key(|p| p.id);
        }
        Status {
            id: self.cfg.id,
            role: format!("{:?}", raft.state),
            term: raft.term,
            leader: raft.leader_id,
            commit: raft.raft_log.committed,
            applied: self.applied,
            last_index: last,
            snapshot_index: store.snapshot_ref().get_metadata().index,
            voters: cs.voters.clone(),
            learners: cs.learners.clone(),
            peers,
            fills: self.state.fill_count(),
            duplicates: self.state.duplicates(),
            rejoining: self.rejoining,
        }
    }
}

/// The (sequence, command count) pairs of a merged proposal's context.
fn proposal_ranges(ctx: &[u8]) -> impl Iterator<Item = (u64, u32)> + '_ {
    ctx.get(9..).unwrap_or_default().chunks_exact(12).map(|c| {
        (
            u64::from_le_bytes(c[..8].try_into().expect("8 bytes")),
            u32::from_le_bytes(c[8..].try_into().expect("4 bytes")),
        )
    })
}

/// Lower-case hex of a digest.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The transport of a single-member ledger (`hft run`): there is nobody to talk to.
pub struct Lone;

impl Transport for Lone {
    fn send(&mut self, _msgs: Vec<Message>) {}
    fn set_peer(&mut self, _id: u64, _addr: Option<String>) {}
}

/// Whether a message carries a snapshot (the transport reports its delivery).
pub fn is_snapshot(m: &Message) -> bool {
    m.get_msg_type() == MessageType::MsgSnapshot
}
