//! The cluster's etcd state against a real etcd (Debian's etcd-server, started here on
//! loopback): validated, versioned configuration with optimistic concurrency, and node
//! registration that fences the node when its lease cannot be renewed.

use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hft_cluster::coord::{Coord, CoordError, NodeInfo};
use hft_cluster::local_etcd::LocalEtcd;

/// A single-member etcd on loopback for one test.
fn etcd(name: &str) -> LocalEtcd {
    let dir = std::env::temp_dir().join(format!("hft-etcd-{name}-{}", std::process::id()));
    LocalEtcd::start(Path::new("etcd"), &dir, 1)
        .expect("etcd runs (scripts/test.sh installs Debian's etcd-server)")
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

const GOOD: &str = "[simulator]\nseed = 7\n";
const BETTER: &str = "[simulator]\nseed = 8\n";

#[test]
fn configuration_is_validated_versioned_and_written_only_against_the_revision_read() {
    let etcd = etcd("config");
    let rt = rt();
    rt.block_on(async {
        let mut c = Coord::connect(&etcd.clients, "t1", Duration::from_secs(20))
            .await
            .unwrap();
        assert!(c.config_get().await.unwrap().is_none());
        // Invalid: refused with the field named, nothing written.
        let e = c
            .config_set("[simulator]\nseed = \"x\"\n", None, "alice")
            .await
            .unwrap_err();
        assert!(matches!(e, CoordError::Invalid(_)), "{e}");
        assert!(e.to_string().contains("seed"), "{e}");
        assert!(c.config_get().await.unwrap().is_none());
        // First write expects "no config yet" (revision 0).
        let r1 = c.config_set(GOOD, Some(0), "alice").await.unwrap();
        let v = c.config_get().await.unwrap().unwrap();
        assert_eq!((v.revision, v.text.as_str()), (r1, GOOD));
        // A writer that read before r1 loses; one that read r1 wins.
        let e = c.config_set(BETTER, Some(0), "bob").await.unwrap_err();
        assert!(
            matches!(e, CoordError::Conflict { expected: 0, current } if current == r1),
            "{e}"
        );
        let r2 = c.config_set(BETTER, Some(r1), "bob").await.unwrap();
        assert!(r2 > r1);
        // History names every version by the revision that wrote it.
        let h = c.config_history().await.unwrap();
        assert_eq!(
            h.iter()
                .map(|e| (e.revision, e.who.as_str()))
                .collect::<Vec<_>>(),
            vec![(r1, "alice"), (r2, "bob")]
        );
        assert_eq!(c.config_at(r1).await.unwrap().text, GOOD);
        assert!(matches!(
            c.config_at(r1 + 1000).await,
            Err(CoordError::NoSuchRevision(_))
        ));
        // Another cluster's namespace is separate.
        let mut other = Coord::connect(&etcd.clients, "t2", Duration::from_secs(5))
            .await
            .unwrap();
        assert!(other.config_get().await.unwrap().is_none());
    });
}

#[test]
fn unreachable_etcd_is_a_clear_error_after_retrying() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let rt = rt();
    let started = Instant::now();
    let e = rt
        .block_on(Coord::connect(
            &[format!("http://127.0.0.1:{port}")],
            "t",
            Duration::from_secs(1),
        ))
        .err()
        .expect("nothing listens there");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "it retried"
    );
    let msg = e.to_string();
    assert!(msg.contains("cannot reach etcd"), "{msg}");
    assert!(msg.contains("--etcd"), "{msg}");
}

#[test]
fn a_registered_node_is_listed_and_fences_itself_when_etcd_is_gone() {
    let mut etcd = etcd("nodes");
    let rt = rt();
    let info = NodeInfo {
        control: None,
        id: 3,
        admin: "127.0.0.1:7083".into(),
        ledger: Some("127.0.0.1:7003".into()),
        since: 1,
    };
    let reg = rt.block_on(async {
        let mut c = Coord::connect(&etcd.clients, "t3", Duration::from_secs(20))
            .await
            .unwrap();
        let reg = c.register(&info, Duration::from_secs(2)).await.unwrap();
        assert_eq!(c.nodes().await.unwrap(), vec![info.clone()]);
        reg
    });
    // Renewals keep it registered and unfenced well past its TTL.
    std::thread::sleep(Duration::from_secs(3));
    assert!(!reg.fenced.load(Ordering::SeqCst));
    // etcd disappears: the node fences itself before the lease could expire.
    etcd.kill(0);
    let gone = Instant::now();
    while !reg.fenced.load(Ordering::SeqCst) {
        assert!(gone.elapsed() < Duration::from_secs(10), "never fenced");
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!(
        "fenced {:?} after etcd went away (lease TTL 2 s)",
        gone.elapsed()
    );
    assert!(
        gone.elapsed() <= Duration::from_secs(2),
        "fenced only after the TTL"
    );
    drop(reg);
}

/// A member's founding of the ledger is recorded once per cluster: the second claim
/// (a founder started again on an empty disk) is refused, and each cluster and member
/// has its own record.
#[test]
fn a_ledger_founding_is_claimed_once_per_member_and_cluster() {
    let etcd = etcd("founding");
    rt().block_on(async {
        let mut a = Coord::connect(&etcd.clients, "fa", Duration::from_secs(20))
            .await
            .unwrap();
        let mut b = Coord::connect(&etcd.clients, "fb", Duration::from_secs(20))
            .await
            .unwrap();
        assert!(a.claim_founding(1).await.unwrap());
        assert!(a.claim_founding(2).await.unwrap());
        assert!(
            !a.claim_founding(1).await.unwrap(),
            "member 1 founded already"
        );
        assert!(b.claim_founding(1).await.unwrap(), "another cluster");
    });
}
