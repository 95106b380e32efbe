//! Three and more members over a network that drops, delays, duplicates and partitions
//! messages: fills are never lost or double-counted, every member ends in the same state.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Cluster, Faults, fast, fill, wait};
use hft_core::Side;
use hft_ledger::{Command, LedgerError};
use proptest::prelude::*;

const LONG: Duration = Duration::from_secs(20);

fn buys(from: u64, n: u64) -> Vec<Command> {
    (from..from + n)
        .map(|i| Command::Fill(fill("x", i, Side::Buy, 10)))
        .collect()
}

#[test]
fn fills_replicate_once_each_under_loss_delay_and_duplication() {
    let c = Cluster::new("lossy", 3, 7, fast);
    c.leader(LONG);
    c.net.set_faults(Faults {
        drop: 0.05,
        duplicate: 0.05,
        max_delay: Duration::from_millis(3),
        ..Faults::default()
    });
    // 60 proposals of 5 fills through every member, each fill proposed twice.
    for round in 0..60u64 {
        let via = 1 + round % 3;
        let cmds = buys(round * 5, 5);
        let o = c.propose_until_acked(via, cmds.clone(), LONG);
        assert_eq!(o.applied + o.duplicates, 5);
        let again = c.propose_until_acked(via, cmds, LONG);
        assert_eq!(again.duplicates, 5, "a fill proposed twice counts once");
    }
    c.net.set_faults(Faults::default());
    let (s, _) = c.converged(LONG);
    assert_eq!(s.fills, 300);
    for id in 1..=3 {
        let q = wait(
            c.ledger(id)
                .read(|st| st.net_qty("main", "mm", "BTC-USD").raw()),
            LONG,
        )
        .expect("read answered")
        .expect("read ok");
        assert_eq!(q, 3000, "member {id}");
    }
}

#[test]
fn a_partitioned_leader_commits_nothing_and_the_majority_moves_on() {
    let c = Cluster::new("partition", 3, 11, fast);
    let old = c.leader(LONG);
    c.propose_until_acked(old, buys(0, 10), LONG);
    let others: Vec<u64> = (1..=3).filter(|&i| i != old).collect();
    c.net.isolate(old, &others);
    // The isolated leader cannot commit: the proposal never succeeds there.
    let rx = c.ledger(old).propose(buys(100, 1));
    assert!(
        !matches!(wait(rx, Duration::from_millis(800)), Some(Ok(_))),
        "a minority leader acknowledged a fill"
    );
    // The majority elects a leader and keeps booking.
    // (An attempt answered too late may have committed: the acknowledged one then
    // finds those fills booked, as duplicates.)
    let o = c.propose_until_acked(others[0], buys(200, 10), LONG);
    assert_eq!(o.applied + o.duplicates, 10);
    // Linearizable reads on the isolated member fail instead of answering stale.
    let stale = wait(
        c.ledger(old).read(|st| st.fill_count()),
        Duration::from_millis(800),
    );
    assert!(!matches!(stale, Some(Ok(20))));
    c.net.heal();
    let (s, _) = c.converged(LONG);
    // The isolated proposal may or may not have committed after healing, never twice.
    assert!(s.fills == 20 || s.fills == 21, "fills {}", s.fills);
}

#[test]
fn restart_from_wal_and_snapshot_gives_the_same_state_hash() {
    fn small_snapshots(cfg: &mut hft_ledger::MemberConfig) {
        fast(cfg);
        cfg.snapshot_every = 25;
        cfg.keep_entries = 5;
        cfg.segment_bytes = 4 << 10;
    }
    let mut c = Cluster::new("restart", 3, 3, small_snapshots);
    c.leader(LONG);
    for r in 0..80 {
        c.propose_until_acked(1, buys(r * 3, 3), LONG);
    }
    let (before, before_hash) = c.converged(LONG);
    assert!(before.snapshot_index > 0, "snapshots were taken");
    for id in 1..=3 {
        c.stop(id);
    }
    for id in 1..=3 {
        let rec = c.start(id, vec![1, 2, 3]);
        assert!(rec.snapshot_index > 0);
    }
    let (after, after_hash) = c.converged(LONG);
    assert_eq!(after_hash, before_hash);
    assert_eq!(after.fills, 240);
}

#[test]
fn a_lagging_member_catches_up_through_a_snapshot() {
    fn tiny_log(cfg: &mut hft_ledger::MemberConfig) {
        fast(cfg);
        cfg.snapshot_every = 10;
        cfg.keep_entries = 2;
    }
    let mut c = Cluster::new("lagging", 3, 5, tiny_log);
    c.leader(LONG);
    c.propose_until_acked(1, buys(0, 2), LONG);
    c.converged(LONG);
    c.stop(3);
    for r in 1..60 {
        c.propose_until_acked(1, buys(r * 2, 2), LONG);
    }
    let lead = c.leader(LONG);
    assert!(c.status(lead).snapshot_index > 20);
    c.start(3, vec![1, 2, 3]);
    let (s, _) = c.converged(LONG);
    assert_eq!(s.fills, 120);
}

#[test]
fn members_join_as_learners_get_promoted_and_leave_and_leadership_transfers() {
    let mut c = Cluster::new("members", 3, 9, fast);
    let lead = c.leader(LONG);
    c.propose_until_acked(lead, buys(0, 4), LONG);
    // Member 4 starts empty and joins as a learner, then becomes a voter.
    c.start(4, vec![]);
    // Changes raft-rs would only refuse when applying are refused up front.
    for bad in [
        c.ledger(lead).remove(9),
        c.ledger(lead).add_learner(lead, "sim:x"),
    ] {
        match wait(bad, LONG).expect("answered") {
            Err(hft_ledger::LedgerError::Invalid(_)) => {}
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
    let cs = wait(c.ledger(lead).add_learner(4, "sim:4"), LONG)
        .expect("answered")
        .expect("learner added");
    assert!(cs.learners.contains(&4));
    let cs = wait(c.ledger(lead).promote(4, None), LONG)
        .expect("answered")
        .expect("promoted");
    assert!(cs.voters.contains(&4));
    c.converged(LONG);
    // Hand leadership to 4, then remove the old leader.
    c.ledger(lead).transfer_leader(4);
    let end = std::time::Instant::now() + LONG;
    while c.status(4).role != "Leader" {
        assert!(std::time::Instant::now() < end, "transfer did not happen");
        std::thread::sleep(Duration::from_millis(10));
    }
    let cs = wait(c.ledger(4).remove(lead), LONG)
        .expect("answered")
        .expect("removed");
    assert!(!cs.voters.contains(&lead));
    c.stop(lead);
    c.propose_until_acked(4, buys(100, 4), LONG);
    let (s, _) = c.converged(LONG);
    assert_eq!(s.fills, 8);
    assert_eq!(s.voters.len(), 3);
}

/// A member whose log is lost while the others still count it as a voter (its disk was
/// replaced) must not vote: its empty log would let a candidate without the committed
/// entries win. It waits, voting for no one and never campaigning, until it is removed
/// and added back as a learner; then it catches up like any new member.
#[test]
fn a_member_that_lost_its_log_votes_for_no_one_until_added_back() {
    let mut c = Cluster::new("rejoin", 3, 11, fast);
    let lead = c.leader(LONG);
    c.propose_until_acked(lead, buys(0, 20), LONG);
    c.converged(LONG);
    let lost = if lead == 3 { 2 } else { 3 };
    let other = 6 - lead - lost;
    c.stop(lost);
    std::fs::remove_dir_all(c.dir.join(format!("m{lost}"))).unwrap();
    let mut cfg = c.config(lost, vec![]);
    cfg.rejoin = true;
    c.start_with(cfg);
    assert!(c.status(lost).rejoining);
    // Without the leader, the one member with the log cannot win an election: the
    // lost member withholds the vote its empty log would give anyone. Many election
    // timeouts (100-200 ms here) pass.
    c.stop(lead);
    let end = std::time::Instant::now() + Duration::from_millis(1_500);
    while std::time::Instant::now() < end {
        for id in [other, lost] {
            assert_ne!(c.status(id).role, "Leader", "member {id} was elected");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // A restart from its disk brings a leader back (its vote and the other's). The
    // lost member, still rejoining across a restart of its own, is removed and added
    // back as a learner, catches up, and is promoted.
    c.stop(lost);
    let mut cfg = c.config(lost, vec![]);
    cfg.rejoin = false;
    c.start_with(cfg);
    assert!(c.status(lost).rejoining, "the marker outlives a restart");
    c.start(lead, vec![1, 2, 3]);
    let l = c.leader(LONG);
    assert_ne!(l, lost);
    wait(c.ledger(l).remove(lost), LONG)
        .expect("answered")
        .expect("removed");
    wait(c.ledger(l).add_learner(lost, "sim:x"), LONG)
        .expect("answered")
        .expect("added back");
    let end = std::time::Instant::now() + LONG;
    loop {
        let s = c.status(lost);
        if !s.rejoining && s.fills == 20 {
            break;
        }
        assert!(std::time::Instant::now() < end, "no catch-up: {s:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    wait(c.ledger(l).promote(lost, None), LONG)
        .expect("answered")
        .expect("promoted");
    c.propose_until_acked(l, buys(100, 4), LONG);
    let (s, _) = c.converged(LONG);
    assert_eq!((s.fills, s.voters.len()), (24, 3));
}

#[test]
fn an_unknown_instrument_is_refused_before_it_is_proposed() {
    fn known(cfg: &mut hft_ledger::MemberConfig) {
        fast(cfg);
        cfg.instruments = Some(BTreeMap::from([("BTC-USD".to_owned(), (2, 3))]));
    }
    let c = Cluster::new("unknown", 1, 1, known);
    c.leader(LONG);
    let mut f = fill("x", 1, Side::Buy, 5);
    f.instrument = "DOGE-USD".into();
    let r = wait(c.ledger(1).propose(vec![Command::Fill(f)]), LONG).unwrap();
    match r {
        Err(LedgerError::Invalid(why)) => assert!(why.contains("unknown instrument"), "{why}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(c.status(1).last_index, c.status(1).commit);
    assert_eq!(c.status(1).fills, 0);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, .. ProptestConfig::default() })]

    /// Random fill streams with repeats, proposed through random members under random
    /// faults: once every fill is acknowledged, every member's position is the sum of
    /// the unique fills.
    #[test]
    fn positions_equal_the_sum_of_unique_fills(
        seed in any::<u64>(),
        stream in proptest::collection::vec((0u64..60, any::<bool>(), 1i64..50, 1u64..4), 1..40),
        drop in 0.0f64..0.15,
        dup in 0.0f64..0.2,
    ) {
        let c = Cluster::new(&format!("prop{seed}"), 3, seed, fast);
        c.leader(LONG);
        c.net.set_faults(Faults { drop, duplicate: dup, max_delay: Duration::from_millis(2), ..Faults::default() });
        let mut unique = BTreeMap::new();
        for &(id, buy, qty, via) in &stream {
            let side = if buy { Side::Buy } else { Side::Sell };
            let f = fill("x", id, side, qty);
            unique.entry(id).or_insert(side.sign() * qty);
            c.propose_until_acked(via, vec![Command::Fill(f)], LONG);
        }
        c.net.set_faults(Faults::default());
        let (s, _) = c.converged(LONG);
        prop_assert_eq!(s.fills as usize, unique.len());
        let want: i64 = unique.values().sum();
        for id in 1..=3 {
            let q = wait(c.ledger(id).read_local(|st| st.net_qty("main", "mm", "BTC-USD").raw()), LONG)
                .unwrap()
                .unwrap();
            prop_assert_eq!(q, want);
        }
    }
}

#[test]
fn verify_rebuilds_the_state_from_the_log_and_catches_an_altered_snapshot() {
    fn snapshots_with_log(cfg: &mut hft_ledger::MemberConfig) {
        fast(cfg);
        cfg.snapshot_every = 20;
        cfg.keep_entries = 100;
    }
    let mut c = Cluster::new("verify", 1, 2, snapshots_with_log);
    c.leader(LONG);
    for r in 0..50 {
        c.propose_until_acked(1, buys(r * 2, 2), LONG);
    }
    let (_, live_hash) = c.converged(LONG);
    c.stop(1);
    let dir = c.dir.join("m1");
    let rep = hft_ledger::verify::verify(&dir).expect("verifies");
    assert_eq!(hft_ledger::member::hex(&rep.hash), live_hash);
    assert_eq!(rep.fills, 100);
    assert_eq!(rep.snapshots, 2);
    assert_eq!(
        rep.snapshots_checked, 1,
        "the newer snapshot is checked against a rebuild"
    );
    // Rewrite the newest snapshot with a valid checksum but a state that has one more fill.
    let snaps = hft_ledger::storage::load_snapshots(&dir.join("snap")).unwrap();
    let newest = snaps.last().unwrap();
    let mut st = hft_ledger::LedgerState::decode(&newest.data).unwrap();
    st.apply(&Command::Fill(fill("x", 999_999, Side::Buy, 1)));
    let meta = newest.get_metadata();
    let forged = hft_ledger::storage::snapshot_of(
        meta.index,
        meta.term,
        meta.get_conf_state().clone(),
        st.encode(),
    );
    hft_ledger::storage::save_snapshot(&dir.join("snap"), &forged, 2).unwrap();
    let err = hft_ledger::verify::verify(&dir).unwrap_err().to_string();
    assert!(err.contains("does not match"), "{err}");
}

#[test]
fn a_read_asked_right_after_an_election_is_answered() {
    // raft-rs drops a read index request that reaches a leader before it committed an
    // entry of its term; the member must ask again rather than wait forever.
    for round in 0..20 {
        let dir = std::env::temp_dir().join(format!(
            "hft-ledger-early-read-{}-{round}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let mut cfg = hft_ledger::MemberConfig::new(1, vec![1], &dir);
        fast(&mut cfg);
        let (l, t, _) = hft_ledger::Ledger::start(cfg, |_| hft_ledger::Lone).unwrap();
        l.campaign();
        let got = wait(l.read(|st| st.fill_count()), LONG);
        assert!(matches!(got, Some(Ok(0))), "round {round}: {got:?}");
        t.stop();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
