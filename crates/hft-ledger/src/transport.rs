//! Raft traffic between members over TCP: length-prefixed protobuf frames, one
//! connection per peer and direction, batched writes, reconnects with backoff.
//!
//! With [`PeerTls`] configured, connections are mutual TLS: every member presents a
//! certificate signed by the cluster's CA and accepts only peers that do.
//!
//! Every connection opens with a hello naming the cluster and both member ids; a
//! listener refuses a hello from another cluster, from a member it does not know or
//! addressed to another member, and any later frame whose sender or receiver differs
//! from the hello. Refusals are counted and logged, never delivered.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use protobuf::Message as _;
use raft::prelude::{Message, MessageType};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::member::{Inbox, Transport, is_snapshot};

const MAGIC: &[u8; 4] = b"HFTL";
const VERSION: u8 = 1;
/// Largest frame accepted: a snapshot of a large ledger travels in one.
const MAX_FRAME: usize = 1 << 30;
/// Bytes gathered into one write.
const WRITE_BATCH: usize = 1 << 20;

/// Counters of one member's transport.
#[derive(Debug, Default)]
pub struct TransportStats {
    /// Messages written to peers.
    pub sent: AtomicU64,
    /// Messages received and delivered.
    pub received: AtomicU64,
    /// Messages dropped because the peer was unreachable.
    pub dropped: AtomicU64,
    /// Connections and frames refused (wrong cluster, unknown member, bad frame).
    pub rejected: AtomicU64,
    /// Successful (re)connections to peers.
    pub connects: AtomicU64,
}

/// Mutual TLS between members.
#[derive(Clone)]
pub struct PeerTls {
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerTls")
    }
}

impl PeerTls {
    /// From PEM: this member's certificate chain and private key, and the cluster CA
    /// certificate(s) that sign every member's certificate. A member's certificate must
    /// name the host part of its ledger address (IP or DNS subject alternative name).
    pub fn from_pem(cert_chain: &[u8], key: &[u8], ca: &[u8]) -> Result<Self, String> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_chain)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("member certificate: {e}"))?;
        if chain.is_empty() {
            return Err("member certificate: no PEM certificate found".into());
        }
        let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| format!("member key: {e}"))?;
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(ca) {
            let c = c.map_err(|e| format!("CA certificate: {e}"))?;
            roots.add(c).map_err(|e| format!("CA certificate: {e}"))?;
        }
        if roots.is_empty() {
            return Err("CA certificate: no PEM certificate found".into());
        }
        let roots = Arc::new(roots);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            roots.clone(),
            provider.clone(),
        )
        .build()
        .map_err(|e| format!("client verifier: {e}"))?;
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(|e| format!("member certificate and key: {e}"))?;
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| format!("member certificate and key: {e}"))?;
        Ok(Self {
            server: Arc::new(server),
            client: Arc::new(client),
        })
    }

    /// [`PeerTls::from_pem`] from files.
    pub fn from_files(
        cert_chain: &std::path::Path,
        key: &std::path::Path,
        ca: &std::path::Path,
    ) -> Result<Self, String> {
        let read = |p: &std::path::Path| {
            std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
        };
        Self::from_pem(&read(cert_chain)?, &read(key)?, &read(ca)?)
    }
}

type Writer = Box<dyn AsyncWrite + Unpin + Send>;
type Reader = Box<dyn AsyncRead + Unpin + Send>;

/// Connects to a peer, with TLS when configured.
async fn connect(addr: &str, tls: Option<&PeerTls>) -> Result<Writer, String> {
    let tcp = tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(addr))
        .await
        .map_err(|_| "connect timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    let Some(tls) = tls else {
        return Ok(Box::new(tcp));
    };
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let name = rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|e| format!("{host:?} is not a TLS server name: {e}"))?;
    let stream = tokio_rustls::TlsConnector::from(tls.client.clone())
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS handshake with {addr}: {e}"))?;
    Ok(Box::new(stream))
}

/// Member ids and addresses, shared by the sender and the listener so a membership
/// change updates both.
pub type AddressBook = Arc<RwLock<BTreeMap<u64, String>>>;

/// The sending half: a writer task per peer on the given runtime.
pub struct TcpTransport {
    id: u64,
    cluster: String,
    rt: tokio::runtime::Handle,
    book: AddressBook,
    peers: HashMap<u64, mpsc::UnboundedSender<Message>>,
    inbox: Inbox,
    stats: Arc<TransportStats>,
    tls: Option<PeerTls>,
}

impl TcpTransport {
    /// A transport for member `id` of `cluster`, knowing the peers in `book`; TLS when
    /// `tls` is set.
    pub fn new(
        rt: tokio::runtime::Handle,
        cluster: &str,
        id: u64,
        book: AddressBook,
        inbox: Inbox,
        stats: Arc<TransportStats>,
        tls: Option<PeerTls>,
    ) -> Self {
        Self {
            id,
            cluster: cluster.to_owned(),
            rt,
            book,
            peers: HashMap::new(),
            inbox,
            stats,
            tls,
        }
    }

    fn link(&mut self, to: u64) -> Option<&mpsc::UnboundedSender<Message>> {
        if !self.peers.contains_key(&to) {
            let addr = self.book.read().ok()?.get(&to)?.clone();
            let (tx, rx) = mpsc::unbounded_channel();
            let hello = hello(&self.cluster, self.id, to);
            self.rt.spawn(write_loop(
                addr,
                hello,
                rx,
                self.inbox.clone(),
                self.stats.clone(),
                self.tls.clone(),
            ));
            self.peers.insert(to, tx);
        }
        self.peers.get(&to)
    }
}

impl Transport for TcpTransport {
    fn send(&mut self, msgs: Vec<Message>) {
        for m in msgs {
            let to = m.to;
            let snap = is_snapshot(&m);
            let ok = self.link(to).is_some_and(|tx| tx.send(m).is_ok());
            if !ok {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                if snap {
                    self.inbox.snapshot_status(to, false);
                }
            }
        }
    }

    fn set_peer(&mut self, id: u64, addr: Option<String>) {
        if let Ok(mut b) = self.book.write() {
            match addr {
                Some(a) => {
                    b.insert(id, a);
                }
                None => {
                    b.remove(&id);
                }
            }
        }
        // The writer task ends when its channel closes; the next send reconnects to
        // the new address.
        self.peers.remove(&id);
    }
}

fn hello(cluster: &str, from: u64, to: u64) -> Vec<u8> {
    let mut h = Vec::with_capacity(32 + cluster.len());
    h.extend_from_slice(MAGIC);
    h.push(VERSION);
    h.extend_from_slice(&(cluster.len() as u16).to_le_bytes());
    h.extend_from_slice(cluster.as_bytes());
    h.extend_from_slice(&from.to_le_bytes());
    h.extend_from_slice(&to.to_le_bytes());
    h
}

fn push_frame(buf: &mut Vec<u8>, body: &[u8]) {
    buf.extend_from_slice(&(body.len() as u32).to_le_bytes());
    buf.extend_from_slice(body);
}

async fn write_loop(
    addr: String,
    hello: Vec<u8>,
    mut rx: mpsc::UnboundedReceiver<Message>,
    inbox: Inbox,
    stats: Arc<TransportStats>,
    tls: Option<PeerTls>,
) {
    let mut backoff = Duration::from_millis(20);
    let mut buf = Vec::with_capacity(WRITE_BATCH);
    loop {
        let mut stream = match connect(&addr, tls.as_ref()).await {
            Ok(s) => s,
            Err(why) => {
                tracing::debug!(peer = %addr, "ledger peer unreachable: {why}");
                // Unreachable: what is queued is stale by the time it could arrive, and
                // Raft re-sends what matters.
                while let Ok(m) = rx.try_recv() {
                    stats.dropped.fetch_add(1, Ordering::Relaxed);
                    if is_snapshot(&m) {
                        inbox.snapshot_status(m.to, false);
                    }
                }
                if rx.is_closed() {
                    return;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(500));
                continue;
            }
        };
        backoff = Duration::from_millis(20);
        buf.clear();
        push_frame(&mut buf, &hello);
        if stream.write_all(&buf).await.is_err() {
            continue;
        }
        stats.connects.fetch_add(1, Ordering::Relaxed);
        loop {
            let Some(first) = rx.recv().await else { return };
            buf.clear();
            let mut snaps = Vec::new();
            let mut n = 0u64;
            let mut next = Some(first);
            while let Some(m) = next.take() {
                if is_snapshot(&m) {
                    snaps.push(m.to);
                }
                let body = m.write_to_bytes().expect("raft message encodes");
                push_frame(&mut buf, &body);
                n += 1;
                if buf.len() < WRITE_BATCH {
                    next = rx.try_recv().ok();
                }
            }
            let ok = stream.write_all(&buf).await.is_ok();
            for to in snaps {
                inbox.snapshot_status(to, ok);
            }
            if !ok {
                stats.dropped.fetch_add(n, Ordering::Relaxed);
                break;
            }
            stats.sent.fetch_add(n, Ordering::Relaxed);
        }
    }
}

/// Accepts peer connections for member `id` of `cluster` (mutual TLS when `tls` is set)
/// and delivers their messages to `inbox` until the task is aborted.
pub async fn serve(
    listener: TcpListener,
    cluster: String,
    id: u64,
    book: AddressBook,
    inbox: Inbox,
    stats: Arc<TransportStats>,
    tls: Option<PeerTls>,
) {
    let cluster = Arc::new(cluster);
    let acceptor = tls.map(|t| tokio_rustls::TlsAcceptor::from(t.server));
    loop {
        let Ok((tcp, from_addr)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let (cluster, book, inbox, stats, acceptor) = (
            cluster.clone(),
            book.clone(),
            inbox.clone(),
            stats.clone(),
            acceptor.clone(),
        );
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let stream: Result<Reader, String> = match acceptor {
                None => Ok(Box::new(tcp)),
                Some(a) => tokio::time::timeout(Duration::from_secs(5), a.accept(tcp))
                    .await
                    .map_err(|_| "no TLS handshake within 5 s".to_owned())
                    .and_then(|r| {
                        r.map(|s| Box::new(s) as Reader)
                            .map_err(|e| format!("TLS handshake: {e}"))
                    }),
            };
            let res = match stream {
                Ok(s) => read_loop(s, &cluster, id, &book, &inbox, &stats).await,
                Err(e) => Err(e),
            };
            if let Err(why) = res {
                stats.rejected.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(member = id, peer = %from_addr, "ledger connection refused: {why}");
            }
        });
    }
}

/// Largest hello: a stranger must not make a member allocate before it is checked.
const MAX_HELLO: usize = 1024;

async fn read_frame(s: &mut Reader, buf: &mut Vec<u8>, max: usize) -> Result<bool, String> {
    let mut len = [0u8; 4];
    match s.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(false),
        Err(e) => return Err(e.to_string()),
    }
    let n = u32::from_le_bytes(len) as usize;
    if n > max {
        return Err(format!("frame of {n} bytes exceeds the {max}-byte limit"));
    }
    buf.resize(n, 0);
    s.read_exact(buf).await.map_err(|e| e.to_string())?;
    Ok(true)
}

/// Checks a hello; returns the sender's id.
fn check_hello(h: &[u8], cluster: &str, id: u64, book: &AddressBook) -> Result<u64, String> {
    if h.len() < 7 || &h[..4] != MAGIC {
        return Err("not an hft ledger peer (bad hello)".into());
    }
    if h[4] != VERSION {
        return Err(format!(
            "peer speaks ledger protocol {}, this member {VERSION}",
            h[4]
        ));
    }
    let n = u16::from_le_bytes([h[5], h[6]]) as usize;
    if h.len() != 7 + n + 16 {
        return Err("malformed hello".into());
    }
    let theirs = String::from_utf8_lossy(&h[7..7 + n]);
    if theirs != cluster {
        return Err(format!(
            "peer belongs to cluster {theirs:?}, not {cluster:?}"
        ));
    }
    let from = u64::from_le_bytes(h[7 + n..15 + n].try_into().expect("8 bytes"));
    let to = u64::from_le_bytes(h[15 + n..23 + n].try_into().expect("8 bytes"));
    if to != id {
        return Err(format!(
            "hello addressed to member {to}, this is member {id}"
        ));
    }
    let known = book.read().map(|b| b.contains_key(&from)).unwrap_or(false);
    if !known {
        return Err(format!(
            "member {from} is not in this cluster's configuration"
        ));
    }
    Ok(from)
}

async fn read_loop(
    mut stream: Reader,
    cluster: &str,
    id: u64,
    book: &AddressBook,
    inbox: &Inbox,
    stats: &TransportStats,
) -> Result<(), String> {
    let mut buf = Vec::new();
    let got = tokio::time::timeout(
        Duration::from_secs(5),
        read_frame(&mut stream, &mut buf, MAX_HELLO),
    )
    .await
    .map_err(|_| "no hello within 5 s".to_owned())??;
    if !got {
        return Ok(());
    }
    let from = check_hello(&buf, cluster, id, book)?;
    while read_frame(&mut stream, &mut buf, MAX_FRAME).await? {
        let m = Message::parse_from_bytes(&buf).map_err(|e| format!("bad frame: {e}"))?;
        // A follower forwards proposals, read requests and leadership transfers to the
        // leader keeping their origin as sender (a member that still took it for the
        // leader sent them there); every other message comes from the member that
        // opened the connection. The connection itself is authenticated by the hello
        // (and TLS when configured).
        let forwarded = matches!(
            m.get_msg_type(),
            MessageType::MsgTransferLeader | MessageType::MsgPropose | MessageType::MsgReadIndex
        );
        if m.to != id || (m.from != from && !forwarded) {
            stats.rejected.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                member = id,
                "dropped a frame from {} to {} on the connection of member {from}",
                m.from,
                m.to
            );
            continue;
        }
        stats.received.fetch_add(1, Ordering::Relaxed);
        if !inbox.deliver(m) {
            return Ok(());
        }
    }
    Ok(())
}

/// A member serving Raft over TCP.
pub struct TcpMember {
    /// Handle for proposals and reads.
    pub ledger: crate::Ledger,
    /// The member's thread.
    pub thread: crate::MemberThread,
    /// What recovery found.
    pub recovery: crate::Recovery,
    /// Transport counters.
    pub stats: Arc<TransportStats>,
    /// Where it listens.
    pub addr: std::net::SocketAddr,
    listener: tokio::task::JoinHandle<()>,
}

impl TcpMember {
    /// Stops the member and its listener; connections from peers close as their next
    /// message finds no member to deliver to.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for TcpMember {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

/// Starts a member that listens on `listen` and reaches its peers at the addresses in
/// `peers` (which should include itself), with its transport on `rt`, over mutual TLS
/// when `tls` is set.
pub fn start_tcp(
    cfg: crate::MemberConfig,
    cluster: &str,
    listen: std::net::SocketAddr,
    peers: BTreeMap<u64, String>,
    tls: Option<PeerTls>,
    rt: &tokio::runtime::Handle,
) -> Result<TcpMember, crate::LedgerError> {
    let id = cfg.id;
    let std_listener = std::net::TcpListener::bind(listen).map_err(|e| {
        crate::LedgerError::Invalid(format!("cannot listen on {listen} for ledger peers: {e}"))
    })?;
    std_listener
        .set_nonblocking(true)
        .map_err(|e| crate::LedgerError::Invalid(e.to_string()))?;
    let addr = std_listener
        .local_addr()
        .map_err(|e| crate::LedgerError::Invalid(e.to_string()))?;
    let book: AddressBook = Arc::new(RwLock::new(peers));
    let stats = Arc::new(TransportStats::default());
    let mut inbox_out = None;
    let (ledger, thread, recovery) = crate::Ledger::start(cfg, |inbox| {
        inbox_out = Some(inbox.clone());
        TcpTransport::new(
            rt.clone(),
            cluster,
            id,
            book.clone(),
            inbox,
            stats.clone(),
            tls.clone(),
        )
    })?;
    let inbox = inbox_out.expect("transport built");
    let listener = {
        let _g = rt.enter();
        TcpListener::from_std(std_listener)
            .map_err(|e| crate::LedgerError::Invalid(e.to_string()))?
    };
    let listener = rt.spawn(serve(
        listener,
        cluster.to_owned(),
        id,
        book,
        inbox,
        stats.clone(),
        tls,
    ));
    Ok(TcpMember {
        ledger,
        thread,
        recovery,
        stats,
        addr,
        listener,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hellos_from_strangers_are_refused_with_the_reason() {
        let book: AddressBook =
            Arc::new(RwLock::new(BTreeMap::from([(2, "127.0.0.1:1".to_owned())])));
        assert_eq!(check_hello(&hello("c", 2, 1), "c", 1, &book), Ok(2));
        let e = check_hello(&hello("other", 2, 1), "c", 1, &book).unwrap_err();
        assert!(e.contains("cluster \"other\""), "{e}");
        let e = check_hello(&hello("c", 9, 1), "c", 1, &book).unwrap_err();
        assert!(e.contains("member 9 is not"), "{e}");
        let e = check_hello(&hello("c", 2, 3), "c", 1, &book).unwrap_err();
        assert!(e.contains("addressed to member 3"), "{e}");
        assert!(check_hello(b"GET / HTTP/1.1", "c", 1, &book).is_err());
        let mut h = hello("c", 2, 1);
        h.pop();
        assert!(check_hello(&h, "c", 1, &book).is_err());
    }
}
