//! Members talking over real TCP on loopback: replication, reconnection after a member
//! restarts, and refusal of connections from outside the cluster.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{fill, wait};
use hft_core::Side;
use hft_ledger::transport::{PeerTls, TcpMember, start_tcp};
use hft_ledger::{Command, MemberConfig};

const LONG: Duration = Duration::from_secs(20);

fn free_addrs(n: usize) -> Vec<SocketAddr> {
    let ls: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    ls.iter().map(|l| l.local_addr().unwrap()).collect()
}

fn member(
    dir: &std::path::Path,
    id: u64,
    addrs: &[SocketAddr],
    tls: Option<PeerTls>,
    rt: &tokio::runtime::Runtime,
) -> TcpMember {
    let mut cfg = MemberConfig::new(id, vec![1, 2, 3], dir.join(format!("m{id}")));
    cfg.tick = Duration::from_millis(10);
    let peers: BTreeMap<u64, String> = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| (i as u64 + 1, a.to_string()))
        .collect();
    // A member stopped a moment ago may still hold the port: its listener task ends on
    // the runtime after `stop` returns.
    let end = Instant::now() + LONG;
    loop {
        match start_tcp(
            cfg.clone(),
            "test",
            addrs[id as usize - 1],
            peers.clone(),
            tls.clone(),
            rt.handle(),
        ) {
            Ok(m) => return m,
            Err(e) if e.to_string().contains("in use") && Instant::now() < end => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("member {id}: {e}"),
        }
    }
}

/// Proposes through `m` until acknowledged. An attempt whose answer came too late here
/// may still have committed: then the acknowledged one finds those fills booked, once,
/// as duplicates, so callers count `applied + duplicates`.
fn propose(m: &TcpMember, cmds: Vec<Command>) -> hft_ledger::Outcome {
    let end = Instant::now() + LONG;
    loop {
        if let Some(Ok(o)) = wait(m.ledger.propose(cmds.clone()), Duration::from_secs(1)) {
            return o;
        }
        assert!(Instant::now() < end, "not acknowledged");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn three_members_over_tcp_replicate_and_refuse_strangers() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = std::env::temp_dir().join(format!("hft-ledger-tcp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let addrs = free_addrs(3);
    let mut ms: Vec<Option<TcpMember>> = (1..=3)
        .map(|id| Some(member(&dir, id, &addrs, None, &rt)))
        .collect();
    for r in 0..20u64 {
        let cmds = (0..5)
            .map(|i| Command::Fill(fill("x", r * 5 + i, Side::Buy, 1)))
            .collect();
        let o = propose(ms[(r % 3) as usize].as_ref().unwrap(), cmds);
        assert_eq!(o.applied + o.duplicates, 5);
    }
    // Leadership moves when a follower asks for it (raft-rs forwards the request with
    // the transferee as sender).
    let roles: Vec<String> = ms
        .iter()
        .flatten()
        .map(|m| wait(m.ledger.status(), LONG).unwrap().role)
        .collect();
    let lead = roles.iter().position(|r| r == "Leader").unwrap();
    let (asker, target) = ((lead + 1) % 3, (lead + 2) % 3);
    ms[asker]
        .as_ref()
        .unwrap()
        .ledger
        .transfer_leader(target as u64 + 1);
    let end = Instant::now() + LONG;
    while wait(ms[target].as_ref().unwrap().ledger.status(), LONG)
        .unwrap()
        .role
        != "Leader"
    {
        assert!(
            Instant::now() < end,
            "leadership did not move to {}",
            target + 1
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // A stranger (another cluster's hello, then garbage) is refused and counted.
    let before: u64 = ms
        .iter()
        .flatten()
        .map(|m| m.stats.rejected.load(Ordering::Relaxed))
        .sum();
    let mut s = std::net::TcpStream::connect(addrs[0]).unwrap();
    let mut hello = b"HFTL\x01".to_vec();
    hello.extend_from_slice(&5u16.to_le_bytes());
    hello.extend_from_slice(b"other");
    hello.extend_from_slice(&2u64.to_le_bytes());
    hello.extend_from_slice(&1u64.to_le_bytes());
    let mut frame = (hello.len() as u32).to_le_bytes().to_vec();
    frame.extend_from_slice(&hello);
    s.write_all(&frame).unwrap();
    let mut s2 = std::net::TcpStream::connect(addrs[1]).unwrap();
    s2.write_all(b"\x05\x00\x00\x00hello").unwrap();
    let end = Instant::now() + LONG;
    while ms
        .iter()
        .flatten()
        .map(|m| m.stats.rejected.load(Ordering::Relaxed))
        .sum::<u64>()
        < before + 2
    {
        assert!(Instant::now() < end, "strangers were not refused");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Restart member 3: it reconnects and catches up.
    ms[2].take().unwrap().stop();
    std::thread::sleep(Duration::from_millis(100));
    propose(
        ms[0].as_ref().unwrap(),
        vec![Command::Fill(fill("x", 1000, Side::Sell, 1))],
    );
    ms[2] = Some(member(&dir, 3, &addrs, None, &rt));
    let end = Instant::now() + LONG;
    loop {
        let st: Vec<_> = ms
            .iter()
            .flatten()
            .map(|m| wait(m.ledger.status(), LONG).unwrap())
            .collect();
        let hashes: Vec<[u8; 32]> = ms
            .iter()
            .flatten()
            .map(|m| {
                wait(m.ledger.read_local(|s| s.hash()), LONG)
                    .unwrap()
                    .unwrap()
            })
            .collect();
        if st.iter().all(|s| s.fills == 101) && hashes.iter().all(|h| *h == hashes[0]) {
            break;
        }
        assert!(
            Instant::now() < end,
            "member 3 did not catch up: {:?}",
            st.iter().map(|s| s.fills).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(ms);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A CA and one member certificate per name, as PEM: (ca, [(cert, key)]).
fn pki(names: &[&str]) -> (String, Vec<(String, String)>) {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let leaves = names
        .iter()
        .map(|n| {
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = rcgen::CertificateParams::new(vec![(*n).to_owned()])
                .unwrap()
                .signed_by(&key, &ca)
                .unwrap();
            (cert.pem(), key.serialize_pem())
        })
        .collect();
    (ca.pem(), leaves)
}

#[test]
fn members_over_mutual_tls_replicate_and_refuse_a_certificate_of_another_ca() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = std::env::temp_dir().join(format!("hft-ledger-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let addrs = free_addrs(3);
    let (ca, leaves) = pki(&["127.0.0.1", "127.0.0.1", "127.0.0.1"]);
    let tls = |k: usize| {
        Some(
            PeerTls::from_pem(
                leaves[k].0.as_bytes(),
                leaves[k].1.as_bytes(),
                ca.as_bytes(),
            )
            .unwrap(),
        )
    };
    let ms: Vec<TcpMember> = (1..=2u64)
        .map(|id| member(&dir, id, &addrs, tls(id as usize - 1), &rt))
        .collect();
    // Member 3's identity, but a certificate from another CA: refused by both.
    let (other_ca, other) = pki(&["127.0.0.1"]);
    let intruder = PeerTls::from_pem(
        other[0].0.as_bytes(),
        other[0].1.as_bytes(),
        other_ca.as_bytes(),
    )
    .unwrap();
    let fake = member(&dir.join("fake"), 3, &addrs, Some(intruder), &rt);
    // Two of three voters are a quorum: the real members commit without member 3.
    let o = propose(
        &ms[0],
        (0..4)
            .map(|i| Command::Fill(fill("x", i, Side::Buy, 1)))
            .collect(),
    );
    assert_eq!(o.applied + o.duplicates, 4);
    let end = Instant::now() + LONG;
    while ms
        .iter()
        .map(|m| m.stats.rejected.load(Ordering::Relaxed))
        .sum::<u64>()
        == 0
    {
        assert!(
            Instant::now() < end,
            "the foreign certificate was not refused"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let s = wait(fake.ledger.status(), LONG).unwrap();
    assert_eq!(s.fills, 0, "the impostor received nothing");
    fake.stop();
    // The real member 3 joins over TLS and catches up.
    let m3 = member(&dir, 3, &addrs, tls(2), &rt);
    let end = Instant::now() + LONG;
    while wait(m3.ledger.status(), LONG).unwrap().fills != 4 {
        assert!(Instant::now() < end, "member 3 did not catch up over TLS");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Bad PEM is a clear error, not a panic.
    let e = PeerTls::from_pem(b"not pem", leaves[0].1.as_bytes(), ca.as_bytes()).unwrap_err();
    assert!(e.contains("member certificate"), "{e}");
    drop(ms);
    drop(m3);
    let _ = std::fs::remove_dir_all(&dir);
}
