//! The admin API's authorization matrix, over TLS, against tokens kept in a real etcd: every role
//! on every endpoint, plus no token, a wrong secret, an unknown id, garbage and an
//! expired token.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hft_cluster::admin::{AdminState, serve};
use hft_cluster::auth::{Authenticator, Role, create_token};
use hft_cluster::coord::Coord;
use hft_cluster::local_etcd::LocalEtcd;

/// A CA and a server certificate for 127.0.0.1 signed by it (PEM: ca, cert, key).
fn pki() -> (String, String, String) {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap())
        .unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

/// The status of one call, asked again while the API answers 503: that answer means the
/// ledger or etcd did not respond in time (a loaded host), and the API documents it as
/// "retry"; it says nothing about the caller's rights, which are checked before.
fn call(ca: &str, url: &str, method: &str, body: &str, token: Option<&str>) -> u16 {
    let end = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let got = call_once(ca, url, method, body, token);
        if got != 503 || std::time::Instant::now() > end {
            return got;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn call_once(ca: &str, url: &str, method: &str, body: &str, token: Option<&str>) -> u16 {
    let ca = ureq::tls::Certificate::from_pem(ca.as_bytes()).unwrap();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .http_status_as_error(false)
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::new_with_certs(&[ca]))
                .build(),
        )
        .build()
        .into();
    let auth = token.map(|t| format!("Bearer {t}"));
    let r = if method == "GET" {
        let mut rq = agent.get(url);
        if let Some(a) = &auth {
            rq = rq.header("Authorization", a);
        }
        rq.call()
    } else {
        let mut rq = agent.post(url).header("content-type", "application/json");
        if let Some(a) = &auth {
            rq = rq.header("Authorization", a);
        }
        rq.send(body)
    };
    r.expect("the server answers").status().as_u16()
}

#[test]
fn every_role_on_every_endpoint() {
    let dir = std::env::temp_dir().join(format!("hft-auth-{}", std::process::id()));
    let (ca, cert, key) = pki();
    let etcd = LocalEtcd::start(Path::new("etcd"), &dir.join("etcd"), 1)
        .expect("etcd runs (scripts/test.sh installs etcd-server)");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (coord, tokens, expired) = rt.block_on(async {
        let mut c = Coord::connect(&etcd.clients, "auth", Duration::from_secs(20))
            .await
            .unwrap();
        let mut tokens = Vec::new();
        for role in [Role::Viewer, Role::Trader, Role::Admin] {
            let (t, _) = create_token(&mut c, &format!("{role}-user"), role, None)
                .await
                .unwrap();
            tokens.push((role, t));
        }
        let (expired, _) = create_token(&mut c, "old", Role::Admin, Some(Duration::from_nanos(1)))
            .await
            .unwrap();
        (c, tokens, expired)
    });
    let l = common::btc_ledger(&dir.join("ledger"));
    let srv = serve(
        "127.0.0.1:0".parse().unwrap(),
        AdminState {
            trading: None,
            node: 1,
            ledger: Some(l.ledger.clone()),
            fenced: None,
            auth: Some(Arc::new(Authenticator::new(
                coord.clone(),
                Duration::from_secs(5),
            ))),
            audit: Some(coord.clone()),
        },
        Some(hft_cluster::admin::tls_config(cert.as_bytes(), key.as_bytes()).unwrap()),
    )
    .unwrap();
    let url = |p: &str| format!("https://{}{p}", srv.addr);
    // Plain HTTP to a TLS API gets nowhere.
    let plain: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    assert!(
        plain
            .get(format!("http://{}/v1/status", srv.addr))
            .call()
            .is_err()
    );
    let fill = r#"[{"venue":"sim","exec_id":1,"account":"main","strategy":"mm","instrument":"BTC-USD","price_scale":2,"qty_scale":3,"side":"buy","price":100,"qty":1,"fee":0,"liquidity":"maker","cl_ord_id":1,"ts":1}]"#;
    let endpoints: [(&str, &str, &str, Role); 20] = [
        ("GET", "/v1/nodes", "", Role::Viewer),
        ("GET", "/v1/config", "", Role::Viewer),
        ("GET", "/v1/assignments", "", Role::Viewer),
        ("GET", "/v1/orders", "", Role::Viewer),
        (
            "POST",
            "/v1/strategies",
            r#"{"name":"mm-btc","enabled":false}"#,
            Role::Trader,
        ),
        (
            "POST",
            "/v1/strategies/params",
            r#"{"name":"mm-btc","params":{"requote_ticks":3}}"#,
            Role::Trader,
        ),
        (
            "POST",
            "/v1/nodes/drain",
            r#"{"node":9,"drain":true}"#,
            Role::Admin,
        ),
        (
            "POST",
            "/v1/ledger/fence",
            r#"{"strategy":"other","epoch":3}"#,
            Role::Admin,
        ),
        ("GET", "/v1/status", "", Role::Viewer),
        ("GET", "/openapi.json", "", Role::Viewer),
        ("GET", "/v1/audit", "", Role::Viewer),
        ("GET", "/v1/ledger/status", "", Role::Viewer),
        ("GET", "/v1/ledger/positions", "", Role::Viewer),
        ("GET", "/v1/ledger/fills", "", Role::Viewer),
        ("GET", "/v1/ledger/hash", "", Role::Viewer),
        (
            "POST",
            "/v1/kill",
            r#"{"scope":"global","engaged":true}"#,
            Role::Trader,
        ),
        (
            "POST",
            "/v1/kill",
            r#"{"scope":"global","engaged":false}"#,
            Role::Admin,
        ),
        ("POST", "/v1/ledger/fills", fill, Role::Admin),
        (
            "POST",
            "/v1/ledger/transfer-leader",
            r#"{"to":1}"#,
            Role::Admin,
        ),
        (
            "POST",
            "/v1/ledger/members",
            r#"{"action":"add-learner","id":9,"addr":"127.0.0.1:9"}"#,
            Role::Admin,
        ),
    ];
    let (_, admin_token) = &tokens[2];
    let (id, _) = admin_token
        .strip_prefix("hft_")
        .unwrap()
        .split_once('_')
        .unwrap();
    let wrong_secret = format!("hft_{id}_{}", "0".repeat(48));
    for (method, path, body, need) in endpoints {
        for (role, token) in &tokens {
            let got = call(&ca, &url(path), method, body, Some(token));
            if *role >= need {
                assert!(
                    (200..300).contains(&got),
                    "{role} on {method} {path} {body}: {got}"
                );
            } else {
                assert_eq!(got, 403, "{role} on {method} {path} {body}");
            }
        }
        for (what, token) in [
            ("no token", None),
            ("wrong secret", Some(wrong_secret.as_str())),
            ("unknown id", Some("hft_deadbeef_00")),
            ("garbage", Some("let me in")),
            ("expired", Some(expired.as_str())),
        ] {
            assert_eq!(
                call(&ca, &url(path), method, body, token),
                401,
                "{what} on {method} {path}"
            );
        }
    }
    // The matrix covers every route the API serves.
    for (method, path, _, _) in hft_cluster::admin::ROUTES {
        assert!(
            endpoints
                .iter()
                .any(|(m, p, _, _)| m.eq_ignore_ascii_case(method) && *p == path),
            "{method} {path} is not in the matrix"
        );
    }
    // Every state change that went through is in the audit trail, by whom, chained.
    let mut coord = coord;
    let trail = rt.block_on(coord.audit_trail()).unwrap();
    // Trader and admin engaged, switched a strategy and set its parameters (2 each; a
    // parameter change is also recorded as the configuration change it stores, 2 more);
    // admin released, fenced, booked, transferred, added and drained (1 each).
    assert_eq!(trail.len(), 14, "{trail:#?}");
    assert!(
        trail
            .iter()
            .any(|r| r.action == "kill.engage" && r.who == "trader-user")
    );
    assert!(trail.iter().all(|r| r.who != "viewer-user"));
    assert_eq!(rt.block_on(coord.audit_verify()).unwrap(), Ok(14));
    // Editing a record by hand is detected, and named.
    let mut forged = trail[1].clone();
    forged.who = "someone-else".into();
    rt.block_on(coord.put_json(&format!("audit/{:020}", forged.seq), &forged))
        .unwrap();
    let t = rt.block_on(coord.audit_verify()).unwrap().unwrap_err();
    assert_eq!(t.seq, 2, "{t:?}");
    assert!(t.why.contains("edited"), "{t:?}");
    // Re-hashing the forged record breaks the link to the next one instead.
    rt.block_on(async {
        let mut c = coord.clone();
        let mut f = forged.clone();
        f.hash = "f".repeat(64);
        c.put_json(&format!("audit/{:020}", f.seq), &f)
            .await
            .unwrap();
    });
    assert!(rt.block_on(coord.audit_verify()).unwrap().is_err());
    drop(srv);
    drop(l);
    drop(etcd);
    let _ = std::fs::remove_dir_all(&dir);
}
