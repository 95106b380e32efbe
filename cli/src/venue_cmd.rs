//! `hft venue` (the simulated venue as a process the nodes of a cluster trade with) and
//! `hft bench failover` (kill -9 of an engine's node until its engine trades elsewhere).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, Seek};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use clap::Args;
use serde_json::{Value, json};

use crate::Exit;

/// `hft venue` arguments.
#[derive(Args, Debug)]
pub struct VenueArgs {
    /// Address the venue link listens on.
    #[arg(long, default_value = "127.0.0.1:7070")]
    listen: SocketAddr,
    /// Configuration overlay (instruments and their simulated markets).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Simulator seed (default: the config's).
    #[arg(long)]
    seed: Option<u64>,
    /// Append one JSON line per logon, accepted order, fill and refused logon here:
    /// the venue's record of what happened, against which the ledger is checked.
    #[arg(long)]
    history: Option<PathBuf>,
}

/// Runs the venue until SIGINT/SIGTERM.
pub fn venue(args: VenueArgs) -> Result<u8, Exit> {
    hft_telemetry::init_tracing(false, "info");
    let config = crate::load_config(args.config.as_deref())?;
    let seed = args.seed.unwrap_or(config.simulator.seed);
    let parts = hft_cluster::node::build(&config, seed, 0);
    let listener = std::net::TcpListener::bind(args.listen)
        .map_err(|e| Exit(1, anyhow!("cannot listen on --listen {}: {e}", args.listen)))?;
    let history: Option<Box<dyn std::io::Write + Send>> = match &args.history {
        Some(p) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| Exit(1, anyhow!("cannot open --history {}: {e}", p.display())))?;
            Some(Box::new(std::io::BufWriter::with_capacity(1 << 16, f)))
        }
        None => None,
    };
    let server = hft_exec::venue_server::VenueServer::start(parts.venue, listener, history)
        .map_err(|e| Exit(1, anyhow!("cannot start the venue: {e}")))?;
    tracing::info!(addr = %server.addr, seed, instruments = parts.specs.len(), "venue listening");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Exit(1, e.into()))?;
    rt.block_on(crate::until_signal());
    let c = server.counters.clone();
    server.stop();
    let n = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    tracing::info!(
        accepted = n(&c.accepted),
        fills = n(&c.fills),
        fenced = n(&c.fenced),
        logons = n(&c.logons),
        logon_rejects = n(&c.logon_rejects),
        dropped = n(&c.dropped),
        "venue stopped"
    );
    Ok(0)
}

/// Reads a venue history file as it grows.
pub(crate) struct History {
    file: std::io::BufReader<std::fs::File>,
    partial: String,
    /// First accepted order per (strategy, epoch): wall-clock ns.
    first_accept: BTreeMap<(u16, u64), u64>,
    /// Orders accepted and fills per strategy, for reports on a fault.
    activity: BTreeMap<u16, (u64, u64)>,
    logons: u64,
}

impl History {
    fn open(path: &Path) -> anyhow::Result<Self> {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .open(path)
            .with_context(|| format!("cannot read the venue history {}", path.display()))?;
        Ok(Self {
            file: std::io::BufReader::new(f),
            partial: String::new(),
            first_accept: BTreeMap::new(),
            activity: BTreeMap::new(),
            logons: 0,
        })
    }

    pub(crate) fn poll(&mut self) -> anyhow::Result<()> {
        loop {
            let n = self.file.read_line(&mut self.partial)?;
            if n == 0 || !self.partial.ends_with('\n') {
                // Keep an incomplete last line for the next poll.
                let _ = self.file.stream_position();
                return Ok(());
            }
            let line = std::mem::take(&mut self.partial);
            let ev: hft_chaos::VenueEvent = serde_json::from_str(line.trim())
                .with_context(|| format!("venue history line {line:?}"))?;
            match ev {
                hft_chaos::VenueEvent::Accept {
                    ts,
                    strategy,
                    epoch,
                    ..
                } => {
                    self.first_accept.entry((strategy, epoch)).or_insert(ts);
                    self.activity.entry(strategy).or_default().0 += 1;
                }
                hft_chaos::VenueEvent::Fill { strategy, .. } => {
                    self.activity.entry(strategy).or_default().1 += 1;
                }
                hft_chaos::VenueEvent::Logon { .. } => self.logons += 1,
                _ => {}
            }
        }
    }

    /// Orders accepted and fills of `strategy` so far (after a `poll`).
    pub(crate) fn activity(&self, strategy: u16) -> (u64, u64) {
        self.activity.get(&strategy).copied().unwrap_or_default()
    }

    /// First accepted order of `strategy` under an epoch above `above`, at or after `t0`.
    fn accepted_after(&self, strategy: u16, above: u64) -> Option<(u64, u64)> {
        self.first_accept
            .range((strategy, above + 1)..=(strategy, u64::MAX))
            .map(|(&(_, e), &ts)| (e, ts))
            .next()
    }
}

/// Node `id`'s log under `dir`.
fn node_log(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("node-{id}.log"))
}

/// The last `n` lines of the file at `path` (none if it cannot be read).
fn last_lines(path: &Path, n: usize) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| l.to_string())
        .collect()
}

/// A runtime and a connection to the bench's local etcd (cluster "bench").
fn bench_coord(
    etcd: &hft_cluster::local_etcd::LocalEtcd,
) -> anyhow::Result<(tokio::runtime::Runtime, hft_cluster::coord::Coord)> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let coord = rt.block_on(hft_cluster::coord::Coord::connect(
        &etcd.clients,
        "bench",
        Duration::from_secs(30),
    ))?;
    Ok((rt, coord))
}

/// How the nodes of a harness are networked.
pub(crate) enum Net {
    /// Loopback, nothing between the nodes.
    Loopback,
    /// Loopback, each node's cluster traffic through relays that can be cut.
    Relays,
    /// A network namespace per node, partitions by taking links down.
    Namespaces(crate::netns::Netns),
}

pub(crate) struct Cluster {
    exe: PathBuf,
    dir: PathBuf,
    etcd: Vec<String>,
    venue: SocketAddr,
    peers: String,
    /// Each node's admin API.
    pub(crate) admin: BTreeMap<u64, SocketAddr>,
    secret: String,
    nodes: BTreeMap<u64, Child>,
    /// Relays per node, with `Net::Relays`.
    links: BTreeMap<u64, NodeLinks>,
    /// Each member's own ledger address.
    ledger: BTreeMap<u64, String>,
    /// WAL segment size of the nodes, KiB (None: the node's default).
    segment_kib: Option<u64>,
    /// Nodes started again after they fenced themselves outside a fault.
    pub(crate) restarts: u64,
    /// The node a fault is being done to: its fault handles it, the supervisor not.
    pub(crate) victim: Option<u64>,
    /// Declared last: the namespaces go once the nodes are gone.
    net: Net,
}

impl Cluster {
    /// Node ids.
    pub(crate) fn ids(&self) -> Vec<u64> {
        self.ledger.keys().copied().collect()
    }

    /// Node `id`'s ledger directory.
    pub(crate) fn ledger_dir(&self, id: u64) -> PathBuf {
        self.dir.join(format!("ledger-{id}"))
    }

    /// Whether node `id`'s process is running (not exited, not killed by the harness).
    pub(crate) fn running(&mut self, id: u64) -> bool {
        self.nodes
            .get_mut(&id)
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    pub(crate) fn start_node(&mut self, id: u64) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(node_log(&self.dir, id))?;
        let mut cmd = match &self.net {
            Net::Namespaces(ns) => {
                let mut c = ns.command(id, &self.exe);
                c.args([
                    "node",
                    "--control",
                    &format!("{}:7200", crate::netns::Netns::cluster_ip(id)),
                ]);
                c
            }
            _ => {
                let mut c = Command::new(&self.exe);
                c.arg("node");
                c
            }
        };
        if let Some(kib) = self.segment_kib {
            cmd.args(["--ledger-segment-kib", &kib.to_string()]);
        }
        cmd.args(["--id", &id.to_string(), "--cluster", "bench"]);
        match self.links.get(&id) {
            Some(l) => {
                let peers: Vec<String> = self
                    .ledger
                    .iter()
                    .map(|(&j, own)| match l.ledger_out.get(&j) {
                        Some(relay) => format!("{j}={}", relay.addr),
                        None => format!("{j}={own}"),
                    })
                    .collect();
                let etcd: Vec<String> = l
                    .etcd
                    .iter()
                    .map(|r| format!("http://{}", r.addr))
                    .collect();
                cmd.args(["--etcd", &etcd.join(",")])
                    .args(["--ledger-peers", &peers.join(",")])
                    .args(["--control", &format!("127.0.0.1:{}", l.control_port)])
                    .args(["--control-advertise", &l.control.addr.to_string()]);
            }
            None => {
                cmd.args(["--etcd", &self.etcd.join(",")])
                    .args(["--ledger-peers", &self.peers]);
            }
        }
        let child = cmd
            .arg("--ledger-dir")
            .arg(self.ledger_dir(id))
            .args(["--admin", &self.admin[&id].to_string()])
            .args(["--venue", &self.venue.to_string()])
            .env("HFT_CLUSTER_SECRET", &self.secret)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("cannot start a node")?;
        self.nodes.insert(id, child);
        Ok(())
    }

    /// Fails with the last line of its log when a node exited by itself.
    /// Acts as the nodes' supervisor: a node that exited because it was fenced (its
    /// lease lapsed, as under load an etcd election can make it) is started again, as
    /// Kubernetes would; any other exit is a failure, named with the log's last line.
    pub(crate) fn check_alive(&mut self) -> anyhow::Result<()> {
        let mut again = Vec::new();
        for (id, c) in self.nodes.iter_mut() {
            if Some(*id) == self.victim {
                continue;
            }
            if let Ok(Some(status)) = c.try_wait() {
                let last = last_lines(&node_log(&self.dir, *id), 1)
                    .pop()
                    .unwrap_or_default();
                if !last.contains("fenced") {
                    bail!("node {id} exited ({status}): {last}");
                }
                again.push(*id);
            }
        }
        for id in again {
            self.nodes.remove(&id);
            self.restarts += 1;
            self.start_node(id)?;
        }
        Ok(())
    }

    pub(crate) fn signal(&self, id: u64, sig: i32) {
        if let Some(c) = self.nodes.get(&id) {
            // SAFETY: kill(2) on a child we spawned and have not reaped.
            unsafe {
                libc::kill(c.id() as i32, sig);
            }
        }
    }

    pub(crate) fn log_len(&self, id: u64) -> usize {
        std::fs::metadata(node_log(&self.dir, id))
            .map(|m| m.len() as usize)
            .unwrap_or(0)
    }

    /// The last `n` lines of node `id`'s log.
    pub(crate) fn log_tail(&self, id: u64, n: usize) -> Vec<String> {
        last_lines(&node_log(&self.dir, id), n)
    }

    /// Whether node `id` logged `what` after byte `from` of its log.
    pub(crate) fn logged_since(&self, id: u64, from: usize, what: &str) -> bool {
        std::fs::read(node_log(&self.dir, id))
            .map(|b| String::from_utf8_lossy(&b[from.min(b.len())..]).contains(what))
            .unwrap_or(false)
    }

    /// Builds the relays of every node: its etcd, its control channel, and one per
    /// pair of ledger members, so that one node can be cut off alone.
    fn relay_everything(&mut self) -> anyhow::Result<()> {
        let etcd: Vec<SocketAddr> = self
            .etcd
            .iter()
            .map(|u| {
                u.trim_start_matches("http://")
                    .parse()
                    .context("etcd client URL")
            })
            .collect::<anyhow::Result<_>>()?;
        let ids: Vec<u64> = self.ledger.keys().copied().collect();
        let ports = hft_cluster::local_etcd::free_ports(ids.len())?;
        for (k, &i) in ids.iter().enumerate() {
            let mut out = BTreeMap::new();
            for &j in ids.iter().filter(|&&j| j != i) {
                out.insert(j, Blackhole::start(self.ledger[&j].parse()?)?);
            }
            let control_port = ports[k];
            self.links.insert(
                i,
                NodeLinks {
                    etcd: etcd
                        .iter()
                        .map(|&a| Blackhole::start(a))
                        .collect::<anyhow::Result<_>>()?,
                    ledger_out: out,
                    control: Blackhole::start(format!("127.0.0.1:{control_port}").parse()?)?,
                    control_port,
                },
            );
        }
        Ok(())
    }

    /// Cuts node `id` off from etcd, the ledger members and the control channel (or
    /// heals it); its venue session stays.
    pub(crate) fn partition(&self, id: u64, cut: bool) -> anyhow::Result<()> {
        match &self.net {
            Net::Namespaces(ns) => return ns.cut(id, cut),
            Net::Loopback => bail!("no partitions on a loopback cluster without relays"),
            Net::Relays => {}
        }
        for (&i, l) in &self.links {
            if i == id {
                for r in &l.etcd {
                    r.set(cut);
                }
                l.control.set(cut);
                for r in l.ledger_out.values() {
                    r.set(cut);
                }
            } else if let Some(r) = l.ledger_out.get(&id) {
                r.set(cut);
            }
        }
        Ok(())
    }

    pub(crate) fn kill(&mut self, id: u64) {
        if let Some(mut c) = self.nodes.remove(&id) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM to every node; each stops its engines (cancel, book the last fills).
    fn stop_all(&mut self) {
        for c in self.nodes.values() {
            // SAFETY: kill(2) on a child we spawned and have not reaped.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
        }
        let end = Instant::now() + Duration::from_secs(30);
        for (_, mut c) in std::mem::take(&mut self.nodes) {
            while Instant::now() < end {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (_, mut c) in std::mem::take(&mut self.nodes) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub(crate) struct Reaper(Option<Child>);

impl Drop for Reaper {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn wait_for<T>(
    what: &str,
    within: Duration,
    mut f: impl FnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    let end = Instant::now() + within;
    loop {
        if let Some(v) = f()? {
            return Ok(v);
        }
        if Instant::now() > end {
            bail!("{what}: not within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// `hft bench failover`: a venue, a local etcd and three nodes; each trial kills -9 the
/// node running one engine and times until an order of that engine's new owner is
/// accepted by the venue; at the end the ledger is checked against the venue's fills.
pub fn bench_failover(
    trials: usize,
    etcd_bin: &Path,
    fault: Fault,
    keep: bool,
) -> Result<Value, Exit> {
    bench(trials, etcd_bin, fault, keep).map_err(|e| Exit(1, e))
}

/// A TCP relay that can be cut: while cut it forwards nothing (data is dropped, the
/// connections stay open and silent, as behind a firewall DROP rule); a connection
/// that lost data is closed once the cut heals, as its stream is no longer whole.
struct Blackhole {
    addr: SocketAddr,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Blackhole {
    fn start(target: SocketAddr) -> anyhow::Result<Self> {
        use std::sync::Arc;
        use std::sync::atomic::AtomicBool;
        // Another loopback address than the nodes': a relay's ephemeral port can never
        // take a port picked for a node (those are released until the node binds them).
        let listener = std::net::TcpListener::bind("127.0.0.2:0")?;
        let addr = listener.local_addr()?;
        let cut = Arc::new(AtomicBool::new(false));
        let c = cut.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(a) = conn else { continue };
                let Ok(b) = std::net::TcpStream::connect(target) else {
                    continue;
                };
                let _ = (a.set_nodelay(true), b.set_nodelay(true));
                for (from, to) in [(&a, &b), (&b, &a)] {
                    let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else {
                        continue;
                    };
                    let cut = c.clone();
                    std::thread::spawn(move || pump(&mut from, &mut to, &cut));
                }
            }
        });
        Ok(Self { addr, cut })
    }

    fn set(&self, cut: bool) {
        self.cut.store(cut, std::sync::atomic::Ordering::SeqCst);
    }
}

fn pump(
    from: &mut std::net::TcpStream,
    to: &mut std::net::TcpStream,
    cut: &std::sync::atomic::AtomicBool,
) {
    use std::io::{Read, Write};
    use std::sync::atomic::Ordering;
    let mut buf = [0u8; 64 * 1024];
    let mut lost = false;
    let _ = from.set_read_timeout(Some(Duration::from_millis(50)));
    loop {
        if lost && !cut.load(Ordering::SeqCst) {
            break;
        }
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if cut.load(Ordering::SeqCst) {
                    lost = true;
                } else if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    let _ = from.shutdown(std::net::Shutdown::Both);
    let _ = to.shutdown(std::net::Shutdown::Both);
}

/// The relays a node's cluster traffic goes through (its etcd, ledger and control
/// connections; never its venue session), so that the bench can cut it off.
struct NodeLinks {
    /// One relay per etcd member.
    etcd: Vec<Blackhole>,
    /// Relay from this node to each other member's ledger address.
    ledger_out: BTreeMap<u64, Blackhole>,
    control: Blackhole,
    control_port: u16,
}

/// How the bench takes an engine's node out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Fault {
    /// SIGKILL: the process and its sockets are gone at once.
    Kill,
    /// SIGSTOP past its lease, then SIGCONT: the node comes back believing it owns its
    /// engines and must find itself fenced, with nothing it sends accepted.
    Pause,
    /// Cut the node off from etcd, the other ledger members and the placement leader
    /// (its traffic is dropped) but not from the venue, past its lease, then heal: the
    /// node runs on and must fence itself, with nothing it sends accepted.
    Partition,
}

fn bench(trials: usize, etcd_bin: &Path, fault: Fault, keep: bool) -> anyhow::Result<Value> {
    let dir = std::env::temp_dir().join(format!("hft-bench-failover-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let result = run_bench(trials, etcd_bin, fault, &dir);
    if result.is_ok() && !keep {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        eprintln!("logs kept in {}", dir.display());
    }
    result
}

/// A running cluster with its venue, etcd and history: what the failover bench and the
/// chaos runs drive.
pub(crate) struct Harness {
    pub(crate) cluster: Cluster,
    pub(crate) rt: tokio::runtime::Runtime,
    pub(crate) coord: hft_cluster::coord::Coord,
    pub(crate) names: Vec<String>,
    pub(crate) history: History,
    history_path: PathBuf,
    config: hft_config::Config,
    venue: Reaper,
    etcd: Option<hft_cluster::local_etcd::LocalEtcd>,
    agent: ureq::Agent,
}

impl Harness {
    /// Starts a local etcd, the venue and `n` trading nodes networked as `net`, and
    /// waits until every engine trades and placement settled. In namespaces each node's
    /// ledger directory is a tmpfs (the chaos suite fills it) with small WAL segments.
    pub(crate) fn launch(
        etcd_bin: &Path,
        dir: &Path,
        mut net: Net,
        etcd_members: usize,
        n: u64,
    ) -> anyhow::Result<Self> {
        use crate::netns::Netns;
        let exe = std::env::current_exe()?;
        let etcd_host = match net {
            Net::Namespaces(_) => Netns::hub_ip(),
            _ => "127.0.0.1".to_owned(),
        };
        let etcd = hft_cluster::local_etcd::LocalEtcd::start_on(
            etcd_bin,
            &dir.join("etcd"),
            etcd_members,
            &etcd_host,
        )
        .map_err(|e| anyhow!("{e}"))?;
        let ports = hft_cluster::local_etcd::free_ports(1 + 2 * n as usize)?;
        let ids = 1..=n;
        let (venue_addr, ledger, admin): (SocketAddr, BTreeMap<u64, String>, _) = match &mut net {
            Net::Namespaces(ns) => {
                for id in ids.clone() {
                    ns.add_node(id)?;
                    ns.tmpfs(&dir.join(format!("ledger-{id}")), 256)?;
                }
                (
                    format!("{}:7070", Netns::venue_ip()).parse()?,
                    ids.clone()
                        .map(|i| (i, format!("{}:7100", Netns::cluster_ip(i))))
                        .collect(),
                    ids.clone()
                        .map(|i| Ok((i, format!("{}:7300", Netns::cluster_ip(i)).parse()?)))
                        .collect::<anyhow::Result<BTreeMap<u64, SocketAddr>>>()?,
                )
            }
            _ => (
                format!("127.0.0.1:{}", ports[0]).parse()?,
                ids.clone()
                    .map(|i| (i, format!("127.0.0.1:{}", ports[i as usize])))
                    .collect(),
                ids.clone()
                    .map(|i| {
                        let p = ports[n as usize + i as usize];
                        Ok((i, format!("127.0.0.1:{p}").parse()?))
                    })
                    .collect::<anyhow::Result<BTreeMap<u64, SocketAddr>>>()?,
            ),
        };
        let history_path = dir.join("venue-history.jsonl");
        let venue_log = std::fs::File::create(dir.join("venue.log"))?;
        let venue = Reaper(Some(
            Command::new(&exe)
                .args(["venue", "--listen", &venue_addr.to_string()])
                .arg("--history")
                .arg(&history_path)
                .stdin(Stdio::null())
                .stdout(venue_log.try_clone()?)
                .stderr(venue_log)
                .spawn()
                .context("cannot start the venue")?,
        ));
        wait_for("the venue listening", Duration::from_secs(20), || {
            Ok(std::net::TcpStream::connect(venue_addr).ok().map(|_| ()))
        })?;
        let mut secret = [0u8; 24];
        getrandom::fill(&mut secret).map_err(|e| anyhow!("no OS randomness: {e}"))?;
        let relays = matches!(net, Net::Relays);
        let mut cluster = Cluster {
            exe,
            dir: dir.to_owned(),
            etcd: etcd.clients.clone(),
            venue: venue_addr,
            peers: ledger
                .iter()
                .map(|(i, a)| format!("{i}={a}"))
                .collect::<Vec<_>>()
                .join(","),
            admin,
            secret: hft_ledger::member::hex(&secret),
            nodes: BTreeMap::new(),
            links: BTreeMap::new(),
            ledger,
            segment_kib: matches!(net, Net::Namespaces(_)).then_some(64),
            restarts: 0,
            victim: None,
            net,
        };
        if relays {
            cluster.relay_everything()?;
        }
        for id in ids {
            cluster.start_node(id)?;
        }
        let (rt, coord) = bench_coord(&etcd)?;
        let config = hft_config::Config::default_embedded();
        let names = hft_cluster::cluster::strategy_names(&config);
        let history = wait_for("the venue history", Duration::from_secs(10), || {
            Ok(History::open(&history_path).ok())
        })
        .or_else(|_| {
            std::fs::File::create(&history_path)?;
            History::open(&history_path)
        })?;
        let mut h = Self {
            cluster,
            rt,
            coord,
            names,
            history,
            history_path,
            config,
            venue,
            etcd: Some(etcd),
            agent: ureq::Agent::config_builder()
                .timeout_global(Some(Duration::from_secs(5)))
                .http_status_as_error(false)
                .build()
                .into(),
        };
        h.wait_trading("every engine trading", None, Duration::from_secs(60))?;
        // Settled: the placement leader has taken the ledger's lead.
        std::thread::sleep(Duration::from_millis(1_000));
        Ok(h)
    }

    /// Kills etcd member `i`.
    pub(crate) fn etcd_kill(&mut self, i: usize) {
        if let Some(e) = self.etcd.as_mut() {
            e.kill(i);
        }
    }

    /// Restarts etcd member `i` from its data.
    pub(crate) fn etcd_restart(&mut self, i: usize) -> anyhow::Result<()> {
        if let Some(e) = self.etcd.as_mut() {
            e.restart(i)?;
        }
        Ok(())
    }

    /// Ends trading and lets the ledger settle before the nodes stop: every strategy is
    /// disabled (its engine cancels its orders, logs out and books its last fills), then
    /// the run waits until every member reports the same fills and state hash. Members
    /// that lag at a stop are normal; the promise checked is that they converge.
    fn quiesce(&mut self) -> anyhow::Result<()> {
        let token = self.admin_token()?;
        let ids = self.cluster.ids();
        for name in self.names.clone() {
            let body = json!({ "name": name, "enabled": false }).to_string();
            // etcd may still be electing after the last fault: ask again for a while.
            wait_for(
                &format!("a node disabling {name}"),
                Duration::from_secs(20),
                || {
                    let took = ids.iter().any(|&i| {
                        self.call(i, &token, "POST", "/v1/strategies", Some(&body))
                            .is_some()
                    });
                    if !took {
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    Ok(took.then_some(()))
                },
            )?;
        }
        let mut last = None;
        wait_for(
            "the ledger members converging",
            Duration::from_secs(30),
            || {
                self.cluster.check_alive()?;
                let engines_gone = ids.iter().all(|&i| {
                    self.call(i, &token, "GET", "/v1/status", None)
                        .is_some_and(|v| v["engines"].as_array().is_none_or(Vec::is_empty))
                });
                let hashes: Vec<Option<Value>> = ids
                    .iter()
                    .map(|&i| self.call(i, &token, "GET", "/v1/ledger/hash", None))
                    .collect();
                let same = hashes.iter().all(|h| h.is_some() && *h == hashes[0]);
                // Equal twice in a row, 100 ms apart: nothing was still in flight.
                let settled = engines_gone && same && last.as_ref() == Some(&hashes);
                last = Some(hashes);
                std::thread::sleep(Duration::from_millis(100));
                Ok(settled.then_some(()))
            },
        )
    }

    /// An admin token for the run's own operator calls.
    pub(crate) fn admin_token(&mut self) -> anyhow::Result<String> {
        let coord = self.coord.clone();
        let (t, _) = self.rt.block_on(hft_cluster::coord::retry_transient(
            Duration::from_secs(30),
            || {
                let mut c = coord.clone();
                async move {
                    hft_cluster::auth::create_token(
                        &mut c,
                        "chaos",
                        hft_cluster::auth::Role::Admin,
                        None,
                    )
                    .await
                }
            },
        ))?;
        Ok(t)
    }

    /// Calls node `id`'s admin API (GET, or POST/PUT with `body`); the answer when it
    /// is a 200 with JSON, None otherwise (refused, unreachable, timed out after 5 s).
    pub(crate) fn call(
        &self,
        id: u64,
        token: &str,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> Option<Value> {
        let url = format!("http://{}{path}", self.cluster.admin.get(&id)?);
        let auth = format!("Bearer {token}");
        let r = match (method, body) {
            ("PUT", Some(b)) => self.agent.put(&url).header("Authorization", &auth).send(b),
            (_, Some(b)) => self
                .agent
                .post(&url)
                .header("Authorization", &auth)
                .header("Content-Type", "application/json")
                .send(b),
            (_, None) => self.agent.get(&url).header("Authorization", &auth).call(),
        };
        let mut r = r.ok().filter(|r| r.status() == 200)?;
        r.body_mut().read_json::<Value>().ok()
    }

    /// Engages or releases a strategy's kill switch through any node that answers.
    pub(crate) fn kill_switch(
        &mut self,
        token: &str,
        strategy: &str,
        engaged: bool,
    ) -> anyhow::Result<()> {
        // One decision, one time: a request a slow node takes up after the retry
        // elsewhere succeeded carries the same time and cannot undo a later change.
        let at_ns = hft_cluster::coord::now_ns();
        let body =
            json!({ "scope": format!("strategy:{strategy}"), "engaged": engaged, "at_ns": at_ns });
        let body = body.to_string();
        // The ledger may be electing after an earlier fault, or nodes restarting after
        // fencing themselves: ask again for a while, supervising.
        let end = Instant::now() + Duration::from_secs(30);
        while Instant::now() < end {
            self.cluster.check_alive()?;
            for id in self.cluster.ids() {
                if self
                    .call(id, token, "POST", "/v1/kill", Some(&body))
                    .is_some()
                {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("no node took the kill switch call for {strategy} within 30 s")
    }

    /// Strategy -> (node, epoch). etcd may be losing a member: a failed read is tried
    /// again for up to 10 s.
    pub(crate) fn assignments(&mut self) -> anyhow::Result<BTreeMap<String, (u64, u64)>> {
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            match self.rt.block_on(self.coord.assignments()) {
                Ok((a, _)) => {
                    return Ok(a
                        .into_iter()
                        .map(|a| (a.strategy, (a.node, a.epoch)))
                        .collect());
                }
                Err(e) if Instant::now() > end => return Err(e.into()),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// Waits until every strategy trades under its current assignment (and node
    /// `back`, if any, is registered again with the engines spread over two nodes).
    pub(crate) fn wait_trading(
        &mut self,
        what: &str,
        back: Option<u64>,
        within: Duration,
    ) -> anyhow::Result<()> {
        let end = Instant::now() + within;
        loop {
            self.cluster.check_alive()?;
            self.history.poll()?;
            let a = self.assignments()?;
            let trading = self.names.iter().enumerate().all(|(i, n)| {
                a.get(n)
                    .is_some_and(|&(_, e)| self.history.first_accept.contains_key(&(i as u16, e)))
            });
            let settled = match back {
                None => true,
                Some(v) => {
                    let nodes = self.rt.block_on(self.coord.nodes()).unwrap_or_default();
                    nodes.iter().any(|n| n.id == v)
                        && a.values().map(|&(n, _)| n).collect::<BTreeSet<_>>().len()
                            == self.names.len().min(2)
                }
            };
            if trading && settled {
                return Ok(());
            }
            if Instant::now() > end {
                bail!("{what}: not within {within:?}");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// First accepted order of strategy `index` under an epoch above `epoch`.
    pub(crate) fn wait_new_owner(
        &mut self,
        what: &str,
        index: usize,
        epoch: u64,
    ) -> anyhow::Result<(u64, u64)> {
        let (h, c) = (&mut self.history, &mut self.cluster);
        wait_for(what, Duration::from_secs(30), || {
            c.check_alive()?;
            h.poll()?;
            Ok(h.accepted_after(index as u16, epoch))
        })
    }

    /// Stops everything and checks every ledger member against the venue's record;
    /// returns the violations and the figures.
    pub(crate) fn finish(
        mut self,
        kills: Vec<hft_chaos::KillWindow>,
        kill_grace_ns: u64,
    ) -> anyhow::Result<(Vec<hft_chaos::Violation>, Value)> {
        self.quiesce()?;
        self.cluster.stop_all();
        drop(std::mem::replace(&mut self.venue, Reaper(None)));
        self.history.poll()?;
        let text = std::fs::read_to_string(&self.history_path)?;
        let events = hft_chaos::parse_history(&text)?;
        let mut members = Vec::new();
        for id in self.cluster.ids() {
            let (report, state) = hft_ledger::verify::rebuild(&self.cluster.ledger_dir(id))
                .map_err(|e| anyhow!("ledger member {id}: {e}"))?;
            let fills = state
                .fills_since(0, usize::MAX)
                .into_iter()
                .filter(|f| f.venue == hft_exec::SIM_VENUE)
                .map(|f| hft_chaos::Booked {
                    exec: f.exec_id,
                    strategy: self
                        .names
                        .iter()
                        .position(|n| *n == f.strategy)
                        .map_or(u16::MAX, |i| i as u16),
                    qty: if f.side == hft_core::Side::Buy {
                        f.qty.raw()
                    } else {
                        -f.qty.raw()
                    },
                })
                .collect();
            members.push(hft_chaos::Member {
                id,
                fills,
                hash: report.hash,
            });
        }
        let enabled: Vec<_> = self
            .config
            .strategies
            .iter()
            .filter(|s| s.enabled)
            .collect();
        let rules = hft_chaos::Rules {
            max_position: enabled
                .iter()
                .enumerate()
                .map(|(i, s)| (i as u16, s.risk.max_position.raw()))
                .collect(),
            notional: enabled
                .iter()
                .enumerate()
                .filter_map(|(i, s)| {
                    let spec = &self.config.instruments.get(s.instrument.0 as usize)?.spec;
                    Some((
                        i as u16,
                        hft_chaos::Notional {
                            shift: i32::from(spec.price_scale) + i32::from(spec.qty_scale)
                                - i32::from(hft_core::MONEY_SCALE),
                            max_order: s.risk.max_order_notional.raw(),
                        },
                    ))
                })
                .collect(),
            max_gross_notional: Some(self.config.risk.max_gross_notional.raw()),
            kills,
            kill_grace_ns,
        };
        let violations = hft_chaos::check(&events, &members, &rules);
        drop(self.etcd.take());
        let count =
            |f: fn(&hft_chaos::Violation) -> bool| violations.iter().filter(|v| f(v)).count();
        let fill_events = events
            .iter()
            .filter(|e| matches!(e, hft_chaos::VenueEvent::Fill { .. }))
            .count();
        let figures = json!({
            "venue_fills": fill_events,
            "ledger_fills": members.iter().map(|m| m.fills.len()).max().unwrap_or(0),
            "fills_lost": count(|v| matches!(v, hft_chaos::Violation::Lost { .. })),
            "fills_duplicated": count(|v| matches!(v, hft_chaos::Violation::Duplicated { .. } | hft_chaos::Violation::Phantom { .. })),
            "stale_accepts": count(|v| matches!(v, hft_chaos::Violation::StaleEpoch { .. })),
            "accepts_while_killed": count(|v| matches!(v, hft_chaos::Violation::WhileKilled { .. })),
            "position_mismatches": count(|v| matches!(v, hft_chaos::Violation::Position { .. })),
            "limit_breaches": count(|v| matches!(v, hft_chaos::Violation::Limit { .. } | hft_chaos::Violation::OrderNotional { .. } | hft_chaos::Violation::GrossNotional { .. })),
            "accepts": events.iter().filter(|e| matches!(e, hft_chaos::VenueEvent::Accept { .. })).count(),
            "members_converged": !violations.iter().any(|v| matches!(v, hft_chaos::Violation::Diverged { .. })),
            "violations": violations.iter().take(20).map(|v| v.to_string()).collect::<Vec<_>>(),
            "logons": self.history.logons,
            "fenced_restarts": self.cluster.restarts,
        });
        Ok((violations, figures))
    }
}

fn run_bench(trials: usize, etcd_bin: &Path, fault: Fault, dir: &Path) -> anyhow::Result<Value> {
    let net = if fault == Fault::Partition {
        Net::Relays
    } else {
        Net::Loopback
    };
    let mut h = Harness::launch(etcd_bin, dir, net, 1, 3)?;
    let mut hist = hdrhistogram::Histogram::<u64>::new(3)?;
    let mut samples = Vec::new();
    let mut fenced_on_resume = 0;
    for t in 0..trials {
        let index = t % h.names.len();
        let name = h.names[index].clone();
        let a = h.assignments()?;
        let &(victim, epoch) = a
            .get(&name)
            .ok_or_else(|| anyhow!("{name} is not assigned"))?;
        let log_at = h.cluster.log_len(victim);
        h.cluster.victim = Some(victim);
        let t0 = hft_cluster::coord::now_ns();
        match fault {
            Fault::Kill => h.cluster.kill(victim),
            Fault::Pause => h.cluster.signal(victim, libc::SIGSTOP),
            Fault::Partition => h.cluster.partition(victim, true)?,
        }
        let (new_epoch, accepted) = h.wait_new_owner(
            &format!("trial {t}: {name} trading again after node {victim} was taken out"),
            index,
            epoch,
        )?;
        let ms = accepted.saturating_sub(t0) as f64 / 1e6;
        let _ = hist.record((ms * 1000.0) as u64);
        samples.push(json!({"trial": t, "strategy": name, "node": victim, "epoch": new_epoch, "ms": (ms * 10.0).round() / 10.0}));
        if fault != Fault::Kill {
            // Past its 2 s lease, then let it run (or heal): it must fence itself, and
            // nothing it sends may be accepted (the checker counts stale accepts).
            std::thread::sleep(Duration::from_millis(3_000));
            match fault {
                Fault::Pause => h.cluster.signal(victim, libc::SIGCONT),
                _ => h.cluster.partition(victim, false)?,
            }
            let c = &h.cluster;
            let fenced = wait_for(
                &format!("trial {t}: node {victim} fencing itself"),
                Duration::from_secs(10),
                || Ok(c.logged_since(victim, log_at, "node fenced").then_some(())),
            );
            if fenced.is_ok() {
                fenced_on_resume += 1;
            }
            std::thread::sleep(Duration::from_millis(500));
            // A fenced node rejoins as a new process (new lease, new epochs).
            h.cluster.kill(victim);
        }
        // Bring the node back, and let placement settle before the next kill.
        h.cluster.kill(victim);
        h.cluster.start_node(victim)?;
        h.cluster.victim = None;
        h.wait_trading(
            &format!("trial {t}: node {victim} back and every engine trading"),
            Some(victim),
            Duration::from_secs(60),
        )?;
        std::thread::sleep(Duration::from_millis(1_000));
    }
    let (_, mut v) = h.finish(Vec::new(), 0)?;
    let ms = |q: f64| (hist.value_at_quantile(q) as f64 / 100.0).round() / 10.0;
    let extra = json!({
        "bench": "failover",
        "fault": format!("{fault:?}").to_lowercase(),
        "trials": trials,
        "failover_p50_ms": ms(0.5),
        "failover_p99_ms": ms(0.99),
        "failover_max_ms": ms(1.0),
        "fenced_on_resume": fenced_on_resume,
        "samples": samples,
    });
    if let (Some(o), Value::Object(e)) = (v.as_object_mut(), extra) {
        o.extend(e);
    }
    Ok(v)
}

/// `hft bench admin-load`: one live session (the default configuration, its fills
/// booked in a ledger) with the admin API in front of it, checking tokens against a
/// local etcd. Phases alternate without and with a steady authenticated request load;
/// the engine's tick-to-order p99 of each second is compared between them.
pub fn bench_admin_load(
    phases: usize,
    phase_s: u64,
    rate: u32,
    etcd_bin: &Path,
) -> Result<Value, Exit> {
    admin_load(phases, phase_s, rate, etcd_bin).map_err(|e| Exit(1, e))
}

fn admin_load(phases: usize, phase_s: u64, rate: u32, etcd_bin: &Path) -> anyhow::Result<Value> {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};
    let dir = std::env::temp_dir().join(format!("hft-bench-admin-{}", std::process::id()));
    let etcd = hft_cluster::local_etcd::LocalEtcd::start(etcd_bin, &dir.join("etcd"), 1)
        .map_err(|e| anyhow!("{e}"))?;
    let (rt, mut coord) = bench_coord(&etcd)?;
    let (token, _) = rt.block_on(hft_cluster::auth::create_token(
        &mut coord,
        "bench",
        hft_cluster::auth::Role::Viewer,
        None,
    ))?;
    // The default market makers, plus a touch maker on each instrument: it requotes on
    // every change of the touch, so the hot path sends enough orders for a p99.
    let mut config = hft_config::Config::default_embedded();
    let touch: Vec<_> = config
        .strategies
        .iter()
        .filter_map(|s| match &s.kind {
            hft_config::StrategyKind::MarketMaking(p) => Some(hft_config::StrategyConfig {
                name: format!("touch-{}", s.name),
                kind: hft_config::StrategyKind::Touch(hft_strategy::TouchParams {
                    order_qty: p.order_qty,
                    max_position: p.max_inventory,
                }),
                ..s.clone()
            }),
            _ => None,
        })
        .collect();
    config.strategies.extend(touch);
    let parts = hft_cluster::node::build(&config, config.simulator.seed, 0);
    let ledger =
        hft_cluster::booking::SessionLedger::start(None, &parts.specs).map_err(|e| anyhow!(e))?;
    let booking = hft_cluster::booking::Booking::new(
        ledger.ledger.clone(),
        &config.ledger.account,
        hft_exec::SIM_VENUE,
        parts.slots.iter().map(|s| s.name.clone()).collect(),
        parts.specs.clone(),
    );
    let server = {
        let _g = rt.enter();
        hft_cluster::admin::serve(
            "127.0.0.1:0".parse()?,
            hft_cluster::admin::AdminState {
                node: 1,
                ledger: Some(ledger.ledger.clone()),
                fenced: None,
                auth: Some(Arc::new(hft_cluster::auth::Authenticator::new(
                    coord.clone(),
                    Duration::from_secs(5),
                ))),
                audit: Some(coord.clone()),
                trading: None,
            },
            None,
        )?
    };
    let url = format!("http://{}", server.addr);
    let shutdown = Arc::new(AtomicBool::new(false));
    // Odd phases run under load. A second counts for its phase only when the phase was
    // the same when it was last read and now (so it lies wholly inside the phase).
    let phase = Arc::new(AtomicU64::new(0));
    // Tick-to-order of the counted seconds, pooled: [idle, loaded].
    let pooled: Arc<Mutex<[hdrhistogram::Histogram<u64>; 2]>> = Arc::new(Mutex::new([
        hft_telemetry::latency_histogram(),
        hft_telemetry::latency_histogram(),
    ]));
    let counted = Arc::new(Mutex::new([0usize; 2]));
    let opts = hft_cluster::live::LiveOptions {
        duration: None,
        shutdown: shutdown.clone(),
        ring_capacity: config.engine.ring_capacity,
        timer_interval: Duration::from_millis(config.engine.timer_interval_ms),
        status_interval: Duration::from_secs(1),
        idle: hft_cluster::ring::IdleMode::Park,
        seed: config.simulator.seed,
        booking: Some(booking),
        reload: None,
    };
    let session = {
        let (phase, pooled, counted) = (phase.clone(), pooled.clone(), counted.clone());
        let (mut last_phase, mut last_second, mut same_for) = (u64::MAX, 0, 0u32);
        std::thread::spawn(move || {
            hft_cluster::live::run(parts, opts, move |v, _| {
                let now = phase.load(Ordering::SeqCst);
                let second = v.gateway.seconds.load(Ordering::Acquire);
                same_for = if now == last_phase { same_for + 1 } else { 0 };
                // Two reads in the same phase: the gateway's last second began after
                // the switch.
                if same_for >= 2
                    && now > 0
                    && second != last_second
                    && let (Ok(h), Ok(mut p), Ok(mut c)) =
                        (v.gateway.last_second.lock(), pooled.lock(), counted.lock())
                    && let Some(h) = h.as_ref()
                {
                    let k = (now % 2) as usize;
                    let _ = p[k].add(h);
                    c[k] += 1;
                }
                (last_phase, last_second) = (now, second);
            })
        })
    };
    let requests = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let load = {
        let (phase, shutdown, requests, failures) = (
            phase.clone(),
            shutdown.clone(),
            requests.clone(),
            failures.clone(),
        );
        std::thread::spawn(move || {
            // The clients stand in for operators on other machines: on this one they
            // yield to trading as the API does.
            hft_cluster::ring::lower_priority();
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .timeout_global(Some(Duration::from_secs(5)))
                .http_status_as_error(false)
                .build()
                .into();
            let paths = ["/v1/status", "/v1/ledger/positions", "/v1/ledger/status"];
            let every = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
            let mut next = Instant::now();
            let mut i = 0usize;
            while !shutdown.load(Ordering::SeqCst) {
                if phase.load(Ordering::SeqCst) % 2 == 1 {
                    let r = agent
                        .get(format!("{url}{}", paths[i % paths.len()]))
                        .header("Authorization", &format!("Bearer {token}"))
                        .call();
                    i += 1;
                    requests.fetch_add(1, Ordering::Relaxed);
                    if !r.is_ok_and(|r| r.status() == 200) {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                    next += every;
                    let now = Instant::now();
                    if next > now {
                        std::thread::sleep(next - now);
                    } else {
                        next = now;
                    }
                } else {
                    std::thread::sleep(Duration::from_millis(5));
                    next = Instant::now();
                }
            }
        })
    };
    // Warm up (phase 0 is not counted), then alternate: off, on, off, on, ...
    std::thread::sleep(Duration::from_secs(3));
    for p in 1..=phases.max(2) as u64 {
        // Phase p: loaded when even (p = 2, 4, ...), so the first counted phase is idle.
        phase.store(if p % 2 == 0 { 2 * p + 1 } else { 2 * p }, Ordering::SeqCst);
        std::thread::sleep(Duration::from_secs(phase_s.max(2)));
    }
    phase.store(0, Ordering::SeqCst);
    shutdown.store(true, Ordering::SeqCst);
    let report = session
        .join()
        .map_err(|_| anyhow!("the session panicked"))?
        .map_err(|e| anyhow!(e))?;
    let _ = load.join();
    drop(server);
    drop(etcd);
    let _ = std::fs::remove_dir_all(&dir);
    let p = pooled.lock().map_err(|_| anyhow!("poisoned"))?;
    let c = *counted.lock().map_err(|_| anyhow!("poisoned"))?;
    let us = |h: &hdrhistogram::Histogram<u64>, q: f64| {
        (h.value_at_quantile(q) as f64 / 100.0).round() / 10.0
    };
    let (off, on) = (us(&p[0], 0.99), us(&p[1], 0.99));
    let n = requests.load(Ordering::Relaxed);
    let secs = (phases.max(2) / 2) as f64 * phase_s.max(2) as f64;
    Ok(json!({
        "bench": "admin-load",
        "tick_to_order_p50_us_idle": us(&p[0], 0.5),
        "tick_to_order_p50_us_loaded": us(&p[1], 0.5),
        "tick_to_order_p99_us_idle": off,
        "tick_to_order_p99_us_loaded": on,
        "p99_ratio": if off > 0.0 { (on / off * 1000.0).round() / 1000.0 } else { 0.0 },
        "orders_idle": p[0].len(),
        "orders_loaded": p[1].len(),
        "seconds_idle": c[0],
        "seconds_loaded": c[1],
        "requests": n,
        "requests_per_s": (n as f64 / secs).round(),
        "request_failures": failures.load(Ordering::Relaxed),
        "fills_booked": report.ledger.as_ref().map_or(0, |l| l.booked),
    }))
}
