//! The simulated venue as a process of its own (`hft venue`): the matching engine and
//! market simulator of [`SimVenue`] behind the venue link, shared by every node of a
//! cluster. It is the source of truth for accepted orders and fills, and it enforces
//! the assignment epochs: a logon with a higher epoch for a strategy fences every older
//! session of it, whose orders are refused from then on.
//!
//! Threads: one acceptor, one reader per connection (frames to the venue thread over a
//! channel), and the venue thread, which owns the books and writes to every socket
//! without blocking (a session that cannot keep up is disconnected once its backlog
//! passes a bound, and its orders are cancelled, as on a real venue).

use crate::link::{self, Logon, kind};
use crate::sim_venue::{SimVenue, VenueOutput};
use crate::wire::decode_order;
use hft_core::{
    ClientOrderId, InstrumentId, MarketEvent, Nanos, OrderCommand, OrderKind, OrderReport,
    OrderReportKind, RejectReason,
};
use std::collections::{BTreeSet, HashMap};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A session whose unsent output passes this is disconnected.
pub const MAX_BACKLOG: usize = 16 << 20;

/// Counters of a running venue.
#[derive(Debug, Default)]
pub struct VenueCounters {
    /// Orders accepted.
    pub accepted: AtomicU64,
    /// Orders refused because their epoch was stale.
    pub fenced: AtomicU64,
    /// Fills executed for sessions' orders.
    pub fills: AtomicU64,
    /// Logons accepted.
    pub logons: AtomicU64,
    /// Logons refused.
    pub logon_rejects: AtomicU64,
    /// Sessions dropped for a backlog or a malformed frame.
    pub dropped: AtomicU64,
}

/// A running venue process's server.
pub struct VenueServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its counters.
    pub counters: Arc<VenueCounters>,
    stop: Arc<AtomicBool>,
    venue: Option<JoinHandle<SimVenue>>,
    acceptor: Option<JoinHandle<()>>,
}

impl VenueServer {
    /// Serves `venue` on `listener`; `history`, when set, receives one JSON line per
    /// logon, accepted order, fill and fencing (the record chaos checkers read).
    pub fn start(
        venue: SimVenue,
        listener: TcpListener,
        history: Option<Box<dyn Write + Send>>,
    ) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(VenueCounters::default());
        let (tx, rx) = mpsc::channel();
        let acceptor = {
            let (stop, tx) = (stop.clone(), tx.clone());
            std::thread::Builder::new()
                .name("venue-accept".into())
                .spawn(move || accept_loop(listener, tx, stop))?
        };
        let thread = {
            let (stop, counters) = (stop.clone(), counters.clone());
            std::thread::Builder::new()
                .name("venue".into())
                .spawn(move || {
                    let mut core = Core::new(venue, history, counters);
                    core.run(rx, &stop);
                    core.venue
                })?
        };
        Ok(Self {
            addr,
            counters,
            stop,
            venue: Some(thread),
            acceptor: Some(acceptor),
        })
    }

    /// Stops serving and returns the venue.
    pub fn stop(mut self) -> Option<SimVenue> {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the acceptor.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
        self.venue.take().and_then(|t| t.join().ok())
    }
}

impl Drop for VenueServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

enum Inbound {
    Open(u64, TcpStream),
    Frame(u64, u8, Vec<u8>),
    Closed(u64, String),
}

fn accept_loop(listener: TcpListener, tx: mpsc::Sender<Inbound>, stop: Arc<AtomicBool>) {
    let mut next = 0u64;
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = conn else { continue };
        next += 1;
        let id = next;
        let _ = stream.set_nodelay(true);
        let Ok(reader) = stream.try_clone() else {
            continue;
        };
        if tx.send(Inbound::Open(id, stream)).is_err() {
            return;
        }
        let tx = tx.clone();
        let _ = std::thread::Builder::new()
            .name(format!("venue-read-{id}"))
            .spawn(move || read_loop(id, reader, tx));
    }
}

fn read_loop(id: u64, mut s: TcpStream, tx: mpsc::Sender<Inbound>) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut have = 0;
    let why = loop {
        match s.read(&mut buf[have..]) {
            Ok(0) => break "closed by the peer".to_owned(),
            Ok(n) => have += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => break e.to_string(),
        }
        let mut at = 0;
        loop {
            match link::split(&buf[at..have]) {
                Ok(Some((k, payload, n))) => {
                    if tx.send(Inbound::Frame(id, k, payload.to_vec())).is_err() {
                        return;
                    }
                    at += n;
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = tx.send(Inbound::Closed(id, format!("malformed frame: {e}")));
                    return;
                }
            }
        }
        buf.copy_within(at..have, 0);
        have -= at;
    };
    let _ = tx.send(Inbound::Closed(id, why));
}

struct Conn {
    stream: TcpStream,
    out: Vec<u8>,
    logon: Option<Logon>,
    outbox: Arc<Outbox>,
    /// Fills of its strategy when it logged on (everything before was replayed to it).
    logon_fills: usize,
    /// Whether it has sent an order: it then finished its takeover, so it booked the
    /// fills replayed to it.
    traded: bool,
}

/// Bytes handed from the venue thread to a session's writer thread, which does the
/// blocking writes: the venue thread never waits for a socket.
#[derive(Default)]
struct Outbox {
    state: Mutex<OutboxState>,
    ready: Condvar,
}

#[derive(Default)]
struct OutboxState {
    bytes: Vec<u8>,
    closed: bool,
    failed: Option<String>,
}

impl Outbox {
    /// Queues `bytes`; the backlog after, or the write error that ended the writer.
    fn push(&self, bytes: &mut Vec<u8>) -> Result<usize, String> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = &st.failed {
            return Err(e.clone());
        }
        st.bytes.append(bytes);
        let n = st.bytes.len();
        self.ready.notify_one();
        Ok(n)
    }

    fn close(&self) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.closed = true;
        self.ready.notify_one();
    }

    fn run(&self, mut stream: TcpStream) {
        let mut chunk = Vec::new();
        loop {
            {
                let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
                while st.bytes.is_empty() && !st.closed {
                    st = self.ready.wait(st).unwrap_or_else(|p| p.into_inner());
                }
                if st.bytes.is_empty() && st.closed {
                    return;
                }
                std::mem::swap(&mut chunk, &mut st.bytes);
            }
            // A peer that stops reading (paused, cut off) ends the writer instead of
            // pinning it; the session is then dropped.
            if let Err(e) = stream.write_all(&chunk) {
                let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
                st.failed = Some(e.to_string());
                return;
            }
            chunk.clear();
        }
    }
}

/// Who receives a report: the strategy's current session.
#[derive(Clone, Copy)]
struct Route {
    conn: u64,
    epoch: u64,
}

/// Recent public market data, replayed (flagged as warm-up) to a session that takes a
/// strategy over, so that its books and estimators are warm when it starts trading:
/// a book snapshot and every incremental event since, in two generations so that the
/// history reaches back between one and two periods.
#[derive(Default)]
struct Recovery {
    /// (snapshot, events since), oldest first.
    gens: std::collections::VecDeque<(Vec<MarketEvent>, Vec<MarketEvent>)>,
    taken: Option<Instant>,
}

/// A generation is closed after this long.
const RECOVERY_PERIOD: Duration = Duration::from_secs(2);
/// Events kept per generation at most (beyond, the generation is dropped).
const RECOVERY_MAX: usize = 1 << 16;

impl Recovery {
    fn record(&mut self, e: &MarketEvent) {
        if let Some((_, tape)) = self.gens.back_mut() {
            if tape.len() < RECOVERY_MAX {
                tape.push(*e);
            } else {
                self.gens.clear();
            }
        }
    }

    /// The replay: the oldest snapshot, then every event since (later snapshots are
    /// skipped: the events cover them).
    fn replay(&self) -> impl Iterator<Item = &MarketEvent> {
        let first = self.gens.front().map(|(snap, _)| snap.iter());
        first
            .into_iter()
            .flatten()
            .chain(self.gens.iter().flat_map(|(_, tape)| tape.iter()))
    }
}

/// Collects a snapshot's events.
struct Capture(Vec<MarketEvent>);

impl VenueOutput for Capture {
    fn market(&mut self, e: &MarketEvent) {
        self.0.push(*e);
    }
    fn report(&mut self, _: &OrderReport) {}
}

struct Core {
    venue: SimVenue,
    recovery: Recovery,
    clock: Instant,
    conns: HashMap<u64, Conn>,
    routes: HashMap<u16, Route>,
    max_epoch: HashMap<u16, u64>,
    /// Open orders per strategy: what a takeover or a disconnect cancels.
    open: HashMap<u16, BTreeSet<(u32, u64)>>,
    /// Every fill per strategy, replayed to a new session for reconciliation.
    fills: HashMap<u16, Vec<OrderReport>>,
    /// Name tag of each strategy id, from its first logon.
    tags: HashMap<u16, u64>,
    /// Per strategy, the fills every later session needs replayed start here: the
    /// newest session that traded had booked everything before.
    replay_from: HashMap<u16, usize>,
    history: Option<Box<dyn Write + Send>>,
    history_dirty: bool,
    counters: Arc<VenueCounters>,
}

fn wall_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64
}

/// Output of one venue step: market data to every session (or to one, for a
/// snapshot), reports to the owning session, everything into the history.
struct Out<'a> {
    conns: &'a mut HashMap<u64, Conn>,
    routes: &'a HashMap<u16, Route>,
    open: &'a mut HashMap<u16, BTreeSet<(u32, u64)>>,
    fills: &'a mut HashMap<u16, Vec<OrderReport>>,
    history: &'a mut Option<Box<dyn Write + Send>>,
    history_dirty: &'a mut bool,
    counters: &'a VenueCounters,
    only: Option<u64>,
    /// Public events recorded for the recovery replay.
    recovery: &'a mut Recovery,
    /// Epoch of the order being handled (for the history of accepts).
    epoch: u64,
    /// Limit price and quantity of the new order being handled, raw (for the history of
    /// accepts: the checker holds them to the order notional limit).
    terms: Option<(i64, i64)>,
    /// Deliver reports to the route (false while cancelling a fenced owner's orders).
    route_reports: bool,
}

impl VenueOutput for Out<'_> {
    fn market(&mut self, e: &MarketEvent) {
        let frame = link::market_frame(e);
        if self.only.is_none() {
            self.recovery.record(e);
        }
        for (id, c) in self.conns.iter_mut() {
            if c.logon.is_some() && self.only.is_none_or(|o| o == *id) {
                c.out.extend_from_slice(&frame);
            }
        }
    }

    fn report(&mut self, r: &OrderReport) {
        let s = r.cl_ord_id.strategy().0;
        let key = (r.instrument.0, r.cl_ord_id.0);
        let open = self.open.entry(s).or_default();
        match r.kind {
            OrderReportKind::Accepted => {
                open.insert(key);
                self.counters.accepted.fetch_add(1, Ordering::Relaxed);
                let (price, qty) = self.terms.unwrap_or_default();
                line(
                    self.history,
                    self.history_dirty,
                    format_args!(
                        r#"{{"t":"accept","ts":{},"strategy":{s},"epoch":{},"order":{},"price":{price},"qty":{qty}}}"#,
                        wall_ns(),
                        self.epoch,
                        r.cl_ord_id.0
                    ),
                );
            }
            OrderReportKind::Canceled | OrderReportKind::Rejected(_) => {
                open.remove(&key);
            }
            OrderReportKind::Fill(f) => {
                if f.leaves.raw() == 0 {
                    open.remove(&key);
                }
                self.counters.fills.fetch_add(1, Ordering::Relaxed);
                self.fills.entry(s).or_default().push(*r);
                line(
                    self.history,
                    self.history_dirty,
                    format_args!(
                        r#"{{"t":"fill","ts":{},"strategy":{s},"exec":{},"order":{},"side":{},"price":{},"qty":{}}}"#,
                        wall_ns(),
                        f.exec_id.0,
                        r.cl_ord_id.0,
                        f.side as u8,
                        f.price.raw(),
                        f.qty.raw()
                    ),
                );
            }
            OrderReportKind::CancelRejected(_) => {}
        }
        if !self.route_reports {
            return;
        }
        if let Some(route) = self.routes.get(&s)
            && let Some(c) = self.conns.get_mut(&route.conn)
        {
            push_report(&mut c.out, kind::REPORT, r);
        }
    }
}

/// Appends one line to the history.
fn line(
    history: &mut Option<Box<dyn Write + Send>>,
    dirty: &mut bool,
    args: std::fmt::Arguments<'_>,
) {
    if let Some(h) = history.as_mut() {
        let _ = h.write_fmt(args);
        let _ = h.write_all(b"\n");
        *dirty = true;
    }
}

fn push_report(out: &mut Vec<u8>, k: u8, r: &OrderReport) {
    let mut body = [0u8; link::REPORT_LEN];
    link::encode_report(r, &mut body);
    link::push_frame(out, k, &body);
}

impl Core {
    fn new(
        venue: SimVenue,
        history: Option<Box<dyn Write + Send>>,
        counters: Arc<VenueCounters>,
    ) -> Self {
        Self {
            venue,
            recovery: Recovery::default(),
            clock: Instant::now(),
            conns: HashMap::new(),
            routes: HashMap::new(),
            max_epoch: HashMap::new(),
            open: HashMap::new(),
            fills: HashMap::new(),
            replay_from: HashMap::new(),
            tags: HashMap::new(),
            history,
            history_dirty: false,
            counters,
        }
    }

    fn now(&self) -> Nanos {
        self.clock.elapsed().as_nanos() as Nanos
    }

    fn out(
        &mut self,
        only: Option<u64>,
        epoch: u64,
        route_reports: bool,
    ) -> (Out<'_>, &mut SimVenue) {
        (
            Out {
                conns: &mut self.conns,
                routes: &self.routes,
                open: &mut self.open,
                fills: &mut self.fills,
                history: &mut self.history,
                history_dirty: &mut self.history_dirty,
                counters: &self.counters,
                recovery: &mut self.recovery,
                only,
                epoch,
                terms: None,
                route_reports,
            },
            &mut self.venue,
        )
    }

    fn run(&mut self, rx: mpsc::Receiver<Inbound>, stop: &AtomicBool) {
        let mut last_history_flush = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let now = self.now();
            let wait = self
                .venue
                .next_flow_ts()
                .saturating_sub(now)
                .clamp(1_000, 1_000_000);
            match rx.recv_timeout(Duration::from_nanos(wait)) {
                Ok(m) => {
                    self.handle(m);
                    while let Ok(m) = rx.try_recv() {
                        self.handle(m);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
            let now = self.now();
            let (mut out, venue) = self.out(None, 0, true);
            crate::port::VenuePort::poll(venue, now, &mut out);
            if self
                .recovery
                .taken
                .is_none_or(|t| t.elapsed() >= RECOVERY_PERIOD)
            {
                let mut snap = Capture(Vec::new());
                self.venue.snapshot(now, &mut snap);
                self.recovery.gens.push_back((snap.0, Vec::new()));
                while self.recovery.gens.len() > 2 {
                    self.recovery.gens.pop_front();
                }
                self.recovery.taken = Some(Instant::now());
            }
            self.flush_conns();
            if self.history_dirty && last_history_flush.elapsed() >= Duration::from_millis(5) {
                if let Some(h) = self.history.as_mut() {
                    let _ = h.flush();
                }
                self.history_dirty = false;
                last_history_flush = Instant::now();
            }
        }
        if let Some(h) = self.history.as_mut() {
            let _ = h.flush();
        }
        let ids: Vec<u64> = self.conns.keys().copied().collect();
        for id in ids {
            self.close(id, "the venue stops");
        }
    }

    /// Hands what each session is owed to its writer; drops sessions too far behind.
    fn flush_conns(&mut self) {
        let mut dead = Vec::new();
        for (id, c) in self.conns.iter_mut() {
            if c.out.is_empty() {
                continue;
            }
            match c.outbox.push(&mut c.out) {
                Ok(backlog) if backlog > MAX_BACKLOG => {
                    dead.push((*id, format!("{backlog} bytes of output backlog")));
                }
                Ok(_) => {}
                Err(e) => dead.push((*id, e)),
            }
        }
        for (id, why) in dead {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            self.close(id, &why);
        }
    }

    fn handle(&mut self, m: Inbound) {
        match m {
            Inbound::Open(id, stream) => {
                let Ok(writer) = stream.try_clone() else {
                    return;
                };
                let _ = writer.set_write_timeout(Some(Duration::from_secs(5)));
                let outbox = Arc::new(Outbox::default());
                let o = outbox.clone();
                let spawned = std::thread::Builder::new()
                    .name(format!("venue-write-{id}"))
                    .spawn(move || o.run(writer));
                if spawned.is_ok() {
                    self.conns.insert(
                        id,
                        Conn {
                            stream,
                            out: Vec::new(),
                            logon: None,
                            outbox,
                            logon_fills: 0,
                            traded: false,
                        },
                    );
                }
            }
            Inbound::Closed(id, why) => self.close(id, &why),
            Inbound::Frame(id, k, payload) => {
                if let Err(why) = self.frame(id, k, &payload) {
                    self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(session = id, error = %why, "venue session refused");
                    if let Some(c) = self.conns.get_mut(&id) {
                        link::push_frame(&mut c.out, kind::LOGON_REJECT, why.as_bytes());
                    }
                    self.close(id, &why);
                }
            }
        }
    }

    /// Ends a session; if it owned its strategy, the strategy's orders are cancelled.
    fn close(&mut self, id: u64, why: &str) {
        let Some(mut c) = self.conns.remove(&id) else {
            return;
        };
        // What the session is owed still goes out (a refusal says why), then the writer
        // ends and the socket closes; the reader sees that and ends too.
        let _ = c.outbox.push(&mut c.out);
        c.outbox.close();
        let _ = c.stream.shutdown(std::net::Shutdown::Read);
        if let Some(l) = c.logon
            && self.routes.get(&l.strategy).is_some_and(|r| r.conn == id)
        {
            self.routes.remove(&l.strategy);
            tracing::info!(
                strategy = l.strategy,
                epoch = l.epoch,
                why,
                "session ended: its orders are cancelled"
            );
            self.cancel_all(l.strategy, l.epoch, false);
        }
    }

    /// Cancels every open order of `strategy`.
    fn cancel_all(&mut self, strategy: u16, epoch: u64, route_reports: bool) {
        let open: Vec<(u32, u64)> = self
            .open
            .get(&strategy)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        let now = self.now();
        for (inst, ord) in open {
            let cmd = OrderCommand {
                ts: now,
                tick_ts: 0,
                instrument: InstrumentId(inst),
                cl_ord_id: ClientOrderId(ord),
                epoch,
                kind: OrderKind::Cancel,
            };
            let (mut out, venue) = self.out(None, epoch, route_reports);
            venue.submit(&cmd, now, &mut out);
        }
        if let Some(s) = self.open.get_mut(&strategy) {
            s.clear();
        }
    }

    fn frame(&mut self, id: u64, k: u8, payload: &[u8]) -> Result<(), String> {
        let logon = self.conns.get(&id).and_then(|c| c.logon);
        match (k, logon) {
            (kind::LOGON, None) => self.logon(id, payload),
            (kind::LOGON, Some(_)) => Err("second logon on one session".into()),
            (_, None) => Err(format!("frame type {k:#04x} before a logon")),
            (kind::ORDER, Some(l)) => {
                let cmd = decode_order(payload).map_err(|e| format!("order: {e}"))?;
                self.order(id, l, &cmd);
                Ok(())
            }
            (kind::SNAPSHOT, Some(_)) => {
                let now = self.now();
                let (mut out, venue) = self.out(Some(id), 0, false);
                venue.snapshot(now, &mut out);
                Ok(())
            }
            (kind::LOGOUT, Some(l)) => {
                if self.routes.get(&l.strategy).is_some_and(|r| r.conn == id) {
                    self.cancel_all(l.strategy, l.epoch, true);
                }
                if let Some(c) = self.conns.get_mut(&id) {
                    link::push_frame(&mut c.out, kind::LOGOUT_ACK, &[]);
                }
                Ok(())
            }
            (k, Some(_)) => Err(format!("unknown frame type {k:#04x}")),
        }
    }

    fn logon(&mut self, id: u64, payload: &[u8]) -> Result<(), String> {
        let l = link::decode_logon(payload).map_err(|e| format!("logon: {e}"))?;
        // The first logon of a strategy id names it for good.
        let known = *self.tags.entry(l.strategy).or_insert(l.tag);
        if known != l.tag {
            self.counters.logon_rejects.fetch_add(1, Ordering::Relaxed);
            return Err(format!(
                "strategy id {} belongs to another strategy here (tag {known:#x}, yours \
                 {:#x}): the node runs a different cluster configuration",
                l.strategy, l.tag
            ));
        }
        let newest = self.max_epoch.get(&l.strategy).copied().unwrap_or(0);
        // The same epoch may log on again only from the node it was assigned to (a node
        // restarting its engine session); the older session is then fenced.
        let same_owner = self
            .routes
            .get(&l.strategy)
            .and_then(|r| self.conns.get(&r.conn))
            .and_then(|c| c.logon)
            .is_none_or(|old| old.node == l.node);
        if l.epoch < newest || (l.epoch == newest && !same_owner) {
            self.counters.logon_rejects.fetch_add(1, Ordering::Relaxed);
            let (out, _) = self.out(None, l.epoch, false);
            line(
                out.history,
                out.history_dirty,
                format_args!(
                    r#"{{"t":"logon_reject","ts":{},"strategy":{},"epoch":{},"node":{},"newest":{newest}}}"#,
                    wall_ns(),
                    l.strategy,
                    l.epoch,
                    l.node
                ),
            );
            return Err(format!(
                "strategy {} epoch {} is fenced: the venue has seen epoch {newest}",
                l.strategy, l.epoch
            ));
        }
        self.max_epoch.insert(l.strategy, l.epoch);
        // Take the strategy over: the previous session is told and closed, and what it
        // left resting is cancelled before the new owner sees the book.
        if let Some(old) = self.routes.remove(&l.strategy) {
            if let Some(c) = self.conns.get_mut(&old.conn) {
                link::push_frame(&mut c.out, kind::FENCED, &l.epoch.to_le_bytes());
            }
            self.close(old.conn, "fenced by a newer epoch");
        }
        self.cancel_all(l.strategy, l.epoch, false);
        self.routes.insert(
            l.strategy,
            Route {
                conn: id,
                epoch: l.epoch,
            },
        );
        self.counters.logons.fetch_add(1, Ordering::Relaxed);
        let mut out = Vec::new();
        link::push_frame(&mut out, kind::LOGON_ACK, &l.epoch.to_le_bytes());
        let all = self.fills.get(&l.strategy).map_or(&[][..], |f| &f[..]);
        let from = self.replay_from.get(&l.strategy).copied().unwrap_or(0);
        for r in &all[from.min(all.len())..] {
            push_report(&mut out, kind::REPLAY, r);
        }
        let logon_fills = all.len();
        link::push_frame(&mut out, kind::REPLAY_END, &[]);
        for e in self.recovery.replay() {
            let mut w = *e;
            w.flags |= hft_core::FLAG_WARMUP;
            out.extend_from_slice(&link::market_frame(&w));
        }
        if let Some(c) = self.conns.get_mut(&id) {
            c.logon = Some(l);
            c.logon_fills = logon_fills;
            c.out.extend_from_slice(&out);
        }
        let now = self.now();
        let (mut o, venue) = self.out(Some(id), l.epoch, false);
        line(
            o.history,
            o.history_dirty,
            format_args!(
                r#"{{"t":"logon","ts":{},"strategy":{},"epoch":{},"node":{}}}"#,
                wall_ns(),
                l.strategy,
                l.epoch,
                l.node
            ),
        );
        venue.snapshot(now, &mut o);
        Ok(())
    }

    fn order(&mut self, id: u64, l: Logon, cmd: &OrderCommand) {
        let now = self.now();
        let current = self.routes.get(&l.strategy).map(|r| (r.conn, r.epoch));
        let stale = cmd.cl_ord_id.strategy().0 != l.strategy
            || cmd.epoch < self.max_epoch.get(&l.strategy).copied().unwrap_or(0)
            || current != Some((id, l.epoch));
        if stale {
            self.counters.fenced.fetch_add(1, Ordering::Relaxed);
            let r = OrderReport {
                ts: now,
                instrument: cmd.instrument,
                cl_ord_id: cmd.cl_ord_id,
                kind: if matches!(cmd.kind, OrderKind::Cancel) {
                    OrderReportKind::CancelRejected(RejectReason::Fenced)
                } else {
                    OrderReportKind::Rejected(RejectReason::Fenced)
                },
            };
            if let Some(c) = self.conns.get_mut(&id) {
                push_report(&mut c.out, kind::REPORT, &r);
            }
            return;
        }
        if let Some(c) = self.conns.get_mut(&id)
            && !c.traded
        {
            c.traded = true;
            let from = self.replay_from.entry(l.strategy).or_default();
            *from = (*from).max(c.logon_fills);
        }
        let (mut out, venue) = self.out(None, cmd.epoch, true);
        if let OrderKind::New { price, qty, .. } = cmd.kind {
            out.terms = Some((price.raw(), qty.raw()));
        }
        venue.submit(cmd, now, &mut out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::port::{RemoteVenue, SessionError, VenuePort};
    use hft_core::{InstrumentSpec, Price, Qty, Side, StrategyId, TimeInForce};
    use hft_feed::SimParams;

    /// Collects what a session receives.
    #[derive(Default)]
    struct Rec {
        reports: Vec<OrderReport>,
        md: usize,
    }

    impl VenueOutput for Rec {
        fn market(&mut self, _: &MarketEvent) {
            self.md += 1;
        }
        fn report(&mut self, r: &OrderReport) {
            self.reports.push(*r);
        }
    }

    fn server() -> VenueServer {
        let spec = InstrumentSpec::new(InstrumentId(0), "T", 2, 0, Price(10), Qty(1));
        let venue = SimVenue::new(3, 0, &[(spec, SimParams::typical(Price(100_000)))], 10);
        VenueServer::start(venue, TcpListener::bind("127.0.0.1:0").unwrap(), None).unwrap()
    }

    fn logon(
        srv: &VenueServer,
        strategy: u16,
        epoch: u64,
        node: u64,
    ) -> Result<(RemoteVenue, Vec<OrderReport>), SessionError> {
        RemoteVenue::logon(
            srv.addr,
            Logon {
                strategy,
                epoch,
                node,
                tag: link::strategy_tag(&format!("s{strategy}")),
            },
            Duration::from_secs(5),
        )
    }

    /// A buy far below the market (rests), or a marketable one (fills).
    fn order(strategy: u16, seq: u64, epoch: u64, price: i64) -> OrderCommand {
        OrderCommand {
            ts: 0,
            tick_ts: 0,
            instrument: InstrumentId(0),
            cl_ord_id: ClientOrderId::new(StrategyId(strategy), seq),
            epoch,
            kind: OrderKind::New {
                side: Side::Buy,
                price: Price(price),
                qty: Qty(1),
                tif: TimeInForce::Gtc,
                post_only: false,
            },
        }
    }

    fn send(s: &mut RemoteVenue, cmd: &OrderCommand, out: &mut Rec) {
        let mut wire = [0u8; crate::wire::ORDER_WIRE_LEN];
        let n = crate::wire::encode_order(cmd, &mut wire);
        s.submit(cmd, &wire[..n], 0, out);
    }

    /// Polls until `f` holds (or 5 s pass).
    fn until(s: &mut RemoteVenue, out: &mut Rec, f: impl Fn(&RemoteVenue, &Rec) -> bool) -> bool {
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            s.poll(0, out);
            if f(s, out) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        false
    }

    #[test]
    fn a_newer_epoch_fences_the_older_session_and_cancels_its_orders() {
        let srv = server();
        let (mut a, replay) = logon(&srv, 1, 5, 1).unwrap();
        assert!(replay.is_empty());
        let mut out = Rec::default();
        // A resting order and a marketable one (it fills against the seeded book).
        send(&mut a, &order(1, 1, 5, 1_000), &mut out);
        send(&mut a, &order(1, 2, 5, 1_000_000), &mut out);
        assert!(until(&mut a, &mut out, |_, o| o
            .reports
            .iter()
            .any(|r| matches!(r.kind, OrderReportKind::Fill(_)))));
        assert!(out.md > 0, "no market data on the session");
        // An older epoch is refused outright; the same epoch from another node too.
        assert!(matches!(
            logon(&srv, 1, 4, 2),
            Err(SessionError::Refused(_))
        ));
        assert!(matches!(
            logon(&srv, 1, 5, 2),
            Err(SessionError::Refused(_))
        ));
        // A newer epoch takes over: it is told every fill the strategy had, and the
        // old session is fenced.
        let (mut b, replay) = logon(&srv, 1, 7, 2).unwrap();
        let fills = out
            .reports
            .iter()
            .filter(|r| matches!(r.kind, OrderReportKind::Fill(_)))
            .count();
        assert!(
            fills > 0 && replay.len() >= fills,
            "replayed {} of {fills}",
            replay.len()
        );
        assert!(until(&mut a, &mut out, |s, _| s.ended()));
        // What the fenced session sends now is refused locally, never accepted.
        let before = srv.counters.accepted.load(Ordering::SeqCst);
        let mut late = Rec::default();
        send(&mut a, &order(1, 3, 5, 1_000), &mut late);
        assert!(matches!(
            late.reports[0].kind,
            OrderReportKind::Rejected(RejectReason::Fenced)
        ));
        // The new owner trades; the old resting order is gone from the book (the new
        // owner's cancel of it is unknown to the venue).
        let mut outb = Rec::default();
        send(&mut b, &order(1, 10, 7, 1_000), &mut outb);
        let cancel = OrderCommand {
            kind: OrderKind::Cancel,
            ..order(1, 1, 7, 0)
        };
        send(&mut b, &cancel, &mut outb);
        assert!(until(&mut b, &mut outb, |_, o| o.reports.len() >= 2));
        assert_eq!(outb.reports[0].kind, OrderReportKind::Accepted);
        assert_eq!(
            outb.reports[1].kind,
            OrderReportKind::CancelRejected(RejectReason::UnknownOrder)
        );
        assert_eq!(srv.counters.accepted.load(Ordering::SeqCst), before + 1);
        assert!(srv.counters.logon_rejects.load(Ordering::SeqCst) >= 2);
        // Having traded, b booked the replay: a later owner is replayed only fills
        // after b's logon.
        drop(b);
        std::thread::sleep(Duration::from_millis(50));
        let (_c, replay) = logon(&srv, 1, 9, 3).unwrap();
        assert!(replay.len() < fills, "replayed {} again", replay.len());
        srv.stop();
    }

    #[test]
    fn a_session_that_disconnects_has_its_orders_cancelled() {
        let srv = server();
        let (mut a, _) = logon(&srv, 2, 3, 1).unwrap();
        let mut out = Rec::default();
        send(&mut a, &order(2, 1, 3, 1_000), &mut out);
        assert!(until(&mut a, &mut out, |_, o| !o.reports.is_empty()));
        drop(a);
        // The same node may log on again with the same epoch (a restarted session);
        // the order it left is gone.
        std::thread::sleep(Duration::from_millis(50));
        let (mut a2, _) = logon(&srv, 2, 3, 1).unwrap();
        let mut out2 = Rec::default();
        let cancel = OrderCommand {
            kind: OrderKind::Cancel,
            ..order(2, 1, 3, 0)
        };
        send(&mut a2, &cancel, &mut out2);
        assert!(until(&mut a2, &mut out2, |_, o| !o.reports.is_empty()));
        assert_eq!(
            out2.reports[0].kind,
            OrderReportKind::CancelRejected(RejectReason::UnknownOrder)
        );
        srv.stop();
    }
}
