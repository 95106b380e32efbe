//! What a node's gateway thread trades through: the in-process simulated venue of a
//! single-node run, or a session with a venue process over the venue link.

use crate::link::{self, Logon, kind};
use crate::sim_venue::{SimVenue, VenueOutput};
use crate::wire::ORDER_WIRE_LEN;
use hft_core::{Nanos, OrderCommand, OrderReport, OrderReportKind, RejectReason};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// A venue as the gateway drives it.
pub trait VenuePort: Send + 'static {
    /// Sends one order command (already encoded in `wire`) at local time `now`.
    fn submit(&mut self, cmd: &OrderCommand, wire: &[u8], now: Nanos, out: &mut impl VenueOutput);
    /// Delivers whatever is due by `now`; whether anything was.
    fn poll(&mut self, now: Nanos, out: &mut impl VenueOutput) -> bool;
    /// Publishes (or asks for) a full book snapshot.
    fn snapshot(&mut self, now: Nanos, out: &mut impl VenueOutput);
    /// Events a snapshot takes (a ring needs that much room before a resync).
    fn snapshot_len(&self) -> usize;
    /// How long the gateway may sleep when idle.
    fn idle_for(&self, now: Nanos) -> Duration;
    /// Market data events produced or received so far.
    fn flow_events(&self) -> u64;
    /// Ends the session: what rests at the venue is cancelled and every report up to
    /// then is delivered.
    fn finish(&mut self, now: Nanos, out: &mut impl VenueOutput);
    /// A socket the gateway may sleep on when idle, so that the venue's next message
    /// wakes it at once instead of at its next poll; `None` for a venue inside the
    /// process, whose next event time `idle_for` already tells.
    fn wait_fd(&self) -> Option<std::os::fd::RawFd> {
        None
    }
    /// True once the venue refuses this session (a newer owner took its strategy over,
    /// or the link is gone): the node must stop the engine.
    fn ended(&self) -> bool {
        false
    }
}

impl VenuePort for SimVenue {
    fn submit(&mut self, cmd: &OrderCommand, wire: &[u8], now: Nanos, out: &mut impl VenueOutput) {
        // The venue reads what went over the wire, not our struct.
        match crate::wire::decode_order(wire) {
            Ok(decoded) => SimVenue::submit(self, &decoded, now, out),
            Err(e) => {
                tracing::error!(error = %e, order = %cmd.cl_ord_id, "venue refused an undecodable order");
                out.report(&OrderReport {
                    ts: now,
                    instrument: cmd.instrument,
                    cl_ord_id: cmd.cl_ord_id,
                    kind: OrderReportKind::Rejected(RejectReason::Malformed),
                });
            }
        }
    }

    fn poll(&mut self, now: Nanos, out: &mut impl VenueOutput) -> bool {
        let mut steps = 0;
        while steps < 256 && self.next_flow_ts() <= now {
            self.step_flow(out);
            steps += 1;
        }
        steps > 0
    }

    fn snapshot(&mut self, now: Nanos, out: &mut impl VenueOutput) {
        SimVenue::snapshot(self, now, out);
    }

    fn snapshot_len(&self) -> usize {
        SimVenue::snapshot_len(self)
    }

    fn idle_for(&self, now: Nanos) -> Duration {
        Duration::from_nanos(
            self.next_flow_ts()
                .saturating_sub(now)
                .clamp(1_000, 1_000_000),
        )
    }

    fn flow_events(&self) -> u64 {
        SimVenue::flow_events(self)
    }

    fn finish(&mut self, _: Nanos, _: &mut impl VenueOutput) {}
}

/// Why a venue session could not start.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The venue cannot be reached.
    #[error("cannot reach the venue at {addr}: {source}")]
    Connect {
        /// Venue address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
    /// The venue refused the logon.
    #[error("the venue refused the logon: {0}")]
    Refused(String),
    /// The link broke or carried something malformed.
    #[error("venue link: {0}")]
    Link(String),
}

/// A session with a venue process for one strategy.
pub struct RemoteVenue {
    stream: TcpStream,
    buf: Box<[u8]>,
    have: usize,
    /// Output not yet taken by the socket (only while it pushes back).
    pending: Vec<u8>,
    md_events: u64,
    last_snapshot: usize,
    counting_snapshot: usize,
    fenced: bool,
    broken: bool,
    logged_out: bool,
}

/// Bytes read per socket read.
const READ_BUF: usize = 256 * 1024;

impl RemoteVenue {
    /// Connects and logs on; returns the session and the strategy's fills the venue
    /// executed before (to reconcile the ledger with before trading).
    pub fn logon(
        addr: SocketAddr,
        logon: Logon,
        within: Duration,
    ) -> Result<(Self, Vec<OrderReport>), SessionError> {
        let stream = TcpStream::connect_timeout(&addr, within)
            .map_err(|source| SessionError::Connect { addr, source })?;
        let link_err = |e: std::io::Error| SessionError::Link(e.to_string());
        stream.set_nodelay(true).map_err(link_err)?;
        stream.set_read_timeout(Some(within)).map_err(link_err)?;
        let mut me = Self {
            stream,
            buf: vec![0u8; READ_BUF].into_boxed_slice(),
            have: 0,
            pending: Vec::new(),
            md_events: 0,
            last_snapshot: 0,
            counting_snapshot: 0,
            fenced: false,
            broken: false,
            logged_out: false,
        };
        let mut body = [0u8; link::LOGON_LEN];
        link::encode_logon(&logon, &mut body);
        let mut frame = Vec::new();
        link::push_frame(&mut frame, kind::LOGON, &body);
        me.stream.write_all(&frame).map_err(link_err)?;
        let deadline = Instant::now() + within;
        let mut replay = Vec::new();
        let mut acked = false;
        loop {
            let mut at = 0;
            while let Some((k, p, n)) =
                link::split(&me.buf[at..me.have]).map_err(|e| SessionError::Link(e.to_string()))?
            {
                match k {
                    kind::LOGON_ACK => acked = true,
                    kind::LOGON_REJECT => {
                        return Err(SessionError::Refused(String::from_utf8_lossy(p).into()));
                    }
                    kind::REPLAY if acked => replay.push(
                        link::decode_report(p).map_err(|e| SessionError::Link(e.to_string()))?,
                    ),
                    kind::REPLAY_END if acked => {
                        at += n;
                        me.buf.copy_within(at..me.have, 0);
                        me.have -= at;
                        me.stream.set_read_timeout(None).map_err(link_err)?;
                        me.stream.set_nonblocking(true).map_err(link_err)?;
                        return Ok((me, replay));
                    }
                    _ => {
                        return Err(SessionError::Link(format!(
                            "unexpected frame {k:#04x} during logon"
                        )));
                    }
                }
                at += n;
            }
            me.buf.copy_within(at..me.have, 0);
            me.have -= at;
            if Instant::now() >= deadline {
                return Err(SessionError::Link("no logon answer in time".into()));
            }
            let have = me.have;
            match me.stream.read(&mut me.buf[have..]) {
                Ok(0) => return Err(SessionError::Link("the venue closed the link".into())),
                Ok(n) => me.have += n,
                Err(e) => return Err(link_err(e)),
            }
        }
    }

    /// The link is unusable: close it now, so that the venue cancels the session's
    /// orders at once (cancel on disconnect) rather than when the session is dropped.
    fn fail(&mut self) {
        self.broken = true;
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }

    fn send(&mut self, bytes: &[u8]) {
        if self.broken {
            return;
        }
        if self.pending.is_empty() {
            match self.stream.write(bytes) {
                Ok(n) if n == bytes.len() => {}
                Ok(n) => self.pending.extend_from_slice(&bytes[n..]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    self.pending.extend_from_slice(bytes)
                }
                Err(_) => self.fail(),
            }
        } else {
            self.pending.extend_from_slice(bytes);
        }
    }

    fn flush_pending(&mut self) {
        if self.pending.is_empty() || self.broken {
            return;
        }
        match self.stream.write(&self.pending) {
            Ok(n) => {
                self.pending.drain(..n);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => self.fail(),
        }
    }

    fn deliver(&mut self, k: u8, p: &[u8], now: Nanos, out: &mut impl VenueOutput) -> bool {
        match k {
            kind::MARKET => match link::decode_market(p) {
                Ok(mut e) => {
                    e.ts_recv = now;
                    self.md_events += 1;
                    if e.flags & hft_core::FLAG_SNAPSHOT != 0 {
                        self.counting_snapshot += 1;
                        if e.is_last() {
                            self.last_snapshot = self.counting_snapshot;
                            self.counting_snapshot = 0;
                        }
                    }
                    out.market(&e);
                }
                Err(e) => {
                    tracing::error!(error = %e, "malformed market event from the venue");
                    self.fail();
                    return false;
                }
            },
            kind::REPORT => match link::decode_report(p) {
                Ok(r) => out.report(&r),
                Err(e) => {
                    tracing::error!(error = %e, "malformed report from the venue");
                    self.fail();
                    return false;
                }
            },
            kind::FENCED => {
                tracing::warn!("the venue handed this strategy to a newer owner: session fenced");
                self.fenced = true;
            }
            kind::LOGOUT_ACK => self.logged_out = true,
            _ => {
                tracing::error!(frame = k, "unexpected frame from the venue");
                self.fail();
                return false;
            }
        }
        true
    }
}

impl VenuePort for RemoteVenue {
    #[inline]
    fn submit(&mut self, cmd: &OrderCommand, wire: &[u8], now: Nanos, out: &mut impl VenueOutput) {
        if self.ended() {
            // The venue cancels a session's orders when it fences or loses it, so the
            // engine learns at once that nothing of it rests there any more.
            let kind = match cmd.kind {
                hft_core::OrderKind::Cancel => OrderReportKind::Canceled,
                hft_core::OrderKind::New { .. } => OrderReportKind::Rejected(RejectReason::Fenced),
            };
            out.report(&OrderReport {
                ts: now,
                instrument: cmd.instrument,
                cl_ord_id: cmd.cl_ord_id,
                kind,
            });
            return;
        }
        let mut frame = [0u8; link::ORDER_FRAME_LEN];
        link::header(&mut frame, kind::ORDER, ORDER_WIRE_LEN);
        frame[3..].copy_from_slice(&wire[..ORDER_WIRE_LEN]);
        self.send(&frame);
    }

    fn poll(&mut self, now: Nanos, out: &mut impl VenueOutput) -> bool {
        self.flush_pending();
        if self.broken {
            return false;
        }
        let have = self.have;
        match self.stream.read(&mut self.buf[have..]) {
            Ok(0) => {
                self.fail();
                return false;
            }
            Ok(n) => self.have += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => return false,
            Err(_) => {
                self.fail();
                return false;
            }
        }
        let mut at = 0;
        loop {
            match link::split(&self.buf[at..self.have]) {
                Ok(Some((k, _, n))) => {
                    // Copy the payload out of the buffer to satisfy the borrow of self.
                    let mut p = [0u8; link::REPORT_LEN];
                    let len = n - 3;
                    if len > p.len() {
                        // A refusal's text, or garbage: either way the session is over.
                        self.fail();
                        break;
                    }
                    p[..len].copy_from_slice(&self.buf[at + 3..at + n]);
                    at += n;
                    if !self.deliver(k, &p[..len], now, out) {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::error!(error = %e, "malformed frame from the venue");
                    self.fail();
                    break;
                }
            }
        }
        self.buf.copy_within(at..self.have, 0);
        self.have -= at;
        true
    }

    fn snapshot(&mut self, _: Nanos, _: &mut impl VenueOutput) {
        let mut frame = [0u8; 3];
        link::header(&mut frame, kind::SNAPSHOT, 0);
        self.send(&frame);
    }

    fn snapshot_len(&self) -> usize {
        self.last_snapshot
    }

    fn idle_for(&self, _: Nanos) -> Duration {
        if self.pending.is_empty() {
            // The gateway sleeps on the socket (`wait_fd`): a message ends the wait.
            Duration::from_millis(100)
        } else {
            // The socket pushed back: retry the write soon.
            Duration::from_micros(200)
        }
    }

    fn wait_fd(&self) -> Option<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        (!self.broken).then(|| self.stream.as_raw_fd())
    }

    fn flow_events(&self) -> u64 {
        self.md_events
    }

    fn finish(&mut self, now: Nanos, out: &mut impl VenueOutput) {
        if self.fenced || self.broken {
            return;
        }
        let mut frame = [0u8; 3];
        link::header(&mut frame, kind::LOGOUT, 0);
        self.send(&frame);
        let deadline = Instant::now() + Duration::from_secs(2);
        while !self.logged_out && !self.broken && !self.fenced && Instant::now() < deadline {
            if !self.poll(now, out) {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        if !self.logged_out {
            tracing::warn!(
                "the venue did not confirm the logout; its fills are replayed at the next logon"
            );
        }
    }

    fn ended(&self) -> bool {
        self.fenced || self.broken
    }
}
