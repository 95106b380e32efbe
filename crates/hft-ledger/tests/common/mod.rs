//! An in-process network for ledger members that drops, delays, duplicates and
//! partitions messages, and a cluster harness on top of it.

#![allow(dead_code)]

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hft_core::{Liquidity, Money, Price, Qty, Side};
use hft_ledger::member::is_snapshot;
use hft_ledger::{
    Command, Inbox, Ledger, LedgerError, LedgerFill, MemberConfig, MemberThread, Outcome, Status,
    Transport,
};
use raft::prelude::Message;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Fault knobs, changeable while the cluster runs.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Probability a message is lost.
    pub drop: f64,
    /// Probability a message is delivered twice.
    pub duplicate: f64,
    /// Largest added delay.
    pub max_delay: Duration,
    /// Directed links that deliver nothing.
    pub cut: HashSet<(u64, u64)>,
}

struct NetState {
    faults: Faults,
    inboxes: HashMap<u64, Inbox>,
    rng: ChaCha8Rng,
}

/// The network: a router thread delivering messages at their due time.
pub struct SimNet {
    state: Arc<Mutex<NetState>>,
    tx: mpsc::Sender<Message>,
}

impl SimNet {
    pub fn new(seed: u64) -> Self {
        let state = Arc::new(Mutex::new(NetState {
            faults: Faults::default(),
            inboxes: HashMap::new(),
            rng: ChaCha8Rng::seed_from_u64(seed),
        }));
        let (tx, rx) = mpsc::channel::<Message>();
        let st = state.clone();
        std::thread::spawn(move || route(rx, st));
        Self { state, tx }
    }

    pub fn set_faults(&self, f: Faults) {
        self.state.lock().unwrap().faults = f;
    }

    /// Cuts every link between `a` and the others (both directions).
    pub fn isolate(&self, a: u64, others: &[u64]) {
        let mut st = self.state.lock().unwrap();
        for &b in others {
            st.faults.cut.insert((a, b));
            st.faults.cut.insert((b, a));
        }
    }

    pub fn heal(&self) {
        self.state.lock().unwrap().faults.cut.clear();
    }

    fn attach(&self, id: u64, inbox: Inbox) {
        self.state.lock().unwrap().inboxes.insert(id, inbox);
    }

    fn detach(&self, id: u64) {
        self.state.lock().unwrap().inboxes.remove(&id);
    }

    pub fn transport(&self) -> SimTransport {
        SimTransport(self.tx.clone())
    }
}

pub struct SimTransport(mpsc::Sender<Message>);

impl Transport for SimTransport {
    fn send(&mut self, msgs: Vec<Message>) {
        for m in msgs {
            let _ = self.0.send(m);
        }
    }
    fn set_peer(&mut self, _id: u64, _addr: Option<String>) {}
}

fn route(rx: mpsc::Receiver<Message>, st: Arc<Mutex<NetState>>) {
    let mut heap: BinaryHeap<Reverse<(Instant, u64, usize)>> = BinaryHeap::new();
    let mut slots: HashMap<usize, Message> = HashMap::new();
    let mut next_slot = 0usize;
    loop {
        let wait = heap
            .peek()
            .map_or(Duration::from_millis(50), |Reverse((t, _, _))| {
                t.saturating_duration_since(Instant::now())
            });
        match rx.recv_timeout(wait) {
            Ok(m) => {
                let mut guard = st.lock().unwrap();
                let s = &mut *guard;
                let cut = s.faults.cut.contains(&(m.from, m.to));
                let lost = cut || s.rng.random_bool(s.faults.drop.clamp(0.0, 1.0));
                if lost {
                    if is_snapshot(&m)
                        && let Some(ib) = s.inboxes.get(&m.from)
                    {
                        ib.snapshot_status(m.to, false);
                    }
                    continue;
                }
                let copies = if s.rng.random_bool(s.faults.duplicate.clamp(0.0, 1.0)) {
                    2
                } else {
                    1
                };
                for _ in 0..copies {
                    let max = s.faults.max_delay.as_micros() as u64;
                    let d = if max == 0 {
                        0
                    } else {
                        s.rng.random_range(0..=max)
                    };
                    let at = Instant::now() + Duration::from_micros(d);
                    slots.insert(next_slot, m.clone());
                    heap.push(Reverse((at, next_slot as u64, next_slot)));
                    next_slot += 1;
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        let now = Instant::now();
        while let Some(Reverse((t, _, slot))) = heap.peek().copied() {
            if t > now {
                break;
            }
            heap.pop();
            let m = slots.remove(&slot).expect("scheduled message");
            let s = st.lock().unwrap();
            // A partition cut after sending still loses what is in flight.
            if s.faults.cut.contains(&(m.from, m.to)) {
                continue;
            }
            let snap = is_snapshot(&m);
            let (from, to) = (m.from, m.to);
            if let Some(ib) = s.inboxes.get(&to) {
                let _ = ib.deliver(m);
                if snap && let Some(src) = s.inboxes.get(&from) {
                    src.snapshot_status(to, true);
                }
            }
        }
    }
}

/// A cluster of members on one [`SimNet`].
pub struct Cluster {
    pub net: SimNet,
    pub dir: PathBuf,
    pub members: BTreeMap<u64, (Ledger, MemberThread)>,
    pub tune: fn(&mut MemberConfig),
}

pub fn fast(cfg: &mut MemberConfig) {
    cfg.tick = Duration::from_millis(10);
    cfg.fsync = false;
}

impl Cluster {
    pub fn new(name: &str, n: u64, seed: u64, tune: fn(&mut MemberConfig)) -> Self {
        let dir = std::env::temp_dir().join(format!("hft-ledger-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut c = Self {
            net: SimNet::new(seed),
            dir,
            members: BTreeMap::new(),
            tune,
        };
        let voters: Vec<u64> = (1..=n).collect();
        for id in 1..=n {
            c.start(id, voters.clone());
        }
        c
    }

    pub fn config(&self, id: u64, bootstrap: Vec<u64>) -> MemberConfig {
        let mut cfg = MemberConfig::new(id, bootstrap, self.dir.join(format!("m{id}")));
        (self.tune)(&mut cfg);
        cfg
    }

    pub fn start(&mut self, id: u64, bootstrap: Vec<u64>) -> hft_ledger::Recovery {
        self.start_with(self.config(id, bootstrap))
    }

    /// Starts a member with a configuration of its own.
    pub fn start_with(&mut self, cfg: MemberConfig) -> hft_ledger::Recovery {
        let id = cfg.id;
        let (l, t, rec) = Ledger::start(cfg, |inbox| {
            self.net.attach(id, inbox);
            self.net.transport()
        })
        .expect("member starts");
        self.members.insert(id, (l, t));
        rec
    }

    /// Stops a member (its disk state stays).
    pub fn stop(&mut self, id: u64) {
        self.net.detach(id);
        if let Some((_, t)) = self.members.remove(&id) {
            t.stop();
        }
    }

    pub fn ledger(&self, id: u64) -> &Ledger {
        &self.members[&id].0
    }

    pub fn status(&self, id: u64) -> Status {
        self.ledger(id).status().blocking_recv().expect("status")
    }

    /// Waits until some running member leads; returns its id.
    pub fn leader(&self, within: Duration) -> u64 {
        let end = Instant::now() + within;
        while Instant::now() < end {
            for &id in self.members.keys() {
                let s = self.status(id);
                if s.role == "Leader" {
                    return id;
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("no leader within {within:?}");
    }

    /// Proposes through any member until acknowledged (retrying on leader changes).
    pub fn propose_until_acked(&self, via: u64, cmds: Vec<Command>, within: Duration) -> Outcome {
        let end = Instant::now() + within;
        let ids: Vec<u64> = self.members.keys().copied().collect();
        let mut k = ids.iter().position(|&i| i == via).unwrap_or(0);
        loop {
            let l = self.ledger(ids[k % ids.len()]);
            let rx = l.propose(cmds.clone());
            match wait(rx, Duration::from_millis(500)) {
                Some(Ok(o)) => return o,
                Some(Err(LedgerError::Invalid(e))) => panic!("invalid: {e}"),
                _ => {}
            }
            assert!(
                Instant::now() < end,
                "proposal not acknowledged within {within:?}"
            );
            k += 1;
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A member's state hash (hex), as applied now.
    pub fn hash(&self, id: u64) -> String {
        let h = self.ledger(id).read_local(|st| st.hash());
        hft_ledger::member::hex(&h.blocking_recv().expect("answered").expect("read"))
    }

    /// Waits until every running member applied the same index with the same state
    /// hash; returns one's status and the hash.
    pub fn converged(&self, within: Duration) -> (Status, String) {
        let end = Instant::now() + within;
        loop {
            let all: Vec<Status> = self.members.keys().map(|&id| self.status(id)).collect();
            let hashes: Vec<String> = self.members.keys().map(|&id| self.hash(id)).collect();
            let first = &all[0];
            if first.applied > 0
                && all
                    .iter()
                    .all(|s| s.applied == first.applied && s.commit == s.applied)
                && hashes.iter().all(|h| *h == hashes[0])
            {
                return (first.clone(), hashes[0].clone());
            }
            assert!(
                Instant::now() < end,
                "members did not converge: {:?}",
                all.iter()
                    .zip(&hashes)
                    .map(|(s, h)| (s.id, &s.role, s.applied, s.commit, &h[..8]))
                    .collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let ids: Vec<u64> = self.members.keys().copied().collect();
        for id in ids {
            self.stop(id);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Waits for a reply without a runtime.
pub fn wait<T>(mut rx: tokio::sync::oneshot::Receiver<T>, within: Duration) -> Option<T> {
    let end = Instant::now() + within;
    loop {
        match rx.try_recv() {
            Ok(v) => return Some(v),
            Err(tokio::sync::oneshot::error::TryRecvError::Closed) => return None,
            Err(tokio::sync::oneshot::error::TryRecvError::Empty) => {}
        }
        if Instant::now() >= end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

pub fn fill(venue: &str, exec_id: u64, side: Side, qty: i64) -> LedgerFill {
    LedgerFill {
        venue: venue.into(),
        exec_id,
        account: "main".into(),
        strategy: "mm".into(),
        instrument: "BTC-USD".into(),
        price_scale: 2,
        qty_scale: 3,
        side,
        price: Price(6_500_000 + exec_id as i64 % 100),
        qty: Qty(qty),
        fee: Money(1),
        liquidity: Liquidity::Maker,
        cl_ord_id: exec_id,
        ts: 1_000 + exec_id,
        epoch: 0,
    }
}
