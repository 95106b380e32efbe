//! Booking a live session's fills in the ledger.
//!
//! The gateway (venue session) pushes every fill report into a lock-free ring as it
//! routes it to the engine; this module's thread turns them into ledger fills, proposes
//! them in batches and re-proposes any batch whose outcome a leader change left unknown
//! (the ledger books a fill once however often it is proposed). The hot path never
//! waits for the ledger: it pays one ring push per fill.
//!
//! Before trading, every engine continues its client order ids above the ledger's
//! high-water mark and reserves a block above it, so no venue sees an id twice across
//! restarts. After the session the engines' positions are reconciled with the ledger's.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use hft_core::{InstrumentId, InstrumentSpec, OrderReport, OrderReportKind};
use hft_exec::StrategySlot;
use hft_ledger::{Command, Ledger, LedgerError, LedgerFill, Outcome};
use tokio::sync::oneshot;

use crate::ring::{Parker, RingRx};

/// Client order ids reserved per session and strategy (2^48 ids in all: 65,536
/// sessions).
pub const ORDER_ID_BLOCK: u64 = 1 << 32;
/// Fills per proposal at most.
const MAX_BATCH: usize = 4096;
/// How long a stopping booking thread waits for the ledger to confirm its last fills.
const STOP_FLUSH: Duration = Duration::from_secs(10);

/// Counters of the booking thread.
#[derive(Debug, Default)]
pub struct BookingStats {
    /// Fills taken from the gateway.
    pub fills: AtomicU64,
    /// Fills the ledger acknowledged as newly booked.
    pub booked: AtomicU64,
    /// Fills the ledger already had.
    pub duplicates: AtomicU64,
    /// Fills the ledger's rules refused.
    pub rejected: AtomicU64,
    /// Batches proposed again after a leader change or timeout.
    pub retries: AtomicU64,
}

/// What the ledger needs to name a fill.
#[derive(Clone)]
pub struct Booking {
    ledger: Ledger,
    account: String,
    venue: String,
    /// Strategy names by strategy id.
    strategies: Vec<String>,
    /// Specs by instrument id.
    specs: Vec<InstrumentSpec>,
    /// Assignment epoch the fills are proposed under (0: a single node).
    epoch: u64,
}

/// An engine whose position differs from the ledger's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// Strategy.
    pub strategy: String,
    /// Instrument.
    pub instrument: String,
    /// The engine's net quantity.
    pub engine: i64,
    /// The ledger's net quantity.
    pub ledger: i64,
}

fn wait<T>(rx: oneshot::Receiver<Result<T, LedgerError>>) -> Result<T, LedgerError> {
    rx.blocking_recv().unwrap_or(Err(LedgerError::Stopped))
}

impl Booking {
    /// Books the fills of `venue` to `account`; `strategies` and `specs` name ids.
    pub fn new(
        ledger: Ledger,
        account: &str,
        venue: &str,
        strategies: Vec<String>,
        specs: Vec<InstrumentSpec>,
    ) -> Self {
        Self {
            ledger,
            account: account.to_owned(),
            venue: venue.to_owned(),
            strategies,
            specs,
            epoch: 0,
        }
    }

    /// Proposes fills under assignment `epoch` (a cluster node's engine).
    pub fn with_epoch(mut self, epoch: u64) -> Self {
        self.epoch = epoch;
        self
    }

    /// Takes `strategy` over at this booking's epoch: raises its ledger fence (proposals
    /// of an older owner are refused from then on) and books the fills the venue
    /// executed for it before this session that the ledger lacks (a previous owner may
    /// have died between receiving a fill and booking it). Returns (booked, already
    /// booked).
    pub fn take_over(
        &self,
        strategy: &str,
        replay: &[OrderReport],
    ) -> Result<(u64, u64), LedgerError> {
        let mut cmds = vec![Command::Fence {
            strategy: strategy.to_owned(),
            epoch: self.epoch,
        }];
        for r in replay {
            if let OrderReportKind::Fill(f) = &r.kind
                && let Some(fill) = self.to_fill(r, f)
            {
                cmds.push(Command::Fill(fill));
            }
        }
        let (mut booked, mut dups) = (0, 0);
        // Batches well under the largest entry.
        for chunk in cmds.chunks(2_000) {
            let out = wait(self.ledger.propose(chunk.to_vec()))?;
            booked += u64::from(out.applied);
            dups += u64::from(out.duplicates);
        }
        // The fence itself counts as applied.
        Ok((booked.saturating_sub(1), dups))
    }

    /// Starts every engine from the positions the ledger holds for it (flat when it
    /// never traded): the book of record survives restarts, the engines' memory does not.
    pub fn restore_positions(&self, slots: &mut [StrategySlot]) -> Result<usize, LedgerError> {
        let account = self.account.clone();
        let rows = wait(self.ledger.read(move |st| {
            st.positions()
                .into_iter()
                .filter(|p| p.account == account)
                .collect::<Vec<_>>()
        }))?;
        let mut restored = 0;
        for slot in slots.iter_mut() {
            for row in rows.iter().filter(|r| r.strategy == slot.name) {
                if let Some(spec) = self.specs.iter().find(|s| s.symbol == row.instrument) {
                    slot.engine.restore_position(spec.id, row.position);
                    restored += 1;
                }
            }
        }
        Ok(restored)
    }

    /// Moves every engine's client order ids past the ledger's high-water mark and
    /// reserves the next block for this session.
    pub fn reserve_order_ids(&self, slots: &mut [StrategySlot]) -> Result<(), LedgerError> {
        for slot in slots.iter_mut() {
            let name = slot.name.clone();
            let hwm = wait(self.ledger.read(move |st| st.order_id_hwm(&name)))?;
            slot.engine.continue_order_ids_after(hwm);
            let upto = hwm.saturating_add(ORDER_ID_BLOCK);
            let cmd = Command::ReserveOrderIds {
                strategy: slot.name.clone(),
                upto,
            };
            wait(self.ledger.propose(vec![cmd]))?;
            tracing::debug!(strategy = %slot.name, from = hwm + 1, upto, "client order ids reserved");
        }
        Ok(())
    }

    fn to_fill(&self, r: &OrderReport, f: &hft_core::Fill) -> Option<LedgerFill> {
        let spec = self.specs.get(r.instrument.index())?;
        let strategy = self.strategies.get(r.cl_ord_id.strategy().index())?;
        Some(LedgerFill {
            venue: self.venue.clone(),
            exec_id: f.exec_id.0,
            account: self.account.clone(),
            strategy: strategy.clone(),
            instrument: spec.symbol.clone(),
            price_scale: spec.price_scale,
            qty_scale: spec.qty_scale,
            side: f.side,
            price: f.price,
            qty: f.qty,
            fee: f.fee,
            liquidity: f.liquidity,
            cl_ord_id: r.cl_ord_id.0 & 0xFFFF_FFFF_FFFF,
            ts: r.ts,
            epoch: self.epoch,
        })
    }

    /// Starts the booking thread on `rx` (consumer side bound to `parker`); it ends
    /// once `stop` is set and everything taken is acknowledged.
    pub fn spawn(
        self,
        mut rx: RingRx<OrderReport>,
        parker: Arc<Parker>,
        stop: Arc<AtomicBool>,
        stats: Arc<BookingStats>,
    ) -> std::io::Result<JoinHandle<()>> {
        std::thread::Builder::new()
            .name("ledger-booking".into())
            .spawn(move || {
                parker.bind_current();
                type Inflight = (Vec<Command>, oneshot::Receiver<Result<Outcome, LedgerError>>);
                let mut inflight: VecDeque<Inflight> = VecDeque::new();
                let mut stopping: Option<std::time::Instant> = None;
                // The member answered Stopped: it is gone for good (its storage
                // failed), so a stop need not wait for it.
                let mut member_gone = false;
                loop {
                    let mut cmds = Vec::new();
                    while cmds.len() < MAX_BATCH {
                        let Some(r) = rx.pop() else { break };
                        if let OrderReportKind::Fill(f) = &r.kind {
                            stats.fills.fetch_add(1, Ordering::Relaxed);
                            match self.to_fill(&r, f) {
                                Some(lf) => cmds.push(Command::Fill(lf)),
                                None => tracing::error!(order = %r.cl_ord_id, "fill of an unknown strategy or instrument not booked"),
                            }
                        }
                    }
                    if !cmds.is_empty() {
                        // Filled at the venue, not yet proposed: a crash here must not
                        // lose the fills (the next owner replays them from the venue).
                        #[cfg(feature = "failpoints")]
                        fail::fail_point!("booking::before-propose", |_| std::process::abort());
                        let rx = self.ledger.propose(cmds.clone());
                        inflight.push_back((cmds, rx));
                    }
                    let mut again = Vec::new();
                    inflight.retain_mut(|(cmds, rx)| match rx.try_recv() {
                        Ok(Ok(o)) => {
                            stats.booked.fetch_add(u64::from(o.applied), Ordering::Relaxed);
                            stats.duplicates.fetch_add(u64::from(o.duplicates), Ordering::Relaxed);
                            stats.rejected.fetch_add(u64::from(o.rejected), Ordering::Relaxed);
                            false
                        }
                        Err(oneshot::error::TryRecvError::Empty) => true,
                        Ok(Err(LedgerError::Invalid(why))) => {
                            tracing::error!(%why, fills = cmds.len(), "the ledger refused fills");
                            stats.rejected.fetch_add(cmds.len() as u64, Ordering::Relaxed);
                            false
                        }
                        Ok(Err(e)) => {
                            member_gone |= matches!(e, LedgerError::Stopped);
                            again.push(std::mem::take(cmds));
                            false
                        }
                        Err(oneshot::error::TryRecvError::Closed) => {
                            again.push(std::mem::take(cmds));
                            false
                        }
                    });
                    for cmds in again {
                        stats.retries.fetch_add(1, Ordering::Relaxed);
                        std::thread::sleep(Duration::from_millis(5));
                        let rx = self.ledger.propose(cmds.clone());
                        inflight.push_back((cmds, rx));
                    }
                    if stop.load(Ordering::SeqCst) {
                        if rx.is_empty() && inflight.is_empty() {
                            break;
                        }
                        // A ledger without quorum must not hold the stop forever: what
                        // is not booked stays in the venue's record and is booked by the
                        // next owner's takeover.
                        let since = *stopping.get_or_insert_with(std::time::Instant::now);
                        if member_gone || since.elapsed() > STOP_FLUSH {
                            let left: usize = inflight.iter().map(|(c, _)| c.len()).sum();
                            tracing::error!(fills = left, "the ledger did not confirm these fills before the stop; the next takeover books them from the venue");
                            break;
                        }
                    }
                    if rx.is_empty() {
                        parker.park(Duration::from_millis(1), || !rx.is_empty());
                    }
                }
            })
    }

    /// Compares every engine's net position per instrument with the ledger's
    /// (a linearizable read, after the booking thread has drained).
    pub fn reconcile(&self, slots: &[StrategySlot]) -> Result<Vec<Mismatch>, LedgerError> {
        let want: Vec<(String, String, i64)> = slots
            .iter()
            .flat_map(|s| {
                self.specs.iter().map(move |spec| {
                    let q = s.engine.position(InstrumentId(spec.id.0)).qty.raw();
                    (s.name.clone(), spec.symbol.clone(), q)
                })
            })
            .collect();
        let account = self.account.clone();
        wait(self.ledger.read(move |st| {
            want.into_iter()
                .filter_map(|(strategy, instrument, engine)| {
                    let ledger = st.net_qty(&account, &strategy, &instrument).raw();
                    (ledger != engine).then_some(Mismatch {
                        strategy,
                        instrument,
                        engine,
                        ledger,
                    })
                })
                .collect()
        }))
    }
}

/// The ledger's instrument table from the node's specs: name -> (price, qty) scales.
pub fn known_instruments(specs: &[InstrumentSpec]) -> std::collections::BTreeMap<String, (u8, u8)> {
    specs
        .iter()
        .map(|s| (s.symbol.clone(), (s.price_scale, s.qty_scale)))
        .collect()
}

/// The single in-process ledger member of `hft run`.
pub struct SessionLedger {
    /// Handle.
    pub ledger: Ledger,
    thread: Option<hft_ledger::MemberThread>,
    /// The member's directory.
    pub dir: std::path::PathBuf,
    /// Whether `dir` is a temporary directory removed on drop.
    pub temporary: bool,
}

impl SessionLedger {
    /// Recovers (or creates) the member in `dir` (a fresh temporary directory when
    /// `None`) and waits until it leads. Fills of instruments outside `specs` are refused
    /// before they are proposed.
    pub fn start(dir: Option<&std::path::Path>, specs: &[InstrumentSpec]) -> Result<Self, String> {
        let (dir, temporary) = match dir {
            Some(d) => (d.to_owned(), false),
            None => (
                std::env::temp_dir().join(format!("hft-ledger-{}", std::process::id())),
                true,
            ),
        };
        if temporary {
            let _ = std::fs::remove_dir_all(&dir);
        }
        let mut cfg = hft_ledger::MemberConfig::new(1, vec![1], &dir);
        cfg.instruments = Some(known_instruments(specs));
        let (ledger, thread, rec) = Ledger::start(cfg, |_| hft_ledger::Lone)
            .map_err(|e| format!("ledger in {}: {e}", dir.display()))?;
        // A lone voter would elect itself after an election timeout; ask at once.
        ledger.campaign();
        let end = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let s = ledger
                .status()
                .blocking_recv()
                .map_err(|_| "the ledger member stopped at start".to_owned())?;
            if s.role == "Leader" && s.applied >= s.commit {
                break;
            }
            if std::time::Instant::now() > end {
                return Err("the ledger member did not become leader within 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        tracing::info!(dir = %dir.display(), snapshot = rec.snapshot_index, records = rec.records, "ledger ready");
        Ok(Self {
            ledger,
            thread: Some(thread),
            dir,
            temporary,
        })
    }
}

impl Drop for SessionLedger {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            t.stop();
        }
        if self.temporary {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
