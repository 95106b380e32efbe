//! The node's admin API (actix-web): what the `hft` CLI and operators call.
//!
//! - `GET  /v1/status` — this node: id, whether it is registered in etcd and fenced.
//!
//! Ledger endpoints:
//! - `GET  /v1/ledger/status` — this member's Raft view (term, leader, indexes, lag).
//! - `GET  /v1/ledger/positions` — positions, cash and order-id marks (linearizable).
//! - `GET  /v1/ledger/fills?since=NS&limit=N` — booked fills (linearizable).
//! - `GET  /v1/ledger/hash` — applied index and state hash as applied here (local).
//! - `POST /v1/ledger/fills` — propose fills; answers once committed.
//! - `POST /v1/ledger/members` — `{"action": "add-learner"|"promote"|"remove", "id", "addr"}`.
//! - `POST /v1/ledger/transfer-leader` — `{"to": ID}`.
//! - `POST /v1/ledger/fence` — `{"strategy", "epoch"}`: refuse fills from older owners.
//!
//! - `POST /v1/kill` — `{"scope": "global"|"strategy:NAME"|"venue:NAME", "engaged": bool,
//!   "at_ns": u64?}`; `at_ns` (when the caller decided; the node's clock if later)
//!   orders changes, so a retried request never undoes a later one (409).
//! - `GET  /v1/audit` — the audit trail; `GET /openapi.json` — the OpenAPI document.
//!
//! Probes, without a token (they tell a status code and nothing else):
//! - `GET /healthz/live` — 200 while the API serves;
//! - `GET /healthz/ready` — 200 once the ledger member knows a leader and has applied
//!   everything it knows committed (a restarted or new member has caught up), 503 before.
//!
//! A build with the `failpoints` feature (the chaos suite's) also has
//! `PUT /v1/failpoints/{name}` (admin): the body is the `fail` crate's action string
//! (`sleep(200)`, `return`, `off`); a production build has no such route.
//!
//! With tokens (a node registered in etcd), every call needs `Authorization: Bearer`:
//! reads need viewer, engaging a kill switch trader, everything else that changes state
//! admin; 401 without a valid token, 403 when its role is too low.
//!
//! Errors are JSON `{"error": ...}` with 400 for bad requests (naming the field), 404
//! for unknown paths, 503 when the ledger has no leader or lost it mid-call (retry).

use std::net::SocketAddr;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};

use crate::auth::{Authenticator, Denied, Principal, Role};
use hft_core::{Liquidity, Money, Price, Qty, Side};
use hft_ledger::member::hex;
use hft_ledger::{Command, Ledger, LedgerError, LedgerFill};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// How long a call waits for the ledger before answering 503.
const LEDGER_TIMEOUT: Duration = Duration::from_secs(5);

/// A fill as the API carries it: raw integer units, as the ledger books them.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FillJson {
    /// Venue name.
    pub venue: String,
    /// Venue execution id.
    pub exec_id: u64,
    /// Account.
    pub account: String,
    /// Strategy instance.
    pub strategy: String,
    /// Instrument.
    pub instrument: String,
    /// Decimals of `price`.
    pub price_scale: u8,
    /// Decimals of `qty`.
    pub qty_scale: u8,
    /// `buy` or `sell`.
    pub side: SideJson,
    /// Raw price.
    pub price: i64,
    /// Raw quantity.
    pub qty: i64,
    /// Fee in money units (1e-8 of the quote currency).
    pub fee: i64,
    /// `maker` or `taker`.
    pub liquidity: LiquidityJson,
    /// Client order id.
    pub cl_ord_id: u64,
    /// Venue time, ns.
    pub ts: u64,
    /// The proposer's assignment epoch (omit or 0 when unassigned).
    #[serde(default)]
    pub epoch: u64,
}

/// Order side in JSON.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SideJson {
    /// Buy.
    Buy,
    /// Sell.
    Sell,
}

/// Liquidity flag in JSON.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LiquidityJson {
    /// Resting order hit.
    Maker,
    /// Crossed the spread.
    Taker,
}

impl From<FillJson> for LedgerFill {
    fn from(f: FillJson) -> Self {
        LedgerFill {
            venue: f.venue,
            exec_id: f.exec_id,
            account: f.account,
            strategy: f.strategy,
            instrument: f.instrument,
            price_scale: f.price_scale,
            qty_scale: f.qty_scale,
            side: match f.side {
                SideJson::Buy => Side::Buy,
                SideJson::Sell => Side::Sell,
            },
            price: Price(f.price),
            qty: Qty(f.qty),
            fee: Money(f.fee),
            liquidity: match f.liquidity {
                LiquidityJson::Maker => Liquidity::Maker,
                LiquidityJson::Taker => Liquidity::Taker,
            },
            cl_ord_id: f.cl_ord_id,
            ts: f.ts,
            epoch: f.epoch,
        }
    }
}

impl From<&LedgerFill> for FillJson {
    fn from(f: &LedgerFill) -> Self {
        FillJson {
            venue: f.venue.clone(),
            exec_id: f.exec_id,
            account: f.account.clone(),
            strategy: f.strategy.clone(),
            instrument: f.instrument.clone(),
            price_scale: f.price_scale,
            qty_scale: f.qty_scale,
            side: match f.side {
                Side::Buy => SideJson::Buy,
                Side::Sell => SideJson::Sell,
            },
            price: f.price.raw(),
            qty: f.qty.raw(),
            fee: f.fee.raw(),
            liquidity: match f.liquidity {
                Liquidity::Maker => LiquidityJson::Maker,
                Liquidity::Taker => LiquidityJson::Taker,
            },
            cl_ord_id: f.cl_ord_id,
            ts: f.ts,
            epoch: f.epoch,
        }
    }
}

/// What the API serves.
#[derive(Clone, Default)]
pub struct AdminState {
    /// This node's id.
    pub node: u64,
    /// This node's ledger member (None on a node without one).
    pub ledger: Option<Ledger>,
    /// Set when the node lost its etcd lease (None: not registered in etcd).
    pub fenced: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    /// Bearer-token checks (None: an open API, for a node without etcd on loopback).
    pub auth: Option<std::sync::Arc<Authenticator>>,
    /// Where every state-changing call is recorded (the cluster's etcd).
    pub audit: Option<crate::coord::Coord>,
    /// The engines this node runs and its configuration reloads (None: a node that does
    /// not trade).
    pub trading: Option<TradingView>,
}

/// What a trading node shows of its engines.
#[derive(Clone)]
pub struct TradingView {
    /// Its engine sessions.
    pub engines: std::sync::Arc<crate::cluster::EngineRegistry>,
    /// The configuration revision it started from and its reload state.
    pub reload: std::sync::Arc<std::sync::Mutex<crate::reload::ReloadStatus>>,
    /// Its strategy names (the ones the cluster configuration defines).
    pub strategies: Vec<String>,
}

/// Records a state-changing call in the audit trail. A call whose record cannot be
/// written still took effect, so the failure is logged loudly rather than hidden.
async fn audited(
    st: &AdminState,
    who: &Option<Principal>,
    action: &str,
    before: serde_json::Value,
    after: serde_json::Value,
) {
    let Some(coord) = &st.audit else { return };
    let name = who.as_ref().map_or("anonymous", |p| p.name.as_str());
    if let Err(e) = coord.clone().audit(name, action, before, after).await {
        tracing::error!(%action, who = name, error = %e, "audit record not written");
    }
}

/// Lets the request through if its token grants `need` (or the API is open).
async fn authorize(
    st: &AdminState,
    req: &HttpRequest,
    need: Role,
) -> Result<Option<Principal>, HttpResponse> {
    let Some(auth) = &st.auth else {
        return Ok(None);
    };
    let header = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match auth.check(header, need).await {
        Ok(p) => Ok(Some(p)),
        Err(Denied::Unauthenticated(why)) => Err(error(StatusCode::UNAUTHORIZED, why)),
        Err(Denied::Forbidden(why)) => Err(error(StatusCode::FORBIDDEN, why)),
    }
}

/// The value of a `Result<T, HttpResponse>`, or that response returned from the handler.
macro_rules! or_answer {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(r) => return r,
        }
    };
}

/// Runs `authorize` and returns its refusal from the handler.
macro_rules! require {
    ($st:expr, $req:expr, $role:expr) => {
        or_answer!(authorize(&$st, &$req, $role).await)
    };
}

async fn node_status(st: web::Data<AdminState>, req: HttpRequest) -> HttpResponse {
    let _who = require!(st, req, Role::Viewer);
    HttpResponse::Ok().json(json!({
        "node": st.node,
        "registered": st.fenced.is_some(),
        "fenced": st
            .fenced
            .as_ref()
            .is_some_and(|f| f.load(std::sync::atomic::Ordering::SeqCst)),
        "ledger": st.ledger.is_some(),
        "engines": st.trading.as_ref().map(engines_json),
        "config": st.trading.as_ref().map(|t| {
            let r = t.reload.lock().map(|r| r.clone()).unwrap_or_default();
            json!({
                "live_revision": r.live_revision,
                "rejected": r.rejected.map(|(rev, why)| json!({ "revision": rev, "why": why })),
            })
        }),
    }))
}

fn engines_json(t: &TradingView) -> serde_json::Value {
    use std::sync::atomic::Ordering::Relaxed;
    t.engines
        .snapshot()
        .into_iter()
        .map(|(name, e)| {
            let live = e.view.as_ref().map(|v| {
                json!({
                    "orders": v.live.orders.load(Relaxed),
                    "fills": v.live.fills.load(Relaxed),
                    "position_raw": v.live.position.load(Relaxed),
                    "qty_scale": v.qty_scale,
                    "pnl_raw": v.live.pnl.load(Relaxed),
                    "config_revision": v.live.config_revision.load(Relaxed),
                })
            });
            json!({ "strategy": name, "epoch": e.epoch, "venue": e.venue, "live": live })
        })
        .collect()
}

fn no_etcd() -> HttpResponse {
    error(
        StatusCode::NOT_FOUND,
        "this node is not in an etcd cluster (start it with --etcd)",
    )
}

async fn assignments(st: web::Data<AdminState>, req: HttpRequest) -> HttpResponse {
    let _who = require!(st, req, Role::Viewer);
    let mut coord = or_answer!(st.audit.clone().ok_or_else(no_etcd));
    let r = async {
        let (a, rev) = coord.assignments().await?;
        let draining = coord.draining().await?;
        let disabled = crate::cluster::disabled(&mut coord).await?;
        let nodes = coord.nodes().await?;
        Ok::<_, crate::coord::CoordError>(json!({
            "revision": rev,
            "assignments": a,
            "draining": draining,
            "disabled": disabled,
            "nodes": nodes.iter().map(|n| n.id).collect::<Vec<_>>(),
        }))
    }
    .await;
    match r {
        Ok(v) => HttpResponse::Ok().json(v),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e),
    }
}

async fn nodes(st: web::Data<AdminState>, req: HttpRequest) -> HttpResponse {
    let _who = require!(st, req, Role::Viewer);
    let mut coord = or_answer!(st.audit.clone().ok_or_else(no_etcd));
    match coord.nodes().await {
        Ok(n) => HttpResponse::Ok().json(json!({ "nodes": n })),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e),
    }
}

async fn config(st: web::Data<AdminState>, req: HttpRequest) -> HttpResponse {
    let _who = require!(st, req, Role::Viewer);
    let mut coord = or_answer!(st.audit.clone().ok_or_else(no_etcd));
    match coord.config_get().await {
        Ok(Some(v)) => HttpResponse::Ok().json(json!({ "revision": v.revision, "text": v.text })),
        Ok(None) => HttpResponse::Ok().json(json!({ "revision": 0, "text": null })),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e),
    }
}

async fn orders(st: web::Data<AdminState>, req: HttpRequest) -> HttpResponse {
    let _who = require!(st, req, Role::Viewer);
    let mut out = Vec::new();
    for (name, e) in st
        .trading
        .as_ref()
        .map(|t| t.engines.snapshot())
        .unwrap_or_default()
    {
        let Some(v) = e.view else { continue };
        let open = v
            .live
            .open_orders
            .lock()
            .map(|o| o.clone())
            .unwrap_or_default();
        for o in open {
            out.push(json!({
                "strategy": name,
                "epoch": e.epoch,
                "cl_ord_id": o.cl_ord_id.0,
                "instrument": o.instrument.0,
                "side": if o.side == Side::Buy { "buy" } else { "sell" },
                "price_raw": o.price.raw(),
                "qty_raw": o.qty.raw(),
                "filled_raw": o.filled.raw(),
                "status": format!("{:?}", o.status).to_lowercase(),
                "cancel_pending": o.cancel_pending,
                "sent_ts": o.sent_ts,
            }));
        }
    }
    HttpResponse::Ok().json(json!({ "node": st.node, "orders": out }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SwitchReq {
    name: String,
    enabled: bool,
}

fn known_strategy(st: &AdminState, name: &str) -> Result<(), HttpResponse> {
    if name.is_empty() || name.len() > 255 {
        return Err(error(StatusCode::BAD_REQUEST, "name: 1 to 255 bytes"));
    }
    if let Some(t) = &st.trading
        && !t.strategies.iter().any(|s| s == name)
    {
        return Err(error(
            StatusCode::NOT_FOUND,
            format!(
                "name: no strategy {name:?} in the cluster configuration (it has {})",
                t.strategies.join(", ")
            ),
        ));
    }
    Ok(())
}

async fn switch_strategy(
    st: web::Data<AdminState>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let who = require!(st, req, Role::Trader);
    let body: SwitchReq = or_answer!(parse(&body));
    or_answer!(known_strategy(&st, &body.name));
    let mut coord = or_answer!(st.audit.clone().ok_or_else(no_etcd));
    let key = format!("strategies/{}", body.name);
    let before: Option<crate::cluster::StrategySwitch> = coord.get_json(&key).await.ok().flatten();
    let now = crate::cluster::StrategySwitch {
        enabled: body.enabled,
    };
    if let Err(e) = coord.put_json(&key, &now).await {
        return error(StatusCode::SERVICE_UNAVAILABLE, e);
    }
    let action = if body.enabled {
        "strategy.enable"
    } else {
        "strategy.disable"
    };
    let after = json!({ "name": body.name, "enabled": body.enabled });
    audited(&st, &who, action, json!(before), after.clone()).await;
    HttpResponse::Ok().json(after)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ParamsReq {
    name: String,
    params: serde_json::Map<String, serde_json::Value>,
}

async fn strategy_params(
    st: web::Data<AdminState>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let who = require!(st, req, Role::Trader);
    let body: ParamsReq = or_answer!(parse(&body));
    or_answer!(known_strategy(&st, &body.name));
    let mut coord = or_answer!(st.audit.clone().ok_or_else(no_etcd));
    let stored = match coord.config_get().await {
        Ok(s) => s,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, e),
    };
    let (text, revision) = stored.map_or((String::new(), 0), |v| (v.text, v.revision));
    let (next, before, after) = match crate::reload::edit_params(&text, &body.name, &body.params) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let name = who.as_ref().map_or("anonymous", |p| p.name.as_str());
    match coord.config_set(&next, Some(revision), name).await {
        Ok(rev) => {
            let v = json!({ "name": body.name, "revision": rev, "params": after });
            audited(&st, &who, "strategy.params", before, v.clone()).await;
            HttpResponse::Ok().json(v)
        }
        Err(crate::coord::CoordError::Invalid(e)) => error(StatusCode::BAD_REQUEST, e),
        Err(e @ crate::coord::CoordError::Conflict { .. }) => error(StatusCode::CONFLICT, e),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DrainReq {
    node: u64,
    drain: bool,
}

async fn drain(st: web::Data<AdminState>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let who = require!(st, req, Role::Admin);
    let body: DrainReq = or_answer!(parse(&body));
    let mut coord = or_answer!(st.audit.clone().ok_or_else(no_etcd));
    if let Err(e) = coord.set_draining(body.node, body.drain).await {
        return error(StatusCode::SERVICE_UNAVAILABLE, e);
    }
    let action = if body.drain {
        "node.drain"
    } else {
        "node.undrain"
    };
    let after = json!({ "node": body.node, "drain": body.drain });
    audited(&st, &who, action, json!(null), after.clone()).await;
    HttpResponse::Ok().json(after)
}

fn error(status: actix_web::http::StatusCode, msg: impl std::fmt::Display) -> HttpResponse {
    HttpResponse::build(status).json(json!({ "error": msg.to_string() }))
}

fn ledger_error(e: &LedgerError) -> HttpResponse {
    use actix_web::http::StatusCode;
    let status = match e {
        LedgerError::Invalid(_) => StatusCode::BAD_REQUEST,
        LedgerError::NoLeader | LedgerError::Retry | LedgerError::Stopped => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, e)
}

fn no_ledger() -> HttpResponse {
    error(StatusCode::NOT_FOUND, "this node runs no ledger member")
}

/// Parses a JSON body, naming the field at fault (`[0].side: unknown variant ...`).
fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, HttpResponse> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let msg = if path == "." {
            format!("request body: {}", e.inner())
        } else {
            format!("request body at {path}: {}", e.inner())
        };
        error(StatusCode::BAD_REQUEST, msg)
    })
}

/// Waits for a ledger reply, mapping a timeout or a dropped reply to 503.
async fn ledger_call<T>(
    rx: tokio::sync::oneshot::Receiver<Result<T, LedgerError>>,
) -> Result<T, HttpResponse> {
    match tokio::time::timeout(LEDGER_TIMEOUT, rx).await {
        Ok(Ok(Ok(v))) => Ok(v),
        Ok(Ok(Err(e))) => Err(ledger_error(&e)),
        Ok(Err(_)) => Err(ledger_error(&LedgerError::Stopped)),
        Err(_) => Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "ledger did not answer within 5 s (no quorum?); retry",
        )),
    }
}

async fn status(st: web::Data<AdminState>, req: HttpRequest) -> HttpResponse {
    let _who = require!(st, req, Role::Viewer);
    let l = or_answer!(st.ledger.as_ref().ok_or_else(no_ledger));
    match tokio::time::timeout(LEDGER_TIMEOUT, l.status()).await {
        Ok(Ok(s)) => HttpResponse::Ok().json(json!({
            "id": s.id,
            "role": s.role,
            "term": s.term,
            "leader": s.leader,
            "commit": s.commit,
            "applied": s.applied,
            "last_index": s.last_index,
            "snapshot_index": s.snapshot_index,
            "voters": s.voters,
            "learners": s.learners,
            "peers": s.peers.iter().map(|p| json!({
                "id": p.id, "matched": p.matched, "lag": p.lag, "learner": p.learner
            })).collect::<Vec<_>>(),
            "fills": s.fills,
            "duplicates": s.duplicates,
            "rejoining": s.rejoining,
        })),
        _ => ledger_error(&LedgerError::Stopped),
    }
}

async fn live() -> HttpResponse {
    HttpResponse::Ok().finish()
}

/// How far a member's applied index may trail what it knows committed and still count
/// as caught up (a burst of fills in flight).
const READY_LAG: u64 = 64;

async fn ready(st: web::Data<AdminState>) -> HttpResponse {
    let Some(l) = st.ledger.as_ref() else {
        return HttpResponse::Ok().finish();
    };
    match tokio::time::timeout(LEDGER_TIMEOUT, l.status()).await {
        Ok(Ok(s)) if s.leader != 0 && s.applied + READY_LAG >= s.commit => {
            HttpResponse::Ok().finish()
        }
        _ => HttpResponse::ServiceUnavailable().finish(),
    }
}

async fn hash(st: web::Data<AdminState>, req: HttpRequest) -> HttpResponse {
    let _who = require!(st, req, Role::Viewer);
    let l = or_answer!(st.ledger.as_ref().ok_or_else(no_ledger));
    let rx = l.read_local(|s| (s.fill_count(), hex(&s.hash())));
    match ledger_call(rx).await {
        Ok((fills, hash)) => HttpResponse::Ok().json(json!({ "fills": fills, "hash": hash })),
        Err(r) => r,
    }
}

async fn positions(st: web::Data<AdminState>, req: HttpRequest) -> HttpResponse {
    let _who = require!(st, req, Role::Viewer);
    let l = or_answer!(st.ledger.as_ref().ok_or_else(no_ledger));
    let rx = l.read(|s| {
        let positions: Vec<_> = s
            .positions()
            .into_iter()
            .map(|p| {
                json!({
                    "account": p.account,
                    "strategy": p.strategy,
                    "instrument": p.instrument,
                    "qty": p.position.qty.raw(),
                    "cost": p.position.cost.raw(),
                    "realized": p.position.realized.raw(),
                    "fees": p.position.fees.raw(),
                    "volume": p.position.volume.raw(),
                    "fills": p.fills,
                })
            })
            .collect();
        let cash: Vec<_> = s
            .cash()
            .into_iter()
            .map(|(a, m)| json!({ "account": a, "cash": m.raw() }))
            .collect();
        let kills: Vec<_> = s
            .kills()
            .into_iter()
            .map(|k| json!({ "scope": k.scope.to_string(), "engaged": k.engaged, "ts": k.ts }))
            .collect();
        json!({ "positions": positions, "cash": cash, "kills": kills, "fills": s.fill_count() })
    });
    let v = or_answer!(ledger_call(rx).await);
    HttpResponse::Ok().json(v)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FillsQuery {
    #[serde(default)]
    since: u64,
    #[serde(default = "default_limit")]
    limit: usize,
}

fn default_limit() -> usize {
    10_000
}

/// Most fills one `GET /v1/ledger/fills` returns; page with `since`.
const MAX_FILLS_PER_READ: usize = 100_000;

async fn fills(
    st: web::Data<AdminState>,
    req: HttpRequest,
    q: web::Query<FillsQuery>,
) -> HttpResponse {
    let _who = require!(st, req, Role::Viewer);
    let l = or_answer!(st.ledger.as_ref().ok_or_else(no_ledger));
    // Bounded: the read runs on the ledger's driver thread.
    let (since, limit) = (q.since, q.limit.min(MAX_FILLS_PER_READ));
    let rx = l.read(move |s| {
        s.fills_since(since, limit)
            .iter()
            .map(FillJson::from)
            .collect::<Vec<_>>()
    });
    let v = or_answer!(ledger_call(rx).await);
    HttpResponse::Ok().json(v)
}

async fn propose_fills(
    st: web::Data<AdminState>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let who = require!(st, req, Role::Admin);
    let l = or_answer!(st.ledger.as_ref().ok_or_else(no_ledger));
    let body: Vec<FillJson> = or_answer!(parse(&body));
    if body.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "body: expected a non-empty array of fills",
        );
    }
    let cmds: Vec<Command> = body.into_iter().map(|f| Command::Fill(f.into())).collect();
    let n = cmds.len();
    match ledger_call(l.propose(cmds)).await {
        Ok(o) => {
            let v = json!({
                "index": o.index, "applied": o.applied, "duplicates": o.duplicates, "rejected": o.rejected
            });
            audited(
                &st,
                &who,
                "ledger.fills",
                json!(null),
                json!({"fills": n, "outcome": v}),
            )
            .await;
            HttpResponse::Ok().json(v)
        }
        Err(r) => r,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MemberReq {
    action: MemberAction,
    id: u64,
    #[serde(default)]
    addr: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
enum MemberAction {
    AddLearner,
    Promote,
    Remove,
}

async fn members(st: web::Data<AdminState>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let who = require!(st, req, Role::Admin);
    let l = or_answer!(st.ledger.as_ref().ok_or_else(no_ledger));
    let body: MemberReq = or_answer!(parse(&body));
    if body.id == 0 {
        return error(StatusCode::BAD_REQUEST, "id: member ids start at 1");
    }
    let rx = match (&body.action, &body.addr) {
        (MemberAction::AddLearner, Some(a)) => l.add_learner(body.id, a),
        (MemberAction::AddLearner, None) => {
            return error(
                StatusCode::BAD_REQUEST,
                "addr: a new member needs its ledger address (host:port)",
            );
        }
        (MemberAction::Promote, a) => l.promote(body.id, a.as_deref()),
        (MemberAction::Remove, _) => l.remove(body.id),
    };
    match ledger_call(rx).await {
        Ok(cs) => {
            let v = json!({ "voters": cs.voters, "learners": cs.learners });
            let req = json!({ "id": body.id, "addr": body.addr });
            audited(&st, &who, "ledger.members", req, v.clone()).await;
            HttpResponse::Ok().json(v)
        }
        Err(r) => r,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TransferReq {
    to: u64,
}

async fn transfer(st: web::Data<AdminState>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let who = require!(st, req, Role::Admin);
    let l = or_answer!(st.ledger.as_ref().ok_or_else(no_ledger));
    let body: TransferReq = or_answer!(parse(&body));
    l.transfer_leader(body.to);
    audited(
        &st,
        &who,
        "ledger.transfer-leader",
        json!(null),
        json!({ "to": body.to }),
    )
    .await;
    HttpResponse::Accepted().json(json!({ "transfer_to": body.to }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KillReq {
    scope: String,
    engaged: bool,
    /// When the caller decided (ns since the epoch, its clock): the change's time in the
    /// ledger, so that a request a node takes up late (the caller timed out and asked
    /// another node) cannot undo a later change. The node's clock when absent or later
    /// (a caller's clock ahead must not hold off the changes after it).
    #[serde(default)]
    at_ns: Option<u64>,
}

/// Engages (trader) or releases (admin) a kill switch in the ledger, where every node
/// sees it.
async fn kill(st: web::Data<AdminState>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let body: KillReq = or_answer!(parse(&body));
    let need = if body.engaged {
        Role::Trader
    } else {
        Role::Admin
    };
    let who = require!(st, req, need);
    let l = or_answer!(st.ledger.as_ref().ok_or_else(no_ledger));
    let scope = match body.scope.split_once(':') {
        None if body.scope == "global" => hft_ledger::KillScope::Global,
        Some(("strategy", s)) if !s.is_empty() => hft_ledger::KillScope::Strategy(s.to_owned()),
        Some(("venue", v)) if !v.is_empty() => hft_ledger::KillScope::Venue(v.to_owned()),
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "scope: {:?} is not \"global\", \"strategy:NAME\" or \"venue:NAME\"",
                    body.scope
                ),
            );
        }
    };
    let now = crate::coord::now_ns();
    let ts = body.at_ns.map_or(now, |at| at.min(now));
    tracing::info!(scope = %scope, engaged = body.engaged, at_ns = ts, by = who.as_ref().map_or("-", |p| p.name.as_str()), "kill switch change asked");
    let cmd = Command::Kill {
        scope: scope.clone(),
        engaged: body.engaged,
        ts,
    };
    match ledger_call(l.propose(vec![cmd])).await {
        Ok(o) if o.rejected > 0 => error(
            StatusCode::CONFLICT,
            format!(
                "kill switch {scope}: a change asked for after this one is already in force (see \"kills\" in GET /v1/ledger/positions); ask again if this one is still wanted"
            ),
        ),
        Ok(o) => {
            let v = json!({ "scope": scope.to_string(), "engaged": body.engaged, "at_ns": ts, "index": o.index });
            let action = if body.engaged {
                "kill.engage"
            } else {
                "kill.release"
            };
            audited(&st, &who, action, json!(null), v.clone()).await;
            HttpResponse::Ok().json(v)
        }
        Err(r) => r,
    }
}

/// Every endpoint: method, path, the role it needs (a kill release needs admin), and
/// what it does. The OpenAPI document is built from this table.
pub const ROUTES: [(&str, &str, Role, &str); 19] = [
    (
        "get",
        "/v1/nodes",
        Role::Viewer,
        "Registered nodes: id, admin, ledger and control addresses, since when.",
    ),
    (
        "get",
        "/v1/config",
        Role::Viewer,
        "The cluster configuration stored in etcd and its revision (change it with `hft config set`).",
    ),
    (
        "get",
        "/v1/assignments",
        Role::Viewer,
        "Which node runs which engine, under which epoch; draining nodes; disabled strategies.",
    ),
    (
        "get",
        "/v1/orders",
        Role::Viewer,
        "Open orders of the engines on this node.",
    ),
    (
        "post",
        "/v1/strategies",
        Role::Trader,
        "Enable or disable a strategy cluster-wide: {name, enabled}. A disabled strategy's engine cancels its orders and stops; its position stays.",
    ),
    (
        "post",
        "/v1/strategies/params",
        Role::Trader,
        "Change a strategy's parameters: {name, params: {key: value}}; validated like `hft config set`, stored in etcd and hot-reloaded by every node.",
    ),
    (
        "post",
        "/v1/nodes/drain",
        Role::Admin,
        "Drain a node ({node, drain: true}: its engines move elsewhere) or take it back ({drain: false}).",
    ),
    (
        "post",
        "/v1/ledger/fence",
        Role::Admin,
        "Raise a strategy's fencing epoch: fills proposed by owners with a lower epoch are refused from then on.",
    ),
    (
        "get",
        "/v1/status",
        Role::Viewer,
        "This node: id, etcd registration, fenced.",
    ),
    (
        "get",
        "/v1/ledger/status",
        Role::Viewer,
        "The ledger member's Raft view: term, leader, indexes, per-peer lag.",
    ),
    (
        "get",
        "/v1/ledger/hash",
        Role::Viewer,
        "Fills booked and the state hash as applied on this member.",
    ),
    (
        "get",
        "/v1/ledger/positions",
        Role::Viewer,
        "Positions, cash and kill switches (linearizable read).",
    ),
    (
        "get",
        "/v1/ledger/fills",
        Role::Viewer,
        "Booked fills at or after `since` (ns), at most `limit` (linearizable read).",
    ),
    (
        "post",
        "/v1/ledger/fills",
        Role::Admin,
        "Book fills by hand; answers once committed.",
    ),
    (
        "post",
        "/v1/ledger/members",
        Role::Admin,
        "Add a learner, promote it, or remove a member.",
    ),
    (
        "post",
        "/v1/ledger/transfer-leader",
        Role::Admin,
        "Hand ledger leadership to another voter.",
    ),
    (
        "post",
        "/v1/kill",
        Role::Trader,
        "Engage (trader) or release (admin) a kill switch: global, strategy:NAME or venue:NAME; at_ns (when decided) orders changes, an older one is refused (409).",
    ),
    ("get", "/openapi.json", Role::Viewer, "This document."),
    (
        "get",
        "/v1/audit",
        Role::Viewer,
        "The audit trail (when the node is in an etcd cluster).",
    ),
];

/// The OpenAPI 3 document of the API.
pub fn openapi() -> serde_json::Value {
    let mut paths = serde_json::Map::new();
    for (method, path, role, summary) in ROUTES {
        let entry = paths.entry(path.to_owned()).or_insert_with(|| json!({}));
        let mut op = json!({
            "summary": summary,
            "x-hft-role": role.to_string(),
            "security": [{ "bearer": [] }],
            "responses": {
                "200": { "description": "OK (JSON)" },
                "400": { "description": "Bad request: the error names the field" },
                "401": { "description": "No valid bearer token" },
                "403": { "description": "The token's role is too low" },
                "503": { "description": "The ledger has no leader; retry" }
            }
        });
        if method == "post" {
            op["requestBody"] = json!({ "required": true, "content": { "application/json": {} } });
        }
        entry[method] = op;
    }
    json!({
        "openapi": "3.0.3",
        "info": { "title": "hft node admin API", "version": env!("CARGO_PKG_VERSION") },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } }
        },
        "paths": paths,
    })
}

async fn openapi_doc(st: web::Data<AdminState>, req: HttpRequest) -> HttpResponse {
    let _who = require!(st, req, Role::Viewer);
    HttpResponse::Ok().json(openapi())
}

async fn audit_trail(st: web::Data<AdminState>, req: HttpRequest) -> HttpResponse {
    let _who = require!(st, req, Role::Viewer);
    let Some(coord) = &st.audit else {
        return error(
            StatusCode::NOT_FOUND,
            "this node keeps no audit trail (not in an etcd cluster)",
        );
    };
    match coord.clone().audit_trail().await {
        Ok(t) => HttpResponse::Ok().json(t),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FenceReq {
    strategy: String,
    epoch: u64,
}

async fn fence(st: web::Data<AdminState>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let who = require!(st, req, Role::Admin);
    let l = or_answer!(st.ledger.as_ref().ok_or_else(no_ledger));
    let body: FenceReq = or_answer!(parse(&body));
    if body.strategy.is_empty() || body.strategy.len() > 255 {
        return error(StatusCode::BAD_REQUEST, "strategy: 1 to 255 bytes");
    }
    let cmd = Command::Fence {
        strategy: body.strategy.clone(),
        epoch: body.epoch,
    };
    match ledger_call(l.propose(vec![cmd])).await {
        Ok(o) => {
            let v = json!({ "strategy": body.strategy, "epoch": body.epoch, "index": o.index });
            audited(&st, &who, "ledger.fence", json!(null), v.clone()).await;
            HttpResponse::Ok().json(v)
        }
        Err(r) => r,
    }
}

/// The routes, for the server and for tests.
pub fn configure(cfg: &mut web::ServiceConfig) {
    let query_errors = web::QueryConfig::default().error_handler(|err, _req| {
        let msg = format!("query: {err}");
        actix_web::error::InternalError::from_response(err, error(StatusCode::BAD_REQUEST, msg))
            .into()
    });
    cfg.app_data(web::PayloadConfig::new(16 << 20))
        .app_data(query_errors)
        .route("/healthz/live", web::get().to(live))
        .route("/healthz/ready", web::get().to(ready))
        .route("/v1/status", web::get().to(node_status))
        .route("/v1/ledger/status", web::get().to(status))
        .route("/v1/ledger/hash", web::get().to(hash))
        .route("/v1/ledger/positions", web::get().to(positions))
        .route("/v1/ledger/fills", web::get().to(fills))
        .route("/v1/ledger/fills", web::post().to(propose_fills))
        .route("/v1/ledger/members", web::post().to(members))
        .route("/v1/ledger/transfer-leader", web::post().to(transfer))
        .route("/v1/ledger/fence", web::post().to(fence))
        .route("/v1/kill", web::post().to(kill))
        .route("/v1/assignments", web::get().to(assignments))
        .route("/v1/nodes", web::get().to(nodes))
        .route("/v1/config", web::get().to(config))
        .route("/v1/orders", web::get().to(orders))
        .route("/v1/strategies", web::post().to(switch_strategy))
        .route("/v1/strategies/params", web::post().to(strategy_params))
        .route("/v1/nodes/drain", web::post().to(drain))
        .route("/openapi.json", web::get().to(openapi_doc))
        .route("/v1/audit", web::get().to(audit_trail));
    #[cfg(feature = "failpoints")]
    cfg.route("/v1/failpoints/{name}", web::put().to(failpoint));
}

/// Arms (or, with `off`, disarms) one fail point of this process.
#[cfg(feature = "failpoints")]
async fn failpoint(
    st: web::Data<AdminState>,
    req: HttpRequest,
    name: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let who = require!(st, req, Role::Admin);
    let name = name.into_inner();
    let Ok(actions) = std::str::from_utf8(&body).map(str::trim) else {
        return error(
            StatusCode::BAD_REQUEST,
            "body: fail point actions in UTF-8, e.g. sleep(100)",
        );
    };
    let armed = if actions == "off" {
        fail::remove(&name);
        Ok(())
    } else {
        fail::cfg(&name, actions)
    };
    match armed {
        Ok(()) => {
            let v = json!({ "failpoint": name, "actions": actions });
            audited(&st, &who, "failpoint.set", json!(null), v.clone()).await;
            HttpResponse::Ok().json(v)
        }
        Err(e) => error(
            StatusCode::BAD_REQUEST,
            format!("fail point {name}: {e} (actions look like `sleep(100)`, `return`, `off`)"),
        ),
    }
}

/// A running admin server; dropping it stops the server.
pub struct AdminServer {
    /// Bound address.
    pub addr: SocketAddr,
    handle: actix_web::dev::ServerHandle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        let h = self.handle.clone();
        // Stopping needs a runtime to drive the future; the server's own thread exits
        // once it completes.
        std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(h.stop(false));
        })
        .join()
        .ok();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The admin API's TLS configuration from PEM: the server certificate chain and its
/// private key. Clients authenticate with bearer tokens, not certificates.
pub fn tls_config(cert_chain: &[u8], key: &[u8]) -> Result<rustls::ServerConfig, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_chain)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("admin certificate: {e}"))?;
    if chain.is_empty() {
        return Err("admin certificate: no PEM certificate found".into());
    }
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| format!("admin key: {e}"))?;
    rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .map_err(|e| format!("admin certificate and key: {e}"))
}

/// Serves the admin API on `addr` (over TLS when `tls` is set) from its own thread
/// (one worker: admin traffic is light and must not compete with the hot path for
/// cores).
pub fn serve(
    addr: SocketAddr,
    state: AdminState,
    tls: Option<rustls::ServerConfig>,
) -> std::io::Result<AdminServer> {
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("admin-api".into())
        .spawn(move || {
            // The API's threads (this one and the workers it starts, which inherit its
            // nice level) yield to the hot path: a waking engine or gateway thread
            // preempts them.
            crate::ring::lower_priority();
            let data = web::Data::new(state);
            let server = HttpServer::new(move || {
                App::new()
                    .app_data(data.clone())
                    .configure(configure)
                    .default_service(web::to(|| async {
                        error(StatusCode::NOT_FOUND, "no such endpoint")
                    }))
            })
            .workers(1)
            .disable_signals();
            let server = match tls {
                Some(cfg) => server.bind_rustls_0_23(addr, cfg),
                None => server.bind(addr),
            };
            let server = match server {
                Ok(s) => s,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            let bound = server.addrs().first().copied().unwrap_or(addr);
            let sys = actix_web::rt::System::new();
            sys.block_on(async move {
                let srv = server.run();
                let _ = tx.send(Ok((bound, srv.handle())));
                let _ = srv.await;
            });
        })?;
    let (addr, handle) = rx
        .recv()
        .map_err(|_| std::io::Error::other("admin server thread ended at start"))??;
    Ok(AdminServer {
        addr,
        handle,
        thread: Some(thread),
    })
}
