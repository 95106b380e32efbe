//! The trading cluster with real processes on loopback: a venue process, a local etcd
//! (Debian's etcd-server) and three `hft node`s placing two engines. Each scenario runs
//! `hft bench failover`, which checks the ledger of every member against the venue's
//! own record of fills at the end.

use std::process::Command;

use serde_json::Value;

fn failover(fault: &str, trials: &str) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_hft"))
        .args([
            "bench", "failover", "--trials", trials, "--fault", fault, "--json",
        ])
        .output()
        .expect("run hft");
    assert!(
        out.status.success(),
        "hft bench failover --fault {fault} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON object")
}

fn assert_books_agree(v: &Value) {
    assert!(
        v["venue_fills"].as_u64().unwrap() > 0,
        "nothing traded: {v}"
    );
    assert_eq!(v["fills_lost"], 0, "{v}");
    assert_eq!(v["fills_duplicated"], 0, "{v}");
    assert_eq!(v["position_mismatches"], 0, "{v}");
    assert_eq!(v["stale_accepts"], 0, "{v}");
    assert_eq!(v["members_converged"], true, "{v}");
}

#[test]
fn a_killed_nodes_engines_trade_elsewhere_and_no_fill_is_lost_or_doubled() {
    let v = failover("kill", "2");
    assert_books_agree(&v);
    let samples = v["samples"].as_array().unwrap();
    assert_eq!(samples.len(), 2);
    for s in samples {
        // The new owner traded under a newer epoch, well inside the lease TTL (the
        // failure detector, not the lease, moved the engine).
        assert!(s["ms"].as_f64().unwrap() < 2_000.0, "{s}");
    }
}

#[test]
fn a_node_paused_past_its_lease_comes_back_fenced_and_nothing_it_sends_is_accepted() {
    let v = failover("pause", "1");
    assert_books_agree(&v);
    assert_eq!(v["fenced_on_resume"], 1, "{v}");
}

#[test]
fn a_node_cut_off_from_the_cluster_but_not_the_venue_is_fenced_by_the_venue_and_by_itself() {
    // Its etcd, ledger and control traffic is dropped while its venue session stays up:
    // the venue refuses it as soon as the new owner logs on, and the node fences
    // itself once its lease can no longer have been renewed.
    let v = failover("partition", "1");
    assert_books_agree(&v);
    assert_eq!(v["fenced_on_resume"], 1, "{v}");
}
