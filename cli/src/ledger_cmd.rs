//! `hft node` (a ledger member with its admin API) and `hft ledger ...` (talks to a
//! node's admin API, or reads a member's files for verify and repair).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use clap::{Args, Subcommand};
use hft_cluster::admin::{self, AdminState};
use hft_ledger::transport::start_tcp;
use hft_ledger::{MemberConfig, member::hex};
use serde_json::{Value, json};

use crate::Exit;

/// The address of `HOST:PORT`, asking DNS for up to 30 s (a Service's name may not
/// resolve the moment a pod starts).
fn resolve(hp: &str) -> anyhow::Result<SocketAddr> {
    use std::net::ToSocketAddrs;
    let end = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match hp.to_socket_addrs().map(|mut a| a.next()) {
            Ok(Some(a)) => return Ok(a),
            Ok(None) | Err(_) if std::time::Instant::now() < end => {
                std::thread::sleep(Duration::from_millis(500));
            }
            Ok(None) => bail!("--venue {hp}: no address"),
            Err(e) => bail!("--venue {hp}: {e}"),
        }
    }
}

/// A connection to the node's etcd, for its start-up records.
async fn etcd(
    args: &NodeArgs,
) -> Result<hft_cluster::coord::Coord, hft_cluster::coord::CoordError> {
    hft_cluster::coord::Coord::connect(&args.etcd, &args.cluster, Duration::from_secs(10)).await
}

/// A venue link, `[NAME=]HOST:PORT`: its name (`sim` when none is given) and address.
fn parse_venue_link(s: &str) -> Result<(String, String), String> {
    let (name, hp) = match s.split_once('=') {
        Some((name, hp)) if hft_config::is_venue_name(name) => (name, hp),
        Some((name, _)) => {
            return Err(format!(
                "venue link name {name:?}: use 1 to 32 lowercase letters, digits, '-' or '_'"
            ));
        }
        None => (hft_exec::SIM_VENUE, s),
    };
    Ok((name.to_owned(), parse_host_port(hp)?))
}

/// `HOST:PORT` with a port number (the host may be a DNS name).
fn parse_host_port(s: &str) -> Result<String, String> {
    match s.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok() => Ok(s.to_owned()),
        _ => Err(format!("{s:?} is not HOST:PORT")),
    }
}

/// A node id, or `from-hostname` (see `NodeArgs::id`).
fn parse_node_id(s: &str) -> Result<u64, String> {
    if s != "from-hostname" {
        return s
            .parse::<u64>()
            .ok()
            .filter(|&id| id > 0)
            .ok_or_else(|| format!("{s:?} is not a node id (1, 2, ...) or from-hostname"));
    }
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .unwrap_or_default();
    id_from_hostname(host.trim())
}

/// `name-N` -> N + 1.
fn id_from_hostname(host: &str) -> Result<u64, String> {
    host.rsplit_once('-')
        .and_then(|(_, n)| n.parse::<u64>().ok())
        .and_then(|n| n.checked_add(1))
        .ok_or_else(|| {
            format!(
                "--id from-hostname: host name {host:?} does not end in -ORDINAL (a \
                 StatefulSet pod's does); give the id as a number"
            )
        })
}

/// `hft node` arguments.
#[derive(Args, Debug)]
pub struct NodeArgs {
    /// This node's ledger member id (1, 2, ...; unique in the cluster), or
    /// `from-hostname`: the ordinal ending the host name, plus one (`hft-2` is 3), as
    /// in a Kubernetes StatefulSet.
    #[arg(long, value_parser = parse_node_id)]
    id: u64,
    /// Cluster name; members of another cluster are refused.
    #[arg(long, default_value = "hft")]
    cluster: String,
    /// Every ledger member as ID=HOST:PORT, comma-separated, this one included.
    #[arg(long, value_delimiter = ',', required = true)]
    ledger_peers: Vec<String>,
    /// Directory of this member's WAL and snapshots.
    #[arg(long)]
    ledger_dir: Option<PathBuf>,
    /// Join an existing cluster (added with `hft ledger members add`) instead of
    /// founding one with the peers as voters.
    #[arg(long)]
    join: bool,
    /// Members 1..=N found the ledger together (the voters of its first
    /// configuration); a node with a higher id joins, as with --join. Lets every node of
    /// a group take the same arguments, the peers it may grow to listed in advance (a
    /// Kubernetes StatefulSet). Default: every peer listed is a founder.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    founders: Option<u64>,
    /// Admin API address.
    #[arg(long, default_value = "127.0.0.1:7080")]
    admin: SocketAddr,
    /// This member's certificate chain (PEM) for mutual TLS between members; it must
    /// name the host of its ledger address.
    #[arg(long)]
    ledger_tls_cert: Option<PathBuf>,
    /// The private key of --ledger-tls-cert (PEM).
    #[arg(long)]
    ledger_tls_key: Option<PathBuf>,
    /// The cluster CA certificate (PEM) that signs every member's certificate.
    #[arg(long)]
    ledger_tls_ca: Option<PathBuf>,
    /// Configuration overlay: its `[[instruments]]` are the ones fills may name.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Serve the admin API over TLS with this certificate chain (PEM).
    #[arg(long, requires = "admin_tls_key")]
    admin_tls_cert: Option<PathBuf>,
    /// The private key of --admin-tls-cert (PEM).
    #[arg(long, requires = "admin_tls_cert")]
    admin_tls_key: Option<PathBuf>,
    /// Register this node in the cluster's etcd (URLs, comma-separated) under a lease:
    /// a node that cannot renew it fences itself.
    #[arg(long, value_delimiter = ',')]
    etcd: Vec<String>,
    /// Lease TTL in seconds.
    #[arg(long, default_value_t = 2)]
    lease_ttl_s: u64,
    /// Raft tick in ms (election after 10-20 ticks, heartbeat every 2).
    #[arg(long, default_value_t = 20)]
    tick_ms: u64,
    /// WAL segment size in KiB. Segments are preallocated, so a full disk is noticed
    /// only when the next one is created: smaller segments find it sooner.
    #[arg(long, default_value_t = 65_536, value_parser = clap::value_parser!(u64).range(16..=4_194_304))]
    ledger_segment_kib: u64,
    /// Trade: run the engines placed on this node against the venue process at this
    /// HOST:PORT (`hft venue`, or a gateway that speaks its link), resolved at start.
    /// Repeat as NAME=HOST:PORT for several venues: a strategy trades through the link
    /// its `venue` names, or the first; the name is the venue its fills are booked
    /// under (an unnamed link is `sim`). Needs --etcd (placement) and a cluster secret.
    #[arg(long, requires = "etcd", value_parser = parse_venue_link)]
    venue: Vec<(String, String)>,
    /// Listen for ledger peers here instead of at this node's own --ledger-peers entry
    /// (which may then be a DNS name, as in a Kubernetes StatefulSet).
    #[arg(long)]
    ledger_listen: Option<SocketAddr>,
    /// Control channel address (the placement leader's failure detector connects here).
    #[arg(long, default_value = "127.0.0.1:0")]
    control: SocketAddr,
    /// The control address other nodes should dial (HOST:PORT, a DNS name allowed),
    /// when it is not --control (behind NAT, a proxy, or a Service).
    #[arg(long, value_parser = parse_host_port)]
    control_advertise: Option<String>,
    /// File holding the cluster secret (at least 16 bytes) that nodes authenticate each
    /// other's control channels with; or set HFT_CLUSTER_SECRET.
    #[arg(long)]
    cluster_secret_file: Option<PathBuf>,
}

fn cluster_secret(
    file: Option<&std::path::Path>,
) -> anyhow::Result<hft_cluster::control::ClusterSecret> {
    let bytes = match file {
        Some(f) => std::fs::read(f)
            .with_context(|| format!("cannot read --cluster-secret-file {}", f.display()))?,
        None => std::env::var("HFT_CLUSTER_SECRET")
            .map_err(|_| {
                anyhow!(
                    "a trading node needs the cluster secret: --cluster-secret-file FILE or \
                     HFT_CLUSTER_SECRET (at least 16 random bytes, the same on every node)"
                )
            })?
            .into_bytes(),
    };
    let trimmed = bytes.trim_ascii().to_vec();
    hft_cluster::control::ClusterSecret::new(trimmed).map_err(|e| anyhow!(e))
}

fn parse_peers(list: &[String]) -> anyhow::Result<BTreeMap<u64, String>> {
    let mut peers = BTreeMap::new();
    for p in list {
        let (id, addr) = p
            .split_once('=')
            .ok_or_else(|| anyhow!("--ledger-peers: {p:?} is not ID=HOST:PORT"))?;
        let id: u64 = id
            .trim()
            .parse()
            .ok()
            .filter(|&i| i > 0)
            .ok_or_else(|| anyhow!("--ledger-peers: {id:?} is not a member id (1, 2, ...)"))?;
        if peers.insert(id, addr.trim().to_owned()).is_some() {
            bail!("--ledger-peers: member {id} is listed twice");
        }
    }
    Ok(peers)
}

/// Runs a node until SIGINT/SIGTERM.
pub fn node(args: NodeArgs) -> Result<u8, Exit> {
    hft_telemetry::init_tracing(false, "info");
    let peers = parse_peers(&args.ledger_peers).map_err(|e| Exit(2, e))?;
    let listen = peers.get(&args.id).ok_or_else(|| {
        Exit(
            2,
            anyhow!(
                "--ledger-peers does not list this node's id {}; add {}=HOST:PORT",
                args.id,
                args.id
            ),
        )
    })?;
    let listen: SocketAddr = match args.ledger_listen {
        Some(l) => l,
        None => listen.parse().map_err(|e| {
            Exit(
                2,
                anyhow!(
                    "--ledger-peers: {listen:?} for member {} is not IP:PORT ({e}); give \
                     the address to listen on with --ledger-listen",
                    args.id
                ),
            )
        })?,
    };
    let dir = args
        .ledger_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("hft-data/ledger-{}", args.id)));
    if let Some(n) = args.founders {
        if !(1..=n).all(|id| peers.contains_key(&id)) {
            return Err(Exit(
                2,
                anyhow!(
                    "--founders {n}: --ledger-peers must list members 1 to {n}, the ledger's first voters"
                ),
            ));
        }
    }
    let bootstrap = match args.founders {
        _ if args.join => Vec::new(),
        Some(n) if args.id > n => Vec::new(),
        Some(n) => (1..=n).collect(),
        None => peers.keys().copied().collect(),
    };
    // A trading node runs the cluster's configuration (etcd; the embedded default when
    // none is stored) and follows it; the others only need the instruments.
    let followed = match (!args.venue.is_empty(), args.etcd.is_empty()) {
        (true, false) => {
            if args.config.is_some() {
                return Err(Exit(
                    2,
                    anyhow!(
                        "--config: a trading node (--venue) runs the cluster's configuration \
                         from etcd; store it with `hft config set FILE --etcd ...` instead"
                    ),
                ));
            }
            Some(crate::cluster_cmd::follow_config(
                &args.etcd,
                &args.cluster,
                crate::env_vars().collect(),
            )?)
        }
        _ => None,
    };
    let config = match &followed {
        Some(f) => f.config.clone(),
        None => crate::load_config(args.config.as_deref())?,
    };
    // Prometheus metrics where the configuration asks (`[telemetry] metrics_addr`, or
    // HFT_TELEMETRY__METRICS_ADDR as the operator sets it).
    hft_telemetry::install_metrics(config.telemetry.metrics_addr)
        .map_err(|e| Exit(1, anyhow!("metrics: {e}")))?;
    // A trading node's venue links, checked against the strategies before anything
    // starts: a strategy whose venue has no link here could never trade.
    let venues = if args.venue.is_empty() {
        None
    } else {
        let links = args
            .venue
            .iter()
            .map(|(name, hp)| Ok((name.clone(), resolve(hp)?)))
            .collect::<anyhow::Result<Vec<_>>>()
            .map_err(|e| Exit(1, e))?;
        let venues = hft_cluster::cluster::VenueLinks::new(links)
            .and_then(|v| v.check(&config).map(|()| v))
            .map_err(|e| Exit(2, anyhow!("--venue: {e}")))?;
        Some(venues)
    };
    let specs: Vec<_> = config.instruments.iter().map(|i| i.spec.clone()).collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Exit(1, e.into()))?;
    // With etcd, a member on an empty disk learns whether it lost a log: a founder
    // founds the ledger only the first time (etcd records that it did, so a later start
    // on an empty disk, its volume lost or deleted by a scale-down, does not found a
    // second ledger beside the first), and any member records once it holds a log
    // (below).
    let fresh = std::fs::read_dir(dir.join("wal"))
        .map(|mut d| d.next().is_none())
        .unwrap_or(true);
    let records = if args.etcd.is_empty() {
        None
    } else {
        Some(
            rt.block_on(etcd(&args))
                .map_err(|e| Exit(1, anyhow!("etcd, for this member's records: {e}")))?,
        )
    };
    let lost_log = match records.clone() {
        Some(mut coord) if fresh => {
            let founder = args.founders.is_some() && !bootstrap.is_empty();
            rt.block_on(async {
                Ok::<_, hft_cluster::coord::CoordError>(
                    (founder && !coord.claim_founding(args.id).await?)
                        || coord.held_log(args.id).await?,
                )
            })
            .map_err(|e| Exit(1, anyhow!("etcd, reading this member's records: {e}")))?
        }
        _ => false,
    };
    if lost_log {
        tracing::warn!(
            member = args.id,
            "this member's log is gone: joining the existing ledger (it must be removed and added back)"
        );
    }
    let bootstrap = if lost_log { Vec::new() } else { bootstrap };
    let mut cfg = MemberConfig::new(args.id, bootstrap, &dir);
    cfg.rejoin = lost_log;
    cfg.instruments = Some(hft_cluster::booking::known_instruments(&specs));
    cfg.tick = Duration::from_millis(args.tick_ms.max(1));
    cfg.segment_bytes = args.ledger_segment_kib << 10;
    let tls = match (
        &args.ledger_tls_cert,
        &args.ledger_tls_key,
        &args.ledger_tls_ca,
    ) {
        (None, None, None) => None,
        (Some(c), Some(k), Some(ca)) => Some(
            hft_ledger::transport::PeerTls::from_files(c, k, ca)
                .map_err(|e| Exit(2, anyhow!("ledger TLS: {e}")))?,
        ),
        _ => {
            return Err(Exit(
                2,
                anyhow!(
                    "ledger TLS needs all of --ledger-tls-cert, --ledger-tls-key and \
                     --ledger-tls-ca (or none of them)"
                ),
            ));
        }
    };
    let own_peer_addr = peers.get(&args.id).cloned().unwrap_or_default();
    let member = start_tcp(cfg, &args.cluster, listen, peers, tls, rt.handle())
        .map_err(|e| Exit(1, anyhow!("{e}")))?;
    tracing::info!(
        member = args.id,
        ledger = %member.addr,
        dir = %dir.display(),
        snapshot_index = member.recovery.snapshot_index,
        wal_records = member.recovery.records,
        torn_bytes = member.recovery.torn_bytes,
        "ledger member started"
    );
    // A member that lost its log says so in etcd, where the operator looks for members
    // to remove and add back.
    if let Some(mut coord) = records.clone()
        && rt
            .block_on(member.ledger.status())
            .is_ok_and(|s| s.rejoining)
    {
        rt.block_on(coord.mark_rejoining(args.id)).map_err(|e| {
            Exit(
                1,
                anyhow!("etcd, recording that this member lost its log: {e}"),
            )
        })?;
    }
    // Once the member holds a log (it founded the ledger, or was added and caught up),
    // etcd records it.
    if let Some(mut coord) = records {
        let (ledger, id) = (member.ledger.clone(), args.id);
        rt.spawn(async move {
            loop {
                let holds = ledger.status().await.is_ok_and(|s| {
                    !s.rejoining
                        && s.applied > 0
                        && (s.voters.contains(&id) || s.learners.contains(&id))
                });
                if holds {
                    match coord.mark_held(id).await {
                        Ok(()) => break,
                        Err(e) => tracing::warn!(error = %e, "etcd: cannot record that this member holds a log; retrying"),
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }
    // A trading node binds its control channel before it registers, to advertise it.
    let trading = match venues {
        Some(venue) => {
            let secret =
                cluster_secret(args.cluster_secret_file.as_deref()).map_err(|e| Exit(2, e))?;
            let listener = rt
                .block_on(tokio::net::TcpListener::bind(args.control))
                .map_err(|e| {
                    Exit(
                        1,
                        anyhow!("cannot listen on --control {}: {e}", args.control),
                    )
                })?;
            Some((venue, secret, listener))
        }
        None => None,
    };
    let registration = if args.etcd.is_empty() {
        None
    } else {
        let info = hft_cluster::coord::NodeInfo {
            id: args.id,
            admin: args.admin.to_string(),
            ledger: Some(own_peer_addr.clone()),
            control: args
                .control_advertise
                .clone()
                .or_else(|| {
                    trading
                        .as_ref()
                        .and_then(|(_, _, l)| l.local_addr().ok())
                        .map(|a| a.to_string())
                })
                .filter(|_| trading.is_some()),
            since: hft_cluster::coord::now_ns(),
        };
        let (reg, coord) = rt
            .block_on(async {
                let c = hft_cluster::coord::Coord::connect(
                    &args.etcd,
                    &args.cluster,
                    Duration::from_secs(30),
                )
                .await?;
                let ttl = Duration::from_secs(args.lease_ttl_s.max(1));
                let reg = hft_cluster::coord::retry_transient(Duration::from_secs(30), || {
                    let (mut c, info) = (c.clone(), info.clone());
                    async move { c.register(&info, ttl).await }
                })
                .await?;
                Ok::<_, hft_cluster::coord::CoordError>((reg, c))
            })
            .map_err(|e| Exit(1, anyhow!("{e}")))?;
        tracing::info!(key = %reg.key, lease = reg.lease, "registered in etcd");
        Some((reg, coord))
    };
    if registration.is_none() && !args.admin.ip().is_loopback() {
        return Err(Exit(
            2,
            anyhow!(
                "--admin {} is not a loopback address, and without --etcd the node has no \
                 token store: the API would be open to anyone who can reach it. Bind it to \
                 127.0.0.1, or join an etcd cluster (--etcd) so that tokens are checked",
                args.admin
            ),
        ));
    }
    let admin_tls = match (&args.admin_tls_cert, &args.admin_tls_key) {
        (Some(c), Some(k)) => {
            let read = |p: &PathBuf| {
                std::fs::read(p).map_err(|e| Exit(2, anyhow!("cannot read {}: {e}", p.display())))
            };
            Some(
                admin::tls_config(&read(c)?, &read(k)?)
                    .map_err(|e| Exit(2, anyhow!("admin TLS: {e}")))?,
            )
        }
        _ => None,
    };
    let engines = std::sync::Arc::new(hft_cluster::cluster::EngineRegistry::default());
    let trading_view = match (&trading, &followed) {
        (Some(_), Some(f)) => Some(admin::TradingView {
            engines: engines.clone(),
            reload: f.status(),
            strategies: hft_cluster::cluster::strategy_names(&config),
        }),
        _ => None,
    };
    let server = admin::serve(
        args.admin,
        AdminState {
            trading: trading_view,
            node: args.id,
            ledger: Some(member.ledger.clone()),
            fenced: registration.as_ref().map(|(r, _)| r.fenced.clone()),
            // A node in a cluster checks bearer tokens against etcd; verified tokens
            // are remembered for 5 s (revocation takes effect within that).
            audit: registration.as_ref().map(|(_, c)| c.clone()),
            auth: registration.as_ref().map(|(_, c)| {
                std::sync::Arc::new(hft_cluster::auth::Authenticator::new(
                    c.clone(),
                    Duration::from_secs(5),
                ))
            }),
        },
        admin_tls,
    )
    .map_err(|e| {
        Exit(
            1,
            anyhow!("cannot serve the admin API on {}: {e}", args.admin),
        )
    })?;
    tracing::info!(admin = %server.addr, "admin API listening");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let agent = match (trading, &registration) {
        (Some((venue, secret, listener)), Some((reg, coord))) => {
            let hub = hft_cluster::reload::ReloadHub::default();
            if let Some(f) = &followed {
                let (h, rx) = (hub.clone(), f.take_receiver());
                std::thread::Builder::new()
                    .name("config-hub".into())
                    .spawn(move || h.forward(rx))
                    .map_err(|e| Exit(1, e.into()))?;
            }
            let setup = hft_cluster::cluster::NodeSetup {
                id: args.id,
                config: std::sync::Arc::new(config),
                venues: venue,
                ledger: member.ledger.clone(),
                fenced: reg.fenced.clone(),
                stop: stop.clone(),
                reloads: Some(hub),
                engines: engines.clone(),
            };
            let _guard = rt.enter();
            hft_cluster::control::serve(listener, secret.clone(), args.id, reg.fenced.clone());
            rt.spawn(keep_leading(
                coord.clone(),
                setup.clone(),
                reg.lease,
                secret,
            ));
            Some(rt.spawn(keep_following(coord.clone(), setup)))
        }
        _ => None,
    };
    let fenced = registration.as_ref().map(|(r, _)| r.fenced.clone());
    let (member_failed, was_fenced) = rt.block_on(async {
        tokio::select! {
            () = crate::until_signal() => (false, false),
            () = async {
                while !member.thread.is_finished() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            } => (true, false),
            // A fenced node's lease is gone: it can place or run nothing until it
            // registers again, which is what a new process does. So it stops (its
            // engines already did) and its supervisor starts it again.
            () = async {
                while !fenced
                    .as_ref()
                    .is_some_and(|f| f.load(std::sync::atomic::Ordering::SeqCst))
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            } => (false, true),
        }
    });
    if member_failed {
        // Fail-stop: without its ledger member the node can book nothing, so it fences
        // itself (its engines stop, and their fills are replayed from the venue by the
        // next owner) and exits for its supervisor to restart it.
        tracing::error!(member = args.id, dir = %dir.display(), "the ledger member stopped (its storage failed: see the error above); the node stops");
        if let Some((reg, _)) = &registration {
            reg.fenced.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
    tracing::info!("stopping");
    // Engines stop first: they cancel their orders and book their last fills while the
    // ledger and the registration still stand.
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    if let Some(a) = agent {
        let _ = rt.block_on(a);
    }
    drop(server);
    // Dropping the registration revokes the lease (the node's work is free at once);
    // give the revoke a moment on the runtime.
    rt.block_on(async move {
        drop(registration);
        tokio::time::sleep(Duration::from_millis(100)).await;
    });
    member.stop();
    if was_fenced {
        return Err(Exit(
            1,
            anyhow!(
                "node {} fenced (its etcd lease lapsed): it stopped trading and exits; \
                 start it again to rejoin",
                args.id
            ),
        ));
    }
    if member_failed {
        return Err(Exit(
            1,
            anyhow!(
                "ledger member {} stopped: its storage in {} failed (full or broken \
                 disk?); free or fix it, then start the node again",
                args.id,
                dir.display()
            ),
        ));
    }
    Ok(0)
}

/// Campaigns and places engines while leading, again after any etcd error.
async fn keep_leading(
    coord: hft_cluster::coord::Coord,
    setup: hft_cluster::cluster::NodeSetup,
    lease: i64,
    secret: hft_cluster::control::ClusterSecret,
) {
    use std::sync::atomic::Ordering;
    while !setup.stop.load(Ordering::SeqCst) && !setup.fenced.load(Ordering::SeqCst) {
        match hft_cluster::cluster::lead(coord.clone(), setup.clone(), lease, secret.clone()).await
        {
            Ok(()) => {}
            Err(e) => tracing::warn!(error = %e, "placement: etcd error; campaigning again"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Follows this node's assignments, again after any etcd error, until stopped or fenced.
async fn keep_following(coord: hft_cluster::coord::Coord, setup: hft_cluster::cluster::NodeSetup) {
    use std::sync::atomic::Ordering;
    loop {
        match hft_cluster::cluster::follow(coord.clone(), setup.clone()).await {
            Ok(()) => return,
            Err(e) => tracing::warn!(error = %e, "assignments: etcd error; following again"),
        }
        if setup.stop.load(Ordering::SeqCst) || setup.fenced.load(Ordering::SeqCst) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `hft ledger` subcommands.
#[derive(Subcommand, Debug)]
pub enum LedgerCmd {
    /// Term, leader, commit and applied index, and per-peer lag (from the leader).
    Status(Endpoint),
    /// Positions, cash and kill switches (a linearizable read).
    Positions(Endpoint),
    /// Booked fills, oldest first.
    Fills {
        #[command(flatten)]
        ep: Endpoint,
        /// Only fills at or after this time: ns since the epoch, or a duration back
        /// from now (`10m`, `2h`).
        #[arg(long, default_value = "0")]
        since: String,
        /// At most this many.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
    /// Rebuild the state from a member's snapshots and WAL (read-only) and check every
    /// newer snapshot against the rebuild; with --endpoint, also compare with the
    /// running member's state hash.
    Verify {
        /// The member's ledger directory.
        #[arg(long)]
        dir: PathBuf,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Cut a member's WAL at its first corrupt record (and drop later segments) so it
    /// can start; it then fetches what it lost from its peers.
    Repair {
        /// The member's ledger directory.
        #[arg(long)]
        dir: PathBuf,
    },
    /// Membership changes, sent to any member (the leader applies them).
    #[command(subcommand)]
    Members(MembersCmd),
    /// Hand leadership to another voter.
    TransferLeader {
        #[command(flatten)]
        ep: Endpoint,
        /// The new leader's id.
        to: u64,
    },
}

/// Membership subcommands.
#[derive(Subcommand, Debug)]
pub enum MembersCmd {
    /// Add a member as a learner (start it with `hft node --join` first).
    Add {
        #[command(flatten)]
        ep: Endpoint,
        /// New member id.
        id: u64,
        /// Its ledger address (HOST:PORT).
        #[arg(long)]
        addr: String,
    },
    /// Make a learner a voter.
    Promote {
        #[command(flatten)]
        ep: Endpoint,
        /// Member id.
        id: u64,
    },
    /// Remove a member.
    Remove {
        #[command(flatten)]
        ep: Endpoint,
        /// Member id.
        id: u64,
    },
}

/// Where the admin API is.
#[derive(Args, Debug)]
pub struct Endpoint {
    /// Admin API of any node.
    #[arg(long, env = "HFT_ENDPOINT", default_value = "http://127.0.0.1:7080")]
    endpoint: String,
    /// File holding the bearer token (default: the HFT_TOKEN variable).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// CA certificate (PEM) that signed the node's admin certificate, for https://
    /// endpoints not signed by a public CA.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

fn agent(ep: &Endpoint) -> anyhow::Result<ureq::Agent> {
    let mut cfg = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .http_status_as_error(false);
    if let Some(f) = &ep.ca_file {
        let pem = std::fs::read(f).with_context(|| format!("cannot read {}", f.display()))?;
        let ca = ureq::tls::Certificate::from_pem(&pem)
            .with_context(|| format!("{}: not a PEM certificate", f.display()))?;
        cfg = cfg.tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::new_with_certs(&[ca]))
                .build(),
        );
    }
    Ok(cfg.build().into())
}

fn answer(
    ep: &Endpoint,
    resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> anyhow::Result<Value> {
    let mut resp =
        resp.with_context(|| format!("cannot reach the admin API at {}", ep.endpoint))?;
    let status = resp.status();
    let body: Value = resp
        .body_mut()
        .read_json()
        .with_context(|| format!("{}: answer is not JSON", ep.endpoint))?;
    if !status.is_success() {
        let msg = body.get("error").and_then(Value::as_str).unwrap_or("error");
        bail!("{} answered {status}: {msg}", ep.endpoint);
    }
    Ok(body)
}

/// The bearer token: `--token-file`, else `HFT_TOKEN`.
fn token(ep: &Endpoint) -> anyhow::Result<Option<String>> {
    if let Some(f) = &ep.token_file {
        let t = std::fs::read_to_string(f)
            .with_context(|| format!("cannot read the token file {}", f.display()))?;
        return Ok(Some(t.trim().to_owned()));
    }
    Ok(std::env::var("HFT_TOKEN").ok().filter(|t| !t.is_empty()))
}

fn get(ep: &Endpoint, path: &str) -> anyhow::Result<Value> {
    let url = format!("{}{path}", ep.endpoint.trim_end_matches('/'));
    let mut req = agent(ep)?.get(&url);
    if let Some(t) = token(ep)? {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    answer(ep, req.call())
}

fn post(ep: &Endpoint, path: &str, body: &Value) -> anyhow::Result<Value> {
    let url = format!("{}{path}", ep.endpoint.trim_end_matches('/'));
    let mut req = agent(ep)?.post(&url);
    if let Some(t) = token(ep)? {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    answer(ep, req.send_json(body))
}

fn parse_since(s: &str) -> anyhow::Result<u64> {
    if let Ok(ns) = s.parse::<u64>() {
        return Ok(ns);
    }
    let back = crate::parse_duration(s)
        .map_err(|e| anyhow!("--since: {s:?} is neither ns since the epoch nor a duration: {e}"))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Ok(now.saturating_sub(back).as_nanos() as u64)
}

/// Runs a `hft ledger` subcommand.
pub fn ledger(cmd: LedgerCmd) -> Result<u8, Exit> {
    let out = match cmd {
        LedgerCmd::Status(ep) => {
            let v = get(&ep, "/v1/ledger/status")?;
            if ep.json {
                v.to_string()
            } else {
                status_table(&v)
            }
        }
        LedgerCmd::Positions(ep) => {
            let v = get(&ep, "/v1/ledger/positions")?;
            if ep.json {
                v.to_string()
            } else {
                positions_table(&v)
            }
        }
        LedgerCmd::Fills { ep, since, limit } => {
            let since = parse_since(&since).map_err(|e| Exit(2, e))?;
            let v = get(
                &ep,
                &format!("/v1/ledger/fills?since={since}&limit={limit}"),
            )?;
            if ep.json {
                v.to_string()
            } else {
                fills_table(&v)
            }
        }
        LedgerCmd::Verify { dir, json } => {
            let r = hft_ledger::verify::verify(&dir).map_err(|e| Exit(1, anyhow!("{e}")))?;
            let v = json!({
                "dir": dir.display().to_string(),
                "snapshots": r.snapshots,
                "snapshots_checked": r.snapshots_checked,
                "wal_records": r.records,
                "applied": r.applied,
                "fills": r.fills,
                "hash": hex(&r.hash),
                "torn_bytes": r.torn_bytes,
                "undecodable_entries": r.undecodable,
            });
            if json {
                v.to_string()
            } else {
                format!(
                    "ok: rebuilt {} fills up to index {} from {} snapshot(s) and {} WAL records; \
                     {} snapshot(s) matched the rebuild\nstate hash {}",
                    r.fills,
                    r.applied,
                    r.snapshots,
                    r.records,
                    r.snapshots_checked,
                    hex(&r.hash)
                )
            }
        }
        LedgerCmd::Repair { dir } => {
            let r =
                hft_ledger::wal::repair(&dir.join("wal")).map_err(|e| Exit(1, anyhow!("{e}")))?;
            match r.cut {
                None => format!("{}: the log is sound; nothing cut", dir.display()),
                Some((path, at)) => format!(
                    "cut {} at byte {at}; removed {} later segment(s). Start the member: it \
                     fetches the rest from its peers",
                    path.display(),
                    r.removed.len()
                ),
            }
        }
        LedgerCmd::Members(m) => {
            let (ep, body) = match m {
                MembersCmd::Add { ep, id, addr } => {
                    (ep, json!({"action": "add-learner", "id": id, "addr": addr}))
                }
                MembersCmd::Promote { ep, id } => (ep, json!({"action": "promote", "id": id})),
                MembersCmd::Remove { ep, id } => (ep, json!({"action": "remove", "id": id})),
            };
            let v = post(&ep, "/v1/ledger/members", &body)?;
            if ep.json {
                v.to_string()
            } else {
                format!("voters {}  learners {}", v["voters"], v["learners"])
            }
        }
        LedgerCmd::TransferLeader { ep, to } => {
            post(&ep, "/v1/ledger/transfer-leader", &json!({ "to": to }))?;
            format!("asked the leader to hand over to member {to}")
        }
    };
    println!("{out}");
    Ok(0)
}

fn status_table(v: &Value) -> String {
    let mut s = format!(
        "member {}  role {}  term {}  leader {}\ncommit {}  applied {}  last {}  snapshot {}\nvoters {}  learners {}  fills {}  duplicates {}\n",
        cell(&v["id"]),
        v["role"].as_str().unwrap_or("?"),
        cell(&v["term"]),
        cell(&v["leader"]),
        cell(&v["commit"]),
        cell(&v["applied"]),
        cell(&v["last_index"]),
        cell(&v["snapshot_index"]),
        cell(&v["voters"]),
        cell(&v["learners"]),
        cell(&v["fills"]),
        cell(&v["duplicates"])
    );
    if let Some(peers) = v["peers"].as_array().filter(|p| !p.is_empty()) {
        s.push_str("peer  matched     lag  learner\n");
        for p in peers {
            s.push_str(&format!(
                "{:<5} {:<10} {:>4}  {}\n",
                cell(&p["id"]),
                cell(&p["matched"]),
                cell(&p["lag"]),
                cell(&p["learner"])
            ));
        }
    }
    s.trim_end().to_owned()
}

fn positions_table(v: &Value) -> String {
    let mut s = format!(
        "{:<10} {:<14} {:<16} {:>14} {:>16} {:>14} {:>8}\n",
        "account", "strategy", "instrument", "qty", "realized", "fees", "fills"
    );
    for p in v["positions"].as_array().into_iter().flatten() {
        s.push_str(&format!(
            "{:<10} {:<14} {:<16} {:>14} {:>16} {:>14} {:>8}\n",
            p["account"].as_str().unwrap_or(""),
            p["strategy"].as_str().unwrap_or(""),
            p["instrument"].as_str().unwrap_or(""),
            cell(&p["qty"]),
            cell(&p["realized"]),
            cell(&p["fees"]),
            cell(&p["fills"])
        ));
    }
    for k in v["kills"].as_array().into_iter().flatten() {
        s.push_str(&format!(
            "kill switch {} engaged={}\n",
            cell(&k["scope"]),
            cell(&k["engaged"])
        ));
    }
    s.trim_end().to_owned()
}

fn fills_table(v: &Value) -> String {
    let mut s = format!(
        "{:<20} {:<10} {:>12} {:<14} {:<16} {:<4} {:>14} {:>12}\n",
        "ts", "venue", "exec_id", "strategy", "instrument", "side", "price", "qty"
    );
    for f in v.as_array().into_iter().flatten() {
        s.push_str(&format!(
            "{:<20} {:<10} {:>12} {:<14} {:<16} {:<4} {:>14} {:>12}\n",
            cell(&f["ts"]),
            f["venue"].as_str().unwrap_or(""),
            cell(&f["exec_id"]),
            f["strategy"].as_str().unwrap_or(""),
            f["instrument"].as_str().unwrap_or(""),
            f["side"].as_str().unwrap_or(""),
            cell(&f["price"]),
            cell(&f["qty"])
        ));
    }
    s.trim_end().to_owned()
}

/// A JSON value as a table cell (strings without quotes).
fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `hft kill` arguments.
#[derive(Args, Debug)]
pub struct KillArgs {
    #[command(flatten)]
    ep: Endpoint,
    /// Only this strategy (default: everything).
    #[arg(long, conflicts_with = "venue")]
    strategy: Option<String>,
    /// Only this venue.
    #[arg(long)]
    venue: Option<String>,
    /// Release the switch instead of engaging it (admin role).
    #[arg(long)]
    release: bool,
}

/// `hft status`: the node and its ledger member.
pub fn status(ep: Endpoint) -> Result<u8, Exit> {
    let node = get(&ep, "/v1/status")?;
    let ledger = get(&ep, "/v1/ledger/status").ok();
    if ep.json {
        println!("{}", json!({ "node": node, "ledger": ledger }));
    } else {
        println!(
            "node {}  registered {}  fenced {}",
            cell(&node["node"]),
            cell(&node["registered"]),
            cell(&node["fenced"])
        );
        if let Some(c) = node.get("config").filter(|c| !c.is_null()) {
            let refused = match &c["rejected"] {
                Value::Null => String::new(),
                r => format!("  refused r{}: {}", cell(&r["revision"]), cell(&r["why"])),
            };
            println!("config r{}{refused}", cell(&c["live_revision"]));
        }
        for e in node["engines"].as_array().into_iter().flatten() {
            let l = &e["live"];
            println!(
                "engine {:<12} epoch {:<6} venue {:<8} orders {:<8} fills {:<6} position_raw {:<10} config r{}",
                cell(&e["strategy"]),
                cell(&e["epoch"]),
                cell(&e["venue"]),
                cell(&l["orders"]),
                cell(&l["fills"]),
                cell(&l["position_raw"]),
                cell(&l["config_revision"]),
            );
        }
        if let Some(l) = ledger {
            println!("{}", status_table(&l));
        }
    }
    Ok(0)
}

/// `hft positions`: the ledger's positions (a linearizable read).
pub fn positions(ep: Endpoint) -> Result<u8, Exit> {
    let v = get(&ep, "/v1/ledger/positions")?;
    println!(
        "{}",
        if ep.json {
            v.to_string()
        } else {
            positions_table(&v)
        }
    );
    Ok(0)
}

/// `hft kill`: engage (trader) or release (admin) a kill switch, global or scoped.
pub fn kill(a: KillArgs) -> Result<u8, Exit> {
    let scope = match (&a.strategy, &a.venue) {
        (Some(s), _) => format!("strategy:{s}"),
        (None, Some(v)) => format!("venue:{v}"),
        (None, None) => "global".to_owned(),
    };
    let v = post(
        &a.ep,
        "/v1/kill",
        &json!({ "scope": scope, "engaged": !a.release, "at_ns": hft_cluster::coord::now_ns() }),
    )?;
    if a.ep.json {
        println!("{v}");
    } else {
        println!(
            "kill switch {} {} (ledger index {})",
            scope,
            if a.release { "released" } else { "engaged" },
            cell(&v["index"])
        );
    }
    Ok(0)
}

/// `hft orders`: open orders of the engines on the node behind --endpoint.
pub fn orders(ep: Endpoint) -> Result<u8, Exit> {
    let v = get(&ep, "/v1/orders")?;
    if ep.json {
        println!("{v}");
        return Ok(0);
    }
    let rows = v["orders"].as_array().cloned().unwrap_or_default();
    println!(
        "{:<12} {:>6} {:>20} {:<4} {:>14} {:>12} {:>12} {:<10}",
        "strategy", "epoch", "cl_ord_id", "side", "price_raw", "qty_raw", "filled_raw", "status"
    );
    for o in &rows {
        println!(
            "{:<12} {:>6} {:>20} {:<4} {:>14} {:>12} {:>12} {:<10}",
            o["strategy"].as_str().unwrap_or(""),
            o["epoch"],
            o["cl_ord_id"],
            o["side"].as_str().unwrap_or(""),
            o["price_raw"],
            o["qty_raw"],
            o["filled_raw"],
            o["status"].as_str().unwrap_or(""),
        );
    }
    println!("{} open order(s) on node {}", rows.len(), v["node"]);
    Ok(0)
}

/// `hft assignments`: which node runs which engine.
pub fn assignments(ep: Endpoint) -> Result<u8, Exit> {
    let v = get(&ep, "/v1/assignments")?;
    if ep.json {
        println!("{v}");
        return Ok(0);
    }
    println!("{:<16} {:>6} {:>10}", "strategy", "node", "epoch");
    for a in v["assignments"].as_array().cloned().unwrap_or_default() {
        println!(
            "{:<16} {:>6} {:>10}",
            a["strategy"].as_str().unwrap_or(""),
            a["node"],
            a["epoch"]
        );
    }
    println!(
        "nodes {}  draining {}  disabled {}",
        v["nodes"], v["draining"], v["disabled"]
    );
    Ok(0)
}

/// `hft strategy` subcommands.
#[derive(Subcommand, Debug)]
pub enum StrategyCmd {
    /// Let a strategy trade again (placement starts its engine on some node).
    Enable {
        /// Strategy name.
        name: String,
        #[command(flatten)]
        ep: Endpoint,
    },
    /// Stop a strategy cluster-wide: its engine cancels its orders and stops (the
    /// position stays; flatten it first if needed).
    Disable {
        /// Strategy name.
        name: String,
        #[command(flatten)]
        ep: Endpoint,
    },
    /// Change parameters: `hft strategy set mm-btc requote_ticks=3 order_qty=0.02`;
    /// validated, stored in etcd and hot-reloaded by the engine wherever it runs.
    Set {
        /// Strategy name.
        name: String,
        /// KEY=VALUE pairs (numbers and true/false as such, anything else as text).
        #[arg(required = true)]
        params: Vec<String>,
        #[command(flatten)]
        ep: Endpoint,
    },
}

/// `hft strategy ...`.
pub fn strategy(cmd: StrategyCmd) -> Result<u8, Exit> {
    let (ep, path, body) = match cmd {
        StrategyCmd::Enable { name, ep } => {
            (ep, "/v1/strategies", json!({"name": name, "enabled": true}))
        }
        StrategyCmd::Disable { name, ep } => (
            ep,
            "/v1/strategies",
            json!({"name": name, "enabled": false}),
        ),
        StrategyCmd::Set { name, params, ep } => {
            let mut m = serde_json::Map::new();
            for p in &params {
                let (k, v) = p.split_once('=').ok_or_else(|| {
                    Exit(2, anyhow!("{p:?} is not KEY=VALUE (e.g. requote_ticks=3)"))
                })?;
                let value = serde_json::from_str::<Value>(v.trim())
                    .ok()
                    .filter(|v| v.is_number() || v.is_boolean())
                    .unwrap_or_else(|| Value::String(v.trim().to_owned()));
                m.insert(k.trim().to_owned(), value);
            }
            (
                ep,
                "/v1/strategies/params",
                json!({"name": name, "params": m}),
            )
        }
    };
    let v = post(&ep, path, &body)?;
    println!("{v}");
    Ok(0)
}

/// `hft drain N [--undo]`: move a node's engines elsewhere (or take it back).
#[derive(Args, Debug)]
pub struct DrainArgs {
    /// Node id.
    node: u64,
    /// Take the node back into placement.
    #[arg(long)]
    undo: bool,
    #[command(flatten)]
    ep: Endpoint,
}

/// `hft drain`.
pub fn drain(a: DrainArgs) -> Result<u8, Exit> {
    let v = post(
        &a.ep,
        "/v1/nodes/drain",
        &json!({"node": a.node, "drain": !a.undo}),
    )?;
    println!("{v}");
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_statefulset_pod_name_gives_its_ordinal_plus_one() {
        assert_eq!(id_from_hostname("hft-0"), Ok(1));
        assert_eq!(id_from_hostname("prod-hft-12"), Ok(13));
        assert!(id_from_hostname("hft").is_err());
        assert!(id_from_hostname("hft-x").is_err());
        assert!(id_from_hostname("").is_err());
        assert_eq!(parse_node_id("4"), Ok(4));
        assert!(parse_node_id("0").is_err());
        assert!(parse_node_id("-1").is_err());
    }
}
