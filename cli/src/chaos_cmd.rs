//! `hft chaos run`: a seeded schedule of faults against a trading cluster of real
//! processes (a venue, a local etcd, three nodes), then the history checker.
//!
//! The processes run on loopback. Partitions drop a node's cluster traffic (etcd, the
//! other ledger members, the control channel) through relays, and leave its venue
//! session up. Network namespaces are not used yet.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use clap::Args;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::Exit;
use crate::venue_cmd::Harness;

/// `hft chaos run` arguments.
#[derive(Args, Debug)]
pub struct ChaosArgs {
    /// Seed of the fault schedule (the same seed, the same faults in the same order).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// short (one fault of each of the 6 kinds) or long (18).
    #[arg(long, default_value = "short")]
    schedule: Schedule,
    /// Keep the run's logs, histories and ledgers here.
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
    /// 18 faults: one of each kind, then random ones.
    Long,
}

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
        }
    }
}

/// Fault kinds.
const KINDS: usize = hft_chaos::FAULT_KINDS.len();

/// The faults of a run, from its seed: every kind appears, then random ones.
fn schedule(seed: u64, n: usize, strategies: usize) -> Vec<Fault> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let strategy = rng.random_range(0..strategies);
            let ms = rng.random_range(2_500..4_000);
            let member = rng.random_range(0..3);
            match if i < KINDS {
                i
            } else {
                rng.random_range(0..KINDS)
            } {
                0 => Fault::Kill { strategy },
                1 => Fault::Pause { strategy, ms },
                2 => Fault::Partition { strategy, ms },
                3 => Fault::KillSwitch {
                    strategy,
                    ms: ms / 2,
                },
                4 => Fault::EtcdMember { member, ms },
                _ => Fault::EtcdQuorum { member, ms },
            }
        })
        .collect()
}

/// How long a kill switch may take to stop a strategy's orders at the venue: the
/// sessions poll their ledger member every 20 ms, and an order may be on the wire.
const KILL_GRACE: Duration = Duration::from_millis(250);
/// Trading must resume this soon after a fault heals.
const RESUME_BOUND: Duration = Duration::from_secs(30);

/// Runs a chaos schedule; exit 1 on any violation.
pub fn run(a: ChaosArgs) -> Result<u8, Exit> {
    let dir = match &a.report {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("hft-chaos-{}-{}", a.seed, std::process::id())),
    };
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| Exit(1, e.into()))?;
    let n = match a.schedule {
        Schedule::Short => KINDS,
        Schedule::Long => 3 * KINDS,
    };
    let result = run_schedule(a.seed, n, &a.etcd_bin, &dir);
    let keep = a.report.is_some() || !matches!(&result, Ok((_, true)));
    if !keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let (v, clean) = result.map_err(|e| Exit(1, anyhow!("{e:#} (logs in {})", dir.display())))?;
    if a.json {
        println!("{v}");
    } else {
        for f in v["faults"].as_array().into_iter().flatten() {
            println!("fault {}", f);
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

fn run_schedule(seed: u64, n: usize, etcd_bin: &Path, dir: &Path) -> anyhow::Result<(Value, bool)> {
    let mut h = Harness::launch(etcd_bin, dir, true, 3)?;
    let plan = schedule(seed, n, h.names.len());
    let token = h.admin_token()?;
    let mut log = Vec::new();
    let mut kills = Vec::new();
    let mut resume = hdrhistogram::Histogram::<u64>::new(3)?;
    for (k, fault) in plan.iter().enumerate() {
        let strategy = match *fault {
            Fault::Kill { strategy }
            | Fault::Pause { strategy, .. }
            | Fault::Partition { strategy, .. }
            | Fault::KillSwitch { strategy, .. } => strategy,
            Fault::EtcdMember { .. } | Fault::EtcdQuorum { .. } => 0,
        };
        let name = h.names[strategy].clone();
        let a = h.assignments()?;
        let &(victim, epoch) = a
            .get(&name)
            .ok_or_else(|| anyhow!("fault {k}: {name} is not assigned"))?;
        let t0 = Instant::now();
        let mut entry = json!({"n": k, "fault": fault.name(), "strategy": name, "node": victim});
        match fault {
            Fault::Kill { .. } => {
                h.cluster.kill(victim);
                let (e, _) =
                    h.wait_new_owner(&format!("fault {k}: {name} after kill"), strategy, epoch)?;
                entry["new_epoch"] = json!(e);
                h.cluster.start_node(victim)?;
            }
            Fault::Pause { ms, .. } | Fault::Partition { ms, .. } => {
                let pause = matches!(fault, Fault::Pause { .. });
                if pause {
                    h.cluster.signal(victim, libc::SIGSTOP);
                } else {
                    h.cluster.partition(victim, true);
                }
                let (e, _) =
                    h.wait_new_owner(&format!("fault {k}: {name} moved"), strategy, epoch)?;
                entry["new_epoch"] = json!(e);
                std::thread::sleep(Duration::from_millis(*ms).saturating_sub(t0.elapsed()));
                if pause {
                    h.cluster.signal(victim, libc::SIGCONT);
                } else {
                    h.cluster.partition(victim, false);
                }
                // Past its lease the node fenced itself; it rejoins as a new process.
                std::thread::sleep(Duration::from_millis(500));
                h.cluster.kill(victim);
                h.cluster.start_node(victim)?;
            }
            Fault::EtcdMember { member, ms } => {
                entry["etcd_member"] = json!(member);
                h.etcd_kill(*member);
                std::thread::sleep(Duration::from_millis(*ms));
                h.etcd_restart(*member)?;
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
                for n in 1..=3 {
                    h.cluster.kill(n);
                    h.cluster.start_node(n)?;
                }
            }
            Fault::KillSwitch { ms, .. } => {
                // The switch holds from its commit (the call's answer) until the release
                // is asked for.
                h.kill_switch(&token, &name, true)?;
                let from = hft_cluster::coord::now_ns();
                std::thread::sleep(Duration::from_millis(*ms));
                let to = hft_cluster::coord::now_ns();
                h.kill_switch(&token, &name, false)?;
                kills.push(hft_chaos::KillWindow {
                    strategy: Some(strategy as u16),
                    from,
                    to: Some(to),
                });
            }
        }
        let healed = Instant::now();
        let back: Vec<u64> = match fault {
            Fault::KillSwitch { .. } | Fault::EtcdMember { .. } => Vec::new(),
            Fault::EtcdQuorum { .. } => vec![1, 2, 3],
            _ => vec![victim],
        };
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
        o.insert("seed".into(), json!(seed));
        o.insert(
            "schedule".into(),
            json!(if n > KINDS { "long" } else { "short" }),
        );
        o.insert("faults".into(), json!(log));
        o.insert("resume_p50_ms".into(), json!(q(0.5)));
        o.insert("resume_p99_ms".into(), json!(q(0.99)));
        o.insert(
            "network".into(),
            json!("loopback with relays (no network namespaces)"),
        );
    }
    if !violations.is_empty() && v["faults"].as_array().is_none() {
        bail!("no fault log");
    }
    Ok((v, violations.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_always_gives_the_same_schedule_and_every_fault_kind() {
        let a = schedule(7, 18, 2);
        assert_eq!(a, schedule(7, 18, 2));
        assert_ne!(a, schedule(8, 18, 2));
        for kind in hft_chaos::FAULT_KINDS {
            assert!(a.iter().any(|f| f.name() == kind), "{kind} missing");
        }
        assert_eq!(schedule(1, KINDS, 2).len(), KINDS);
    }
}
