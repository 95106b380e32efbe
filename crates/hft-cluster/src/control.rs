//! The control channel between nodes: the placement leader's failure detector.
//!
//! Every node listens on a control address (advertised in its etcd registration). The
//! leader connects to each node; both sides prove they hold the cluster secret with a
//! mutual HMAC-SHA256 challenge-response, then the node sends a heartbeat every
//! [`HEARTBEAT`] on that connection (the heartbeats themselves carry no MAC: the
//! handshake authenticates the peer, not each later byte; TLS would be needed against
//! an attacker on the path). A connection that closes (a killed process's sockets close at once) or
//! stays silent for [`SILENCE`] (a paused or partitioned node) marks the node down.
//!
//! The detector may be wrong (a slow node looks dead): that costs a needless failover,
//! never safety, because a node that lost its assignment is refused by the venue and the
//! ledger by epoch, whatever it believes.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Heartbeat period.
pub const HEARTBEAT: Duration = Duration::from_millis(50);
/// Silence after which a node is considered down.
pub const SILENCE: Duration = Duration::from_millis(300);
const MAGIC: &[u8; 8] = b"hftctl01";

/// The shared secret that authenticates cluster members to each other.
#[derive(Clone)]
pub struct ClusterSecret(Arc<Vec<u8>>);

impl ClusterSecret {
    /// A secret from its bytes; at least 16 are required.
    pub fn new(bytes: Vec<u8>) -> Result<Self, String> {
        if bytes.len() < 16 {
            return Err(format!(
                "the cluster secret has {} bytes; use at least 16 random bytes \
                 (e.g. `head -c 32 /dev/urandom | base64`)",
                bytes.len()
            ));
        }
        Ok(Self(Arc::new(bytes)))
    }

    fn mac(&self, role: &[u8], nonce: &[u8; 16], peer_id: u64) -> Hmac<Sha256> {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(MAGIC);
        mac.update(role);
        mac.update(nonce);
        mac.update(&peer_id.to_le_bytes());
        mac
    }

    fn proof(&self, role: &[u8], nonce: &[u8; 16], peer_id: u64) -> [u8; 32] {
        self.mac(role, nonce, peer_id)
            .finalize()
            .into_bytes()
            .into()
    }

    fn check(&self, role: &[u8], nonce: &[u8; 16], peer_id: u64, proof: &[u8; 32]) -> bool {
        // Constant-time comparison.
        self.mac(role, nonce, peer_id).verify_slice(proof).is_ok()
    }
}

fn nonce() -> [u8; 16] {
    let mut n = [0u8; 16];
    // The OS generator only fails on broken systems; a fixed nonce then still needs
    // the secret to answer.
    let _ = getrandom::fill(&mut n);
    n
}

/// Hello: magic, sender id, nonce.
async fn hello(s: &mut TcpStream, me: u64) -> std::io::Result<[u8; 16]> {
    let n = nonce();
    let mut b = [0u8; 32];
    b[..8].copy_from_slice(MAGIC);
    b[8..16].copy_from_slice(&me.to_le_bytes());
    b[16..].copy_from_slice(&n);
    s.write_all(&b).await?;
    Ok(n)
}

async fn read_hello(s: &mut TcpStream) -> std::io::Result<(u64, [u8; 16])> {
    let mut b = [0u8; 32];
    s.read_exact(&mut b).await?;
    if &b[..8] != MAGIC {
        return Err(std::io::Error::other("not an hft control channel"));
    }
    let mut id = [0u8; 8];
    id.copy_from_slice(&b[8..16]);
    let mut n = [0u8; 16];
    n.copy_from_slice(&b[16..]);
    Ok((u64::from_le_bytes(id), n))
}

/// Both sides: send our hello, read theirs, prove we know the secret for their nonce,
/// check their proof for ours.
async fn handshake(
    s: &mut TcpStream,
    secret: &ClusterSecret,
    me: u64,
    my_role: &[u8],
    peer_role: &[u8],
) -> std::io::Result<u64> {
    let mine = hello(s, me).await?;
    let (peer, theirs) = read_hello(s).await?;
    s.write_all(&secret.proof(my_role, &theirs, me)).await?;
    let mut proof = [0u8; 32];
    s.read_exact(&mut proof).await?;
    if !secret.check(peer_role, &mine, peer, &proof) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!("peer {peer} does not hold the cluster secret"),
        ));
    }
    Ok(peer)
}

/// Serves the control channel of node `me` on `listener` (bound before the node
/// registers, so its address can be advertised): every authenticated peer gets
/// heartbeats carrying whether this node is fenced.
pub fn serve(listener: TcpListener, secret: ClusterSecret, me: u64, fenced: Arc<AtomicBool>) {
    tokio::spawn(async move {
        loop {
            let Ok((mut s, from)) = listener.accept().await else {
                continue;
            };
            let (secret, fenced) = (secret.clone(), fenced.clone());
            tokio::spawn(async move {
                let _ = s.set_nodelay(true);
                let shake = tokio::time::timeout(
                    Duration::from_secs(2),
                    handshake(&mut s, &secret, me, b"node", b"leader"),
                )
                .await;
                match shake {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        tracing::warn!(%from, error = %e, "control connection refused");
                        return;
                    }
                    Err(_) => return,
                }
                let mut seq = 0u64;
                loop {
                    seq += 1;
                    let mut b = [0u8; 9];
                    b[..8].copy_from_slice(&seq.to_le_bytes());
                    b[8] = u8::from(fenced.load(Ordering::SeqCst));
                    if s.write_all(&b).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(HEARTBEAT).await;
                }
            });
        }
    });
}

/// What the failure detector reports about a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liveness {
    /// Authenticated and sending heartbeats, not fenced.
    Up(u64),
    /// Closed, silent, fenced or unreachable.
    Down(u64),
}

/// Watches node `id` at `addr` (`HOST:PORT`, resolved at each connect) until `stop` is set, reporting each change of its
/// liveness (starting with the first, and reconnecting while it is down).
pub async fn watch(
    id: u64,
    addr: String,
    secret: ClusterSecret,
    me: u64,
    events: mpsc::UnboundedSender<Liveness>,
    stop: Arc<AtomicBool>,
) {
    let mut last: Option<bool> = None;
    let mut report = |up: bool| {
        if last != Some(up) {
            last = Some(up);
            let _ = events.send(if up {
                Liveness::Up(id)
            } else {
                Liveness::Down(id)
            });
        }
    };
    while !stop.load(Ordering::SeqCst) {
        let conn = tokio::time::timeout(SILENCE, TcpStream::connect(addr.as_str())).await;
        let Ok(Ok(mut s)) = conn else {
            report(false);
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let _ = s.set_nodelay(true);
        let peer = tokio::time::timeout(
            Duration::from_secs(1),
            handshake(&mut s, &secret, me, b"leader", b"node"),
        )
        .await;
        match peer {
            Ok(Ok(peer)) if peer == id => {}
            Ok(Ok(peer)) => {
                tracing::warn!(node = id, %addr, answered = peer, "control address answered by another node");
                report(false);
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            Ok(Err(e)) => {
                tracing::warn!(node = id, %addr, error = %e, "control handshake failed");
                report(false);
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            Err(_) => {
                report(false);
                continue;
            }
        }
        loop {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            let mut b = [0u8; 9];
            match tokio::time::timeout(SILENCE, s.read_exact(&mut b)).await {
                Ok(Ok(_)) => report(b[8] == 0),
                _ => {
                    report(false);
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(b: u8) -> ClusterSecret {
        ClusterSecret::new(vec![b; 32]).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_node_is_up_while_it_beats_and_down_once_it_stops() {
        let fenced = Arc::new(AtomicBool::new(false));
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        serve(l, secret(1), 7, fenced.clone());
        let (tx, mut rx) = mpsc::unbounded_channel();
        let stop = Arc::new(AtomicBool::new(false));
        tokio::spawn(watch(7, addr.to_string(), secret(1), 1, tx, stop.clone()));
        assert_eq!(rx.recv().await, Some(Liveness::Up(7)));
        fenced.store(true, Ordering::SeqCst);
        assert_eq!(rx.recv().await, Some(Liveness::Down(7)));
        stop.store(true, Ordering::SeqCst);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_peer_without_the_secret_is_never_up() {
        let fenced = Arc::new(AtomicBool::new(false));
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        serve(l, secret(1), 7, fenced);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let stop = Arc::new(AtomicBool::new(false));
        tokio::spawn(watch(7, addr.to_string(), secret(2), 1, tx, stop.clone()));
        // Down is reported once (the first state); Up never follows.
        assert_eq!(rx.recv().await, Some(Liveness::Down(7)));
        let later = tokio::time::timeout(Duration::from_millis(800), rx.recv()).await;
        assert!(later.is_err(), "an unauthenticated node came up: {later:?}");
        stop.store(true, Ordering::SeqCst);
        assert!(ClusterSecret::new(vec![0; 8]).is_err());
    }
}
