//! The admin API's ledger endpoints over real HTTP: proposals, reads, and bad requests
//! answered 4xx with the field named.

mod common;

use std::time::Duration;

use hft_cluster::admin::{AdminServer, AdminState, serve};
use hft_cluster::booking::SessionLedger;
use serde_json::{Value, json};

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .http_status_as_error(false)
        .build()
        .into()
}

fn call(method: &str, url: &str, body: Option<&str>) -> (u16, Value) {
    let a = agent();
    let r = match (method, body) {
        ("GET", _) => a.get(url).call(),
        (_, Some(b)) => a
            .post(url)
            .header("content-type", "application/json")
            .send(b),
        _ => a.post(url).send_empty(),
    };
    let mut r = r.expect("the server answers");
    let status = r.status().as_u16();
    (status, r.body_mut().read_json().unwrap_or(Value::Null))
}

fn fill(exec_id: u64, side: &str, qty: i64) -> Value {
    json!({
        "venue": "sim", "exec_id": exec_id, "account": "main", "strategy": "mm",
        "instrument": "BTC-USD", "price_scale": 2, "qty_scale": 3, "side": side,
        "price": 6_500_000, "qty": qty, "fee": 2, "liquidity": "taker",
        "cl_ord_id": exec_id, "ts": 1_000 + exec_id
    })
}

/// A one-member ledger in `dir` behind an admin API without authentication.
fn ledger_api(dir: &std::path::Path) -> (SessionLedger, AdminServer) {
    let l = common::btc_ledger(dir);
    let srv = serve(
        "127.0.0.1:0".parse().unwrap(),
        AdminState {
            trading: None,
            node: 1,
            ledger: Some(l.ledger.clone()),
            fenced: None,
            auth: None,
            audit: None,
        },
        None,
    )
    .unwrap();
    (l, srv)
}

#[test]
fn ledger_endpoints_book_read_and_refuse_bad_requests() {
    let dir = std::env::temp_dir().join(format!("hft-admin-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (l, srv) = ledger_api(&dir);
    let url = |p: &str| format!("http://{}{p}", srv.addr);

    let body = json!([fill(1, "buy", 500), fill(2, "sell", 200)]).to_string();
    let (st, v) = call("POST", &url("/v1/ledger/fills"), Some(&body));
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["applied"], 2);
    let (st, v) = call("POST", &url("/v1/ledger/fills"), Some(&body));
    assert_eq!((st, &v["duplicates"]), (200, &json!(2)), "{v}");

    let (st, v) = call("GET", &url("/v1/ledger/positions"), None);
    assert_eq!(st, 200);
    assert_eq!(v["positions"][0]["qty"], 300);
    assert_eq!(v["positions"][0]["fills"], 2);
    let (_, v) = call("GET", &url("/v1/ledger/fills?since=1002&limit=10"), None);
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["exec_id"], 2);
    let (_, v) = call("GET", &url("/v1/ledger/status"), None);
    assert_eq!(v["role"], "Leader");
    assert_eq!(v["fills"], 2);
    let (_, v) = call("GET", &url("/v1/status"), None);
    assert_eq!(
        (v["node"].as_u64(), v["fenced"].as_bool()),
        (Some(1), Some(false))
    );
    // The OpenAPI document lists every route, and every route it lists is served.
    let (st, doc) = call("GET", &url("/openapi.json"), None);
    assert_eq!(st, 200);
    assert_eq!(doc["openapi"], "3.0.3");
    for (method, path, role, _) in hft_cluster::admin::ROUTES {
        assert_eq!(doc["paths"][path][method]["x-hft-role"], role.to_string());
        if method == "get" {
            let (_, body) = call("GET", &url(path), None);
            assert_ne!(
                body["error"], "no such endpoint",
                "{path} listed but not served"
            );
        }
    }
    let (_, v) = call("GET", &url("/v1/ledger/hash"), None);
    assert_eq!(v["hash"].as_str().unwrap().len(), 64);

    // Bad requests: 400 naming what is wrong; nothing is booked.
    let (st, v) = call("POST", &url("/v1/ledger/fills"), Some("[{\"venue\": 5}]"));
    assert_eq!(st, 400);
    assert!(v["error"].as_str().unwrap().contains("venue"), "{v}");
    let mut f = fill(3, "buy", 1);
    f["side"] = json!("long");
    let (st, v) = call(
        "POST",
        &url("/v1/ledger/fills"),
        Some(&json!([f]).to_string()),
    );
    assert_eq!(st, 400);
    assert!(v["error"].as_str().unwrap().contains("long"), "{v}");
    let (st, v) = call(
        "POST",
        &url("/v1/ledger/fills"),
        Some(&json!([fill(4, "buy", 0)]).to_string()),
    );
    assert_eq!(st, 400);
    assert!(v["error"].as_str().unwrap().contains("quantity"), "{v}");
    let mut f = fill(5, "buy", 1);
    f["instrument"] = json!("DOGE-USD");
    let (st, v) = call(
        "POST",
        &url("/v1/ledger/fills"),
        Some(&json!([f]).to_string()),
    );
    assert_eq!(st, 400);
    assert!(
        v["error"].as_str().unwrap().contains("unknown instrument"),
        "{v}"
    );
    // A fence refuses fills proposed by an earlier owner; the new owner's are booked.
    let (st, _) = call(
        "POST",
        &url("/v1/ledger/fence"),
        Some(r#"{"strategy": "mm", "epoch": 2}"#),
    );
    assert_eq!(st, 200);
    let mut stale = fill(6, "buy", 1);
    stale["epoch"] = json!(1);
    let (_, v) = call(
        "POST",
        &url("/v1/ledger/fills"),
        Some(&json!([stale]).to_string()),
    );
    assert_eq!(v["rejected"], 1, "{v}");
    let mut current = fill(7, "sell", 200);
    current["epoch"] = json!(2);
    let (_, v) = call(
        "POST",
        &url("/v1/ledger/fills"),
        Some(&json!([current]).to_string()),
    );
    assert_eq!(v["applied"], 1, "{v}");
    let (st, _) = call("POST", &url("/v1/ledger/fills"), Some("[]"));
    assert_eq!(st, 400);
    let (st, v) = call(
        "POST",
        &url("/v1/ledger/members"),
        Some("{\"action\": \"add-learner\", \"id\": 7}"),
    );
    assert_eq!(st, 400);
    assert!(v["error"].as_str().unwrap().contains("addr"), "{v}");
    let (st, _) = call("GET", &url("/v1/ledger/fills?since=yesterday"), None);
    assert_eq!(st, 400);
    let (st, _) = call("GET", &url("/v1/nothing"), None);
    assert_eq!(st, 404);
    let (_, v) = call("GET", &url("/v1/ledger/status"), None);
    assert_eq!(v["fills"], 3, "no bad request booked anything");
    drop(srv);
    drop(l);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A kill switch change is ordered by when its caller decided (`at_ns`), not by when a
/// node took the request up: an engage retried elsewhere and taken up late by a slow
/// node cannot undo the release that followed it.
#[test]
fn a_late_kill_request_cannot_undo_a_later_change() {
    let dir = std::env::temp_dir().join(format!("hft-admin-kill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (l, srv) = ledger_api(&dir);
    let url = format!("http://{}/v1/kill", srv.addr);
    let now = hft_cluster::coord::now_ns();
    let kill = |engaged: bool, at: u64| {
        call(
            "POST",
            &url,
            Some(&json!({"scope": "strategy:mm", "engaged": engaged, "at_ns": at}).to_string()),
        )
    };
    let engaged = || {
        let (_, v) = call(
            "GET",
            &format!("http://{}/v1/ledger/positions", srv.addr),
            None,
        );
        v["kills"].to_string()
    };
    let (st, v) = kill(true, now - 3_000_000_000);
    assert_eq!(st, 200, "{v}");
    // The same decision asked again (a retry) is answered, not refused.
    let (st, v) = kill(true, now - 3_000_000_000);
    assert_eq!(st, 200, "{v}");
    let (st, v) = kill(false, now - 1_000_000_000);
    assert_eq!(st, 200, "{v}");
    let released = engaged();
    // The engage decided before the release, taken up now: refused, the release holds.
    let (st, v) = kill(true, now - 2_000_000_000);
    assert_eq!(st, 409, "{v}");
    assert_eq!(engaged(), released);
    // Without at_ns the node's clock orders the change: it is in force.
    let (st, v) = call(
        "POST",
        &url,
        Some(r#"{"scope": "strategy:mm", "engaged": true}"#),
    );
    assert_eq!(st, 200, "{v}");
    assert_ne!(engaged(), released);
    // A caller's clock far ahead counts as the node's: it cannot hold off the change
    // asked for right after it.
    let (st, v) = kill(false, now + 3_600_000_000_000);
    assert_eq!(st, 200, "{v}");
    assert!(v["at_ns"].as_u64().unwrap() < now + 60_000_000_000, "{v}");
    let (st, v) = kill(true, hft_cluster::coord::now_ns());
    assert_eq!(st, 200, "{v}");
    assert_ne!(engaged(), released);
    drop(srv);
    drop(l);
    let _ = std::fs::remove_dir_all(&dir);
}
