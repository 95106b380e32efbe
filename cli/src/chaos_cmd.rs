//! `hft chaos run`: a seeded schedule of faults against a trading cluster of real
//! processes (a venue, a 3-member etcd, 3 to 5 nodes), then the history checker.
//!
//! Where it can (root, iproute2), the run moves into network and mount namespaces of
//! its own and puts every node in a namespace of its own (see `netns`): a partition
//! takes a node's cluster link down and leaves its venue link up, and each node's WAL
//! directory is a tmpfs the run can fill. Elsewhere the processes run on loopback and a
//! partition goes through relays; the disk-full fault then cannot run, and the report
//! says so. Fail-point faults need a build with `--features failpoints`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use clap::Args;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::Exit;
use crate::venue_cmd::{Harness, Net};

/// Members of the run's etcd cluster (one can die without losing quorum).
const ETCD_MEMBERS: usize = 3;

/// `hft chaos run` arguments.
#[derive(Args, Debug)]
pub struct ChaosArgs {
    /// Seed of the fault schedule (the same seed, the same faults in the same order).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// short (one fault of each kind) or long (twice as many).
    #[arg(long, default_value = "short")]
    schedule: Schedule,
    /// Trading nodes (each a ledger member).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(3..=5))]
    nodes: u64,
    /// How the processes are networked.
    #[arg(long, default_value = "auto")]
    network: Network,
    /// Keep the run's logs and histories here.
    #[arg(long)]
    report: Option<PathBuf>,
    /// The etcd binary (Debian: etcd-server).
    #[arg(long, default_value = "etcd")]
    etcd_bin: PathBuf,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// How many faults a run injects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Schedule {
    /// One fault of each kind.
    Short,
    /// Two per kind on average: one of each, then random ones.
    Long,
}

/// How the run's processes are networked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Network {
    /// Namespaces where they can be made, loopback otherwise.
    Auto,
    /// Namespaces, or fail.
    Netns,
    /// Loopback processes, partitions through relays.
    Loopback,
}

/// The crash fail points: a process that reaches one dies there (abort).
const CRASH_POINTS: [&str; 2] = ["ledger::after-append", "booking::before-propose"];
/// How long a crash point may take to be reached (it follows its strategy when
/// placement moves it meanwhile).
const CRASH_WAIT: Duration = Duration::from_secs(30);
/// How long a lease-stall holds a node between losing its lease and fencing itself.
const LEASE_STALL_MS: u64 = 1_500;
/// What a slow disk adds to every WAL sync.
const SLOW_SYNC_MS: u64 = 40;

/// One fault of a schedule. Victims are named by strategy: the node that runs it when
/// the fault starts.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Fault {
    /// SIGKILL, then a restart.
    Kill { strategy: usize },
    /// SIGSTOP for `ms`, then SIGCONT (past the 2 s lease: the node must fence itself).
    Pause { strategy: usize, ms: u64 },
    /// Cluster traffic dropped for `ms`, then healed.
    Partition { strategy: usize, ms: u64 },
    /// A strategy's kill switch engaged in the ledger for `ms`, then released.
    KillSwitch { strategy: usize, ms: u64 },
    /// One etcd member killed for `ms`, then restarted: etcd keeps its quorum and
    /// nothing may stop trading.
    EtcdMember { member: usize, ms: u64 },
    /// Two of the three etcd members killed for `ms`: no node can renew its lease, so
    /// every node fences itself and trading halts safely; then etcd comes back and the
    /// nodes rejoin as new processes.
    EtcdQuorum { member: usize, ms: u64 },
    /// The ledger's Raft leader cut off from the cluster for `ms`.
    LeaderPartition { ms: u64 },
    /// The node's WAL filesystem filled for `ms`, then freed.
    DiskFull { strategy: usize, ms: u64 },
    /// The node dies at a crash fail point.
    CrashPoint { strategy: usize, point: usize },
    /// Every WAL sync of the node slowed for `ms`.
    SlowDisk { strategy: usize, ms: u64 },
    /// The node stalls between losing its lease and fencing itself while it is cut off:
    /// its engines trade on, and only the venue's epoch fencing stops them.
    LeaseStall { strategy: usize, ms: u64 },
}

impl Fault {
    fn name(&self) -> &'static str {
        match self {
            Fault::Kill { .. } => "kill",
            Fault::Pause { .. } => "pause",
            Fault::Partition { .. } => "partition",
            Fault::KillSwitch { .. } => "kill-switch",
            Fault::EtcdMember { .. } => "etcd-member",
            Fault::EtcdQuorum { .. } => "etcd-quorum",
            Fault::LeaderPartition { .. } => "leader-partition",
            Fault::DiskFull { .. } => "disk-full",
            Fault::CrashPoint { .. } => "crash-point",
            Fault::SlowDisk { .. } => "slow-disk",
            Fault::LeaseStall { .. } => "lease-stall",
        }
    }

    /// The strategy whose node is the victim, for the faults that have one.
    fn strategy(&self) -> Option<usize> {
        match *self {
            Fault::Kill { strategy }
            | Fault::Pause { strategy, .. }
            | Fault::Partition { strategy, .. }
            | Fault::KillSwitch { strategy, .. }
            | Fault::DiskFull { strategy, .. }
            | Fault::CrashPoint { strategy, .. }
            | Fault::SlowDisk { strategy, .. }
            | Fault::LeaseStall { strategy, .. } => Some(strategy),
            Fault::EtcdMember { .. } | Fault::EtcdQuorum { .. } | Fault::LeaderPartition { .. } => {
                None
            }
        }
    }
}

/// The faults of a run, from its seed: every kind of `kinds` once, then random ones.
/// Each fault draws its victim and durations before its kind; with fewer kinds
/// available a seed gives a different schedule, as reproducible.
fn schedule(seed: u64, n: usize, strategies: usize, kinds: &[&str]) -> Vec<Fault> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let strategy = rng.random_range(0..strategies);
            let ms = rng.random_range(2_500..4_000);
            let member = rng.random_range(0..3);
            let point = rng.random_range(0..CRASH_POINTS.len());
            let pick = rng.random_range(0..kinds.len().max(1));
            match kinds.get(if i < kinds.len() { i } else { pick }).copied() {
                Some("pause") => Fault::Pause { strategy, ms },
                Some("partition") => Fault::Partition { strategy, ms },
                Some("kill-switch") => Fault::KillSwitch {
                    strategy,
                    ms: ms / 2,
                },
                Some("etcd-member") => Fault::EtcdMember { member, ms },
                Some("etcd-quorum") => Fault::EtcdQuorum { member, ms },
                Some("leader-partition") => Fault::LeaderPartition { ms },
                Some("disk-full") => Fault::DiskFull { strategy, ms },
                Some("crash-point") => Fault::CrashPoint { strategy, point },
                Some("slow-disk") => Fault::SlowDisk { strategy, ms },
                Some("lease-stall") => Fault::LeaseStall {
                    strategy,
                    ms: 4_000,
                },
                _ => Fault::Kill { strategy },
            }
        })
        .collect()
}

/// The kinds this run can inject, and why each other one cannot run.
fn available(namespaces: bool) -> (Vec<&'static str>, Vec<Value>) {
    let mut skipped = Vec::new();
    let kinds = hft_chaos::FAULT_KINDS
        .into_iter()
        .filter(|k| {
            let why = if hft_chaos::FAILPOINT_KINDS.contains(k) && !hft_cluster::FAILPOINTS {
                Some("this build has no fail points (build with --features failpoints)")
            } else if hft_chaos::NAMESPACE_KINDS.contains(k) && !namespaces {
                Some("needs network and mount namespaces (root and iproute2)")
            } else {
                None
            };
            if let Some(why) = why {
                skipped.push(json!({ "fault": k, "why": why }));
            }
            why.is_none()
        })
        .collect();
    (kinds, skipped)
}

/// How long a kill switch may take to stop a strategy's orders at the venue: the
/// sessions poll their ledger member every 20 ms, and an order may be on the wire.
const KILL_GRACE: Duration = Duration::from_millis(250);
/// Trading must resume this soon after a fault heals.
const RESUME_BOUND: Duration = Duration::from_secs(30);

/// Runs a chaos schedule; exit 1 on any violation.
pub fn run(a: ChaosArgs) -> Result<u8, Exit> {
    // First, while this process has one thread: the namespaces are per thread until
    // then, and every thread and process started later inherits them.
    let (net, network) = match a.network {
        Network::Loopback => (Net::Relays, "loopback with relays (asked for)".to_owned()),
        Network::Netns => (
            Net::Namespaces(crate::netns::Netns::enter().map_err(|e| Exit(1, e.error))?),
            "network namespaces".to_owned(),
        ),
        Network::Auto => match crate::netns::Netns::enter() {
            Ok(ns) => (Net::Namespaces(ns), "network namespaces".to_owned()),
            Err(e) if e.moved => {
                return Err(Exit(
                    1,
                    e.error
                        .context("namespaces half made; run with --network loopback to skip them"),
                ));
            }
            Err(e) => {
                let e = e.error;
                eprintln!(
                    "network namespaces unavailable ({e:#}): loopback processes with relays instead"
                );
                (
                    Net::Relays,
                    format!("loopback with relays (namespaces: {e:#})"),
                )
            }
        },
    };
    let dir = match &a.report {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("hft-chaos-{}-{}", a.seed, std::process::id())),
    };
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| Exit(1, e.into()))?;
    let (kinds, skipped) = available(matches!(net, Net::Namespaces(_)));
    let n = match a.schedule {
        Schedule::Short => kinds.len(),
        Schedule::Long => 2 * kinds.len(),
    };
    let result = run_schedule(
        &Run {
            seed: a.seed,
            faults: n,
            nodes: a.nodes,
            kinds: &kinds,
            etcd_bin: &a.etcd_bin,
            dir: &dir,
        },
        net,
    );
    let keep = a.report.is_some() || !matches!(&result, Ok((_, true)));
    if !keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let (mut v, clean) =
        result.map_err(|e| Exit(1, anyhow!("{e:#} (logs in {})", dir.display())))?;
    if let Some(o) = v.as_object_mut() {
        o.insert(
            "schedule".into(),
            json!(if a.schedule == Schedule::Long {
                "long"
            } else {
                "short"
            }),
        );
        o.insert("network".into(), json!(network));
        o.insert("skipped".into(), json!(skipped));
    }
    if a.json {
        println!("{v}");
    } else {
        println!("network: {network}; nodes {}", a.nodes);
        for f in v["faults"].as_array().into_iter().flatten() {
            println!("fault {f}");
        }
        for k in &skipped {
            println!("not injected: {} ({})", k["fault"], k["why"]);
        }
        println!(
            "invariants: fills lost {} duplicated {}, positions {}, stale-epoch accepts {}, accepts while killed {}, limit breaches {}, members converged {}",
            v["fills_lost"],
            v["fills_duplicated"],
            v["position_mismatches"],
            v["stale_accepts"],
            v["accepts_while_killed"],
            v["limit_breaches"],
            v["members_converged"]
        );
        for x in v["violations"].as_array().into_iter().flatten() {
            println!("VIOLATION {x}");
        }
        println!(
            "seed {} {}: resume after heal p99 {} ms; {}",
            v["seed"],
            v["schedule"],
            v["resume_p99_ms"],
            if clean { "no violation" } else { "VIOLATIONS" }
        );
        if !clean {
            println!("logs in {}", dir.display());
        }
    }
    Ok(if clean { 0 } else { 1 })
}

/// What one run is.
struct Run<'a> {
    seed: u64,
    faults: usize,
    nodes: u64,
    kinds: &'a [&'static str],
    etcd_bin: &'a Path,
    dir: &'a Path,
}

/// Waits until node `id`'s process has ended by itself (true) or `within` passed.
fn wait_exit(h: &mut Harness, id: u64, within: Duration) -> bool {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if !h.cluster.running(id) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// The ledger's Raft leader, as the first member that knows one says; asked for up to
/// 30 s (after a fault that restarted every node, an election and the token checks
/// against a recovering etcd take a while on a loaded machine).
fn ledger_leader(h: &mut Harness, token: &str) -> anyhow::Result<u64> {
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        h.cluster.check_alive()?;
        for id in h.cluster.ids() {
            if let Some(l) = h
                .call(id, token, "GET", "/v1/ledger/status", None)
                .and_then(|v| v["leader"].as_u64())
                .filter(|&l| l != 0)
            {
                return Ok(l);
            }
        }
        if Instant::now() > end {
            bail!("no ledger member named a leader within 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Arms fail point `name` of node `id` with `actions` (`off` disarms); a node that has
/// just (re)started, or whose audit record waits on an electing etcd, is asked again
/// for up to 30 s. A crash point may fire before the node answers: its death is the
/// answer then.
fn arm(h: &mut Harness, token: &str, id: u64, name: &str, actions: &str) -> anyhow::Result<()> {
    let end = Instant::now() + Duration::from_secs(30);
    let path = format!("/v1/failpoints/{name}");
    while h.call(id, token, "PUT", &path, Some(actions)).is_none() {
        if !h.cluster.running(id) {
            return Ok(());
        }
        if Instant::now() > end {
            bail!("node {id} did not arm fail point {name} with {actions}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

fn run_schedule(r: &Run<'_>, net: Net) -> anyhow::Result<(Value, bool)> {
    let mut h = Harness::launch(r.etcd_bin, r.dir, net, ETCD_MEMBERS, r.nodes)?;
    let plan = schedule(r.seed, r.faults, h.names.len(), r.kinds);
    let token = h.admin_token()?;
    let mut log = Vec::new();
    let mut kills = Vec::new();
    let mut resume = hdrhistogram::Histogram::<u64>::new(3)?;
    for (k, fault) in plan.iter().enumerate() {
        let a = h.assignments()?;
        let mut victim = match fault.strategy() {
            Some(s) => {
                let name = &h.names[s];
                a.get(name)
                    .ok_or_else(|| anyhow!("fault {k}: {name} is not assigned"))?
                    .0
            }
            None if matches!(fault, Fault::LeaderPartition { .. }) => {
                ledger_leader(&mut h, &token)?
            }
            None => 0,
        };
        // What the victim ran: each must move to another node.
        let mut owned = owned_by(&h.names, &a, victim);
        let t0 = Instant::now();
        // The node a fault acts on is the fault's to restart, not the supervisor's.
        let acts_on_node = !matches!(
            fault,
            Fault::KillSwitch { .. } | Fault::EtcdMember { .. } | Fault::EtcdQuorum { .. }
        );
        h.cluster.victim = (acts_on_node && victim != 0).then_some(victim);
        let mut entry = json!({"n": k, "fault": fault.name(), "node": victim});
        if let Some(s) = fault.strategy() {
            entry["strategy"] = json!(h.names[s]);
        }
        let mut back = vec![victim];
        match fault {
            Fault::Kill { .. } => {
                h.cluster.kill(victim);
                wait_moved(&mut h, k, &owned, &mut entry)?;
                h.cluster.start_node(victim)?;
            }
            Fault::CrashPoint { strategy, point } => {
                let name = CRASH_POINTS[*point];
                entry["point"] = json!(name);
                // The point is reached on the victim's next fill (or order, or ledger
                // append): on a loaded machine that can take a while, and placement
                // may move the strategy meanwhile. The point then follows it: the
                // fault is a crash of the node that runs the strategy.
                let strategy_name = h.names[*strategy].clone();
                h.history.poll()?;
                let before = h.history.activity(*strategy as u16);
                let end = Instant::now() + CRASH_WAIT;
                let mut followed = Vec::new();
                arm(&mut h, &token, victim, name, "return")?;
                let hit = loop {
                    if wait_exit(&mut h, victim, Duration::from_secs(1)) {
                        break true;
                    }
                    if Instant::now() > end {
                        break false;
                    }
                    let now = h.assignments()?;
                    let Some(&(node, _)) = now.get(&strategy_name) else {
                        continue;
                    };
                    if node == victim {
                        continue;
                    }
                    arm(&mut h, &token, victim, name, "off")?;
                    if !h.cluster.running(victim) {
                        // Reached just before it was disarmed.
                        break true;
                    }
                    followed.push(node);
                    victim = node;
                    owned = owned_by(&h.names, &now, victim);
                    h.cluster.victim = Some(victim);
                    back = vec![victim];
                    entry["node"] = json!(victim);
                    arm(&mut h, &token, victim, name, "return")?;
                };
                entry["hit"] = json!(hit);
                if !followed.is_empty() {
                    entry["followed_to"] = json!(followed);
                }
                if !hit {
                    // Why not, for the report: who runs the strategy now, and what the
                    // node last logged.
                    let now = h.assignments()?;
                    entry["owner_after"] = json!(now.get(&strategy_name).map(|a| a.0));
                    h.history.poll()?;
                    let after = h.history.activity(*strategy as u16);
                    entry["venue_accepts_while_armed"] = json!(after.0 - before.0);
                    entry["venue_fills_while_armed"] = json!(after.1 - before.1);
                    entry["log_tail"] = json!(h.cluster.log_tail(victim, 8));
                }
                h.cluster.kill(victim);
                wait_moved(&mut h, k, &owned, &mut entry)?;
                h.cluster.start_node(victim)?;
            }
            Fault::Pause { ms, .. }
            | Fault::Partition { ms, .. }
            | Fault::LeaderPartition { ms }
            | Fault::LeaseStall { ms, .. } => {
                let pause = matches!(fault, Fault::Pause { .. });
                if matches!(fault, Fault::LeaseStall { .. }) {
                    arm(
                        &mut h,
                        &token,
                        victim,
                        "coord::lease-lost",
                        &format!("return({LEASE_STALL_MS})"),
                    )?;
                }
                if pause {
                    h.cluster.signal(victim, libc::SIGSTOP);
                } else {
                    h.cluster.partition(victim, true)?;
                }
                wait_moved(&mut h, k, &owned, &mut entry)?;
                std::thread::sleep(Duration::from_millis(*ms).saturating_sub(t0.elapsed()));
                if pause {
                    h.cluster.signal(victim, libc::SIGCONT);
                } else {
                    h.cluster.partition(victim, false)?;
                }
                // Past its lease the node fenced itself; it rejoins as a new process.
                std::thread::sleep(Duration::from_millis(500));
                h.cluster.kill(victim);
                h.cluster.start_node(victim)?;
            }
            Fault::DiskFull { ms, .. } => {
                let dir = h.cluster.ledger_dir(victim);
                let log_at = h.cluster.log_len(victim);
                let filled = crate::netns::fill_disk(&dir)?;
                entry["filled_bytes"] = json!(filled);
                let mut stopped = wait_exit(&mut h, victim, Duration::from_millis(*ms));
                crate::netns::free_disk(&dir);
                // A write that began while the disk was full fails after the window.
                stopped = stopped || wait_exit(&mut h, victim, Duration::from_secs(1));
                if !stopped && h.cluster.logged_since(victim, log_at, "storage failed") {
                    // Its member failed late in the window; the node is on its way out.
                    stopped = wait_exit(&mut h, victim, Duration::from_secs(30));
                }
                // A node whose WAL could not grow stops (fail-stop) and is restarted
                // once the disk has room; one that did not need to grow trades on.
                entry["node_stopped"] = json!(stopped);
                if stopped {
                    h.cluster.kill(victim);
                    wait_moved(&mut h, k, &owned, &mut entry)?;
                    h.cluster.start_node(victim)?;
                } else {
                    back.clear();
                }
            }
            Fault::SlowDisk { ms, .. } => {
                arm(
                    &mut h,
                    &token,
                    victim,
                    "ledger::wal-sync",
                    &format!("sleep({SLOW_SYNC_MS})"),
                )?;
                std::thread::sleep(Duration::from_millis(*ms));
                arm(&mut h, &token, victim, "ledger::wal-sync", "off")?;
                back.clear();
            }
            Fault::EtcdMember { member, ms } => {
                entry["etcd_member"] = json!(member);
                h.etcd_kill(*member);
                std::thread::sleep(Duration::from_millis(*ms));
                h.etcd_restart(*member)?;
                back.clear();
            }
            Fault::EtcdQuorum { member, ms } => {
                let other = (member + 1) % 3;
                entry["etcd_members"] = json!([member, other]);
                h.etcd_kill(*member);
                h.etcd_kill(other);
                std::thread::sleep(Duration::from_millis(*ms));
                h.etcd_restart(*member)?;
                h.etcd_restart(other)?;
                // Every node fenced itself; each rejoins as a new process.
                back = h.cluster.ids();
                for &n in &back {
                    h.cluster.kill(n);
                    h.cluster.start_node(n)?;
                }
            }
            Fault::KillSwitch { strategy, ms } => {
                let name = h.names[*strategy].clone();
                // The switch holds from its commit (the call's answer) until the release
                // is asked for.
                h.kill_switch(&token, &name, true)?;
                let from = hft_cluster::coord::now_ns();
                std::thread::sleep(Duration::from_millis(*ms));
                let to = hft_cluster::coord::now_ns();
                h.kill_switch(&token, &name, false)?;
                kills.push(hft_chaos::KillWindow {
                    strategy: Some(*strategy as u16),
                    from,
                    to: Some(to),
                });
                back.clear();
            }
        }
        h.cluster.victim = None;
        let healed = Instant::now();
        h.wait_trading(
            &format!("fault {k}: trading after healing"),
            None,
            RESUME_BOUND,
        )?;
        // Trading resumed; the nodes rejoining (and placement evening out) come after.
        let ms = healed.elapsed().as_secs_f64() * 1e3;
        let _ = resume.record((ms * 1e3) as u64);
        entry["resume_ms"] = json!((ms * 10.0).round() / 10.0);
        for v in back {
            h.wait_trading(
                &format!("fault {k}: node {v} back and trading"),
                Some(v),
                RESUME_BOUND,
            )?;
        }
        entry["rejoin_ms"] = json!((healed.elapsed().as_secs_f64() * 1e4).round() / 10.0);
        log.push(entry);
        std::thread::sleep(Duration::from_millis(500));
    }
    let (violations, mut v) = h.finish(kills, KILL_GRACE.as_nanos() as u64)?;
    let q = |x: f64| (resume.value_at_quantile(x) as f64 / 100.0).round() / 10.0;
    if let Some(o) = v.as_object_mut() {
        o.insert("seed".into(), json!(r.seed));
        o.insert("nodes".into(), json!(r.nodes));
        o.insert("faults".into(), json!(log));
        o.insert("resume_p50_ms".into(), json!(q(0.5)));
        o.insert("resume_p99_ms".into(), json!(q(0.99)));
    }
    Ok((v, violations.is_empty()))
}

/// `(strategy index, epoch)` of the strategies `node` runs under assignments `a`.
fn owned_by(names: &[String], a: &BTreeMap<String, (u64, u64)>, node: u64) -> Vec<(usize, u64)> {
    names
        .iter()
        .enumerate()
        .filter_map(|(i, n)| {
            a.get(n)
                .filter(|&&(owner, _)| owner == node)
                .map(|&(_, e)| (i, e))
        })
        .collect()
}

/// Waits until every strategy the victim ran trades under a newer epoch elsewhere;
/// notes the new epochs in the fault's entry.
fn wait_moved(
    h: &mut Harness,
    k: usize,
    owned: &[(usize, u64)],
    entry: &mut Value,
) -> anyhow::Result<()> {
    let mut epochs = Vec::new();
    for &(s, epoch) in owned {
        let name = h.names[s].clone();
        let (e, _) = h.wait_new_owner(&format!("fault {k}: {name} moved"), s, epoch)?;
        epochs.push(json!({ "strategy": name, "epoch": e }));
    }
    entry["moved"] = json!(epochs);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_always_gives_the_same_schedule_and_every_fault_kind() {
        let kinds = hft_chaos::FAULT_KINDS;
        let a = schedule(7, 3 * kinds.len(), 2, &kinds);
        assert_eq!(a, schedule(7, 3 * kinds.len(), 2, &kinds));
        assert_ne!(a, schedule(8, 3 * kinds.len(), 2, &kinds));
        for kind in kinds {
            assert!(a.iter().any(|f| f.name() == kind), "{kind} missing");
        }
        assert_eq!(schedule(1, kinds.len(), 2, &kinds).len(), kinds.len());
    }

    #[test]
    fn fewer_kinds_leave_the_others_out_and_keep_the_victims() {
        let all = schedule(3, 30, 2, &hft_chaos::FAULT_KINDS);
        let some = schedule(3, 30, 2, &["kill", "pause"]);
        assert!(some.iter().all(|f| ["kill", "pause"].contains(&f.name())));
        assert_eq!(all[0].strategy(), some[0].strategy());
        let (kinds, skipped) = available(false);
        assert!(!kinds.contains(&"disk-full"));
        assert!(skipped.iter().any(|s| s["fault"] == "disk-full"));
        assert_eq!(kinds.len() + skipped.len(), hft_chaos::FAULT_KINDS.len());
    }
}
