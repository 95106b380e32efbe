//! `hft`: run a trading node, benchmark its hot path, check its configuration.
//!
//! Exit codes: 0 ok, 1 runtime failure, 2 bad input or usage, 3 risk halt (kill switch).

mod chaos_cmd;
mod cluster_cmd;
mod ledger_bench;
mod ledger_cmd;
mod market;
mod netns;
mod venue_cmd;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use hft_cluster::SessionReport;
use hft_cluster::live::{LiveOptions, LiveView};
use hft_cluster::ring::IdleMode;
use hft_config::{Config, ConfigError};
use serde_json::json;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "hft",
    version,
    about = "Actor-based high-frequency trading platform"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a single-node trading session (embedded default config and the built-in simulator).
    Run(RunArgs),
    /// Inspect and validate configuration.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Built-in benchmarks of the hot path.
    #[command(subcommand)]
    Bench(BenchCmd),
    /// Market data: import into the Parquet store, inspect.
    #[command(subcommand)]
    Data(DataCmd),
    /// Live venue feeds.
    #[command(subcommand)]
    Feed(FeedCmd),
    /// Backtest on recorded data (a store or any file `hft data import` reads): the
    /// touch maker on every instrument, 100 µs order and response latency, risk-averse
    /// queue positions; writes metrics.json, fills.csv, orders.csv and report.html.
    Backtest(BacktestArgs),
    /// Run a cluster node: its ledger member (Raft over TCP with the other members), its
    /// admin API and, with --venue, the engines placement assigns to it.
    Node(Box<ledger_cmd::NodeArgs>),
    /// Fault injection against a trading cluster of real processes, checked against
    /// the venue's record: `hft chaos run --seed S --schedule short|long`.
    #[command(subcommand)]
    Chaos(ChaosCmd),
    /// Run the simulated venue as a process the nodes of a cluster trade with (market
    /// data and order entry over TCP; refuses sessions and orders of a stale epoch).
    Venue(venue_cmd::VenueArgs),
    /// Bearer tokens of the admin API (roles viewer < trader < admin), kept in etcd.
    #[command(subcommand)]
    Token(cluster_cmd::TokenCmd),
    /// Exit 0 if the URL answers 200: the container HEALTHCHECK (the image has no shell
    /// or curl). The default asks the metrics endpoint, which `hft run --metrics-addr`
    /// and a node with `[telemetry] metrics_addr` serve; a node's admin API has
    /// `/healthz/live` and `/healthz/ready`.
    Health {
        /// What to ask.
        #[arg(long, default_value = "http://127.0.0.1:9100/metrics")]
        url: String,
    },
    /// Print a shell completion script: `hft completions bash > /etc/bash_completion.d/hft`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// A node's status (and its ledger member's) from its admin API.
    Status(ledger_cmd::Endpoint),
    /// Positions booked in the ledger.
    Positions(ledger_cmd::Endpoint),
    /// Open orders of the engines on a node.
    Orders(ledger_cmd::Endpoint),
    /// Which node runs which engine, under which epoch.
    Assignments(ledger_cmd::Endpoint),
    /// Enable, disable or re-parameterize a strategy cluster-wide.
    #[command(subcommand)]
    Strategy(ledger_cmd::StrategyCmd),
    /// Drain a node: placement moves its engines to other nodes (--undo takes it back).
    Drain(ledger_cmd::DrainArgs),
    /// Engage (trader) or release (admin) a kill switch: global, --strategy S or --venue V.
    Kill(ledger_cmd::KillArgs),
    /// The tamper-evident audit trail (hash-chained, in etcd).
    #[command(subcommand)]
    Audit(cluster_cmd::AuditCmd),
    /// Nodes registered in the cluster's etcd (each under its lease).
    Nodes {
        #[command(flatten)]
        etcd: cluster_cmd::EtcdArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The replicated fill ledger: status, positions, fills, verify, repair, members.
    #[command(subcommand)]
    Ledger(ledger_cmd::LedgerCmd),
    /// Fits the ML strategy's model on recorded data: features sampled as the strategy
    /// computes them, labelled by the mid one horizon later, checked walk-forward
    /// (out of sample, fold by fold), then fitted on everything and written as JSON
    /// for `[strategies.ml] model = FILE`.
    Train(TrainArgs),
}

/// `hft chaos` subcommands.
#[derive(Subcommand, Debug)]
enum ChaosCmd {
    /// A seeded schedule of kills, pauses, partitions and kill switches; prints the
    /// faults, the invariants checked and any violation; exit 1 on a violation.
    Run(chaos_cmd::ChaosArgs),
}

#[derive(Args, Debug)]
struct TrainArgs {
    /// Recorded data (a store or any file `hft data import` reads).
    #[arg(long)]
    data: PathBuf,
    /// Model file to write.
    #[arg(long)]
    out: PathBuf,
    /// Symbol to train on (default: the data's first).
    #[arg(long)]
    symbol: Option<String>,
    /// Label horizon in ms (the strategy's `horizon_ms`).
    #[arg(long, default_value_t = 1000)]
    horizon_ms: u64,
    /// Sample period in ms.
    #[arg(long, default_value_t = 250)]
    sample_ms: u64,
    /// Walk-forward folds.
    #[arg(long, default_value_t = 4)]
    folds: usize,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
struct BacktestArgs {
    #[command(subcommand)]
    cmd: Option<BacktestCmd>,
    /// Recorded data.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Directory for the report files.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Configuration overlay: its strategies trade the data's instruments of the same
    /// symbol (default: the touch maker on every instrument).
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum BacktestCmd {
    /// Runs two configurations on the same data and compares their PnL interval by
    /// interval: mean difference, a paired-bootstrap 95% interval and a verdict.
    Ab {
        /// Configuration A.
        a: PathBuf,
        /// Configuration B.
        b: PathBuf,
        /// Recorded data.
        #[arg(long)]
        data: PathBuf,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Replays the data through stress scenarios (price gap of -10% and +10%, liquidity
    /// drought, 50 ms latency spike, venue outage) and reports what the risk layer did.
    Stress {
        /// Recorded data.
        #[arg(long)]
        data: PathBuf,
        /// Configuration (default: the touch maker on every instrument).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Runs a configuration over a grid of parameter values in parallel (the data is
    /// loaded once; each point keeps only its metrics) and prints the points sorted
    /// by a metric. A point whose configuration is refused is reported, not fatal.
    Sweep {
        /// Base configuration.
        #[arg(long)]
        config: PathBuf,
        /// Recorded data.
        #[arg(long)]
        data: PathBuf,
        /// `KEY=V1,V2,...` with KEY a config path, e.g.
        /// `strategies.0.market_making.risk_aversion=0.05,0.1,0.2`; repeat for a grid.
        #[arg(long = "param", required = true)]
        params: Vec<String>,
        /// Metric to sort by: pnl, sharpe, sortino, fills, fill_ratio (best first, high)
        /// or max_drawdown (best first, low).
        #[arg(long, default_value = "pnl")]
        sort: String,
        /// Parallel runs (default: the CPUs).
        #[arg(long)]
        jobs: Option<usize>,
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum FeedCmd {
    /// Binance public market data (diff depth with snapshot sync, bookTicker, trades):
    /// prints the feed's status, optionally records it into a store and runs the
    /// configured strategies on it through the paper venue.
    Binance(market::FeedArgs),
}

#[derive(Subcommand, Debug)]
enum DataCmd {
    /// Import raw Binance captures or Databento DBN files into a store.
    Import {
        /// Files to import.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Store root directory.
        #[arg(long)]
        out: PathBuf,
        /// Venue name (default: from the file: binance-spot/-usdm/-coinm, databento-<dataset>).
        #[arg(long)]
        venue: Option<String>,
        /// Skip bad messages (counted) instead of stopping at the first.
        #[arg(long)]
        skip_bad: bool,
        /// Configuration overlay whose `[[instruments]]` name the symbols' price and
        /// quantity scales; other symbols are stored at 8 decimals.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Stream a store's events in time order (several instruments merged), as fast as
    /// possible or at the recorded pace, and report what was replayed.
    Replay {
        /// Store root.
        store: PathBuf,
        /// Only this venue.
        #[arg(long)]
        venue: Option<String>,
        /// Only these symbols (comma separated).
        #[arg(long, value_delimiter = ',')]
        symbols: Vec<String>,
        /// First exchange time, ns since the epoch.
        #[arg(long, default_value_t = 0)]
        from_ns: u64,
        /// Last exchange time, ns since the epoch.
        #[arg(long, default_value_t = u64::MAX)]
        to_ns: u64,
        /// Sleep between events so the replay takes as long as the recording did.
        #[arg(long)]
        recorded_speed: bool,
        /// Run the configured strategies on the data through the paper venue (orders
        /// fill against the recorded book and trades) and print the session report.
        #[arg(long)]
        paper: bool,
        /// Configuration overlay (instruments and strategies) for --paper.
        #[arg(long)]
        config: Option<PathBuf>,
        /// With --paper: write the session summary as JSON to this file.
        #[arg(long)]
        summary_json: Option<PathBuf>,
        /// Print the row count and the process's peak resident memory at the end.
        #[arg(long)]
        report_memory: bool,
    },
    /// Summarise a store or a data file: rows, time range, kinds, crossed-book moments.
    Inspect {
        /// Store root or one .parquet file.
        path: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Stop after this long (e.g. 30s, 500ms, 5m); default: until Ctrl-C / SIGTERM.
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Simulator seed (overrides simulator.seed).
    #[arg(long)]
    seed: Option<u64>,
    /// Configuration overlay file (TOML), on top of the embedded default.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Write the session summary as JSON to this file.
    #[arg(long)]
    summary_json: Option<PathBuf>,
    /// Run on a simulated clock in one thread: the same seed gives the same fills.
    #[arg(long)]
    deterministic: bool,
    /// Log format (overrides telemetry.log_format).
    #[arg(long, value_enum)]
    log_format: Option<LogFormatArg>,
    /// Serve Prometheus metrics on this address (overrides telemetry.metrics_addr).
    #[arg(long)]
    metrics_addr: Option<std::net::SocketAddr>,
    /// Take the configuration overlay from the cluster's etcd (instead of --config) and
    /// follow it: strategy parameters and risk limits reload into the running engines.
    #[arg(long, value_delimiter = ',', conflicts_with = "config")]
    etcd: Vec<String>,
    /// Cluster name in etcd.
    #[arg(long, default_value = "hft")]
    cluster: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum IdleArg {
    Park,
    Spin,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormatArg {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum ConfigCmd {
    /// Validate an overlay file; exit 2 with file:line, field and a hint if it is wrong.
    Check {
        /// The file.
        file: PathBuf,
    },
    /// Print the effective configuration (default <- --config <- HFT_* env).
    Show {
        /// Configuration overlay file.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Print the cluster's configuration overlay stored in etcd, with its revision.
    Get {
        #[command(flatten)]
        etcd: cluster_cmd::EtcdArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Validate an overlay file and store it in etcd as the cluster's configuration;
    /// with --expect-revision it is stored only if nobody changed it since.
    Set {
        /// The overlay file (the same schema as --config files).
        file: PathBuf,
        /// Store only if the stored configuration is at this revision (0: none yet).
        #[arg(long)]
        expect_revision: Option<i64>,
        #[command(flatten)]
        etcd: cluster_cmd::EtcdArgs,
    },
    /// Diff the stored configuration against a file or an earlier revision.
    Diff {
        /// An overlay file.
        file: Option<PathBuf>,
        /// An earlier revision (see `hft config history`).
        #[arg(long, conflicts_with = "file")]
        revision: Option<i64>,
        #[command(flatten)]
        etcd: cluster_cmd::EtcdArgs,
    },
    /// Every stored version: revision, who, when.
    History {
        #[command(flatten)]
        etcd: cluster_cmd::EtcdArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Store an earlier revision again (validated like any change).
    Rollback {
        /// The revision to restore.
        #[arg(long)]
        to: i64,
        /// Store only if the stored configuration is at this revision.
        #[arg(long)]
        expect_revision: Option<i64>,
        #[command(flatten)]
        etcd: cluster_cmd::EtcdArgs,
    },
}

#[derive(Subcommand, Debug)]
enum BenchCmd {
    /// The admin API's effect on trading: one live session with the API in front of it
    /// (tokens checked against a local etcd); phases alternate without and with a
    /// steady authenticated request load, and the engine's per-second tick-to-order p99
    /// is compared between them.
    AdminLoad {
        /// Phases (half of them loaded).
        #[arg(long, default_value_t = 8)]
        phases: usize,
        /// Seconds per phase.
        #[arg(long, default_value_t = 5)]
        phase_s: u64,
        /// Requests per second while loaded.
        #[arg(long, default_value_t = 200)]
        rate: u32,
        /// The etcd binary (Debian: etcd-server).
        #[arg(long, default_value = "etcd")]
        etcd_bin: PathBuf,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Failover with real processes: a venue, a local etcd and three nodes; each trial
    /// kills -9 the node running an engine and times until the venue accepts an order
    /// from the engine's new owner; then checks the ledger against the venue's fills.
    Failover {
        /// Kills timed.
        #[arg(long, default_value_t = 20)]
        trials: usize,
        /// Keep the processes' logs and data (printed at the end) even on success.
        #[arg(long)]
        keep: bool,
        /// kill (SIGKILL) or pause (SIGSTOP past the lease, then SIGCONT).
        #[arg(long, value_enum, default_value = "kill")]
        fault: venue_cmd::Fault,
        /// The etcd binary (Debian: etcd-server).
        #[arg(long, default_value = "etcd")]
        etcd_bin: PathBuf,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Configuration propagation: a live session follows its configuration in a local
    /// etcd; each trial stores a new risk limit and times until every engine runs it.
    Config {
        /// Changes timed.
        #[arg(long, default_value_t = 50)]
        trials: usize,
        /// The etcd binary (Debian: etcd-server).
        #[arg(long, default_value = "etcd")]
        etcd_bin: PathBuf,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The replicated ledger (3 members on loopback, fsync on) against a 3-member etcd
    /// started in the same run: single-fill commit latency, throughput under
    /// concurrent writers, and recovery of a large ledger from WAL + snapshot.
    Ledger {
        /// Concurrent writers in the throughput phase (both systems).
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Fills per ledger proposal (and per etcd transaction in the extra figure).
        #[arg(long, default_value_t = 64)]
        batch: usize,
        /// Sequential single-fill writes timed for latency.
        #[arg(long, default_value_t = 1000)]
        samples: usize,
        /// Seconds of each throughput phase.
        #[arg(long, default_value_t = 5)]
        secs: u64,
        /// Fills in the recovery measurement.
        #[arg(long, default_value_t = 1_000_000)]
        recovery_fills: u64,
        /// The etcd binary (Debian: etcd-server).
        #[arg(long, default_value = "etcd")]
        etcd_bin: PathBuf,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Book update -> strategy -> risk -> order encode on one thread.
    CoreLoop {
        /// Events to process.
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Decode + normalise of a raw capture against parsing it into serde_json::Value.
    FeedDecode {
        /// A raw capture (`<local_ts_ns> <json>` lines, gzip or plain).
        #[arg(long)]
        data: PathBuf,
        /// Timed rounds over the whole capture (best of them is reported).
        #[arg(long, default_value_t = 5)]
        rounds: u32,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Replay of a store far larger than memory: writes a synthetic store of the given
    /// size (unless the directory holds one), replays it in a child process and reports
    /// the child's peak resident memory.
    LongReplay {
        /// Store size to write, MiB (10x the 256 MiB budget by default).
        #[arg(long, default_value_t = 2_600)]
        size_mib: u64,
        /// Store directory (kept, so later runs skip the writing); default: a temporary
        /// directory, removed afterwards.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The backtester's run loop on recorded data (the touch maker, as the peer
    /// comparison runs it): input messages per second, loading reported separately.
    Backtest {
        /// Recorded data (e.g. a raw Binance capture).
        #[arg(long)]
        data: PathBuf,
        /// Timed runs (the best is reported).
        #[arg(long, default_value_t = 3)]
        rounds: u32,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// L2 book updates from recorded deltas (for callgrind: marginal cost per update).
    BookUpdate {
        /// Updates to apply.
        #[arg(long, default_value_t = 1_000_000)]
        updates: u64,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Replay from the Parquet store against replay from the raw capture, and import.
    Store {
        /// A raw Binance capture; default: one recorded from the simulator.
        #[arg(long)]
        data: Option<PathBuf>,
        /// Timed replay rounds (best of them is reported).
        #[arg(long, default_value_t = 3)]
        rounds: u32,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The market simulator alone: flow generation, matching and market data.
    Simulator {
        /// Order-flow events to simulate.
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Feed -> engine thread -> venue session latency, against a bare thread handoff.
    TickToOrder {
        /// Latency samples to collect.
        #[arg(long, default_value_t = 10_000)]
        samples: u64,
        /// Give up after this long.
        #[arg(long, value_parser = parse_duration, default_value = "60s")]
        max_time: Duration,
        /// How idle threads wait: park (what `hft run` does) or spin (a core per thread).
        #[arg(long, value_enum, default_value_t = IdleArg::Park)]
        idle: IdleArg,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// Parses `10s`, `250ms`, `5m`, `1h`, `100us` or a bare number of seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let v: f64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a duration; use e.g. 10s, 250ms, 5m"))?;
    let secs = match unit {
        "" | "s" => v,
        "ms" => v / 1e3,
        "us" => v / 1e6,
        "m" => v * 60.0,
        "h" => v * 3600.0,
        _ => return Err(format!("unknown unit '{unit}' in '{s}'; use ms, s, m or h")),
    };
    if !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
        return Err(format!("'{s}' is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A failure with its exit code.
struct Exit(u8, anyhow::Error);

impl From<anyhow::Error> for Exit {
    fn from(e: anyhow::Error) -> Self {
        Exit(1, e)
    }
}

fn bad_config(e: ConfigError) -> Exit {
    Exit(2, anyhow::anyhow!("{e}"))
}

/// Resolves on SIGINT or SIGTERM: how the long-running commands end.
pub(crate) async fn until_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async {
            match term.as_mut() {
                Some(t) => {
                    t.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        } => {}
    }
}

pub(crate) fn env_vars() -> impl Iterator<Item = (String, String)> {
    std::env::vars_os().map(|(k, v)| {
        (
            k.to_string_lossy().into_owned(),
            v.to_string_lossy().into_owned(),
        )
    })
}

fn load_config(path: Option<&Path>) -> Result<Config, Exit> {
    hft_config::load(path, env_vars()).map_err(bad_config)
}

fn main() -> ExitCode {
    // Rust ignores SIGPIPE, so printing into a closed pipe (`hft backtest | head`)
    // would panic; the default action ends the process quietly, as Unix tools do.
    #[cfg(unix)]
    // SAFETY: called first thing, before any thread exists; it only resets the
    // disposition of one signal.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    // The servers, and the commands that drive them, write to peers' sockets: a peer
    // that went away must be an error on that socket, never the end of the process
    // (hyper writes with writev, which raises SIGPIPE on a closed connection).
    #[cfg(unix)]
    if matches!(
        cli.command,
        Command::Node(_) | Command::Venue(_) | Command::Chaos(_) | Command::Bench(_)
    ) {
        // SAFETY: before the command starts any thread; resets one signal's disposition.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        }
    }
    match dispatch(cli) {
        Ok(code) => ExitCode::from(code),
        Err(Exit(code, e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(code)
        }
    }
}

fn health(url: &str) -> Result<u8, Exit> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(std::time::Duration::from_secs(3)))
        .build()
        .into();
    match agent.get(url).call() {
        Ok(_) => Ok(0),
        Err(e) => Err(Exit(1, anyhow::anyhow!("{url}: {e}"))),
    }
}

fn dispatch(cli: Cli) -> Result<u8, Exit> {
    match cli.command {
        Command::Run(args) => run(args),
        Command::Config(ConfigCmd::Check { file }) => {
            hft_config::check_file(&file).map_err(bad_config)?;
            println!("{}: ok", file.display());
            Ok(0)
        }
        Command::Config(ConfigCmd::Show { config }) => {
            let c = load_config(config.as_deref())?;
            print!("{}", c.to_toml_string());
            Ok(0)
        }
        Command::Config(ConfigCmd::Get { etcd, json }) => {
            cluster_cmd::config(&etcd, cluster_cmd::ConfigAction::Get { json })
        }
        Command::Config(ConfigCmd::Set {
            file,
            expect_revision,
            etcd,
        }) => cluster_cmd::config(
            &etcd,
            cluster_cmd::ConfigAction::Set {
                file,
                expect_revision,
            },
        ),
        Command::Config(ConfigCmd::Diff {
            file,
            revision,
            etcd,
        }) => cluster_cmd::config(&etcd, cluster_cmd::ConfigAction::Diff { file, revision }),
        Command::Config(ConfigCmd::History { etcd, json }) => {
            cluster_cmd::config(&etcd, cluster_cmd::ConfigAction::History { json })
        }
        Command::Config(ConfigCmd::Rollback {
            to,
            expect_revision,
            etcd,
        }) => cluster_cmd::config(
            &etcd,
            cluster_cmd::ConfigAction::Rollback {
                to,
                expect_revision,
            },
        ),
        Command::Bench(b) => bench(b),
        Command::Data(d) => data(d),
        Command::Train(t) => train(&t),
        Command::Node(n) => ledger_cmd::node(*n),
        Command::Venue(v) => venue_cmd::venue(v),
        Command::Chaos(ChaosCmd::Run(a)) => chaos_cmd::run(a),
        Command::Health { url } => health(&url),
        Command::Nodes { etcd, json } => cluster_cmd::nodes(&etcd, json),
        Command::Token(t) => cluster_cmd::token(t),
        Command::Completions { shell } => {
            use clap::CommandFactory as _;
            clap_complete::generate(shell, &mut Cli::command(), "hft", &mut std::io::stdout());
            Ok(0)
        }
        Command::Status(ep) => ledger_cmd::status(ep),
        Command::Positions(ep) => ledger_cmd::positions(ep),
        Command::Kill(k) => ledger_cmd::kill(k),
        Command::Orders(ep) => ledger_cmd::orders(ep),
        Command::Assignments(ep) => ledger_cmd::assignments(ep),
        Command::Strategy(c) => ledger_cmd::strategy(c),
        Command::Drain(d) => ledger_cmd::drain(d),
        Command::Audit(a) => cluster_cmd::audit(a),
        Command::Ledger(l) => ledger_cmd::ledger(l),
        Command::Backtest(b) => match b.cmd {
            Some(BacktestCmd::Ab { a, b, data, json }) => backtest_ab(&a, &b, &data, json),
            Some(BacktestCmd::Stress { data, config, json }) => {
                backtest_stress(&data, config.as_deref(), json)
            }
            Some(BacktestCmd::Sweep {
                config,
                data,
                params,
                sort,
                jobs,
                json,
            }) => backtest_sweep(&config, &data, &params, &sort, jobs, json),
            None => {
                let Some(data) = b.data else {
                    return Err(Exit(
                        2,
                        anyhow::anyhow!(
                            "name the data: hft backtest --data PATH (a store or a file hft data import reads)"
                        ),
                    ));
                };
                backtest(&data, b.report.as_deref(), b.config.as_deref())
            }
        },
        Command::Feed(FeedCmd::Binance(args)) => market::feed_binance(args),
    }
}

fn run(args: RunArgs) -> Result<u8, Exit> {
    let followed = if args.etcd.is_empty() {
        None
    } else {
        Some(cluster_cmd::follow_config(
            &args.etcd,
            &args.cluster,
            env_vars().collect(),
        )?)
    };
    let config = match &followed {
        Some(f) => f.config.clone(),
        None => load_config(args.config.as_deref())?,
    };
    let json_logs = match args.log_format {
        Some(LogFormatArg::Json) => true,
        Some(LogFormatArg::Text) => false,
        None => config.telemetry.log_format == hft_config::LogFormat::Json,
    };
    hft_telemetry::init_tracing(json_logs, &config.telemetry.log_level);
    std::panic::set_hook(Box::new(|info| {
        tracing::error!(panic = %info, "panic");
    }));
    let metrics_addr = args.metrics_addr.or(config.telemetry.metrics_addr);
    hft_telemetry::install_metrics(metrics_addr).map_err(|e| Exit(1, e.into()))?;
    let seed = args.seed.unwrap_or(config.simulator.seed);
    tracing::info!(
        node = %config.node.name,
        seed,
        strategies = config.strategies.iter().filter(|s| s.enabled).count(),
        instruments = config.instruments.len(),
        deterministic = args.deterministic,
        "starting session"
    );
    let report = if args.deterministic {
        let d = args.duration.unwrap_or(Duration::from_secs(60));
        hft_cluster::run_deterministic(&config, seed, d)
    } else {
        let parts = hft_cluster::node::build(&config, seed, 0);
        let ledger = if config.ledger.enabled {
            Some(
                hft_cluster::booking::SessionLedger::start(
                    config.ledger.dir.as_deref(),
                    &parts.specs,
                )
                .map_err(|e| Exit(1, anyhow::anyhow!(e)))?,
            )
        } else {
            None
        };
        // The simulator is a new venue every session and numbers its executions from
        // 1: the session's start time keeps (venue, exec id) unique in a ledger kept
        // across sessions.
        let venue = format!(
            "{}@{}",
            hft_exec::SIM_VENUE,
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos()
        );
        let booking = ledger.as_ref().map(|l| {
            hft_cluster::booking::Booking::new(
                l.ledger.clone(),
                &config.ledger.account,
                &venue,
                parts.slots.iter().map(|s| s.name.clone()).collect(),
                parts.specs.clone(),
            )
        });
        let opts = LiveOptions {
            duration: args.duration,
            shutdown: Arc::new(AtomicBool::new(false)),
            ring_capacity: config.engine.ring_capacity,
            timer_interval: Duration::from_millis(config.engine.timer_interval_ms),
            status_interval: Duration::from_millis(config.telemetry.status_interval_ms),
            idle: IdleMode::Park,
            seed,
            booking,
            reload: followed.as_ref().map(|f| f.take_receiver()),
        };
        let tty = std::io::stderr().is_terminal() && !json_logs;
        let mut last_events = 0u64;
        let mut last_t = Duration::ZERO;
        let report = hft_cluster::live::run(parts, opts, |view, elapsed| {
            let mut line = status_line(view, elapsed, &mut last_events, &mut last_t);
            if let Some(f) = &followed {
                line.push_str(&f.describe(view));
            }
            if tty {
                eprint!("\r\x1b[2K{line}");
            } else {
                tracing::info!(status = %line, "status");
            }
        })
        .map_err(|e| Exit(1, anyhow::anyhow!(e)))?;
        if tty {
            eprintln!();
        }
        let mut report = report;
        if let (Some(l), Some(summary)) = (&ledger, report.ledger.as_mut()) {
            if !l.temporary {
                summary.dir = l.dir.display().to_string();
            }
        }
        report
    };
    finish_session(&config, &report, args.summary_json.as_deref())?;
    Ok(if report.killed { 3 } else { 0 })
}

/// The engines of a backtest: the config's strategies on the data's instruments of
/// the same symbol, or the touch maker on every instrument without a config.
fn backtest_engines(
    config: Option<&Path>,
    data_specs: &[hft_core::InstrumentSpec],
) -> Result<(Vec<hft_core::InstrumentSpec>, Vec<hft_exec::Engine>), Exit> {
    let Some(path) = config else {
        return Ok((data_specs.to_vec(), hft_backtest::touch_engines(data_specs)));
    };
    engines_for(&load_config(Some(path))?, path, data_specs)
}

/// The engines of `config`'s strategies on the data's instruments of the same symbol.
fn engines_for(
    config: &Config,
    path: &Path,
    data_specs: &[hft_core::InstrumentSpec],
) -> Result<(Vec<hft_core::InstrumentSpec>, Vec<hft_exec::Engine>), Exit> {
    let scales: Vec<(String, u8, u8)> = data_specs
        .iter()
        .map(|s| (s.symbol.clone(), s.price_scale, s.qty_scale))
        .collect();
    let mut specs = market::data_specs(config, &scales)?;
    // Instruments the config does not know keep the grid the data shows.
    for (s, d) in specs.iter_mut().zip(data_specs) {
        if !config.instruments.iter().any(|c| c.spec.symbol == s.symbol) {
            *s = d.clone();
        }
    }
    let (slots, _kill) =
        hft_cluster::node::build_slots(config, &specs, market::mapper(config, &specs));
    if slots.is_empty() {
        return Err(Exit(
            2,
            anyhow::anyhow!(
                "no enabled strategy of {} trades an instrument of the data ({:?}); configure an [[instruments]] entry with the data's symbol",
                path.display(),
                scales.iter().map(|s| &s.0).collect::<Vec<_>>()
            ),
        ));
    }
    struct Null;
    impl hft_exec::OrderSink for Null {
        fn send(&mut self, _: &hft_core::OrderCommand) -> bool {
            true
        }
    }
    let engines = slots
        .into_iter()
        .map(|mut s| {
            let _ = s.start(0, &mut Null);
            s.engine
        })
        .collect();
    Ok((specs, engines))
}

/// The config's instruments: data files are imported at their scales.
fn config_instruments(config: Option<&Path>) -> Result<Vec<hft_core::InstrumentSpec>, Exit> {
    Ok(match config {
        Some(p) => load_config(Some(p))?
            .instruments
            .into_iter()
            .map(|i| i.spec)
            .collect(),
        None => Vec::new(),
    })
}

/// Loads backtest data, importing files at the scales of the config's instruments.
fn backtest_data(data: &Path, config: Option<&Path>) -> Result<hft_backtest::Loaded, Exit> {
    hft_backtest::load_with(data, &config_instruments(config)?)
        .map_err(|e| Exit(2, anyhow::anyhow!("{e}")))
}

fn backtest_stress(data: &Path, config: Option<&Path>, json_out: bool) -> Result<u8, Exit> {
    use hft_backtest::stress::Scenario;
    let loaded = backtest_data(data, config)?;
    let scenarios = [
        None,
        Some(Scenario::PriceGap(-1_000)),
        Some(Scenario::PriceGap(1_000)),
        Some(Scenario::LiquidityDrought(0.1)),
        Some(Scenario::LatencySpike(50_000_000)),
        Some(Scenario::VenueOutage),
    ];
    let (start, end) = (
        loaded.events.first().map_or(0, |e| e.ts_recv),
        loaded.events.last().map_or(0, |e| e.ts_recv),
    );
    for sc in scenarios {
        let (specs, engines) = backtest_engines(config, &loaded.specs)?;
        let mut setup = hft_backtest::peer_setup();
        let events = match sc {
            Some(s) => {
                if let Some(series) = s.entry_latency(100_000, start, end) {
                    setup.entry = hft_backtest::model::Latency::Series(series);
                }
                s.apply(&loaded.events, specs.len())
            }
            None => loaded.events.clone(),
        };
        let sample_s = setup.sample_interval as f64 / 1e9;
        let o = hft_backtest::run::run(setup, specs.clone(), engines, &events);
        let m = hft_backtest::report::metrics(&o, &specs, sample_s);
        let name = sc.map_or_else(|| "baseline".to_owned(), |s| s.name());
        let risk: Vec<serde_json::Value> = o
            .engines
            .iter()
            .map(|e| hft_backtest::report::strategy_summary(e, &specs))
            .collect();
        if json_out {
            println!(
                "{}",
                json!({"scenario": name, "pnl": m.pnl, "max_drawdown": m.max_drawdown, "fills": m.fills, "orders": m.orders, "strategies": risk})
            );
        } else {
            let states: Vec<String> = risk
                .iter()
                .map(|r| {
                    format!(
                        "{} {} rejects {} max_pos {}",
                        r["instrument"].as_str().unwrap_or(""),
                        r["state"].as_str().unwrap_or(""),
                        r["risk_rejects"],
                        r["max_position"].as_str().unwrap_or("")
                    )
                })
                .collect();
            println!(
                "{name:<26} pnl {:>10.4}  max_dd {:>9.4}  fills {:>5}  {}",
                m.pnl,
                m.max_drawdown,
                m.fills,
                states.join("; ")
            );
        }
    }
    Ok(0)
}

/// One point of a sweep: its overrides and metrics (or why it did not run).
type SweepPoint = (
    Vec<(String, String)>,
    Result<hft_backtest::report::Metrics, String>,
);

fn backtest_sweep(
    config: &Path,
    data: &Path,
    params: &[String],
    sort: &str,
    jobs: Option<usize>,
    json_out: bool,
) -> Result<u8, Exit> {
    // KEY=V1,V2 -> (env name, values).
    let mut axes: Vec<(String, Vec<String>)> = Vec::new();
    for p in params {
        let Some((key, values)) = p.split_once('=') else {
            return Err(Exit(
                2,
                anyhow::anyhow!(
                    "--param {p}: expected KEY=V1,V2,... e.g. strategies.0.market_making.risk_aversion=0.05,0.1"
                ),
            ));
        };
        let values: Vec<String> = values.split(',').map(str::to_owned).collect();
        if key.is_empty() || values.iter().any(String::is_empty) {
            return Err(Exit(
                2,
                anyhow::anyhow!("--param {p}: a key and non-empty values are needed"),
            ));
        }
        axes.push((key.to_owned(), values));
    }
    let metric = |m: &hft_backtest::report::Metrics| -> Option<f64> {
        Some(match sort {
            "pnl" => m.pnl,
            "sharpe" => m.sharpe,
            "sortino" => m.sortino,
            "fills" => m.fills as f64,
            "fill_ratio" => m.fill_ratio,
            "max_drawdown" => -m.max_drawdown,
            _ => return None,
        })
    };
    if metric(&hft_backtest::report::Metrics::default()).is_none() {
        return Err(Exit(
            2,
            anyhow::anyhow!(
                "--sort {sort}: one of pnl, sharpe, sortino, fills, fill_ratio, max_drawdown"
            ),
        ));
    }
    let mut grid: Vec<Vec<(String, String)>> = vec![Vec::new()];
    for (key, values) in &axes {
        grid = grid
            .into_iter()
            .flat_map(|point| {
                values.iter().map(move |v| {
                    let mut p = point.clone();
                    p.push((key.clone(), v.clone()));
                    p
                })
            })
            .collect();
    }
    let loaded = backtest_data(data, Some(config))?;
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: std::sync::Mutex<Vec<(usize, SweepPoint)>> = std::sync::Mutex::new(Vec::new());
    let jobs = jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, grid.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| {
                loop {
                    let k = next.fetch_add(1, Ordering::SeqCst);
                    let Some(point) = grid.get(k) else { break };
                    let mut env: Vec<(String, String)> = env_vars().collect();
                    env.extend(point.iter().map(|(key, v)| {
                        (
                            format!("HFT_{}", key.replace('.', "__").to_ascii_uppercase()),
                            v.clone(),
                        )
                    }));
                    let outcome = hft_config::load(Some(config), env)
                        .map_err(|e| e.to_string())
                        .and_then(|c| {
                            engines_for(&c, config, &loaded.specs).map_err(|e| format!("{:#}", e.1))
                        })
                        .map(|(specs, engines)| {
                            let setup = hft_backtest::peer_setup();
                            let sample_s = setup.sample_interval as f64 / 1e9;
                            let o = hft_backtest::run::run(
                                setup,
                                specs.clone(),
                                engines,
                                &loaded.events,
                            );
                            hft_backtest::report::metrics(&o, &specs, sample_s)
                        });
                    if let Ok(mut r) = results.lock() {
                        r.push((k, (point.clone(), outcome)));
                    }
                }
            });
        }
    });
    let mut rows: Vec<(usize, SweepPoint)> = results.into_inner().unwrap_or_default();
    // Best first by the metric; failed points last; ties in grid order.
    rows.sort_by(|a, b| {
        let key = |r: &(usize, SweepPoint)| r.1.1.as_ref().ok().and_then(metric);
        match (key(a), key(b)) {
            (Some(x), Some(y)) => y.total_cmp(&x).then(a.0.cmp(&b.0)),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => a.0.cmp(&b.0),
        }
    });
    for (_, (point, outcome)) in &rows {
        let label = point
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ");
        match outcome {
            Ok(m) if json_out => println!(
                "{}",
                json!({"params": label, "pnl": m.pnl, "sharpe": m.sharpe, "sortino": m.sortino, "max_drawdown": m.max_drawdown, "fills": m.fills, "fill_ratio": m.fill_ratio, "orders": m.orders})
            ),
            Ok(m) => println!(
                "{label:<60} pnl {:>12.4}  sharpe {:>9.2}  max_dd {:>10.4}  fills {:>6}  orders {:>6}",
                m.pnl, m.sharpe, m.max_drawdown, m.fills, m.orders
            ),
            Err(e) if json_out => println!("{}", json!({"params": label, "error": e})),
            Err(e) => println!("{label:<60} refused: {e}"),
        }
    }
    Ok(0)
}

fn backtest_ab(a: &Path, b: &Path, data: &Path, json_out: bool) -> Result<u8, Exit> {
    let mut runs = Vec::new();
    let interval_s = hft_backtest::peer_setup().sample_interval as f64 / 1e9;
    for cfg in [a, b] {
        let loaded = backtest_data(data, Some(cfg))?;
        let (specs, engines) = backtest_engines(Some(cfg), &loaded.specs)?;
        let o = hft_backtest::run::run(
            hft_backtest::peer_setup(),
            specs.clone(),
            engines,
            &loaded.events,
        );
        let m = hft_backtest::report::metrics(&o, &specs, interval_s);
        runs.push((o, m));
    }
    let r = hft_backtest::report::ab_compare(&runs[0].0, &runs[1].0, 2_000, 1);
    let mut v = r.json();
    v["a"] = json!({"config": a.display().to_string(), "pnl": runs[0].1.pnl, "fills": runs[0].1.fills, "max_drawdown": runs[0].1.max_drawdown});
    v["b"] = json!({"config": b.display().to_string(), "pnl": runs[1].1.pnl, "fills": runs[1].1.fills, "max_drawdown": runs[1].1.max_drawdown});
    if json_out {
        println!("{v}");
    } else {
        println!(
            "A {}: PnL {:.4}, {} fills\nB {}: PnL {:.4}, {} fills\n{}",
            a.display(),
            runs[0].1.pnl,
            runs[0].1.fills,
            b.display(),
            runs[1].1.pnl,
            runs[1].1.fills,
            r.line(interval_s),
        );
    }
    Ok(0)
}

fn backtest(data: &Path, report: Option<&Path>, config: Option<&Path>) -> Result<u8, Exit> {
    // Streamed: memory holds a window of the data, whatever its length.
    let mut stream = hft_backtest::Stream::open(data, &config_instruments(config)?, 65_536)
        .map_err(|e| Exit(2, anyhow::anyhow!("{e}")))?;
    let (specs, engines) = backtest_engines(config, &stream.specs)?;
    let mut setup = hft_backtest::peer_setup();
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        setup.progress = Some(Box::new(|done, all| {
            match (done * 100).checked_div(all) {
                Some(pct) => {
                    let pct = pct.min(100);
                    let bar = "#".repeat((pct / 2) as usize);
                    eprint!("\r[{bar:<50}] {pct:>3}% {done}/{all} events");
                }
                // A stream of unknown length: the count alone.
                None => eprint!("\r{done} events"),
            }
        }));
    }
    let sample_s = setup.sample_interval as f64 / 1e9;
    let o = hft_backtest::run::run_source(setup, specs.clone(), engines, &mut stream);
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        eprintln!();
    }
    if let Some(e) = stream.take_error() {
        return Err(Exit(
            1,
            anyhow::anyhow!("reading {} stopped part-way: {e}", data.display()),
        ));
    }
    let m = hft_backtest::report::metrics(&o, &specs, sample_s);
    println!(
        "backtest: {} events over {:.1} s, {} orders, {} fills, PnL {:.4} (fees {:.4}), max drawdown {:.4}, Sharpe {:.2}",
        m.events, m.span_s, m.orders, m.fills, m.pnl, m.fees, m.max_drawdown, m.sharpe
    );
    let money = |raw: i64| raw as f64 / 10f64.powi(i32::from(hft_core::MONEY_SCALE));
    for a in hft_backtest::report::attribution(&o, &specs) {
        println!(
            "  strategy {} {}: PnL {:.4} = spread {:.4} + slippage {:.4} + inventory {:.4} - fees {:.4} ({} fills)",
            a.strategy,
            a.symbol,
            money(a.total),
            money(a.spread),
            money(a.slippage),
            money(a.inventory),
            money(a.fees),
            a.fills
        );
    }
    if let Some(dir) = report {
        hft_backtest::report::write(dir, &o, &specs, &m)
            .with_context(|| format!("writing the report to {}", dir.display()))?;
        println!("report: {}", dir.join("report.html").display());
    }
    Ok(0)
}

/// Writes the session summary as JSON to `path`, if given.
/// Prints a session's table (and its live A/B result, if the config splits strategies
/// into variants) and writes the JSON summary to `path`.
fn finish_session(
    config: &Config,
    report: &SessionReport,
    path: Option<&Path>,
) -> Result<(), Exit> {
    print!("{}", report.table());
    let ab = live_ab(config, report);
    if let Some((_, line)) = &ab {
        println!("{line}");
    }
    if let Some(path) = path {
        let mut summary = summary_json(report);
        if let Some((v, _)) = ab {
            summary["ab"] = v;
        }
        let text = serde_json::to_string_pretty(&summary).context("rendering the summary")?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("writing the summary to {}", path.display()))?;
    }
    Ok(())
}

fn status_line(
    view: &LiveView,
    elapsed: Duration,
    last_events: &mut u64,
    last_t: &mut Duration,
) -> String {
    use hft_telemetry::names;
    let (mut events, mut orders, mut fills) = (0, 0, 0);
    let mut parts = Vec::new();
    for v in &view.engines {
        let (name, e) = (&v.name, &v.live);
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let (ev, or, fi) = (load(&e.events), load(&e.orders), load(&e.fills));
        events += ev;
        orders += or;
        fills += fi;
        let pnl = hft_core::Money(e.pnl.load(Ordering::Relaxed));
        let position = hft_core::Qty(e.position.load(Ordering::Relaxed));
        let label = [("strategy", name.clone())];
        metrics::counter!(names::EVENTS, &label).absolute(ev);
        metrics::counter!(names::ORDERS, &label).absolute(or);
        metrics::counter!(names::FILLS, &label).absolute(fi);
        metrics::counter!(names::RESTARTS, &label).absolute(load(&e.restarts));
        metrics::gauge!(names::PNL, &label).set(pnl.raw() as f64 * 1e-8);
        metrics::gauge!(names::POSITION, &label)
            .set(position.raw() as f64 * 10f64.powi(-i32::from(v.qty_scale)));
        for r in hft_risk::RiskReject::ALL {
            let labels = [label[0].clone(), ("reason", r.name().to_owned())];
            metrics::counter!(names::REJECTS, &labels).absolute(load(&e.rejects[r as usize]));
        }
        parts.push(format!(
            "{name} pos {} pnl {pnl}",
            position.display(v.qty_scale)
        ));
    }
    let latency = &view.gateway.latency_ns;
    for (q, v) in ["0.5", "0.99", "0.999"].into_iter().zip(latency) {
        metrics::gauge!(names::TICK_TO_ORDER, "quantile" => q)
            .set(v.load(Ordering::Relaxed) as f64);
    }
    let dt = (elapsed - *last_t).as_secs_f64().max(1e-3);
    let rate = events.saturating_sub(*last_events) as f64 / dt;
    *last_events = events;
    *last_t = elapsed;
    format!(
        "{:>6.1}s {:>8.0} ev/s  orders {orders}  fills {fills}  p99 {} ns  {}",
        elapsed.as_secs_f64(),
        rate,
        latency[1].load(Ordering::Relaxed),
        parts.join("  ")
    )
}

/// A live A/B test: the summed PnL paths of the strategies of variant A and of variant
/// B, compared interval by interval with the paired bootstrap of `hft backtest ab`.
/// None when no strategy has a variant (or the session ran none of them).
fn live_ab(config: &Config, r: &SessionReport) -> Option<(serde_json::Value, String)> {
    use hft_config::Variant;
    let variant_of = |name: &str| {
        config
            .strategies
            .iter()
            .find(|s| s.name == name)
            .and_then(|s| s.variant)
    };
    let arm: Vec<Option<Variant>> = r.strategies.iter().map(|s| variant_of(&s.name)).collect();
    // Per arm: its strategies' names and their PnL at the end (the path's last sample
    // may be up to an interval old).
    let side = |v: Variant| {
        let of_arm = || {
            r.strategies
                .iter()
                .zip(&arm)
                .filter(move |(_, a)| **a == Some(v))
                .map(|(s, _)| s)
        };
        let names: Vec<&str> = of_arm().map(|s| s.name.as_str()).collect();
        let pnl = of_arm()
            .map(|s| s.realized_pnl.raw().saturating_add(s.unrealized_pnl.raw()))
            .fold(0i64, i64::saturating_add);
        let path = r.pnl_path.sum_of(|i| arm.get(i) == Some(&Some(v)));
        (names, hft_core::Money(pnl).to_string(), path)
    };
    let ((na, ta, pa), (nb, tb, pb)) = (side(Variant::A), side(Variant::B));
    if na.is_empty() || nb.is_empty() {
        return None;
    }
    let res = hft_backtest::report::ab_compare_paths(&pa, &pb, 2_000, r.seed);
    let interval_s = r.pnl_path.interval_ns as f64 / 1e9;
    let line = format!(
        "A/B: A ({}) PnL {ta}, B ({}) PnL {tb}\n{}",
        na.join(", "),
        nb.join(", "),
        res.line(interval_s)
    );
    let mut v = res.json();
    v["interval_s"] = json!(interval_s);
    v["a"] = json!({"strategies": na, "pnl": ta});
    v["b"] = json!({"strategies": nb, "pnl": tb});
    Some((v, line))
}

fn summary_json(r: &SessionReport) -> serde_json::Value {
    let rejects = |c: &hft_risk::RejectCounts| -> serde_json::Map<String, serde_json::Value> {
        c.nonzero()
            .map(|(k, n)| (k.name().to_owned(), json!(n)))
            .collect()
    };
    let lat = |l: &hft_telemetry::LatencySummary| json!({"p50": l.p50, "p99": l.p99, "p999": l.p999, "max": l.max, "samples": l.samples});
    let total_rejects = r.rejects();
    json!({
        "mode": r.mode,
        "seed": r.seed,
        "duration_s": r.duration_s,
        "events": r.events,
        "venue_events": r.venue_events,
        "orders": r.orders(),
        "fills": r.fills(),
        "rejects": total_rejects.total(),
        "rejects_by_reason": rejects(&total_rejects),
        "realized_pnl": r.realized_pnl().to_string(),
        "unrealized_pnl": r.unrealized_pnl().to_string(),
        "tick_to_order_ns": lat(&r.tick_to_order),
        "fills_hash": r.fills_hash,
        "killed": r.killed,
        "md_dropped": r.md_dropped,
        "md_resyncs": r.md_resyncs,
        "ledger": r.ledger.as_ref().map(|l| json!({
            "dir": l.dir,
            "fills": l.fills,
            "booked": l.booked,
            "duplicates": l.duplicates,
            "rejected": l.rejected,
            "retries": l.retries,
            "reconciled": l.mismatches.is_empty(),
            "mismatches": l.mismatches.iter().map(|m| json!({
                "strategy": m.strategy, "instrument": m.instrument, "engine": m.engine, "ledger": m.ledger
            })).collect::<Vec<_>>(),
        })),
        "strategies": r.strategies.iter().map(|s| json!({
            "name": s.name,
            "symbol": s.symbol,
            "orders": s.orders,
            "cancels": s.cancels,
            "fills": s.fills,
            "volume": s.volume,
            "position": s.position,
            "max_position": s.max_position,
            "realized_pnl": s.realized_pnl.to_string(),
            "unrealized_pnl": s.unrealized_pnl.to_string(),
            "fees": s.fees.to_string(),
            "rejects": rejects(&s.rejects),
            "state": s.state,
            "panics": s.panics,
            "gaps": s.gaps,
            "restarts": s.restarts,
            "halted": s.halted,
            "tick_to_order_ns": lat(&s.latency),
        })).collect::<Vec<_>>(),
    })
}

fn data(cmd: DataCmd) -> Result<u8, Exit> {
    match cmd {
        DataCmd::Import {
            files,
            out,
            venue,
            skip_bad,
            config,
        } => {
            let opts = hft_store::ImportOptions {
                venue,
                skip_bad,
                instruments: load_config(config.as_deref())?
                    .instruments
                    .into_iter()
                    .map(|i| i.spec)
                    .collect(),
            };
            for f in files {
                let started = std::time::Instant::now();
                let s = hft_store::import_with(&f, &out, &opts)
                    .map_err(|e| Exit(2, anyhow::anyhow!("{e}")))?;
                let secs = started.elapsed().as_secs_f64().max(1e-9);
                println!(
                    "{}: {} messages -> {} rows in {} files ({} skipped), {:.0} rows/s",
                    f.display(),
                    s.messages,
                    s.rows,
                    s.files.len(),
                    s.skipped,
                    s.rows as f64 / secs
                );
            }
            Ok(0)
        }
        DataCmd::Replay {
            store,
            venue,
            symbols,
            from_ns,
            to_ns,
            recorded_speed,
            paper,
            config,
            summary_json,
            report_memory,
        } => {
            let filter = hft_store::SeriesFilter { venue, symbols };
            if paper {
                return market::replay_paper(
                    &store,
                    &filter,
                    (from_ns, to_ns),
                    config.as_deref(),
                    summary_json.as_deref(),
                    recorded_speed,
                );
            }
            let mut r = hft_store::MergedReader::open(&store, &filter, from_ns, to_ns)
                .map_err(|e| Exit(2, anyhow::anyhow!("{e}")))?;
            let started = std::time::Instant::now();
            let (mut rows, mut first_ts, mut last_ts) = (0u64, None, 0u64);
            let mut per_series = vec![0u64; r.series().len()];
            while let Some((i, row)) = r.next_row().map_err(|e| Exit(1, anyhow::anyhow!("{e}")))? {
                let t0 = *first_ts.get_or_insert(row.ts_exchange);
                if recorded_speed {
                    let due = std::time::Duration::from_nanos(row.ts_exchange.saturating_sub(t0));
                    if let Some(wait) = due.checked_sub(started.elapsed()) {
                        std::thread::sleep(wait);
                    }
                }
                rows += 1;
                per_series[i] += 1;
                last_ts = row.ts_exchange;
            }
            let secs = started.elapsed().as_secs_f64().max(1e-9);
            for (s, n) in r.series().iter().zip(&per_series) {
                println!("{:<16} {:<14} {n:>10} rows", s.venue, s.symbol);
            }
            let span = last_ts.saturating_sub(first_ts.unwrap_or(last_ts)) as f64 / 1e9;
            println!(
                "replayed {rows} rows covering {span:.1} s of market time in {secs:.2} s ({:.0} rows/s)",
                rows as f64 / secs
            );
            if report_memory {
                println!("rows: {rows}");
                println!("peak_rss_bytes: {}", peak_rss_bytes().unwrap_or(0));
            }
            Ok(0)
        }
        DataCmd::Inspect { path, json } => {
            let series = hft_store::inspect(&path).map_err(|e| Exit(2, anyhow::anyhow!("{e}")))?;
            if json {
                let v: Vec<_> = series
                    .iter()
                    .map(|s| {
                        json!({
                            "venue": s.venue, "symbol": s.symbol, "files": s.files, "rows": s.rows,
                            "clears": s.by_kind[0], "levels": s.by_kind[1], "trades": s.by_kind[2], "quotes": s.by_kind[3], "orders": s.by_kind[4],
                            "first_ts_ns": s.first_ts, "last_ts_ns": s.last_ts, "ts_regressions": s.ts_regressions,
                            "crossed_moments": s.crossed_moments, "price_scale": s.scales.0, "qty_scale": s.scales.1,
                        })
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(v));
            } else {
                println!(
                    "{:<16} {:<14} {:>5} {:>9} {:>9} {:>8} {:>8} {:>8}  {:<10} {:>9}  crossed",
                    "venue",
                    "symbol",
                    "files",
                    "rows",
                    "levels",
                    "trades",
                    "quotes",
                    "orders",
                    "date",
                    "span_s"
                );
                for s in &series {
                    println!(
                        "{:<16} {:<14} {:>5} {:>9} {:>9} {:>8} {:>8} {:>8}  {:<10} {:>9.1}  {}",
                        s.venue,
                        s.symbol,
                        s.files,
                        s.rows,
                        s.by_kind[1],
                        s.by_kind[2],
                        s.by_kind[3],
                        s.by_kind[4],
                        hft_store::utc_date(s.first_ts),
                        (s.last_ts.saturating_sub(s.first_ts)) as f64 / 1e9,
                        s.crossed_moments
                    );
                }
            }
            Ok(0)
        }
    }
}

fn bench(cmd: BenchCmd) -> Result<u8, Exit> {
    let config = Config::default_embedded();
    let seed = config.simulator.seed;
    match cmd {
        BenchCmd::Ledger {
            concurrency,
            batch,
            samples,
            secs,
            recovery_fills,
            etcd_bin,
            json,
        } => {
            let opts = ledger_bench::Options {
                concurrency: concurrency.max(1),
                batch: batch.max(1),
                samples: samples.max(10),
                phase: Duration::from_secs(secs.max(1)),
                recovery_fills,
                etcd_bin,
                dir: std::env::temp_dir().join(format!("hft-bench-ledger-{}", std::process::id())),
            };
            let r = ledger_bench::run(&opts).map_err(|e| Exit(1, e))?;
            let round = |x: f64| (x * 10.0).round() / 10.0;
            let v = json!({
                "bench": "ledger",
                "record_bytes": r.record_bytes,
                "concurrency": opts.concurrency,
                "batch": opts.batch,
                "commit_p50_us": round(r.commit_p50_us),
                "commit_p99_us": round(r.commit_p99_us),
                "throughput_per_s": r.throughput_per_s.round(),
                "etcd_commit_p50_us": round(r.etcd_commit_p50_us),
                "etcd_commit_p99_us": round(r.etcd_commit_p99_us),
                "etcd_throughput_per_s": r.etcd_throughput_per_s.round(),
                "etcd_txn_throughput_per_s": r.etcd_txn_throughput_per_s.round(),
                "throughput_ratio": round(r.throughput_per_s / r.etcd_throughput_per_s.max(1e-9)),
                "recovery_fills": r.recovery_fills,
                "recovery_ms": round(r.recovery_ms),
            });
            print_bench(&v, json);
        }
        BenchCmd::AdminLoad {
            phases,
            phase_s,
            rate,
            etcd_bin,
            json,
        } => {
            let v = venue_cmd::bench_admin_load(phases, phase_s, rate, &etcd_bin)?;
            print_bench(&v, json);
        }
        BenchCmd::Failover {
            trials,
            keep,
            fault,
            etcd_bin,
            json,
        } => {
            let v = venue_cmd::bench_failover(trials.max(1), &etcd_bin, fault, keep)?;
            print_bench(&v, json);
        }
        BenchCmd::Config {
            trials,
            etcd_bin,
            json,
        } => {
            let v = cluster_cmd::bench_config(trials.max(1), &etcd_bin)?;
            print_bench(&v, json);
        }
        BenchCmd::CoreLoop { events, json } => {
            let r = hft_cluster::bench::core_loop(&config, seed, events)
                .map_err(|e| Exit(1, anyhow::anyhow!(e)))?;
            let v = json!({"bench": "core-loop", "events": r.events, "orders": r.orders, "events_per_s": r.events_per_s.round(), "ns_per_event": (r.ns_per_event * 10.0).round() / 10.0});
            print_bench(&v, json);
        }
        BenchCmd::FeedDecode { data, rounds, json } => {
            let r = hft_cluster::bench::feed_decode(&data, rounds)
                .map_err(|e| Exit(2, anyhow::anyhow!(e)))?;
            let v = json!({
                "bench": "feed-decode",
                "messages": r.messages,
                "msgs_per_s": r.msgs_per_s.round(),
                "baseline_msgs_per_s": r.baseline_msgs_per_s.round(),
                "ratio": (r.msgs_per_s / r.baseline_msgs_per_s.max(1e-9) * 100.0).round() / 100.0,
                "events_per_msg": (r.events_per_msg * 100.0).round() / 100.0,
                "errors": r.errors,
            });
            print_bench(&v, json);
        }
        BenchCmd::LongReplay {
            size_mib,
            dir,
            json,
        } => {
            let keep = dir.is_some();
            let dir = dir.unwrap_or_else(|| {
                std::env::temp_dir().join(format!("hft-long-replay-{}", std::process::id()))
            });
            let written = match hft_store::data_files(&dir) {
                Ok(f) if !f.is_empty() => 0,
                _ => hft_store::bench::write_synthetic(&dir, size_mib << 20)
                    .map_err(|e| Exit(1, anyhow::anyhow!("{e}")))?,
            };
            let bytes: u64 = hft_store::data_files(&dir)
                .map_err(|e| Exit(1, anyhow::anyhow!("{e}")))?
                .iter()
                .filter_map(|f| f.metadata().ok())
                .map(|m| m.len())
                .sum();
            let exe = std::env::current_exe().context("locating the hft binary")?;
            let started = std::time::Instant::now();
            let out = std::process::Command::new(exe)
                .args(["data", "replay", "--report-memory"])
                .arg(&dir)
                .output()
                .context("running the replay")?;
            let secs = started.elapsed().as_secs_f64();
            if !keep {
                let _ = std::fs::remove_dir_all(&dir);
            }
            let text = String::from_utf8_lossy(&out.stdout);
            let field = |key: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(key))
                    .and_then(|v| v.trim().parse::<u64>().ok())
            };
            let (Some(rss), Some(rows)) = (field("peak_rss_bytes:"), field("rows:")) else {
                return Err(Exit(
                    1,
                    anyhow::anyhow!(
                        "the replay failed: {}",
                        String::from_utf8_lossy(&out.stderr)
                    ),
                ));
            };
            let budget: u64 = 256 << 20;
            let v = json!({
                "bench": "long-replay",
                "store_bytes": bytes,
                "rows_written": written,
                "rows_replayed": rows,
                "replay_s": (secs * 100.0).round() / 100.0,
                "peak_rss_bytes": rss,
                "budget_bytes": budget,
                "store_over_budget": (bytes as f64 / budget as f64 * 100.0).round() / 100.0,
                "within_budget": rss <= budget,
            });
            print_bench(&v, json);
        }
        BenchCmd::Backtest { data, rounds, json } => {
            let loaded = hft_backtest::load(&data).map_err(|e| Exit(2, anyhow::anyhow!("{e}")))?;
            let mut best = f64::MAX;
            let mut last = None;
            for _ in 0..rounds.max(1) {
                let engines = hft_backtest::touch_engines(&loaded.specs);
                let t = std::time::Instant::now();
                let o = hft_backtest::run::run(
                    hft_backtest::peer_setup(),
                    loaded.specs.clone(),
                    engines,
                    &loaded.events,
                );
                best = best.min(t.elapsed().as_secs_f64());
                last = Some(o);
            }
            let o = last.ok_or_else(|| Exit(1, anyhow::anyhow!("no run")))?;
            let v = json!({
                "bench": "backtest",
                "events": loaded.input_messages,
                "engine_events": o.events,
                "run_s": (best * 1e6).round() / 1e6,
                "events_per_s": (loaded.input_messages as f64 / best.max(1e-9)).round(),
                "load_s": (loaded.load_s * 1e3).round() / 1e3,
                "orders": o.orders.len(),
                "fills": o.fills.len(),
            });
            print_bench(&v, json);
        }
        BenchCmd::BookUpdate { updates, json } => {
            let r = hft_cluster::bench::book_update(&config, seed, updates)
                .map_err(|e| Exit(1, anyhow::anyhow!(e)))?;
            let v = json!({"bench": "book-update", "updates": r.updates, "ns_per_update": (r.ns_per_update * 100.0).round() / 100.0});
            print_bench(&v, json);
        }
        BenchCmd::Store { data, rounds, json } => {
            let scratch =
                std::env::temp_dir().join(format!("hft-bench-store-{}", std::process::id()));
            std::fs::create_dir_all(&scratch).context("creating a scratch directory")?;
            let capture = match data {
                Some(p) => p,
                None => {
                    let p = scratch.join("sim-capture.txt");
                    write_sim_capture(&config, seed, &p, 500_000)
                        .context("recording the simulator")?;
                    p
                }
            };
            let specs: Vec<_> = config.instruments.iter().map(|i| i.spec.clone()).collect();
            let r = hft_store::bench::store_bench(&capture, &scratch.join("store"), rounds, &specs)
                .map_err(|e| Exit(2, anyhow::anyhow!("{e}")))?;
            let _ = std::fs::remove_dir_all(&scratch);
            let v = json!({
                "bench": "store",
                "events": r.events,
                "import_events_per_s": r.import_events_per_s.round(),
                "replay_events_per_s": r.replay_events_per_s.round(),
                "capture_replay_events_per_s": r.capture_replay_events_per_s.round(),
                "ratio": (r.replay_events_per_s / r.capture_replay_events_per_s.max(1e-9) * 100.0).round() / 100.0,
            });
            print_bench(&v, json);
        }
        BenchCmd::Simulator { events, json } => {
            let r = hft_cluster::bench::simulator(&config, seed, events);
            let v = json!({
                "bench": "simulator",
                "events": r.flow_events,
                "md_events": r.md_events,
                "simulated_s": (r.simulated_s * 10.0).round() / 10.0,
                "events_per_s": r.flow_events_per_s.round(),
                "md_events_per_s": r.md_events_per_s.round(),
            });
            print_bench(&v, json);
        }
        BenchCmd::TickToOrder {
            samples,
            max_time,
            idle,
            json,
        } => {
            let idle = match idle {
                IdleArg::Park => IdleMode::Park,
                IdleArg::Spin => IdleMode::Spin,
            };
            let r = hft_cluster::bench::tick_to_order(&config, seed, samples, max_time, idle)
                .map_err(|e| Exit(1, anyhow::anyhow!(e)))?;
            let v = json!({
                "bench": "tick-to-order",
                "idle": format!("{:?}", r.idle).to_lowercase(),
                "samples": r.pipeline.samples,
                "p50_ns": r.pipeline.p50,
                "p99_ns": r.pipeline.p99,
                "p999_ns": r.pipeline.p999,
                "max_ns": r.pipeline.max,
                "handoff_p50_ns": r.handoff.p50,
                "handoff_p99_ns": r.handoff.p99,
                "handoff_p999_ns": r.handoff.p999,
                "ratio_p99": (r.pipeline.p99 as f64 / r.handoff.p99.max(1) as f64 * 100.0).round() / 100.0,
                "to_engine_p50_ns": r.to_engine.p50,
                "to_engine_p99_ns": r.to_engine.p99,
                "engine_to_venue_p50_ns": r.engine_to_venue.p50,
                "engine_to_venue_p99_ns": r.engine_to_venue.p99,
            });
            print_bench(&v, json);
        }
    }
    Ok(0)
}

/// Records the simulator's market data as a Binance-format capture (depth snapshot,
/// depth updates, trades), so `hft bench store` needs no data files.
fn write_sim_capture(config: &Config, seed: u64, path: &Path, events: usize) -> anyhow::Result<()> {
    use hft_core::{MarketEventKind, Side};
    let specs: Vec<_> = config.instruments.iter().map(|i| i.spec.clone()).collect();
    let md = hft_cluster::bench::record_market_data(config, seed, events);
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut i = 0;
    while i < md.len() {
        let mut j = i;
        while !md[j].is_last() {
            j += 1;
        }
        let msg = &md[i..=j];
        i = j + 1;
        // One instrument per capture, as a venue's REST snapshot names no symbol.
        if msg[0].instrument != hft_core::InstrumentId(0) {
            continue;
        }
        let spec = &specs[msg[0].instrument.index()];
        let px = |p: hft_core::Price| p.display(spec.price_scale).to_string();
        let qty = |q: hft_core::Qty| q.display(spec.qty_scale).to_string();
        let (mut bids, mut asks, mut trades) = (Vec::new(), Vec::new(), Vec::new());
        let mut snapshot = false;
        for e in msg {
            match e.kind {
                MarketEventKind::Clear => snapshot = true,
                MarketEventKind::Level {
                    side: Side::Buy,
                    price,
                    qty: q,
                } => bids.push(format!("[\"{}\",\"{}\"]", px(price), qty(q))),
                MarketEventKind::Level {
                    side: Side::Sell,
                    price,
                    qty: q,
                } => asks.push(format!("[\"{}\",\"{}\"]", px(price), qty(q))),
                MarketEventKind::Trade {
                    aggressor,
                    price,
                    qty: q,
                } => trades.push((aggressor, price, q)),
                MarketEventKind::Quote { .. } | MarketEventKind::Order { .. } => {}
            }
        }
        let ms = msg[0].ts_exchange / 1_000_000;
        let local = 1_700_000_000_000_000_000 + msg[0].ts_exchange;
        let sym = &spec.symbol;
        if snapshot {
            // An empty update first names the symbol (a REST snapshot does not); it is
            // already contained in the snapshot and dropped by the book sync.
            writeln!(
                out,
                "{local} {{\"stream\":\"{sym}@depth\",\"data\":{{\"e\":\"depthUpdate\",\"E\":{ms},\"s\":\"{sym}\",\"U\":{seq},\"u\":{seq},\"b\":[],\"a\":[]}}}}",
                seq = msg[0].seq
            )?;
            writeln!(
                out,
                "{local} {{\"lastUpdateId\":{},\"bids\":[{}],\"asks\":[{}]}}",
                msg[0].seq,
                bids.join(","),
                asks.join(",")
            )?;
        } else {
            for (k, (side, price, q)) in trades.iter().enumerate() {
                writeln!(
                    out,
                    "{local} {{\"stream\":\"{sym}@trade\",\"data\":{{\"e\":\"trade\",\"s\":\"{sym}\",\"t\":{},\"p\":\"{}\",\"q\":\"{}\",\"T\":{ms},\"m\":{}}}}}",
                    msg[0].seq * 100 + k as u64,
                    px(*price),
                    qty(*q),
                    *side == Side::Sell
                )?;
            }
            if !bids.is_empty() || !asks.is_empty() {
                writeln!(
                    out,
                    "{local} {{\"stream\":\"{sym}@depth\",\"data\":{{\"e\":\"depthUpdate\",\"E\":{ms},\"s\":\"{sym}\",\"U\":{seq},\"u\":{seq},\"b\":[{}],\"a\":[{}]}}}}",
                    bids.join(","),
                    asks.join(","),
                    seq = msg[0].seq
                )?;
            }
        }
    }
    out.flush()?;
    Ok(())
}

/// Peak resident memory of this process (Linux `VmHWM`).
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .split_whitespace()
        .next()?
        .parse::<u64>()
        .ok()?;
    Some(kb * 1024)
}

fn train(t: &TrainArgs) -> Result<u8, Exit> {
    if t.horizon_ms == 0 || t.sample_ms == 0 || t.folds == 0 {
        return Err(Exit(
            2,
            anyhow::anyhow!("--horizon-ms, --sample-ms and --folds must be at least 1"),
        ));
    }
    let loaded = hft_backtest::load(&t.data).map_err(|e| Exit(2, anyhow::anyhow!("{e}")))?;
    let opts = hft_backtest::train::TrainOptions {
        symbol: t.symbol.clone(),
        horizon: t.horizon_ms * 1_000_000,
        sample: t.sample_ms * 1_000_000,
        folds: t.folds,
        ..Default::default()
    };
    let r = hft_backtest::train::train(&loaded, &opts).map_err(|e| Exit(2, anyhow::anyhow!(e)))?;
    std::fs::write(&t.out, r.model.to_json())
        .with_context(|| format!("writing the model to {}", t.out.display()))?;
    let folds: Vec<serde_json::Value> = r
        .folds
        .iter()
        .map(|f| {
            json!({
                "train_rows": f.train_rows,
                "test_rows": f.test_rows,
                "logloss": (f.logloss * 1e4).round() / 1e4,
                "accuracy": (f.accuracy * 1e4).round() / 1e4,
                "majority": (f.up_share.max(1.0 - f.up_share) * 1e4).round() / 1e4,
            })
        })
        .collect();
    if t.json {
        println!(
            "{}",
            json!({"symbol": r.symbol, "rows": r.rows, "folds": folds, "model": t.out.display().to_string()})
        );
    } else {
        println!(
            "{}: {} labelled rows; walk-forward, out of sample:",
            r.symbol, r.rows
        );
        println!("fold  train   test  logloss  accuracy  majority");
        for (i, f) in r.folds.iter().enumerate() {
            println!(
                "{:>4} {:>6} {:>6}  {:>7.4}  {:>8.4}  {:>8.4}",
                i + 1,
                f.train_rows,
                f.test_rows,
                f.logloss,
                f.accuracy,
                f.up_share.max(1.0 - f.up_share)
            );
        }
        println!("model written to {}", t.out.display());
    }
    Ok(0)
}

fn print_bench(v: &serde_json::Value, json: bool) {
    let mut out = std::io::stdout().lock();
    if json {
        let _ = writeln!(out, "{v}");
    } else if let Some(map) = v.as_object() {
        for (k, val) in map {
            let _ = writeln!(out, "{k:<18} {val}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}
