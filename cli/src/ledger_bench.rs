//! `hft bench ledger`: the replicated ledger against a 3-member etcd in the same run.
//!
//! Both clusters run on loopback on this machine with fsync on, their data directories
//! on the same file system. Records are the same bytes (an encoded fill) under the same
//! keys; the same number of concurrent clients write to each, through the leader.
//! Latency is one client writing one fill at a time; throughput is the concurrent
//! clients, the ledger's proposing batches of fills as a venue session does, etcd's
//! writing one record per request (its API has no batch of independent writes; a
//! transaction of the same batch is measured too and reported beside it).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use hdrhistogram::Histogram;
use hft_core::{Liquidity, Money, Price, Qty, Side};
use hft_ledger::command::encode_command;
use hft_ledger::transport::{TcpMember, start_tcp};
use hft_ledger::{Command, Ledger, LedgerFill, Lone, MemberConfig};

/// Knobs of the benchmark.
#[derive(Clone, Debug)]
pub struct Options {
    /// Concurrent writers in the throughput phase (both systems).
    pub concurrency: usize,
    /// Fills per ledger proposal (and per etcd transaction in the extra figure).
    pub batch: usize,
    /// Sequential single-fill writes timed for latency.
    pub samples: usize,
    /// Length of each throughput phase.
    pub phase: Duration,
    /// Fills written before the recovery measurement.
    pub recovery_fills: u64,
    /// The etcd binary.
    pub etcd_bin: PathBuf,
    /// Scratch directory (data of both clusters; removed afterwards).
    pub dir: PathBuf,
}

/// The figures.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Bytes of one encoded fill (the record both systems store).
    pub record_bytes: usize,
    /// Ledger single-fill commit latency.
    pub commit_p50_us: f64,
    /// Ledger single-fill commit latency.
    pub commit_p99_us: f64,
    /// Ledger fills committed per second under `concurrency` writers.
    pub throughput_per_s: f64,
    /// etcd single-record put latency.
    pub etcd_commit_p50_us: f64,
    /// etcd single-record put latency.
    pub etcd_commit_p99_us: f64,
    /// etcd records per second, one put per request, same writers.
    pub etcd_throughput_per_s: f64,
    /// etcd records per second with `batch` puts per transaction, same writers.
    pub etcd_txn_throughput_per_s: f64,
    /// Fills in the recovered ledger.
    pub recovery_fills: u64,
    /// Time to reopen a member (snapshot + WAL) and apply up to its commit index.
    pub recovery_ms: f64,
}

fn bench_fill(exec_id: u64) -> LedgerFill {
    LedgerFill {
        venue: "binance".into(),
        exec_id,
        account: "main".into(),
        strategy: "mm-btc".into(),
        instrument: "BTCUSDT".into(),
        price_scale: 2,
        qty_scale: 5,
        side: if exec_id % 2 == 0 {
            Side::Buy
        } else {
            Side::Sell
        },
        price: Price(6_512_345 + (exec_id % 50) as i64),
        qty: Qty(1_000 + (exec_id % 7) as i64),
        fee: Money(12),
        liquidity: Liquidity::Maker,
        cl_ord_id: exec_id,
        ts: 1_764_000_000_000_000_000 + exec_id,
        epoch: 0,
    }
}

fn fill_cmd(exec_id: u64) -> Command {
    Command::Fill(bench_fill(exec_id))
}

fn record(exec_id: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(96);
    encode_command(&fill_cmd(exec_id), &mut v);
    v
}

fn micros(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64
}

/// Times `samples` sequential writes (`write(i)` writes record `i`) after 50 warm-up
/// writes; returns (p50, p99) in µs.
async fn latency<F, Fut>(samples: usize, mut write: F) -> anyhow::Result<(f64, f64)>
where
    F: FnMut(u64) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    for i in 0..50 {
        write(10_000_000 + i).await?;
    }
    let mut h = Histogram::<u64>::new(3)?;
    for i in 0..samples as u64 {
        let t = Instant::now();
        write(i).await?;
        h.record(t.elapsed().as_micros() as u64)?;
    }
    Ok((micros(&h, 0.5), micros(&h, 0.99)))
}

/// Runs `writers` concurrent writers for `phase`; each call `write(first)` writes the
/// `per` records numbered from `first`. Returns records written per second.
fn throughput<F, Fut>(
    rt: &tokio::runtime::Runtime,
    writers: usize,
    phase: Duration,
    per: u64,
    write: F,
) -> anyhow::Result<f64>
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let next = Arc::new(AtomicU64::new(1_000_000_000));
    let done = Arc::new(AtomicU64::new(0));
    let t = Instant::now();
    let end = t + phase;
    rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..writers {
            let (next, done, write) = (next.clone(), done.clone(), write.clone());
            tasks.push(tokio::spawn(async move {
                while Instant::now() < end {
                    write(next.fetch_add(per, Ordering::Relaxed)).await?;
                    done.fetch_add(per, Ordering::Relaxed);
                }
                anyhow::Ok(())
            }));
        }
        for t in tasks {
            t.await??;
        }
        anyhow::Ok(())
    })?;
    Ok(done.load(Ordering::Relaxed) as f64 / t.elapsed().as_secs_f64())
}

/// Runs the whole comparison.
pub fn run(opts: &Options) -> anyhow::Result<Report> {
    if !hft_cluster::local_etcd::available(&opts.etcd_bin) {
        bail!(
            "etcd not found at {:?}: the benchmark compares against a real etcd. Install \
             Debian's etcd-server (`apt-get install etcd-server`) or pass --etcd-bin",
            opts.etcd_bin
        );
    }
    let _ = std::fs::remove_dir_all(&opts.dir);
    std::fs::create_dir_all(&opts.dir)
        .with_context(|| format!("cannot create {}", opts.dir.display()))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut rep = Report {
        record_bytes: record(1).len(),
        ..Report::default()
    };
    bench_ledger(opts, &rt, &mut rep)?;
    bench_etcd(opts, &rt, &mut rep)?;
    bench_recovery(opts, &mut rep)?;
    let _ = std::fs::remove_dir_all(&opts.dir);
    Ok(rep)
}

fn bench_ledger(
    opts: &Options,
    rt: &tokio::runtime::Runtime,
    rep: &mut Report,
) -> anyhow::Result<()> {
    let addrs: Vec<SocketAddr> = hft_cluster::local_etcd::free_ports(3)?
        .into_iter()
        .map(|p| SocketAddr::from(([127, 0, 0, 1], p)))
        .collect();
    let peers: BTreeMap<u64, String> = (1..=3u64)
        .zip(addrs.iter().map(|a| a.to_string()))
        .collect();
    let mut members: Vec<TcpMember> = Vec::new();
    for id in 1..=3u64 {
        let cfg = MemberConfig::new(id, vec![1, 2, 3], opts.dir.join(format!("ledger-{id}")));
        members.push(
            start_tcp(
                cfg,
                "bench",
                addrs[id as usize - 1],
                peers.clone(),
                None,
                rt.handle(),
            )
            .map_err(|e| anyhow!("ledger member {id}: {e}"))?,
        );
    }
    let leader = rt.block_on(wait_leader(&members))?;
    let l = members[leader].ledger.clone();
    (rep.commit_p50_us, rep.commit_p99_us) =
        rt.block_on(latency(opts.samples, |i| propose(&l, vec![fill_cmd(i)])))?;
    let batch = opts.batch as u64;
    rep.throughput_per_s = throughput(rt, opts.concurrency, opts.phase, batch, move |first| {
        let l = l.clone();
        async move { propose(&l, (first..first + batch).map(fill_cmd).collect()).await }
    })?;
    drop(members);
    Ok(())
}

async fn wait_leader(members: &[TcpMember]) -> anyhow::Result<usize> {
    let end = Instant::now() + Duration::from_secs(20);
    while Instant::now() < end {
        for (k, m) in members.iter().enumerate() {
            if let Ok(s) = m.ledger.status().await
                && s.role == "Leader"
            {
                return Ok(k);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!("the ledger elected no leader within 20 s")
}

/// Proposes until acknowledged: a leader change mid-benchmark costs a retry, not a
/// failed run (and a retried fill is booked once).
async fn propose(l: &Ledger, cmds: Vec<Command>) -> anyhow::Result<()> {
    for _ in 0..50 {
        match l.propose(cmds.clone()).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(hft_ledger::LedgerError::Invalid(e))) => bail!("ledger refused: {e}"),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    bail!("ledger proposal not acknowledged after 50 tries")
}

fn bench_etcd(
    opts: &Options,
    rt: &tokio::runtime::Runtime,
    rep: &mut Report,
) -> anyhow::Result<()> {
    use etcd_client::{Client, Txn, TxnOp};
    let etcd =
        hft_cluster::local_etcd::LocalEtcd::start(&opts.etcd_bin, &opts.dir.join("etcd"), 3)?;
    let client = rt.block_on(async {
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            // Find the leader's client URL, so etcd serves writes without a forward
            // hop, as the ledger bench writes through its leader.
            for url in &etcd.clients {
                if let Ok(mut c) = Client::connect([url.as_str()], None).await
                    && let Ok(s) = c.status().await
                    && s.leader() != 0
                    && s.header().map(|h| h.member_id()) == Some(s.leader())
                {
                    return Ok(c);
                }
            }
            if Instant::now() > end {
                bail!(
                    "etcd elected no leader within 30 s (see {}/etcd-*.log)",
                    etcd.dir().display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })?;
    let key = |i: u64| format!("/hft/bench/fills/binance/{i}");
    let c = client.clone();
    (rep.etcd_commit_p50_us, rep.etcd_commit_p99_us) = rt.block_on(latency(opts.samples, |i| {
        let mut c = c.clone();
        async move {
            c.put(key(i), record(i), None).await?;
            Ok(())
        }
    }))?;
    let c = client.clone();
    rep.etcd_throughput_per_s = throughput(rt, opts.concurrency, opts.phase, 1, move |i| {
        let mut c = c.clone();
        async move {
            c.put(key(i), record(i), None).await?;
            Ok(())
        }
    })?;
    let batch = opts.batch as u64;
    rep.etcd_txn_throughput_per_s =
        throughput(rt, opts.concurrency, opts.phase, batch, move |first| {
            let mut c = client.clone();
            async move {
                let ops: Vec<TxnOp> = (first..first + batch)
                    .map(|i| TxnOp::put(key(i), record(i), None))
                    .collect();
                c.txn(Txn::new().and_then(ops)).await?;
                Ok(())
            }
        })?;
    drop(etcd);
    Ok(())
}

/// Writes `recovery_fills` fills into a lone member, stops it, and times a restart
/// until it has applied everything it had committed.
fn bench_recovery(opts: &Options, rep: &mut Report) -> anyhow::Result<()> {
    let dir = opts.dir.join("recovery");
    let mut cfg = MemberConfig::new(1, vec![1], &dir);
    cfg.tick = Duration::from_millis(10);
    let (l, t, _) = Ledger::start(cfg.clone(), |_| Lone).map_err(|e| anyhow!("{e}"))?;
    let end = Instant::now() + Duration::from_secs(10);
    while l.status().blocking_recv()?.role != "Leader" {
        if Instant::now() > end {
            bail!("the lone recovery member did not lead");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let per = 1_000u64;
    let mut pending = Vec::new();
    for b in 0..opts.recovery_fills.div_ceil(per) {
        let cmds = (b * per..((b + 1) * per).min(opts.recovery_fills))
            .map(fill_cmd)
            .collect();
        pending.push(l.propose(cmds));
        if pending.len() >= 64 {
            for p in pending.drain(..) {
                p.blocking_recv()?.map_err(|e| anyhow!("{e}"))?;
            }
        }
    }
    for p in pending {
        p.blocking_recv()?.map_err(|e| anyhow!("{e}"))?;
    }
    let before = l.status().blocking_recv()?;
    let before_hash = l
        .read_local(|st| st.hash())
        .blocking_recv()?
        .map_err(|e| anyhow!("{e}"))?;
    t.stop();
    let t0 = Instant::now();
    let (l, t, _) = Ledger::start(cfg, |_| Lone).map_err(|e| anyhow!("{e}"))?;
    loop {
        let s = l.status().blocking_recv()?;
        if s.applied >= before.applied {
            rep.recovery_ms = t0.elapsed().as_secs_f64() * 1e3;
            let hash = l
                .read_local(|st| st.hash())
                .blocking_recv()?
                .map_err(|e| anyhow!("{e}"))?;
            if hash != before_hash {
                bail!("the recovered ledger's state hash differs from the one before the restart");
            }
            rep.recovery_fills = s.fills;
            break;
        }
        if t0.elapsed() > Duration::from_secs(60) {
            bail!("recovery did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    t.stop();
    Ok(())
}
