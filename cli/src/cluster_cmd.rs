//! `hft config get|set|diff|history|rollback`: the cluster configuration in etcd, the
//! same typed and validated schema as the files.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::anyhow;
use clap::Args;
use hft_cluster::coord::{Coord, CoordError};
use serde_json::json;

use crate::Exit;

/// Where the cluster's etcd is.
#[derive(Args, Debug, Clone)]
pub struct EtcdArgs {
    /// etcd client URLs, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:2379")]
    pub etcd: Vec<String>,
    /// Cluster name (the key prefix /hft/<cluster>/).
    #[arg(long, default_value = "hft")]
    pub cluster: String,
}

/// What a `hft config` etcd subcommand does.
#[derive(Debug)]
pub enum ConfigAction {
    /// Print the stored overlay and its revision.
    Get { json: bool },
    /// Validate and store an overlay file.
    Set {
        file: PathBuf,
        expect_revision: Option<i64>,
    },
    /// Show what would change (file) or what changed (revision) against the stored one.
    Diff {
        file: Option<PathBuf>,
        revision: Option<i64>,
    },
    /// List every stored version.
    History { json: bool },
    /// Store an earlier version again.
    Rollback {
        to: i64,
        expect_revision: Option<i64>,
    },
}

fn who() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "hft-cli".into())
}

fn coord_exit(e: CoordError) -> Exit {
    let code = match e {
        CoordError::Invalid(_) | CoordError::Conflict { .. } | CoordError::NoSuchRevision(_) => 2,
        _ => 1,
    };
    Exit(code, anyhow!(e))
}

/// The runtime of a one-shot CLI command.
fn runtime() -> Result<tokio::runtime::Runtime, Exit> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Exit(1, e.into()))
}

/// Connects to the cluster's etcd, retrying for 10 s.
async fn connect(etcd: &EtcdArgs) -> Result<Coord, Exit> {
    Coord::connect(&etcd.etcd, &etcd.cluster, Duration::from_secs(10))
        .await
        .map_err(coord_exit)
}

/// Runs one `hft config` etcd subcommand.
pub fn config(etcd: &EtcdArgs, action: ConfigAction) -> Result<u8, Exit> {
    let rt = runtime()?;
    rt.block_on(async {
        let mut c = connect(etcd).await?;
        match action {
            ConfigAction::Get { json } => {
                let v = c.config_get().await.map_err(coord_exit)?;
                match (v, json) {
                    (None, true) => println!("{}", json!({"revision": 0, "text": null})),
                    (None, false) => println!(
                        "# cluster {}: no configuration stored yet (`hft config set FILE`)",
                        etcd.cluster
                    ),
                    (Some(v), true) => {
                        println!("{}", json!({"revision": v.revision, "text": v.text}))
                    }
                    (Some(v), false) => {
                        println!("# cluster {} revision {}", etcd.cluster, v.revision);
                        print!("{}", v.text);
                    }
                }
            }
            ConfigAction::Set {
                file,
                expect_revision,
            } => {
                let text = std::fs::read_to_string(&file)
                    .map_err(|e| Exit(2, anyhow!("cannot read {}: {e}", file.display())))?;
                let rev = c
                    .config_set(&text, expect_revision, &who())
                    .await
                    .map_err(coord_exit)?;
                println!("stored as revision {rev}");
            }
            ConfigAction::Diff { file, revision } => {
                let current = c.config_get().await.map_err(coord_exit)?;
                let cur_text = current.as_ref().map_or("", |v| v.text.as_str()).to_owned();
                let (name, other) = match (file, revision) {
                    (Some(f), None) => (
                        f.display().to_string(),
                        std::fs::read_to_string(&f)
                            .map_err(|e| Exit(2, anyhow!("cannot read {}: {e}", f.display())))?,
                    ),
                    (None, Some(r)) => (
                        format!("revision {r}"),
                        c.config_at(r).await.map_err(coord_exit)?.text,
                    ),
                    _ => return Err(Exit(2, anyhow!("give a FILE or --revision N"))),
                };
                let rev = current.map_or(0, |v| v.revision);
                print!(
                    "{}",
                    unified_diff(
                        &format!("stored (revision {rev})"),
                        &cur_text,
                        &name,
                        &other
                    )
                );
            }
            ConfigAction::History { json } => {
                let h = c.config_history().await.map_err(coord_exit)?;
                if json {
                    println!("{}", serde_json::to_string(&h).unwrap_or_default());
                } else {
                    println!("{:>10}  {:<16} {:>20}  lines", "revision", "who", "ts_ns");
                    for e in h {
                        println!(
                            "{:>10}  {:<16} {:>20}  {}",
                            e.revision,
                            e.who,
                            e.ts,
                            e.text.lines().count()
                        );
                    }
                }
            }
            ConfigAction::Rollback {
                to,
                expect_revision,
            } => {
                let old = c.config_at(to).await.map_err(coord_exit)?;
                let rev = c
                    .config_set(
                        &old.text,
                        expect_revision,
                        &format!("{} (rollback to {to})", who()),
                    )
                    .await
                    .map_err(coord_exit)?;
                println!("revision {to} stored again as revision {rev}");
            }
        }
        Ok(0)
    })
}

/// `hft token` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum TokenCmd {
    /// Create a token; it is printed once and only its SHA-256 is stored.
    Create {
        /// Whose it is (shown in the audit trail).
        #[arg(long)]
        name: String,
        /// viewer, trader or admin.
        #[arg(long)]
        role: hft_cluster::auth::Role,
        /// Valid for (e.g. 30d, 12h); default: until revoked.
        #[arg(long, value_parser = parse_ttl)]
        ttl: Option<Duration>,
        #[command(flatten)]
        etcd: EtcdArgs,
    },
    /// Tokens (ids, names, roles, expiry; never secrets).
    List {
        #[command(flatten)]
        etcd: EtcdArgs,
    },
    /// Revoke a token by id (nodes stop accepting it within 5 s).
    Revoke {
        /// Token id (the part after `hft_`).
        id: String,
        #[command(flatten)]
        etcd: EtcdArgs,
    },
}

fn parse_ttl(s: &str) -> Result<Duration, String> {
    match s.strip_suffix('d') {
        Some(days) => days
            .parse::<u64>()
            .map(|d| Duration::from_secs(d * 86_400))
            .map_err(|e| format!("{s:?}: {e}")),
        None => crate::parse_duration(s),
    }
}

/// Runs a `hft token` subcommand.
pub fn token(cmd: TokenCmd) -> Result<u8, Exit> {
    let rt = runtime()?;
    rt.block_on(async {
        let etcd = match &cmd {
            TokenCmd::Create { etcd, .. }
            | TokenCmd::List { etcd }
            | TokenCmd::Revoke { etcd, .. } => etcd,
        };
        let mut c = connect(etcd).await?;
        match cmd {
            TokenCmd::Create {
                name, role, ttl, ..
            } => {
                let (token, rec) = hft_cluster::auth::create_token(&mut c, &name, role, ttl)
                    .await
                    .map_err(coord_exit)?;
                eprintln!(
                    "token {} for {} ({}): shown once, keep it safe",
                    rec.id, rec.name, rec.role
                );
                println!("{token}");
            }
            TokenCmd::List { .. } => {
                let recs: Vec<hft_cluster::auth::TokenRecord> =
                    c.list_json("tokens/").await.map_err(coord_exit)?;
                println!("{:<10} {:<16} {:<7} expires_ns", "id", "name", "role");
                for r in recs {
                    println!("{:<10} {:<16} {:<7} {}", r.id, r.name, r.role, r.expires);
                }
            }
            TokenCmd::Revoke { id, .. } => {
                if !c
                    .delete(&format!("tokens/{id}"))
                    .await
                    .map_err(coord_exit)?
                {
                    return Err(Exit(
                        2,
                        anyhow!("no token with id {id:?}; see `hft token list`"),
                    ));
                }
                println!("token {id} revoked");
            }
        }
        Ok(0)
    })
}

/// `hft audit` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum AuditCmd {
    /// The audit trail: every state-changing API call and configuration change.
    List {
        #[command(flatten)]
        etcd: EtcdArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check the hash chain; exit 1 naming the first record that was edited, removed
    /// or reordered.
    Verify {
        #[command(flatten)]
        etcd: EtcdArgs,
    },
}

/// Runs a `hft audit` subcommand.
pub fn audit(cmd: AuditCmd) -> Result<u8, Exit> {
    let rt = runtime()?;
    rt.block_on(async {
        let etcd = match &cmd {
            AuditCmd::List { etcd, .. } | AuditCmd::Verify { etcd } => etcd,
        };
        let mut c = connect(etcd).await?;
        match cmd {
            AuditCmd::List { json, .. } => {
                let trail = c.audit_trail().await.map_err(coord_exit)?;
                if json {
                    println!("{}", serde_json::to_string(&trail).unwrap_or_default());
                } else {
                    for r in trail {
                        println!(
                            "{:>6} {:>20} {:<16} {:<24} {}",
                            r.seq, r.ts, r.who, r.action, r.after
                        );
                    }
                }
                Ok(0)
            }
            AuditCmd::Verify { .. } => match c.audit_verify().await.map_err(coord_exit)? {
                Ok(n) => {
                    println!("ok: {n} audit records, hash chain intact");
                    Ok(0)
                }
                Err(t) => Err(Exit(
                    1,
                    anyhow!("audit trail TAMPERED at record {}: {}", t.seq, t.why),
                )),
            },
        }
    })
}

/// Lists the registered nodes.
pub fn nodes(etcd: &EtcdArgs, json: bool) -> Result<u8, Exit> {
    let rt = runtime()?;
    let nodes = rt.block_on(async { connect(etcd).await?.nodes().await.map_err(coord_exit) })?;
    if json {
        println!("{}", serde_json::to_string(&nodes).unwrap_or_default());
    } else {
        println!("{:>6}  {:<22} {:<22}", "node", "admin", "ledger");
        for n in nodes {
            println!(
                "{:>6}  {:<22} {:<22}",
                n.id,
                n.admin,
                n.ledger.as_deref().unwrap_or("-")
            );
        }
    }
    Ok(0)
}

/// A unified diff of two texts by lines.
fn unified_diff(a_name: &str, a: &str, b_name: &str, b: &str) -> String {
    let diff = similar::TextDiff::from_lines(a, b);
    diff.unified_diff()
        .context_radius(3)
        .header(a_name, b_name)
        .to_string()
}

/// A session's configuration taken from etcd, and the reloads that follow it.
pub struct Followed {
    /// The configuration at start.
    pub config: hft_config::Config,
    /// Its etcd revision (0: none stored, the embedded default).
    pub revision: i64,
    rx: std::sync::Mutex<Option<std::sync::mpsc::Receiver<hft_cluster::reload::Reload>>>,
    status: std::sync::Arc<std::sync::Mutex<hft_cluster::reload::ReloadStatus>>,
}

impl Followed {
    /// The reload channel for the live runtime (once).
    pub fn take_receiver(&self) -> std::sync::mpsc::Receiver<hft_cluster::reload::Reload> {
        let taken = self.rx.lock().ok().and_then(|mut r| r.take());
        taken.unwrap_or_else(|| std::sync::mpsc::channel().1)
    }

    /// The reload state (`hft status` shows it).
    pub fn status(&self) -> std::sync::Arc<std::sync::Mutex<hft_cluster::reload::ReloadStatus>> {
        self.status.clone()
    }

    /// The status line's configuration part: the revision every engine runs, and the
    /// last refused change.
    pub fn describe(&self, view: &hft_cluster::live::LiveView) -> String {
        let live = view
            .engines
            .iter()
            .map(|e| {
                e.live
                    .config_revision
                    .load(std::sync::atomic::Ordering::Acquire)
            })
            .min()
            .unwrap_or(0);
        let live = if live == 0 {
            self.revision.max(0) as u64
        } else {
            live
        };
        let mut s = format!("  config r{live}");
        if let Some((rev, why)) = self.status.lock().ok().and_then(|s| s.rejected.clone()) {
            s.push_str(&format!(" (refused r{rev}: {why})"));
        }
        s
    }
}

/// Reads the cluster configuration from etcd (the embedded default when none is
/// stored) and follows it from a background thread.
pub fn follow_config(
    endpoints: &[String],
    cluster: &str,
    env: Vec<(String, String)>,
) -> Result<Followed, Exit> {
    let rt = runtime()?;
    let (coord, stored) = rt
        .block_on(async {
            let c = Coord::connect(endpoints, cluster, Duration::from_secs(30)).await?;
            let v = hft_cluster::coord::retry_transient(Duration::from_secs(30), || {
                let mut c = c.clone();
                async move { c.config_get().await }
            })
            .await?;
            Ok::<_, CoordError>((c, v))
        })
        .map_err(coord_exit)?;
    let key = coord.key("config");
    let (config, revision) = match &stored {
        Some(v) => (
            hft_config::load_str(&key, &v.text, env.clone()).map_err(|e| Exit(2, anyhow!(e)))?,
            v.revision,
        ),
        None => (
            hft_config::load(None, env.clone()).map_err(|e| Exit(2, anyhow!(e)))?,
            0,
        ),
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let status = std::sync::Arc::new(std::sync::Mutex::new(
        hft_cluster::reload::ReloadStatus::default(),
    ));
    let (st, cfg) = (status.clone(), config.clone());
    std::thread::Builder::new()
        .name("config-follow".into())
        .spawn(move || {
            rt.block_on(hft_cluster::reload::follow(
                coord, revision, cfg, env, tx, st,
            ));
        })
        .map_err(|e| Exit(1, e.into()))?;
    Ok(Followed {
        config,
        revision,
        rx: std::sync::Mutex::new(Some(rx)),
        status,
    })
}

/// `hft bench config`: a live session following its configuration in a local etcd;
/// each trial stores a new risk limit and times until every engine runs it.
pub fn bench_config(trials: usize, etcd_bin: &std::path::Path) -> Result<serde_json::Value, Exit> {
    use std::sync::atomic::Ordering;
    let dir = std::env::temp_dir().join(format!("hft-bench-config-{}", std::process::id()));
    let etcd = hft_cluster::local_etcd::LocalEtcd::start(etcd_bin, &dir, 1)
        .map_err(|e| Exit(1, anyhow!("{e}")))?;
    let cluster = "bench";
    let base = hft_config::load(None, std::iter::empty()).map_err(|e| Exit(1, anyhow!(e)))?;
    let rt = runtime()?;
    let mut coord = rt
        .block_on(Coord::connect(
            &etcd.clients,
            cluster,
            Duration::from_secs(30),
        ))
        .map_err(coord_exit)?;
    rt.block_on(coord.config_set(&base.to_toml_string(), Some(0), "bench"))
        .map_err(coord_exit)?;
    let followed = std::sync::Arc::new(follow_config(&etcd.clients, cluster, Vec::new())?);
    let config = followed.config.clone();
    let parts = hft_cluster::node::build(&config, config.simulator.seed, 0);
    let shutdown = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let view: std::sync::Arc<std::sync::Mutex<Option<hft_cluster::live::LiveView>>> =
        std::sync::Arc::default();
    let opts = hft_cluster::live::LiveOptions {
        duration: None,
        shutdown: shutdown.clone(),
        ring_capacity: config.engine.ring_capacity,
        timer_interval: Duration::from_millis(config.engine.timer_interval_ms),
        status_interval: Duration::from_millis(10),
        idle: hft_cluster::ring::IdleMode::Park,
        seed: config.simulator.seed,
        booking: None,
        reload: Some(followed.take_receiver()),
    };
    let v2 = view.clone();
    let session = std::thread::spawn(move || {
        hft_cluster::live::run(parts, opts, move |v, _| {
            if let Ok(mut slot) = v2.lock()
                && slot.is_none()
            {
                *slot = Some(v.clone());
            }
        })
    });
    let end = std::time::Instant::now() + Duration::from_secs(20);
    let view = loop {
        if let Some(v) = view.lock().ok().and_then(|v| v.clone()) {
            break v;
        }
        if std::time::Instant::now() > end {
            shutdown.store(true, Ordering::SeqCst);
            return Err(Exit(1, anyhow!("the session did not start")));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut hist = hdrhistogram::Histogram::<u64>::new(3).map_err(|e| Exit(1, e.into()))?;
    let mut next = config.clone();
    for t in 0..trials {
        // Alternate one strategy's order-size limit: a change every engine must apply.
        next.strategies[0].risk.max_order_qty = hft_core::Qty(1_000 + (t % 2) as i64);
        let text = next.to_toml_string();
        let t0 = std::time::Instant::now();
        let rev = rt
            .block_on(coord.config_set(&text, None, "bench"))
            .map_err(coord_exit)? as u64;
        loop {
            let applied = view
                .engines
                .iter()
                .all(|e| e.live.config_revision.load(Ordering::Acquire) >= rev);
            if applied {
                break;
            }
            if t0.elapsed() > Duration::from_secs(10) {
                shutdown.store(true, Ordering::SeqCst);
                return Err(Exit(1, anyhow!("revision {rev} not live after 10 s")));
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        let _ = hist.record(t0.elapsed().as_micros() as u64);
    }
    shutdown.store(true, Ordering::SeqCst);
    let _ = session.join();
    drop(etcd);
    let ms = |q: f64| (hist.value_at_quantile(q) as f64 / 100.0).round() / 10.0;
    Ok(serde_json::json!({
        "bench": "config",
        "trials": trials,
        "engines": view.engines.len(),
        "propagation_p50_ms": ms(0.5),
        "propagation_p99_ms": ms(0.99),
        "propagation_max_ms": ms(1.0),
    }))
}
