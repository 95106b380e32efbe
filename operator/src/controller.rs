//! The reconcilers: a TradingCluster becomes its Kubernetes objects and its etcd
//! configuration; a Strategy is checked, mirrored from the cluster's view and, on
//! delete, disabled and held until its position is flat; a RiskPolicy is checked.
//!
//! Every object is written with server-side apply under the field manager
//! `hft-operator`, so a reconcile states the whole desired object and never fights
//! another manager over fields it does not own.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde_json::{Value, json};

use crate::config::{Rendered, StrategyRes, render};
use crate::crd::{RiskPolicy, Strategy, TradingCluster};
use crate::resources;

/// Field manager of every write.
pub const MANAGER: &str = "hft-operator";
/// Finalizer that holds a deleted Strategy until its position is flat.
pub const FLATTEN: &str = "hft.dev/flatten";
/// How long a deleted Strategy may take to flatten before it is marked Degraded.
pub const FLATTEN_TIMEOUT: Duration = Duration::from_secs(600);

/// A reconcile that failed; the controller retries it with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or failed a call.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The finalizer could not be added or removed.
    #[error("finalizer: {0}")]
    Finalizer(String),
    /// The resource has no namespace.
    #[error("{0} has no namespace")]
    NoNamespace(String),
    /// A cluster's admin API refused or failed a call.
    #[error("admin API: {0}")]
    Admin(String),
    /// A deleted Strategy is not flat yet: its finalizer stays; look again after the
    /// duration (not a failure).
    #[error("Strategy {0} is not flat yet")]
    NotFlat(String, Duration),
}

/// What every reconcile shares.
pub struct Context {
    /// API client.
    pub client: Client,
    /// Who publishes events.
    pub reporter: Reporter,
    /// Replaces each cluster's admin API URL (tests; a port-forward when run out of
    /// cluster).
    pub admin_url: Option<String>,
    /// Connections to the clusters' etcds, kept from reconcile to reconcile.
    pub etcd: EtcdPool,
}

/// One etcd connection per cluster, reused by every reconcile (a reconcile used to open
/// its own, a TCP and HTTP/2 handshake each time). It is replaced when the cluster's
/// endpoints change, dropped on an error so that the next reconcile connects afresh, and
/// dropped once unused for [`EtcdPool::IDLE`]: a live cluster reconciles every minute,
/// so only deleted clusters' connections go (the operator sees no event for those).
#[derive(Default)]
pub struct EtcdPool(std::sync::Mutex<std::collections::HashMap<String, Pooled>>);

/// A pooled connection: the endpoints it was made for and when it was last handed out.
struct Pooled {
    endpoints: Vec<String>,
    coord: hft_cluster::coord::Coord,
    used: std::time::Instant,
}

impl EtcdPool {
    /// How long a connection may go unused before it is dropped.
    pub const IDLE: Duration = Duration::from_secs(600);

    fn key(tc: &TradingCluster) -> String {
        format!("{}/{}", tc.namespace().unwrap_or_default(), tc.name_any())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Pooled>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn get(&self, tc: &TradingCluster) -> Result<hft_cluster::coord::Coord, String> {
        self.get_at(tc, std::time::Instant::now()).await
    }

    /// The connection for `tc` as of `now`, connecting if there is none for its endpoints.
    async fn get_at(
        &self,
        tc: &TradingCluster,
        now: std::time::Instant,
    ) -> Result<hft_cluster::coord::Coord, String> {
        let (key, endpoints) = (Self::key(tc), resources::etcd_endpoints(tc));
        {
            let mut pool = self.lock();
            pool.retain(|k, p| *k == key || now.saturating_duration_since(p.used) < Self::IDLE);
            if let Some(p) = pool.get_mut(&key).filter(|p| p.endpoints == endpoints) {
                p.used = now;
                return Ok(p.coord.clone());
            }
        }
        let coord =
            hft_cluster::coord::Coord::connect(&endpoints, &tc.name_any(), Duration::from_secs(5))
                .await
                .map_err(|e| e.to_string())?;
        self.lock().insert(
            key,
            Pooled {
                endpoints,
                coord: coord.clone(),
                used: now,
            },
        );
        Ok(coord)
    }

    fn forget(&self, tc: &TradingCluster) {
        self.lock().remove(&Self::key(tc));
    }

    /// Connections held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Context {
    fn recorder(&self) -> Recorder {
        Recorder::new(self.client.clone(), self.reporter.clone())
    }

    fn admin_url(&self, tc: &TradingCluster) -> String {
        self.admin_url
            .clone()
            .unwrap_or_else(|| resources::admin_url(tc))
    }
}

/// What of a Strategy can change its cluster's configuration: a new spec (its
/// generation) or the start of its deletion.
fn cluster_mark(s: &Strategy) -> u64 {
    use std::hash::{Hash, Hasher};
    let m = &s.metadata;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (m.generation, m.deletion_timestamp.is_some()).hash(&mut h);
    h.finish()
}

/// The Strategies, from a watch of them, whose change must reconcile their cluster: a
/// new spec, the start of a deletion, and the removal itself once the finalizer lets it
/// go (the deleted object's last state). The operator rewrites a Strategy's status as
/// its position and PnL move, and those updates alone must not re-render and re-apply
/// the whole cluster. (kube's predicate filter would also drop the removal, whose object
/// looks like the last update before it.)
pub fn cluster_triggers<S>(events: S) -> impl Stream<Item = Result<Strategy, watcher::Error>>
where
    S: Stream<Item = Result<watcher::Event<Strategy>, watcher::Error>>,
{
    let mut seen: HashMap<String, u64> = HashMap::new();
    events.filter_map(move |ev| {
        let key = |s: &Strategy| s.uid().unwrap_or_else(|| s.name_any());
        let out = match ev {
            Ok(watcher::Event::Apply(s) | watcher::Event::InitApply(s)) => {
                let mark = cluster_mark(&s);
                (seen.insert(key(&s), mark) != Some(mark)).then_some(Ok(s))
            }
            Ok(watcher::Event::Delete(s)) => {
                seen.remove(&key(&s));
                Some(Ok(s))
            }
            Ok(watcher::Event::Init | watcher::Event::InitDone) => None,
            Err(e) => Some(Err(e)),
        };
        std::future::ready(out)
    })
}

/// Sets condition `type_` to `status` with a reason and message; the transition time
/// changes only when the status does, as Kubernetes conventions ask.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    generation: Option<i64>,
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
) {
    let status = if status { "True" } else { "False" }.to_owned();
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != status {
                c.last_transition_time = now;
            }
            c.status = status;
            c.reason = reason.into();
            c.message = message;
            c.observed_generation = generation;
        }
        None => conditions.push(Condition {
            type_: type_.into(),
            status,
            reason: reason.into(),
            message,
            last_transition_time: now,
            observed_generation: generation,
        }),
    }
}

fn apply_params() -> PatchParams {
    PatchParams::apply(MANAGER).force()
}

async fn apply<K>(api: &Api<K>, obj: &K) -> Result<K, Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    Ok(api
        .patch(&name, &apply_params(), &Patch::Apply(obj))
        .await?)
}

/// Counts and times a reconcile for the operator's metrics.
fn observe(kind: &'static str, started: Instant, ok: bool) {
    metrics::counter!("hft_operator_reconciles_total", "kind" => kind).increment(1);
    if !ok {
        metrics::counter!("hft_operator_reconcile_errors_total", "kind" => kind).increment(1);
    }
    metrics::histogram!("hft_operator_reconcile_seconds", "kind" => kind)
        .record(started.elapsed().as_secs_f64());
}

async fn publish<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    obj: &K,
    warning: bool,
    reason: &str,
    note: String,
) {
    let ev = Event {
        type_: if warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: reason.into(),
        note: Some(note),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder().publish(&ev, &obj.object_ref(&())).await {
        tracing::warn!(error = %e, reason, "event not published");
    }
}

/// The admin token of a cluster, from its Secret.
async fn admin_token(ctx: &Context, tc: &TradingCluster, ns: &str) -> Result<String, String> {
    let r = &tc.spec.secrets.admin_token;
    let s = Api::<Secret>::namespaced(ctx.client.clone(), ns)
        .get(&r.name)
        .await
        .map_err(|e| format!("Secret {}: {e}", r.name))?;
    let bytes = s
        .data
        .and_then(|d| d.get(&r.key).cloned())
        .ok_or_else(|| format!("Secret {} has no key {}", r.name, r.key))?;
    String::from_utf8(bytes.0)
        .map(|t| t.trim().to_owned())
        .map_err(|_| format!("Secret {} key {} is not UTF-8", r.name, r.key))
}

/// One call to a cluster's admin API (blocking HTTP on a worker thread).
async fn admin_call(
    url: String,
    token: String,
    body: Option<serde_json::Value>,
) -> Result<serde_json::Value, String> {
    // One agent for every call: its connection pool is reused across reconciles.
    static AGENT: std::sync::OnceLock<ureq::Agent> = std::sync::OnceLock::new();
    tokio::task::spawn_blocking(move || {
        let agent = AGENT.get_or_init(|| {
            ureq::Agent::config_builder()
                .timeout_global(Some(Duration::from_secs(5)))
                .http_status_as_error(false)
                .build()
                .into()
        });
        let auth = format!("Bearer {token}");
        let r = match &body {
            Some(b) => agent.post(&url).header("Authorization", &auth).send_json(b),
            None => agent.get(&url).header("Authorization", &auth).call(),
        };
        let mut r = r.map_err(|e| format!("{url}: {e}"))?;
        let status = r.status();
        let v: serde_json::Value = r.body_mut().read_json().unwrap_or(serde_json::Value::Null);
        if status.is_success() {
            Ok(v)
        } else {
            Err(format!(
                "{url}: {status} {}",
                v["error"].as_str().unwrap_or("")
            ))
        }
    })
    .await
    .map_err(|e| e.to_string())?
}

/// The Strategy resources of a cluster, and its RiskPolicy (the oldest, if several).
async fn cluster_inputs(
    ctx: &Context,
    ns: &str,
    cluster: &str,
) -> Result<(Vec<Strategy>, Option<RiskPolicy>), Error> {
    let strategies: Vec<Strategy> = Api::<Strategy>::namespaced(ctx.client.clone(), ns)
        .list(&ListParams::default())
        .await?
        .into_iter()
        .filter(|s| s.spec.cluster == cluster)
        .collect();
    Ok((strategies, policy_of(ctx, ns, cluster).await?))
}

/// The RiskPolicy of a cluster: the oldest naming it, if several do.
async fn policy_of(ctx: &Context, ns: &str, cluster: &str) -> Result<Option<RiskPolicy>, Error> {
    let mut policies: Vec<RiskPolicy> = Api::<RiskPolicy>::namespaced(ctx.client.clone(), ns)
        .list(&ListParams::default())
        .await?
        .into_iter()
        .filter(|p| p.spec.cluster == cluster)
        .collect();
    policies.sort_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0));
    Ok(policies.into_iter().next())
}

fn rendered(tc: &TradingCluster, strategies: &[Strategy], policy: Option<&RiskPolicy>) -> Rendered {
    let res: Vec<StrategyRes> = strategies
        .iter()
        .map(|s| StrategyRes {
            name: s.name_any(),
            spec: s.spec.clone(),
            deleting: s.metadata.deletion_timestamp.is_some(),
        })
        .collect();
    render(
        tc.spec.config_overlay.as_deref(),
        policy.map(|p| &p.spec),
        &tc.spec.venue_names(),
        &res,
    )
}

/// Writes the configuration to the cluster's etcd if it changed; its revision.
async fn write_config(ctx: &Context, tc: &TradingCluster, text: &str) -> Result<i64, String> {
    let mut coord = ctx.etcd.get(tc).await?;
    let r = async {
        if let Some(cur) = coord.config_get().await.map_err(|e| e.to_string())?
            && cur.text == text
        {
            return Ok(cur.revision);
        }
        coord
            .config_set(text, None, MANAGER)
            .await
            .map_err(|e| e.to_string())
    }
    .await;
    if r.is_err() {
        ctx.etcd.forget(tc);
    }
    r
}

/// Reconciles a TradingCluster.
pub async fn reconcile_cluster(
    tc: Arc<TradingCluster>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let started = Instant::now();
    let r = cluster(&tc, &ctx).await;
    observe("TradingCluster", started, r.is_ok());
    r
}

/// Removes the ledger members above `replicas` (highest first), each after draining its
/// node; returns how many pods may remain: `replicas` when all left, else (with why)
/// the highest id still a member. A member already gone counts as removed, so a reconcile that
/// stopped half-way picks up where it was.
async fn remove_members(
    ctx: &Context,
    tc: &TradingCluster,
    ns: &str,
    replicas: i32,
    current: i32,
) -> Result<i32, (i32, String)> {
    let token = admin_token(ctx, tc, ns).await.map_err(|e| (current, e))?;
    let base = ctx.admin_url(tc);
    let view = ledger_view(&base, &token).await.map_err(|e| (current, e))?;
    let members: Vec<i64> = view.voters.into_iter().chain(view.learners).collect();
    for id in (replicas + 1..=current).rev() {
        if !members.contains(&i64::from(id)) {
            continue;
        }
        // Its engines move first, so that no fill is made on a node leaving the ledger.
        let drain = json!({ "node": id, "drain": true });
        let removal = json!({ "action": "remove", "id": id });
        let done = async {
            admin_call(format!("{base}/v1/nodes/drain"), token.clone(), Some(drain)).await?;
            admin_call(
                format!("{base}/v1/ledger/members"),
                token.clone(),
                Some(removal),
            )
            .await
        };
        if let Err(e) = done.await {
            return Err((
                id,
                format!("cannot remove ledger member {id} before scaling down: {e}"),
            ));
        }
        publish(
            ctx,
            tc,
            false,
            "MemberRemoved",
            format!("node {id} drained and ledger member {id} removed; its pod goes next"),
        )
        .await;
    }
    Ok(replicas)
}

/// Most log entries a learner may be behind the leader when it is promoted.
const PROMOTE_MAX_LAG: u64 = 64;

/// Brings the ledger up to `replicas` members. Each pod above the members started as a
/// joiner (`--founders`) and is added as a learner; a learner is promoted to a voter
/// once its pod is Ready, which its readiness probe answers only once the member has
/// caught up with the ledger, so a promotion never leaves a voter that cannot vote.
/// Returns the learners still catching up, and the voters now.
/// The ledger's status as the admin API gives it (from the leader when it answers), with
/// its voters and its learners.
struct LedgerView {
    status: Value,
    voters: Vec<i64>,
    learners: Vec<i64>,
}

async fn ledger_view(base: &str, token: &str) -> Result<LedgerView, String> {
    let status = admin_call(format!("{base}/v1/ledger/status"), token.to_owned(), None)
        .await
        .map_err(|e| format!("cannot read the ledger members: {e}"))?;
    let ids = |k: &str| -> Vec<i64> {
        status[k]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_i64)
            .collect()
    };
    let (voters, learners) = (ids("voters"), ids("learners"));
    Ok(LedgerView {
        status,
        voters,
        learners,
    })
}

/// One ledger membership change through the admin API (`what` names it in an error),
/// announced by an event.
async fn change_member(
    ctx: &Context,
    tc: &TradingCluster,
    (base, token): (&str, &str),
    change: Value,
    what: String,
    (reason, note): (&str, String),
) -> Result<(), String> {
    admin_call(
        format!("{base}/v1/ledger/members"),
        token.to_owned(),
        Some(change),
    )
    .await
    .map_err(|e| format!("cannot {what}: {e}"))?;
    publish(ctx, tc, false, reason, note).await;
    Ok(())
}

/// Members that lost their log (a replaced volume) wait, voting for no one, to be removed
/// and added back; their nodes mark them in etcd (`ledger/rejoining/<id>`). Each one
/// still a voter is removed here, and the scale-up path adds it back as a learner and
/// promotes it once caught up. A mark is deleted once handled, so a node that restarts
/// before it has seen its re-add (it marks itself again) is not removed twice: by then
/// it is a learner. Returns how many were removed.
async fn remove_rejoining(ctx: &Context, tc: &TradingCluster, ns: &str) -> Result<usize, String> {
    let mut coord = ctx.etcd.get(tc).await?;
    let marked = coord.rejoining().await.map_err(|e| format!("etcd: {e}"))?;
    if marked.is_empty() {
        return Ok(0);
    }
    let token = admin_token(ctx, tc, ns).await?;
    let base = ctx.admin_url(tc);
    let view = ledger_view(&base, &token).await?;
    let mut removed = 0;
    for id in marked {
        if view.voters.contains(&(id as i64)) {
            change_member(
                ctx,
                tc,
                (&base, &token),
                json!({ "action": "remove", "id": id }),
                format!("remove ledger member {id}, which lost its log"),
                (
                    "MemberRejoining",
                    format!(
                        "ledger member {id} lost its log: removed, to be added back as a learner"
                    ),
                ),
            )
            .await?;
            removed += 1;
        }
        coord
            .delete(&format!("ledger/rejoining/{id}"))
            .await
            .map_err(|e| format!("etcd: {e}"))?;
    }
    Ok(removed)
}

async fn add_members(
    ctx: &Context,
    tc: &TradingCluster,
    ns: &str,
    replicas: i32,
) -> Result<(Vec<i64>, i32), String> {
    let token = admin_token(ctx, tc, ns).await?;
    let base = ctx.admin_url(tc);
    let LedgerView {
        status: st,
        voters,
        mut learners,
    } = ledger_view(&base, &token).await?;
    for id in 1..=i64::from(replicas) {
        if voters.contains(&id) || learners.contains(&id) {
            continue;
        }
        let addr = resources::ledger_addr(tc, id as i32);
        change_member(
            ctx,
            tc,
            (&base, &token),
            json!({ "action": "add-learner", "id": id, "addr": addr }),
            format!("add ledger member {id}"),
            (
                "MemberAdded",
                format!(
                    "ledger member {id} ({addr}) added as a learner; it votes once its pod is ready"
                ),
            ),
        )
        .await?;
        learners.push(id);
    }
    let pods = Api::<Pod>::namespaced(ctx.client.clone(), ns);
    let mut waiting = Vec::new();
    let mut voting = voters.len();
    for id in learners.into_iter().filter(|&id| id <= i64::from(replicas)) {
        let pod = pods
            .get_opt(&format!("{}-{}", tc.name_any(), id - 1))
            .await
            .map_err(|e| format!("cannot read the pod of member {id}: {e}"))?;
        let ready = pod
            .and_then(|p| p.status)
            .and_then(|s| s.conditions)
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        // The leader's view, when the status came from it: the learner's log is within
        // a few entries of the leader's (the pod's own readiness only knows what the
        // learner has heard of).
        let lag = st["peers"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["id"].as_i64() == Some(id))
            .and_then(|p| p["lag"].as_u64());
        if !ready || lag.is_some_and(|l| l > PROMOTE_MAX_LAG) {
            waiting.push(id);
            continue;
        }
        change_member(
            ctx,
            tc,
            (&base, &token),
            json!({ "action": "promote", "id": id }),
            format!("promote ledger member {id}"),
            (
                "MemberPromoted",
                format!("ledger member {id} caught up and now votes"),
            ),
        )
        .await?;
        voting += 1;
    }
    Ok((waiting, i32::try_from(voting).unwrap_or(i32::MAX)))
}

/// Marks a cluster whose spec cannot be acted on `Invalid` (and not Ready) with the
/// reason, writing nothing else; the reconcile waits for the spec to change.
async fn invalid_cluster(
    ctx: &Context,
    tc: &TradingCluster,
    ns: &str,
    mut status: crate::crd::TradingClusterStatus,
    reason: &str,
    why: String,
) -> Result<Action, Error> {
    let generation = tc.metadata.generation;
    set_condition(
        &mut status.conditions,
        generation,
        "Invalid",
        true,
        reason,
        why.clone(),
    );
    set_condition(
        &mut status.conditions,
        generation,
        "Ready",
        false,
        "Invalid",
        why.clone(),
    );
    status.observed_generation = generation;
    publish(ctx, tc, true, "InvalidSpec", why).await;
    patch_status::<TradingCluster>(ctx, ns, &tc.name_any(), json!({ "status": status })).await?;
    Ok(Action::await_change())
}

async fn cluster(tc: &TradingCluster, ctx: &Context) -> Result<Action, Error> {
    let ns = tc
        .namespace()
        .ok_or_else(|| Error::NoNamespace(tc.name_any()))?;
    let name = tc.name_any();
    let client = ctx.client.clone();
    let generation = tc.metadata.generation;
    let mut status = tc.status.clone().unwrap_or_default();
    if let Some(why) = tc.spec.etcd.problem() {
        return invalid_cluster(ctx, tc, &ns, status, "InvalidEtcd", why).await;
    }
    if let Err(why) = tc.spec.venue_links() {
        return invalid_cluster(ctx, tc, &ns, status, "InvalidVenues", why).await;
    }
    let mut degraded: Option<(&str, String)> = None;
    let sts_api = Api::<StatefulSet>::namespaced(client.clone(), &ns);
    // Scale-down: the members above the new size leave the ledger first; the
    // StatefulSet shrinks only past the members that left.
    let current = sts_api
        .get_opt(&name)
        .await?
        .and_then(|s| s.spec.and_then(|s| s.replicas))
        .unwrap_or(0);
    // The members that founded the ledger: the replicas of its first reconcile (for a
    // cluster made by an operator without this field, the pods it had).
    let founders = status.founders.unwrap_or(if current > 0 {
        current
    } else {
        tc.spec.replicas
    });
    status.founders = Some(founders);
    let mut replicas = tc.spec.replicas;
    if current > replicas {
        match remove_members(ctx, tc, &ns, replicas, current).await {
            Ok(r) => {
                replicas = r;
                status.ledger_members = Some(r);
            }
            Err((kept, e)) => {
                degraded = Some(("MemberRemovalFailed", e));
                replicas = kept;
            }
        }
    }
    // A managed etcd comes first: the configuration goes there once it is up.
    let mut etcd_starting = None;
    if let Some(m) = &tc.spec.etcd.managed {
        let existing = sts_api
            .get_opt(&resources::etcd_name(tc))
            .await?
            .and_then(|s| s.spec.and_then(|s| s.replicas));
        if let Some(n) = existing.filter(|&n| n != m.replicas) {
            let why = format!(
                "spec.etcd.managed.replicas: the managed etcd has {n} members and cannot change size (set it back to {n})"
            );
            return invalid_cluster(ctx, tc, &ns, status, "EtcdResize", why).await;
        }
        let svc = Api::<Service>::namespaced(client.clone(), &ns);
        apply(&svc, &resources::etcd_service(tc)).await?;
        if let Some(e) = resources::etcd_stateful_set(tc, m.replicas) {
            let e = apply(&sts_api, &e).await?;
            let ready = e.status.and_then(|s| s.ready_replicas).unwrap_or(0);
            if ready < m.replicas {
                etcd_starting = Some(format!(
                    "managed etcd: {ready} of {} members ready",
                    m.replicas
                ));
            }
        }
        apply(
            &Api::<PodDisruptionBudget>::namespaced(client.clone(), &ns),
            &resources::etcd_pdb(tc),
        )
        .await?;
    }
    // Configuration: every Strategy and the RiskPolicy of this cluster, checked, into
    // etcd; nothing is written when it does not check (the nodes keep the last good).
    let (strategies, policy) = cluster_inputs(ctx, &ns, &name).await?;
    let r = rendered(tc, &strategies, policy.as_ref());
    set_condition(
        &mut status.conditions,
        generation,
        "Invalid",
        r.cluster_invalid.is_some(),
        if r.cluster_invalid.is_some() {
            "InvalidConfiguration"
        } else {
            "Valid"
        },
        r.cluster_invalid
            .as_ref()
            .map_or_else(String::new, |e| e.to_string()),
    );
    let mut written = None;
    match &r.text {
        // Written at the first reconcile after the managed etcd is up.
        Some(_) if etcd_starting.is_some() => {}
        Some(text) => match write_config(ctx, tc, text).await {
            Ok(rev) => {
                if status.config_revision != Some(rev) {
                    publish(
                        ctx,
                        tc,
                        false,
                        "ConfigApplied",
                        format!(
                            "configuration revision {rev}: {} strategies, {} invalid",
                            strategies.len() - r.invalid.len(),
                            r.invalid.len()
                        ),
                    )
                    .await;
                }
                status.config_revision = Some(rev);
                written = Some((text.as_str(), rev));
            }
            Err(e) => {
                degraded.get_or_insert((
                    "EtcdUnavailable",
                    format!("cannot write the configuration: {e}"),
                ));
            }
        },
        None if r.cluster_invalid.is_none() => {
            degraded.get_or_insert((
                "ConfigRejected",
                "the strategies do not load together; the last good configuration stays".into(),
            ));
        }
        None => {}
    }
    if let Some((text, rev)) = written {
        apply(
            &Api::<ConfigMap>::namespaced(client.clone(), &ns),
            &resources::config_map(tc, text, Some(rev)),
        )
        .await?;
    }
    let svc = Api::<Service>::namespaced(client.clone(), &ns);
    apply(&svc, &resources::headless_service(tc)).await?;
    apply(&svc, &resources::client_service_object(tc)).await?;
    apply(
        &Api::<PodDisruptionBudget>::namespaced(client.clone(), &ns),
        &resources::pdb(tc),
    )
    .await?;
    let sts = apply(&sts_api, &resources::stateful_set(tc, replicas, founders)).await?;
    if tc.spec.metrics.enabled && tc.spec.metrics.service_monitor {
        let crds = Api::<CustomResourceDefinition>::all(client.clone());
        if crds
            .get_opt("servicemonitors.monitoring.coreos.com")
            .await?
            .is_some()
        {
            let ar = ApiResource {
                group: "monitoring.coreos.com".into(),
                version: "v1".into(),
                api_version: "monitoring.coreos.com/v1".into(),
                kind: "ServiceMonitor".into(),
                plural: "servicemonitors".into(),
            };
            let sm: DynamicObject = serde_json::from_value(resources::service_monitor(tc))
                .map_err(|e| Error::Kube(kube::Error::SerdeError(e)))?;
            apply(&Api::namespaced_with(client.clone(), &ns, &ar), &sm).await?;
        }
    }
    // Only when etcd answered this round: the configuration was written.
    let rejoin = match written {
        Some(_) => remove_rejoining(ctx, tc, &ns).await,
        None => Ok(0),
    };
    match rejoin {
        Ok(0) => {}
        Ok(n) => {
            let voters = status.ledger_members.unwrap_or(tc.spec.replicas);
            status.ledger_members = Some(voters - i32::try_from(n).unwrap_or(voters));
        }
        Err(e) => {
            degraded.get_or_insert(("MemberRejoinFailed", e));
        }
    }
    // Scale-up: the pods above the founders join the ledger.
    let mut joining = Vec::new();
    // Members to add: pods above the founders, or pods back after a scale-down took
    // their members out (their volumes went with them: they start as joiners).
    let short = status.ledger_members.is_some_and(|m| m < tc.spec.replicas);
    if (tc.spec.replicas > founders || short) && replicas == tc.spec.replicas {
        match add_members(ctx, tc, &ns, replicas).await {
            Ok((w, voters)) => {
                joining = w;
                status.ledger_members = Some(voters);
            }
            Err(e) => {
                degraded.get_or_insert(("MemberAddFailed", e));
            }
        }
    }
    let st = sts.status.unwrap_or_default();
    status.replicas = st.replicas;
    status.ready_replicas = st.ready_replicas.unwrap_or(0);
    status.observed_generation = generation;
    let want = tc.spec.replicas;
    let progressing = status.ready_replicas < want
        || replicas != want
        || !joining.is_empty()
        || etcd_starting.is_some();
    let mut message = format!("{} of {want} nodes ready", status.ready_replicas);
    if !joining.is_empty() {
        message.push_str(&format!(
            "; ledger members {joining:?} catching up as learners"
        ));
    }
    if let Some(e) = &etcd_starting {
        message.push_str(&format!(
            "; {e}, the configuration is written once it is up"
        ));
    }
    set_condition(
        &mut status.conditions,
        generation,
        "Progressing",
        progressing,
        if etcd_starting.is_some() {
            "EtcdStarting"
        } else if !joining.is_empty() {
            "AddingMembers"
        } else if progressing {
            "Rolling"
        } else {
            "Stable"
        },
        message,
    );
    set_condition(
        &mut status.conditions,
        generation,
        "Degraded",
        degraded.is_some(),
        degraded.as_ref().map_or("Healthy", |d| d.0),
        degraded.as_ref().map_or_else(String::new, |d| d.1.clone()),
    );
    let ready = !progressing && degraded.is_none() && r.cluster_invalid.is_none();
    set_condition(
        &mut status.conditions,
        generation,
        "Ready",
        ready,
        if ready {
            "Ready"
        } else if r.cluster_invalid.is_some() {
            "Invalid"
        } else if degraded.is_some() {
            "Degraded"
        } else {
            "Progressing"
        },
        format!("{} of {want} nodes ready", status.ready_replicas),
    );
    patch_status::<TradingCluster>(ctx, &ns, &name, json!({ "status": status })).await?;
    Ok(if ready {
        Action::requeue(Duration::from_secs(60))
    } else {
        Action::requeue(Duration::from_secs(5))
    })
}

/// A merge patch of an object's status subresource.
async fn patch_status<K>(
    ctx: &Context,
    ns: &str,
    name: &str,
    patch: serde_json::Value,
) -> Result<(), Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    Api::<K>::namespaced(ctx.client.clone(), ns)
        .patch_status(name, &PatchParams::default(), &Patch::Merge(patch))
        .await?;
    Ok(())
}

/// Reconciles a Strategy (its finalizer first).
pub async fn reconcile_strategy(s: Arc<Strategy>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let ns = s
        .namespace()
        .ok_or_else(|| Error::NoNamespace(s.name_any()))?;
    let api = Api::<Strategy>::namespaced(ctx.client.clone(), &ns);
    let r = finalizer(&api, FLATTEN, s, |ev| async {
        match ev {
            Finalizer::Apply(s) => strategy(&s, &ctx, &ns, false).await,
            Finalizer::Cleanup(s) => strategy(&s, &ctx, &ns, true).await,
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e)
        | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer(other.to_string()),
    });
    observe(
        "Strategy",
        started,
        matches!(r, Ok(_) | Err(Error::NotFlat(..))),
    );
    r
}

/// The instances a Strategy runs as: its name, or one `<name>-<variant>` per variant.
fn instances(s: &Strategy) -> Vec<String> {
    let name = s.name_any();
    if s.spec.variants.is_empty() {
        vec![name]
    } else {
        s.spec
            .variants
            .iter()
            .map(|v| format!("{name}-{}", v.name))
            .collect()
    }
}

/// The cluster's view of a strategy's instances: the node of the first one placed, and
/// their booked net position together (raw units).
async fn strategy_view(
    ctx: &Context,
    tc: &TradingCluster,
    ns: &str,
    names: &[String],
) -> Result<(Option<i64>, i64), String> {
    let token = admin_token(ctx, tc, ns).await?;
    let base = ctx.admin_url(tc);
    let mine = |x: &serde_json::Value| names.iter().any(|n| x["strategy"] == n.as_str());
    let a = admin_call(format!("{base}/v1/assignments"), token.clone(), None).await?;
    let node = a["assignments"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|x| mine(x))
        .and_then(|x| x["node"].as_i64());
    let p = admin_call(format!("{base}/v1/ledger/positions"), token, None).await?;
    let position = p["positions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|x| mine(x))
        .filter_map(|x| x["qty"].as_i64())
        .sum();
    Ok((node, position))
}

/// A raw quantity as a decimal at the instrument's scale.
fn decimal(raw: i64, scale: u8) -> String {
    let d = 10i128.pow(u32::from(scale));
    let (sign, v) = (if raw < 0 { "-" } else { "" }, i128::from(raw).abs());
    if scale == 0 {
        format!("{sign}{v}")
    } else {
        format!("{sign}{}.{:0w$}", v / d, v % d, w = usize::from(scale))
    }
}

async fn strategy(s: &Strategy, ctx: &Context, ns: &str, deleting: bool) -> Result<Action, Error> {
    let name = s.name_any();
    let generation = s.metadata.generation;
    let mut status = s.status.clone().unwrap_or_default();
    let tc = Api::<TradingCluster>::namespaced(ctx.client.clone(), ns)
        .get_opt(&s.spec.cluster)
        .await?;
    let Some(tc) = tc else {
        if deleting {
            // No cluster, no position to wait for.
            return Ok(Action::await_change());
        }
        set_condition(
            &mut status.conditions,
            generation,
            "Ready",
            false,
            "ClusterNotFound",
            format!("no TradingCluster {} in namespace {ns}", s.spec.cluster),
        );
        patch_status::<Strategy>(ctx, ns, &name, json!({ "status": status })).await?;
        return Ok(Action::requeue(Duration::from_secs(30)));
    };
    let policy = policy_of(ctx, ns, &s.spec.cluster).await?;
    let r = rendered(&tc, std::slice::from_ref(s), policy.as_ref());
    let invalid = r.invalid.get(&name).or(r.cluster_invalid.as_ref());
    let was_invalid = status
        .conditions
        .iter()
        .any(|c| c.type_ == "Invalid" && c.status == "True");
    set_condition(
        &mut status.conditions,
        generation,
        "Invalid",
        invalid.is_some(),
        if invalid.is_some() {
            "InvalidSpec"
        } else {
            "Valid"
        },
        invalid.map_or_else(String::new, |e| e.to_string()),
    );
    if let Some(e) = invalid {
        if !was_invalid {
            publish(ctx, s, true, "InvalidSpec", e.to_string()).await;
        }
        if !deleting {
            // Nothing runs from it; a new spec is the next thing to look at.
            set_condition(
                &mut status.conditions,
                generation,
                "Ready",
                false,
                "Invalid",
                e.to_string(),
            );
            status.observed_generation = generation;
            patch_status::<Strategy>(ctx, ns, &name, json!({ "status": status })).await?;
            return Ok(Action::await_change());
        }
    }
    let view = strategy_view(ctx, &tc, ns, &instances(s)).await;
    let (ready, reason, message, wait) = match &view {
        Err(e) => (
            false,
            "ClusterUnreachable",
            e.clone(),
            Duration::from_secs(15),
        ),
        Ok((node, position)) => {
            status.node = *node;
            let scale = r
                .text
                .as_deref()
                .and_then(|t| hft_config::load_str("the configuration", t, std::iter::empty()).ok())
                .and_then(|c| {
                    c.instrument_by_symbol(&s.spec.instrument)
                        .map(|i| i.spec.qty_scale)
                })
                .unwrap_or(0);
            status.position = Some(decimal(*position, scale));
            if deleting {
                // Released once no instance is placed (its engines stopped) and the
                // ledger books it flat.
                if *position == 0 && node.is_none() {
                    publish(ctx, s, false, "Flat", "position flat; released".into()).await;
                    return Ok(Action::await_change());
                }
                let since = s
                    .metadata
                    .deletion_timestamp
                    .as_ref()
                    .map(|t| k8s_openapi::jiff::Timestamp::now().duration_since(t.0));
                let late = since.is_some_and(|d| d.as_secs() as u64 > FLATTEN_TIMEOUT.as_secs());
                (
                    false,
                    if late { "FlattenTimeout" } else { "Flattening" },
                    format!(
                        "disabled; waiting for position {} to be flat{}",
                        decimal(*position, scale),
                        if late {
                            " (past the timeout: flatten by hand, or remove the finalizer)"
                        } else {
                            ""
                        }
                    ),
                    Duration::from_secs(10),
                )
            } else if !s.spec.enabled {
                (
                    true,
                    "Disabled",
                    "configured, not trading".into(),
                    Duration::from_secs(60),
                )
            } else if let Some(n) = node {
                (
                    true,
                    "Running",
                    format!("trading on node {n}"),
                    Duration::from_secs(30),
                )
            } else {
                (
                    false,
                    "Pending",
                    "not placed on a node yet".into(),
                    Duration::from_secs(5),
                )
            }
        }
    };
    set_condition(
        &mut status.conditions,
        generation,
        "Ready",
        ready,
        reason,
        message.clone(),
    );
    set_condition(
        &mut status.conditions,
        generation,
        "Degraded",
        reason == "FlattenTimeout" || reason == "ClusterUnreachable",
        reason,
        if reason == "FlattenTimeout" || reason == "ClusterUnreachable" {
            message
        } else {
            String::new()
        },
    );
    status.observed_generation = generation;
    patch_status::<Strategy>(ctx, ns, &name, json!({ "status": status })).await?;
    if deleting {
        // The finalizer stays until flat: an Ok from the cleanup would release it, so
        // "not yet" is an error the retry policy knows.
        return Err(Error::NotFlat(name, wait));
    }
    Ok(Action::requeue(wait))
}

/// Reconciles a RiskPolicy: checks it against its cluster's configuration.
pub async fn reconcile_policy(p: Arc<RiskPolicy>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let r = policy(&p, &ctx).await;
    observe("RiskPolicy", started, r.is_ok());
    r
}

async fn policy(p: &RiskPolicy, ctx: &Context) -> Result<Action, Error> {
    let ns = p
        .namespace()
        .ok_or_else(|| Error::NoNamespace(p.name_any()))?;
    let generation = p.metadata.generation;
    let mut status = p.status.clone().unwrap_or_default();
    let tc = Api::<TradingCluster>::namespaced(ctx.client.clone(), &ns)
        .get_opt(&p.spec.cluster)
        .await?;
    let base = tc.as_ref().and_then(|tc| tc.spec.config_overlay.clone());
    let r = render(base.as_deref(), Some(&p.spec), &[], &[]);
    let bad = r.cluster_invalid;
    set_condition(
        &mut status.conditions,
        generation,
        "Invalid",
        bad.is_some(),
        if bad.is_some() {
            "InvalidSpec"
        } else {
            "Valid"
        },
        bad.as_ref().map_or_else(String::new, |e| e.to_string()),
    );
    set_condition(
        &mut status.conditions,
        generation,
        "Ready",
        bad.is_none(),
        if bad.is_some() { "Invalid" } else { "Ready" },
        bad.as_ref().map_or_else(String::new, |e| e.to_string()),
    );
    status.observed_generation = generation;
    let pushed = match (&tc, bad.is_none()) {
        (Some(tc), true) => push_kill_switch(p, tc, ctx, &ns, &mut status).await,
        _ => Ok(()),
    };
    patch_status::<RiskPolicy>(ctx, &ns, &p.name_any(), json!({ "status": status })).await?;
    pushed?;
    Ok(Action::await_change())
}

/// Sets the cluster's global kill switch in its ledger when the policy's `killSwitch`
/// changes, so that it holds on every node at once (the configuration alone takes
/// effect as engines start). Only the policy's own changes are pushed: a policy
/// created released asks nothing, and one never releases a switch it did not engage,
/// so an operator engaging it by hand in an incident is not overruled by a reconcile.
/// The change carries the time the operator first saw it; the ledger refuses it (409)
/// when someone changed the switch after that, and the status says so.
async fn push_kill_switch(
    p: &RiskPolicy,
    tc: &TradingCluster,
    ctx: &Context,
    ns: &str,
    status: &mut crate::crd::RiskPolicyStatus,
) -> Result<(), Error> {
    let want = p.spec.kill_switch;
    let push = match &status.kill_switch_pushed {
        Some(k) if k.engaged == want && k.done => return Ok(()),
        Some(k) if k.engaged == want => k.clone(),
        None if !want => return Ok(()),
        _ => {
            // First seen now: recorded before the call, so a retry (or another operator
            // replica) asks with the same time.
            let releases = status
                .kill_switch_pushed
                .as_ref()
                .filter(|k| k.engaged && !want)
                .map(|k| k.at_ns);
            let k = crate::crd::KillSwitchPush {
                engaged: want,
                at_ns: hft_cluster::coord::now_ns(),
                done: false,
                message: String::new(),
                releases,
            };
            status.kill_switch_pushed = Some(k.clone());
            patch_status::<RiskPolicy>(ctx, ns, &p.name_any(), json!({ "status": status })).await?;
            k
        }
    };
    let token = admin_token(ctx, tc, ns).await.map_err(Error::Admin)?;
    let base = ctx.admin_url(tc);
    let what = if want { "engaged" } else { "released" };
    // A release only undoes the policy's own engage: if the switch changed since (set
    // by hand, even engaged again), it is left as it is.
    let mine = match push.releases {
        Some(engaged_at) => {
            let p = admin_call(format!("{base}/v1/ledger/positions"), token.clone(), None)
                .await
                .map_err(Error::Admin)?;
            let global = p["kills"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|k| k["scope"] == "global");
            global.is_some_and(|k| k["engaged"] == true && k["ts"].as_u64() == Some(engaged_at))
        }
        None => true,
    };
    let body = json!({ "scope": "global", "engaged": want, "at_ns": push.at_ns });
    let answer = if mine {
        admin_call(format!("{base}/v1/kill"), token, Some(body))
            .await
            .map_err(|e| (e.contains(": 409 "), e))
    } else {
        Err((
            true,
            "the switch changed after the policy engaged it".to_owned(),
        ))
    };
    let (done, warning, reason, message) = match answer {
        Ok(v) => (
            true,
            false,
            if want {
                "KillSwitchEngaged"
            } else {
                "KillSwitchReleased"
            },
            format!(
                "global kill switch {what} in the ledger (entry {})",
                v["index"]
            ),
        ),
        // A later change stands: nothing to retry, but not as the policy asks.
        Err((true, e)) => (
            true,
            true,
            "KillSwitchSuperseded",
            format!("not {what}: the switch was changed after the policy asked ({e})"),
        ),
        Err((false, e)) => (false, true, "KillSwitchNotApplied", e),
    };
    let superseded = reason == "KillSwitchSuperseded";
    set_condition(
        &mut status.conditions,
        p.metadata.generation,
        "Degraded",
        !done || superseded,
        if done && !superseded {
            "KillSwitchInForce"
        } else {
            reason
        },
        if done && !superseded {
            String::new()
        } else {
            message.clone()
        },
    );
    status.kill_switch_pushed = Some(crate::crd::KillSwitchPush {
        done,
        message: message.clone(),
        ..push
    });
    publish(ctx, p, warning, reason, message.clone()).await;
    if done {
        Ok(())
    } else {
        Err(Error::Admin(message))
    }
}

/// How a failed reconcile is retried.
pub fn retry<K>(_: Arc<K>, e: &Error, _: Arc<Context>) -> Action {
    if let Error::NotFlat(_, wait) = e {
        return Action::requeue(*wait);
    }
    tracing::warn!(error = %e, "reconcile failed");
    Action::requeue(Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(ns: &str, name: &str, endpoints: &[String]) -> TradingCluster {
        serde_json::from_value(json!({
            "apiVersion": "hft.dev/v1alpha1", "kind": "TradingCluster",
            "metadata": { "name": name, "namespace": ns },
            "spec": {
                "replicas": 1, "image": "hft:test",
                "etcd": { "endpoints": endpoints },
                "venue": { "address": "venue:7070" },
                "secrets": { "clusterSecret": { "name": "s", "key": "k" },
                             "adminToken": { "name": "s", "key": "t" } }
            }
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn the_etcd_pool_keeps_one_connection_per_live_cluster() {
        let dir = std::env::temp_dir().join(format!("hft-operator-pool-{}", std::process::id()));
        let etcd = hft_cluster::local_etcd::LocalEtcd::start(std::path::Path::new("etcd"), &dir, 1)
            .expect("etcd (Debian: etcd-server) starts");
        let pool = EtcdPool::default();
        let t0 = std::time::Instant::now();
        let a = cluster("trading", "prod", &etcd.clients);
        pool.get_at(&a, t0).await.unwrap();
        pool.get_at(&a, t0 + Duration::from_secs(1)).await.unwrap();
        assert_eq!(pool.len(), 1, "reused");
        // The same name in another namespace is another cluster.
        let b = cluster("staging", "prod", &etcd.clients);
        pool.get_at(&b, t0 + Duration::from_secs(2)).await.unwrap();
        assert_eq!(pool.len(), 2);
        // New endpoints replace the cluster's connection.
        let mut moved = etcd.clients.clone();
        moved.push(etcd.clients[0].replace("127.0.0.1", "localhost"));
        pool.get_at(
            &cluster("trading", "prod", &moved),
            t0 + Duration::from_secs(3),
        )
        .await
        .unwrap();
        assert_eq!(pool.len(), 2);
        // A cluster unseen for the idle time (deleted) loses its connection.
        pool.get_at(&b, t0 + EtcdPool::IDLE + Duration::from_secs(4))
            .await
            .unwrap();
        assert_eq!(pool.len(), 1, "trading/prod, idle, was dropped");
        pool.forget(&b);
        assert!(pool.is_empty());
    }
}
