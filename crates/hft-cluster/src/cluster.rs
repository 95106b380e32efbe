//! A cluster node's trading side: it campaigns for placement leadership (and places
//! engines while it leads), follows its own assignments, and runs one engine session per
//! strategy assigned to it, each with its own venue session and feed on this node.
//!
//! An engine session takes its strategy over before it trades: it logs on to the venue
//! with its epoch (which fences every older session there), raises the strategy's
//! fence in the ledger and books the fills the venue executed before that the ledger
//! lacks, then continues from the ledger's position and order ids.

use crate::booking::Booking;
use crate::control::{self, ClusterSecret, Liveness};
use crate::coord::{Coord, CoordError};
use crate::live::{self, LiveOptions};
use crate::placement::{self, Assignment};
use crate::ring::IdleMode;
use hft_config::Config;
use hft_core::InstrumentSpec;
use hft_exec::RemoteVenue;
use hft_exec::link::Logon;
use hft_ledger::Ledger;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// What a cluster node trades with.
#[derive(Clone)]
pub struct NodeSetup {
    /// This node's id.
    pub id: u64,
    /// The configuration (strategies, instruments, risk, engine settings).
    pub config: Arc<Config>,
    /// The venue links, by name.
    pub venues: VenueLinks,
    /// The node's ledger member.
    pub ledger: Ledger,
    /// Set when the node's lease may have expired: nothing may trade from then on.
    pub fenced: Arc<AtomicBool>,
    /// Set to stop the node.
    pub stop: Arc<AtomicBool>,
    /// Configuration reloads for the engine sessions (None: the configuration is fixed).
    pub reloads: Option<crate::reload::ReloadHub>,
    /// The engine sessions running here, for the admin API.
    pub engines: Arc<EngineRegistry>,
}

/// A node's venue links by name, in the order given: a strategy's engine trades through
/// the link its configuration names (`venue = "..."`), or the first. The name is also the
/// venue its fills are booked under and the scope of `hft kill --venue`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VenueLinks(Vec<(String, SocketAddr)>);

impl VenueLinks {
    /// The links, or why they cannot be used (none, a bad or repeated name).
    pub fn new(links: Vec<(String, SocketAddr)>) -> Result<Self, String> {
        if links.is_empty() {
            return Err("no venue link".into());
        }
        for (i, (name, _)) in links.iter().enumerate() {
            if !hft_config::is_venue_name(name) {
                return Err(format!(
                    "venue link name {name:?}: use 1 to 32 lowercase letters, digits, '-' or '_'"
                ));
            }
            if links[..i].iter().any(|(n, _)| n == name) {
                return Err(format!("venue link {name:?} is named twice"));
            }
        }
        Ok(Self(links))
    }

    /// The name and address of the link `strategy` trades through.
    pub fn for_strategy(
        &self,
        strategy: &hft_config::StrategyConfig,
    ) -> Result<(&str, SocketAddr), String> {
        let found = match &strategy.venue {
            None => self.0.first(),
            Some(v) => self.0.iter().find(|(n, _)| n == v),
        };
        found.map(|(n, a)| (n.as_str(), *a)).ok_or_else(|| {
            let names: Vec<&str> = self.0.iter().map(|(n, _)| n.as_str()).collect();
            format!(
                "strategy {} trades through venue link {:?}, which this node lacks (it has {}); start the nodes with --venue {}=HOST:PORT or change the strategy's venue",
                strategy.name,
                strategy.venue.as_deref().unwrap_or_default(),
                names.join(", "),
                strategy.venue.as_deref().unwrap_or_default(),
            )
        })
    }

    /// Checks that every enabled strategy of `config` has its link here.
    pub fn check(&self, config: &Config) -> Result<(), String> {
        config
            .strategies
            .iter()
            .filter(|s| s.enabled)
            .try_for_each(|s| self.for_strategy(s).map(drop))
    }
}

/// The engine sessions a node runs, as the admin API shows them.
#[derive(Default)]
pub struct EngineRegistry(std::sync::Mutex<BTreeMap<String, RunningEngine>>);

/// One running engine session.
#[derive(Clone)]
pub struct RunningEngine {
    /// Its assignment epoch.
    pub epoch: u64,
    /// The venue link it trades through.
    pub venue: String,
    /// Its live counters (None until the session trades).
    pub view: Option<live::EngineView>,
}

impl EngineRegistry {
    fn set(&self, name: &str, e: Option<RunningEngine>) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match e {
            Some(e) => {
                m.insert(name.to_owned(), e);
            }
            None => {
                m.remove(name);
            }
        }
    }

    /// The sessions by strategy name.
    pub fn snapshot(&self) -> BTreeMap<String, RunningEngine> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// A strategy's runtime switch in etcd (`strategies/<name>`): a disabled strategy is
/// not placed anywhere (its engine stops and cancels its orders; its position stays).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StrategySwitch {
    /// Whether it may trade.
    pub enabled: bool,
}

/// Strategies switched off at run time.
pub async fn disabled(coord: &mut Coord) -> Result<BTreeSet<String>, CoordError> {
    let prefix = "strategies/";
    let rows: Vec<(String, StrategySwitch)> = coord.list_json_keyed(prefix).await?;
    Ok(rows
        .into_iter()
        .filter(|(_, s)| !s.enabled)
        .map(|(k, _)| k)
        .collect())
}

/// Enabled strategies of `config` by strategy id (their index among the enabled ones,
/// the high bits of their client order ids).
pub fn strategy_names(config: &Config) -> Vec<String> {
    config
        .strategies
        .iter()
        .filter(|s| s.enabled)
        .map(|s| s.name.clone())
        .collect()
}

/// Campaigns for placement leadership under `lease` and places engines while leading,
/// until `stop` is set or the node is fenced.
pub async fn lead(
    mut coord: Coord,
    setup: NodeSetup,
    lease: i64,
    secret: ClusterSecret,
) -> Result<(), CoordError> {
    let strategies = strategy_names(&setup.config);
    let election = coord.key("leader");
    while !setup.stop.load(Ordering::SeqCst) && !setup.fenced.load(Ordering::SeqCst) {
        let campaign = coord
            .client
            .campaign(election.clone(), setup.id.to_string(), lease);
        let won = tokio::select! {
            r = campaign => match r {
                Ok(r) => r,
                // The client's request deadline ends a campaign that is still waiting
                // behind the current leader: simply wait again.
                Err(e) if e.to_string().contains("Timeout expired") => continue,
                Err(e) => return Err(e.into()),
            },
            _ = wait_flag(&setup.stop, &setup.fenced) => return Ok(()),
        };
        let Some(key) = won.leader() else { continue };
        let leader = (key.key().to_vec(), key.rev());
        tracing::info!(node = setup.id, "placement leader");
        let r = place(&mut coord, &setup, &strategies, &leader, &secret).await;
        tracing::warn!(node = setup.id, result = ?r, "placement leadership ended");
        r?;
    }
    Ok(())
}

async fn wait_flag(a: &AtomicBool, b: &AtomicBool) {
    while !a.load(Ordering::SeqCst) && !b.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

struct Watcher {
    addr: String,
    stop: Arc<AtomicBool>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// The leader's loop: follow liveness, place, repeat; returns when leadership is lost.
async fn place(
    coord: &mut Coord,
    setup: &NodeSetup,
    strategies: &[String],
    leader: &(Vec<u8>, i64),
    secret: &ClusterSecret,
) -> Result<(), CoordError> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut watchers: HashMap<u64, Watcher> = HashMap::new();
    let mut alive: BTreeSet<u64> = BTreeSet::new();
    // Nodes whose liveness is known: a new leader places nothing until it has heard of
    // every registered node (or a second has passed), so that it does not pile every
    // engine on the nodes it happened to hear from first.
    let mut heard: BTreeSet<u64> = BTreeSet::new();
    let since = Instant::now();
    let mut ledger_checked = Instant::now() - Duration::from_secs(10);
    // Strategies held to some nodes (`nodes` in their configuration).
    let allowed: BTreeMap<String, BTreeSet<u64>> = setup
        .config
        .strategies
        .iter()
        .filter(|s| !s.nodes.is_empty())
        .map(|s| (s.name.clone(), s.nodes.iter().copied().collect()))
        .collect();
    let (assigned, _) = coord.assignments().await?;
    let mut current: BTreeMap<String, u64> =
        assigned.into_iter().map(|a| (a.strategy, a.node)).collect();
    while !setup.stop.load(Ordering::SeqCst) && !setup.fenced.load(Ordering::SeqCst) {
        let nodes = coord.nodes().await?;
        let registered: BTreeSet<u64> = nodes.iter().map(|n| n.id).collect();
        for n in &nodes {
            if n.id == setup.id {
                continue;
            }
            let Some(addr) = n.control.clone() else {
                continue;
            };
            if watchers.get(&n.id).is_some_and(|w| w.addr == addr) {
                continue;
            }
            let stop = Arc::new(AtomicBool::new(false));
            tokio::spawn(control::watch(
                n.id,
                addr.clone(),
                secret.clone(),
                setup.id,
                tx.clone(),
                stop.clone(),
            ));
            watchers.insert(n.id, Watcher { addr, stop });
            alive.remove(&n.id);
        }
        watchers.retain(|id, _| registered.contains(id));
        alive.retain(|id| registered.contains(id));
        alive.insert(setup.id);
        let draining = coord.draining().await?;
        let off = disabled(coord).await?;
        let stale: Vec<String> = off
            .iter()
            .filter(|s| current.contains_key(*s))
            .cloned()
            .collect();
        for s in &stale {
            if !coord.unassign(leader, s).await? {
                return Ok(());
            }
            tracing::info!(strategy = %s, "strategy disabled: engine unassigned");
            current.remove(s);
        }
        let enabled: Vec<String> = strategies
            .iter()
            .filter(|s| !off.contains(*s))
            .cloned()
            .collect();
        let strategies = &enabled[..];
        let eligible = placement::eligible(&alive, &draining, setup.id);
        let settled =
            since.elapsed() > Duration::from_secs(1) || watchers.keys().all(|n| heard.contains(n));
        let moves = if settled {
            placement::plan(strategies, &current, &eligible, &allowed)
        } else {
            Vec::new()
        };
        for (strategy, node) in moves {
            let a = Assignment {
                strategy: strategy.clone(),
                node,
            };
            let Some(epoch) = coord.assign(leader, &a).await? else {
                return Ok(());
            };
            tracing::info!(%strategy, node, epoch, from = ?current.get(&strategy), "engine assigned");
            current.insert(strategy, node);
        }
        // The placement leader also leads the ledger: it runs no engines, so a node
        // failure that moves engines does not also cost a ledger election.
        if ledger_checked.elapsed() >= Duration::from_millis(250) {
            ledger_checked = Instant::now();
            if let Ok(st) = setup.ledger.status().await
                && st.leader != 0
                && st.leader != setup.id
                && st.voters.contains(&setup.id)
            {
                setup.ledger.transfer_leader(setup.id);
            }
        }
        // Wait for a change of liveness, or look again (joins, drains) shortly.
        let first = tokio::time::timeout(Duration::from_millis(250), rx.recv()).await;
        let mut apply = |l: Liveness| match l {
            Liveness::Up(n) => {
                heard.insert(n);
                alive.insert(n);
            }
            Liveness::Down(n) => {
                if heard.insert(n) || alive.contains(&n) {
                    tracing::warn!(node = n, "node down");
                }
                alive.remove(&n);
            }
        };
        if let Ok(Some(l)) = first {
            apply(l);
            while let Ok(l) = rx.try_recv() {
                apply(l);
            }
        }
    }
    Ok(())
}

/// A running engine session.
struct Session {
    epoch: u64,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Result<(), String>>,
}

/// Follows this node's assignments and runs their engine sessions until `stop` is set
/// or the node is fenced; then stops every session (they cancel their orders and book
/// their last fills) before returning.
pub async fn follow(mut coord: Coord, setup: NodeSetup) -> Result<(), CoordError> {
    let names = strategy_names(&setup.config);
    let mut sessions: HashMap<String, Session> = HashMap::new();
    let mut retry_at: HashMap<(String, u64), Instant> = HashMap::new();
    let mut watch: Option<etcd_client::WatchStream> = None;
    let mut failures = 0u32;
    let result = loop {
        if setup.stop.load(Ordering::SeqCst) {
            break Ok(());
        }
        if setup.fenced.load(Ordering::SeqCst) {
            tracing::error!(node = setup.id, "fenced: every engine stops");
            break Ok(());
        }
        // etcd trouble leaves running engines alone: they trade on under the current
        // assignment until the lease watchdog fences the node.
        let (assigned, rev) = match coord.assignments().await {
            Ok(a) => {
                failures = 0;
                a
            }
            Err(e) => {
                failures += 1;
                let wait = Duration::from_millis(50 << failures.min(5));
                tracing::warn!(error = %e, retry_in = ?wait, "cannot read the assignments");
                watch = None;
                tokio::time::sleep(wait).await;
                continue;
            }
        };
        let mine: BTreeMap<String, u64> = assigned
            .iter()
            .filter(|a| a.node == setup.id && names.contains(&a.strategy))
            .map(|a| (a.strategy.clone(), a.epoch))
            .collect();
        // Stop what is no longer ours (or ours under an older epoch), and reap ended
        // sessions.
        // Every session to stop is told at once; they stop in parallel.
        let done: Vec<String> = sessions
            .iter()
            .filter(|(s, x)| mine.get(*s) != Some(&x.epoch) || x.thread.is_finished())
            .map(|(s, _)| s.clone())
            .collect();
        let ending: Vec<(String, Session)> = done
            .into_iter()
            .filter_map(|s| sessions.remove(&s).map(|x| (s, x)))
            .collect();
        for (_, sess) in &ending {
            sess.stop.store(true, Ordering::SeqCst);
        }
        for (s, sess) in ending {
            let epoch = sess.epoch;
            let r = tokio::task::spawn_blocking(move || sess.thread.join()).await;
            match r {
                Ok(Ok(Err(e))) => tracing::warn!(strategy = %s, error = %e, "engine session ended"),
                Ok(Ok(Ok(()))) => tracing::info!(strategy = %s, "engine session ended"),
                _ => tracing::error!(strategy = %s, "engine session panicked"),
            }
            // The same assignment is tried again only after a pause; a new epoch at once.
            retry_at.insert((s, epoch), Instant::now() + Duration::from_millis(200));
        }
        retry_at.retain(|_, t| *t > Instant::now());
        for (s, &epoch) in &mine {
            if sessions.contains_key(s) || retry_at.contains_key(&(s.clone(), epoch)) {
                continue;
            }
            let Some(index) = names.iter().position(|n| n == s) else {
                continue;
            };
            let stop = Arc::new(AtomicBool::new(false));
            let thread = {
                let (setup, stop, name) = (setup.clone(), stop.clone(), s.clone());
                std::thread::Builder::new()
                    .name(format!("session-{s}"))
                    .spawn(move || run_session(&setup, index, &name, epoch, &stop))
                    .map_err(|e| CoordError::Malformed {
                        key: s.clone(),
                        why: format!("cannot start the engine session thread: {e}"),
                    })?
            };
            tracing::info!(strategy = %s, epoch, "engine session starting");
            sessions.insert(
                s.clone(),
                Session {
                    epoch,
                    stop,
                    thread,
                },
            );
        }
        // Sleep until the assignments change (or a session may need reaping).
        if watch.is_none() {
            let opts = etcd_client::WatchOptions::new()
                .with_prefix()
                .with_start_revision(rev + 1);
            watch = match coord
                .client
                .watch(coord.key("assign/engine/"), Some(opts))
                .await
            {
                Ok(w) => Some(w),
                Err(e) => break Err(e.into()),
            };
        }
        if let Some(w) = watch.as_mut() {
            match tokio::time::timeout(Duration::from_millis(100), w.message()).await {
                Ok(Ok(Some(_))) | Err(_) => {}
                Ok(Ok(None) | Err(_)) => watch = None,
            }
        }
    };
    for s in sessions.values() {
        s.stop.store(true, Ordering::SeqCst);
    }
    for (_, s) in sessions.drain() {
        let _ = tokio::task::spawn_blocking(move || s.thread.join()).await;
    }
    result
}

/// One engine session: take the strategy over, then trade until stopped, fenced by the
/// node, or ended by the venue.
fn run_session(
    setup: &NodeSetup,
    index: usize,
    name: &str,
    epoch: u64,
    stop: &Arc<AtomicBool>,
) -> Result<(), String> {
    let config = &setup.config;
    let strategy = config
        .strategies
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| format!("strategy {name} is not in this node's configuration"))?;
    let (venue_name, venue_addr) = setup.venues.for_strategy(strategy)?;
    let venue_name = venue_name.to_owned();
    let logon = Logon {
        strategy: index as u16,
        epoch,
        node: setup.id,
        tag: hft_exec::link::strategy_tag(name),
    };
    let (venue, replay) =
        RemoteVenue::logon(venue_addr, logon, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    let specs: Vec<InstrumentSpec> = config.instruments.iter().map(|i| i.spec.clone()).collect();
    let (slots, kill) = crate::node::build_slots(config, &specs, Some);
    let Some(mut slot) = slots.into_iter().nth(index) else {
        return Err(format!(
            "strategy {name} is not in this node's configuration"
        ));
    };
    slot.engine.set_epoch(epoch);
    let booking = Booking::new(
        setup.ledger.clone(),
        &config.ledger.account,
        &venue_name,
        strategy_names(config),
        specs,
    )
    .with_epoch(epoch);
    // The ledger may be electing (its leader may have died with the engine's node):
    // retry briefly rather than give the assignment up.
    let deadline = Instant::now() + Duration::from_secs(5);
    let (booked, known) = loop {
        match booking.take_over(name, &replay) {
            Ok(r) => break r,
            Err(e @ (hft_ledger::LedgerError::NoLeader | hft_ledger::LedgerError::Retry))
                if Instant::now() < deadline && !stop.load(Ordering::SeqCst) =>
            {
                tracing::debug!(strategy = name, error = %e, "ledger busy; taking over again");
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(format!("cannot take {name} over in the ledger: {e}")),
        }
    };
    tracing::info!(
        strategy = name,
        epoch,
        replayed = replay.len(),
        booked,
        already_booked = known,
        "took the strategy over"
    );
    // The node's fence stops the session too.
    let shutdown = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (shutdown, stop, fenced) = (shutdown.clone(), stop.clone(), setup.fenced.clone());
        std::thread::spawn(move || {
            while !shutdown.load(Ordering::SeqCst) {
                if stop.load(Ordering::SeqCst) || fenced.load(Ordering::SeqCst) {
                    shutdown.store(true, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let opts = LiveOptions {
        duration: None,
        shutdown: shutdown.clone(),
        ring_capacity: config.engine.ring_capacity,
        timer_interval: Duration::from_millis(config.engine.timer_interval_ms),
        status_interval: Duration::from_millis(250),
        idle: IdleMode::Park,
        seed: config.simulator.seed,
        booking: Some(booking),
        reload: setup.reloads.as_ref().map(|h| h.subscribe(index)),
    };
    // Kill switches live in the ledger. The session reads them linearizably (the
    // leader confirms its commit index first), so a member that lags behind the leader,
    // after a restart or a partition, cannot hide a switch engaged meanwhile.
    let kills = {
        let (shutdown, ledger, kill, name, venue) = (
            shutdown.clone(),
            setup.ledger.clone(),
            kill.clone(),
            name.to_owned(),
            venue_name.clone(),
        );
        let configured = config.risk.kill_switch;
        std::thread::spawn(move || {
            while !shutdown.load(Ordering::SeqCst) {
                let (n, venue) = (name.clone(), venue.clone());
                let rx = ledger.read(move |st| {
                    st.kills().iter().any(|k| {
                        k.engaged
                            && match &k.scope {
                                hft_ledger::KillScope::Global => true,
                                hft_ledger::KillScope::Strategy(s) => *s == n,
                                hft_ledger::KillScope::Venue(v) => *v == venue,
                            }
                    })
                });
                if let Ok(Ok(engaged)) = rx.blocking_recv() {
                    if engaged || configured {
                        if !kill.is_engaged() {
                            tracing::warn!(strategy = %name, "kill switch engaged in the ledger: trading halted");
                        }
                        kill.engage();
                    } else if kill.is_engaged() {
                        tracing::info!(strategy = %name, "kill switch released in the ledger");
                        kill.reset();
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let registry = setup.engines.clone();
    registry.set(
        name,
        Some(RunningEngine {
            epoch,
            venue: venue_name.clone(),
            view: None,
        }),
    );
    let mut published = false;
    let r = live::run_with(venue, vec![slot], kill, opts, |v, _| {
        // Once: the view's counters are shared, later calls need not lock anything.
        if !published && let Some(e) = v.engines.first() {
            registry.set(
                name,
                Some(RunningEngine {
                    epoch,
                    venue: venue_name.clone(),
                    view: Some(e.clone()),
                }),
            );
            published = true;
        }
    });
    registry.set(name, None);
    shutdown.store(true, Ordering::SeqCst);
    let _ = kills.join();
    let _ = watcher.join();
    let report = r?;
    if let Some(l) = &report.ledger
        && !l.mismatches.is_empty()
    {
        tracing::error!(strategy = name, mismatches = ?l.mismatches, "engine and ledger positions differ");
    }
    tracing::info!(
        strategy = name,
        epoch,
        orders = report.strategies.iter().map(|s| s.orders).sum::<u64>(),
        "engine session done"
    );
    Ok(())
}
