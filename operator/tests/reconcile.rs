//! Reconciles against kube-rs's mock API server pattern: the client talks to a tower
//! service this test drives, so every request the operator makes (method, path, query,
//! body) is checked in order and answered as the API server would. What can run for
//! real does: etcd (the configuration is read back from it) and a node's admin API over
//! a real ledger member (scale-down removes real members; deletes read real positions).

use std::sync::Arc;
use std::time::Duration;

use hft_operator::controller::{self, Context};
use hft_operator::crd::{Strategy, TradingCluster};
use http::{Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use kube::runtime::controller::Action;
use serde_json::{Value, json};

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// The API server side of the test.
struct ApiServer(Handle);

/// One request: method, path, query and JSON body.
struct Seen {
    method: String,
    path: String,
    query: String,
    body: Value,
    reply: tower_test::mock::SendResponse<Response<Body>>,
}

impl ApiServer {
    async fn next(&mut self) -> Seen {
        let (req, reply) = tokio::time::timeout(Duration::from_secs(20), self.0.next_request())
            .await
            .expect("the operator made its next request in time")
            .expect("a request");
        let method = req.method().to_string();
        let path = req.uri().path().to_owned();
        let query = req.uri().query().unwrap_or("").to_owned();
        let bytes = req.into_body().collect_bytes().await.unwrap();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Seen {
            method,
            path,
            query,
            body,
            reply,
        }
    }

    /// The next request must be `method path`; returns it.
    async fn expect(&mut self, method: &str, path: &str) -> Seen {
        let s = self.next().await;
        assert_eq!(
            (s.method.as_str(), s.path.as_str()),
            (method, path),
            "unexpected request (query {:?}, body {})",
            s.query,
            s.body
        );
        s
    }

    /// A server-side apply of `path`, which must be forced under the operator's field
    /// manager; answered with the object (plus `extra`). Returns the applied body.
    async fn expect_apply(&mut self, path: &str, extra: Value) -> Value {
        let s = self.expect("PATCH", path).await;
        assert!(
            s.query.contains("fieldManager=hft-operator") && s.query.contains("force=true"),
            "{path}: not a forced server-side apply: {}",
            s.query
        );
        let mut answer = s.body.clone();
        merge(&mut answer, extra);
        respond(s.reply, StatusCode::OK, &answer);
        s.body
    }
}

fn merge(a: &mut Value, b: Value) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (a, b) => *a = b,
    }
}

fn respond(reply: tower_test::mock::SendResponse<Response<Body>>, status: StatusCode, v: &Value) {
    reply.send_response(
        Response::builder()
            .status(status)
            .body(Body::from(serde_json::to_vec(v).unwrap()))
            .unwrap(),
    );
}

fn not_found(reply: tower_test::mock::SendResponse<Response<Body>>, what: &str) {
    respond(
        reply,
        StatusCode::NOT_FOUND,
        &json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": format!("{what} not found"), "reason": "NotFound", "code": 404
        }),
    );
}

fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({ "apiVersion": "hft.dev/v1alpha1", "kind": format!("{kind}List"),
            "metadata": { "resourceVersion": "1" }, "items": items })
}

const NS: &str = "trading";

fn cluster(replicas: i32, etcd: &[String]) -> TradingCluster {
    serde_json::from_value(json!({
        "apiVersion": "hft.dev/v1alpha1", "kind": "TradingCluster",
        "metadata": { "name": "prod", "namespace": NS, "uid": "uid-prod", "generation": 4 },
        "spec": {
            "replicas": replicas, "image": "ghcr.io/hft-rs/hft:0.1.0",
            "etcd": { "endpoints": etcd },
            "venue": { "address": "venue.trading.svc:7070" },
            "secrets": {
                "clusterSecret": { "name": "hft-cluster", "key": "secret" },
                "adminToken": { "name": "hft-admin", "key": "token" }
            }
        }
    }))
    .unwrap()
}

fn strategy(name: &str, kind: &str, max_position: &str, extra: Value) -> Value {
    let mut s = json!({
        "apiVersion": "hft.dev/v1alpha1", "kind": "Strategy",
        "metadata": { "name": name, "namespace": NS, "uid": format!("uid-{name}"),
                      "generation": 2, "finalizers": [controller::FLATTEN] },
        "spec": {
            "cluster": "prod", "kind": kind, "instrument": "BTC-USD",
            "params": { "risk_aversion": 0.2 },
            "risk": { "maxPosition": max_position }
        }
    });
    merge(&mut s, extra);
    s
}

fn ctx(client: Client, admin_url: Option<String>) -> Arc<Context> {
    Arc::new(Context {
        client,
        reporter: kube::runtime::events::Reporter {
            controller: "hft-operator".into(),
            instance: None,
        },
        etcd: Default::default(),
        admin_url,
    })
}

fn mock() -> (Client, ApiServer) {
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(svc, "default"), ApiServer(handle))
}

fn etcd() -> hft_cluster::local_etcd::LocalEtcd {
    // One directory per etcd: `cargo test` runs the tests as threads of one process.
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("hft-operator-etcd-{}-{n}", std::process::id()));
    hft_cluster::local_etcd::LocalEtcd::start(std::path::Path::new("etcd"), &dir, 1)
        .expect("etcd (Debian: etcd-server) starts")
}

fn condition<'a>(status: &'a Value, t: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == t))
        .unwrap_or_else(|| panic!("no {t} condition in {status}"))
}

const P: &str = "/apis/hft.dev/v1alpha1/namespaces/trading";

/// What a cluster reconcile finds and does after its scale-down step.
struct Round {
    strategies: Vec<Value>,
    policies: Vec<Value>,
    /// Ready pods the StatefulSet reports.
    ready: i32,
    /// A new configuration revision is written (an event, then the ConfigMap copy).
    new_revision: bool,
    /// A configuration is written at all (else no ConfigMap apply).
    written: bool,
    /// Members marked in etcd as having lost their log: the admin token is read to
    /// look them up in the ledger.
    rejoin_marks: bool,
    /// A scale-up step after the applies.
    scale_up: Option<ScaleUp>,
}

/// Members added, then the learners' pods looked up, with whether each is ready (a
/// ready one is promoted).
type ScaleUp = (Vec<i64>, Vec<(i64, bool)>);

/// The requests of a TradingCluster reconcile after the scale-down step: the inputs,
/// the event of a new configuration revision, the applies, the ServiceMonitor CRD
/// lookup (absent), and the status. Returns the applied ConfigMap (Null if none), the
/// StatefulSet and the status patch.
async fn cluster_requests(api: &mut ApiServer, r: Round) -> (Value, Value, Value) {
    let s = api.expect("GET", &format!("{P}/strategies")).await;
    respond(s.reply, StatusCode::OK, &list("Strategy", r.strategies));
    let s = api.expect("GET", &format!("{P}/riskpolicies")).await;
    respond(s.reply, StatusCode::OK, &list("RiskPolicy", r.policies));
    if r.new_revision {
        let ev = api
            .expect("POST", "/apis/events.k8s.io/v1/namespaces/trading/events")
            .await;
        assert_eq!(ev.body["reason"], "ConfigApplied", "{}", ev.body);
        let body = ev.body.clone();
        respond(ev.reply, StatusCode::CREATED, &body);
    }
    let mut cm = Value::Null;
    if r.written {
        cm = api
            .expect_apply(
                "/api/v1/namespaces/trading/configmaps/prod-config",
                json!({}),
            )
            .await;
        assert_eq!(cm["metadata"]["ownerReferences"][0]["uid"], "uid-prod");
        assert_eq!(cm["metadata"]["ownerReferences"][0]["controller"], true);
    }
    let headless = api
        .expect_apply("/api/v1/namespaces/trading/services/prod-nodes", json!({}))
        .await;
    assert_eq!(headless["spec"]["clusterIP"], "None");
    assert_eq!(headless["spec"]["publishNotReadyAddresses"], true);
    api.expect_apply("/api/v1/namespaces/trading/services/prod-admin", json!({}))
        .await;
    let pdb = api
        .expect_apply(
            "/apis/policy/v1/namespaces/trading/poddisruptionbudgets/prod",
            json!({}),
        )
        .await;
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
    let sts = api
        .expect_apply(
            "/apis/apps/v1/namespaces/trading/statefulsets/prod",
            json!({ "status": { "replicas": r.ready, "readyReplicas": r.ready } }),
        )
        .await;
    let crd = api
        .expect(
            "GET",
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/servicemonitors.monitoring.coreos.com",
        )
        .await;
    not_found(crd.reply, "servicemonitors");
    if r.rejoin_marks {
        secret(api).await;
    }
    if let Some((added, pods)) = r.scale_up {
        secret(api).await;
        for id in added {
            let ev = api
                .expect("POST", "/apis/events.k8s.io/v1/namespaces/trading/events")
                .await;
            assert_eq!(ev.body["reason"], "MemberAdded", "{}", ev.body);
            assert!(
                ev.body["note"]
                    .as_str()
                    .unwrap()
                    .contains(&format!("member {id} "))
            );
            let body = ev.body.clone();
            respond(ev.reply, StatusCode::CREATED, &body);
        }
        for (id, ready) in pods {
            let g = api
                .expect(
                    "GET",
                    &format!("/api/v1/namespaces/trading/pods/prod-{}", id - 1),
                )
                .await;
            respond(
                g.reply,
                StatusCode::OK,
                &json!({ "apiVersion": "v1", "kind": "Pod",
                    "metadata": { "name": format!("prod-{}", id - 1), "namespace": NS },
                    "status": { "conditions": [{ "type": "Ready",
                        "status": if ready { "True" } else { "False" } }] } }),
            );
            if ready {
                let ev = api
                    .expect("POST", "/apis/events.k8s.io/v1/namespaces/trading/events")
                    .await;
                assert_eq!(ev.body["reason"], "MemberPromoted", "{}", ev.body);
                let body = ev.body.clone();
                respond(ev.reply, StatusCode::CREATED, &body);
            }
        }
    }
    let st = api
        .expect("PATCH", &format!("{P}/tradingclusters/prod/status"))
        .await;
    let status = st.body["status"].clone();
    let mut answer = serde_json::to_value(cluster(3, &[])).unwrap();
    answer["status"] = status.clone();
    respond(st.reply, StatusCode::OK, &answer);
    (cm, sts, status)
}

/// A round with the given strategies, no policy, and a configuration written.
fn round(strategies: Vec<Value>, ready: i32, new_revision: bool) -> Round {
    Round {
        strategies,
        policies: vec![],
        ready,
        new_revision,
        written: true,
        rejoin_marks: false,
        scale_up: None,
    }
}

#[tokio::test]
async fn a_new_cluster_gets_its_objects_and_etcd_its_configuration() {
    let etcd = etcd();
    let (client, mut api) = mock();
    let tc = cluster(3, &etcd.clients);
    let task = tokio::spawn(controller::reconcile_cluster(
        Arc::new(tc),
        ctx(client, None),
    ));
    let get = api
        .expect("GET", "/apis/apps/v1/namespaces/trading/statefulsets/prod")
        .await;
    not_found(get.reply, "statefulsets");
    let good = strategy("mm-a", "market_making", "0.1000", json!({}));
    let bad = strategy("mm-bad", "martingale", "0.1000", json!({}));
    let (cm, sts, status) = cluster_requests(&mut api, round(vec![good, bad], 0, true)).await;
    // The StatefulSet: 3 pods, ids from the ordinal, stable peer names, one at a time.
    assert_eq!(sts["spec"]["replicas"], 3);
    assert_eq!(sts["spec"]["serviceName"], "prod-nodes");
    assert_eq!(
        sts["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"],
        1
    );
    let args: Vec<&str> = sts["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(args.contains(&"--id=from-hostname"), "{args:?}");
    // Every member the cluster may grow to, whatever its size now (a scale changes no
    // pod template); the three of a new cluster found the ledger.
    let peers = args
        .iter()
        .find_map(|a| a.strip_prefix("--ledger-peers="))
        .unwrap();
    assert!(
        peers.starts_with("1=prod-0.prod-nodes.trading.svc:7100,2=prod-1.prod-nodes.trading.svc:7100,3=prod-2.prod-nodes.trading.svc:7100,4="),
        "{peers}"
    );
    assert!(
        peers.ends_with(",9=prod-8.prod-nodes.trading.svc:7100"),
        "{peers}"
    );
    assert!(args.contains(&"--founders=3"), "{args:?}");
    assert_eq!(status["founders"], 3);
    assert_eq!(
        sts["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["path"],
        "/healthz/ready"
    );
    // Status: nothing ready yet.
    assert_eq!(status["observedGeneration"], 4);
    assert_eq!(condition(&status, "Ready")["status"], "False");
    assert_eq!(condition(&status, "Ready")["reason"], "Progressing");
    assert_eq!(condition(&status, "Progressing")["status"], "True");
    assert_eq!(condition(&status, "Degraded")["status"], "False");
    let action = task.await.unwrap().unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(5)));
    // etcd holds the valid strategy only, in the schema the nodes load.
    let mut coord =
        hft_cluster::coord::Coord::connect(&etcd.clients, "prod", Duration::from_secs(5))
            .await
            .unwrap();
    let cfg = coord
        .config_get()
        .await
        .unwrap()
        .expect("configuration written");
    assert_eq!(status["configRevision"], cfg.revision);
    let c = hft_config::load_str("etcd", &cfg.text, std::iter::empty()).unwrap();
    let names: Vec<&str> = c.strategies.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["mm-a"]);
    // The ConfigMap is a copy of what etcd holds.
    assert_eq!(cm["data"]["config.toml"], cfg.text.as_str());
    assert_eq!(cm["data"]["etcd-revision"], cfg.revision.to_string());
}

#[tokio::test]
async fn an_invalid_risk_policy_writes_nothing_and_says_why() {
    let etcd = etcd();
    let (client, mut api) = mock();
    let task = tokio::spawn(controller::reconcile_cluster(
        Arc::new(cluster(3, &etcd.clients)),
        ctx(client, None),
    ));
    existing_sts(&mut api, 3).await;
    let policy = json!({ "apiVersion": "hft.dev/v1alpha1", "kind": "RiskPolicy",
        "metadata": { "name": "prod", "namespace": NS },
        "spec": { "cluster": "prod", "maxGrossNotional": "lots" } });
    let (cm, _, status) = cluster_requests(
        &mut api,
        Round {
            strategies: vec![strategy("mm-a", "market_making", "0.1000", json!({}))],
            policies: vec![policy],
            ready: 3,
            new_revision: false,
            written: false,
            rejoin_marks: false,
            scale_up: None,
        },
    )
    .await;
    assert_eq!(
        cm,
        Value::Null,
        "no ConfigMap copy of a configuration not written"
    );
    let inv = condition(&status, "Invalid");
    assert_eq!(inv["status"], "True");
    assert!(
        inv["message"]
            .as_str()
            .unwrap()
            .contains("max_gross_notional"),
        "{inv}"
    );
    assert_eq!(condition(&status, "Ready")["reason"], "Invalid");
    task.await.unwrap().unwrap();
    // etcd was not touched: the nodes keep what they run.
    let mut coord =
        hft_cluster::coord::Coord::connect(&etcd.clients, "prod", Duration::from_secs(5))
            .await
            .unwrap();
    assert!(coord.config_get().await.unwrap().is_none());
}

#[tokio::test]
async fn an_update_rewrites_nothing_that_did_not_change_and_reports_ready() {
    let etcd = etcd();
    let good = strategy("mm-a", "market_making", "0.1000", json!({}));
    // First reconcile writes the configuration.
    let (client, mut api) = mock();
    let shared = ctx(client, None);
    let task = tokio::spawn(controller::reconcile_cluster(
        Arc::new(cluster(3, &etcd.clients)),
        shared.clone(),
    ));
    let get = api
        .expect("GET", "/apis/apps/v1/namespaces/trading/statefulsets/prod")
        .await;
    not_found(get.reply, "statefulsets");
    let (_, _, first) = cluster_requests(&mut api, round(vec![good.clone()], 0, true)).await;
    task.await.unwrap().unwrap();
    assert_eq!(shared.etcd.len(), 1, "the etcd connection is kept");
    // The second sees every pod ready and the same configuration: no new revision, no
    // event, Ready. It reuses the first one's etcd connection.
    let mut tc = cluster(3, &etcd.clients);
    tc.status = Some(serde_json::from_value(first.clone()).unwrap());
    let task = tokio::spawn(controller::reconcile_cluster(Arc::new(tc), shared.clone()));
    existing_sts(&mut api, 3).await;
    let (_, _, status) = cluster_requests(&mut api, round(vec![good], 3, false)).await;
    assert_eq!(status["configRevision"], first["configRevision"]);
    assert_eq!(condition(&status, "Ready")["status"], "True");
    assert_eq!(condition(&status, "Progressing")["status"], "False");
    // The Ready condition changed: its transition time moved; Degraded's did not.
    assert_eq!(
        condition(&status, "Degraded")["lastTransitionTime"],
        condition(&first, "Degraded")["lastTransitionTime"]
    );
    assert_eq!(
        task.await.unwrap().unwrap(),
        Action::requeue(Duration::from_secs(60))
    );
    assert_eq!(shared.etcd.len(), 1);
}

/// A real single ledger member with two learners (which count for no quorum) behind a
/// real admin API: what a scale-down from 3 to 1 removes.
struct Node {
    _ledger: hft_cluster::booking::SessionLedger,
    server: Option<hft_cluster::admin::AdminServer>,
    ledger: hft_ledger::Ledger,
    url: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        drop(self.server.take());
    }
}

async fn node(etcd: Option<&hft_cluster::local_etcd::LocalEtcd>) -> Node {
    let cfg = hft_config::Config::default_embedded();
    let specs: Vec<_> = cfg.instruments.iter().map(|i| i.spec.clone()).collect();
    let ledger = tokio::task::spawn_blocking(move || {
        hft_cluster::booking::SessionLedger::start(None, &specs).unwrap()
    })
    .await
    .unwrap();
    let audit = match etcd {
        Some(e) => Some(
            hft_cluster::coord::Coord::connect(&e.clients, "prod", Duration::from_secs(5))
                .await
                .unwrap(),
        ),
        None => None,
    };
    let server = hft_cluster::admin::serve(
        "127.0.0.1:0".parse().unwrap(),
        hft_cluster::admin::AdminState {
            node: 1,
            ledger: Some(ledger.ledger.clone()),
            fenced: None,
            auth: None,
            audit,
            trading: None,
        },
        None,
    )
    .unwrap();
    Node {
        url: format!("http://{}", server.addr),
        ledger: ledger.ledger.clone(),
        _ledger: ledger,
        server: Some(server),
    }
}

/// The StatefulSet lookup a cluster reconcile starts with, answered with `replicas` pods.
async fn existing_sts(api: &mut ApiServer, replicas: i32) {
    let get = api
        .expect("GET", "/apis/apps/v1/namespaces/trading/statefulsets/prod")
        .await;
    respond(
        get.reply,
        StatusCode::OK,
        &json!({ "apiVersion": "apps/v1", "kind": "StatefulSet",
                 "metadata": { "name": "prod", "namespace": NS }, "spec": { "replicas": replicas,
                 "selector": {}, "template": {}, "serviceName": "prod-nodes" } }),
    );
}

async fn secret(api: &mut ApiServer) {
    let s = api
        .expect("GET", "/api/v1/namespaces/trading/secrets/hft-admin")
        .await;
    respond(
        s.reply,
        StatusCode::OK,
        &json!({ "apiVersion": "v1", "kind": "Secret",
                 "metadata": { "name": "hft-admin", "namespace": NS },
                 "data": { "token": "dG9rZW4=" } }),
    );
}

/// Scales a 3-pod cluster down to 1 whose ledger has the members `learners` besides
/// member 1; returns the StatefulSet applied and the status.
async fn scale_down(learners: &[u64], removed: &[u64]) -> (Value, Value) {
    let etcd = etcd();
    let n = node(Some(&etcd)).await;
    for &id in learners {
        n.ledger
            .add_learner(id, &format!("127.0.0.1:{}", 9 + id))
            .await
            .unwrap()
            .unwrap();
    }
    let (client, mut api) = mock();
    let task = tokio::spawn(controller::reconcile_cluster(
        Arc::new(cluster(1, &etcd.clients)),
        ctx(client, Some(n.url.clone())),
    ));
    existing_sts(&mut api, 3).await;
    secret(&mut api).await;
    for &id in removed {
        let ev = api
            .expect("POST", "/apis/events.k8s.io/v1/namespaces/trading/events")
            .await;
        assert_eq!(ev.body["reason"], "MemberRemoved");
        assert!(
            ev.body["note"]
                .as_str()
                .unwrap()
                .contains(&format!("member {id}"))
        );
        let body = ev.body.clone();
        respond(ev.reply, StatusCode::CREATED, &body);
    }
    let (_, sts, status) = cluster_requests(&mut api, round(vec![], 1, true)).await;
    task.await.unwrap().unwrap();
    // The members left the ledger, their nodes drained first; only then did the
    // StatefulSet shrink.
    let st = n.ledger.status().await.unwrap();
    assert_eq!(st.voters, vec![1]);
    assert!(st.learners.is_empty(), "{:?}", st.learners);
    let mut coord =
        hft_cluster::coord::Coord::connect(&etcd.clients, "prod", Duration::from_secs(5))
            .await
            .unwrap();
    let drained = coord.draining().await.unwrap();
    for id in removed {
        assert!(drained.contains(id), "node {id} not drained: {drained:?}");
    }
    (sts, status)
}

#[tokio::test]
async fn a_scale_down_removes_the_ledger_members_before_their_pods() {
    let (sts, status) = scale_down(&[2, 3], &[3, 2]).await;
    assert_eq!(sts["spec"]["replicas"], 1);
    // Scaling up again later adds members back (their pods come back as joiners).
    assert_eq!(status["ledgerMembers"], 1);
    assert_eq!(condition(&status, "Degraded")["status"], "False");
}

#[tokio::test]
async fn a_scale_down_picks_up_where_an_interrupted_one_stopped() {
    // Member 3 already left (the last reconcile stopped after removing it): only 2 goes.
    let (sts, status) = scale_down(&[2], &[2]).await;
    assert_eq!(sts["spec"]["replicas"], 1);
    assert_eq!(condition(&status, "Degraded")["status"], "False");
}

#[tokio::test]
async fn a_scale_down_whose_member_removal_fails_keeps_the_pods() {
    let etcd = etcd();
    let (client, mut api) = mock();
    // Nothing listens there: the removal fails.
    let task = tokio::spawn(controller::reconcile_cluster(
        Arc::new(cluster(1, &etcd.clients)),
        ctx(client, Some("http://127.0.0.1:9".into())),
    ));
    existing_sts(&mut api, 3).await;
    secret(&mut api).await;
    let (_, sts, status) = cluster_requests(&mut api, round(vec![], 3, true)).await;
    assert_eq!(
        sts["spec"]["replicas"], 3,
        "pods went before their members left"
    );
    let d = condition(&status, "Degraded");
    assert_eq!(d["status"], "True");
    assert_eq!(d["reason"], "MemberRemovalFailed");
    assert!(
        d["message"].as_str().unwrap().contains("ledger members"),
        "{d}"
    );
    assert_eq!(condition(&status, "Ready")["status"], "False");
    task.await.unwrap().unwrap();
}

/// A Strategy reconcile up to its status patch: the cluster and policy lookups.
async fn strategy_inputs(api: &mut ApiServer, etcd: &[String]) {
    let g = api
        .expect("GET", &format!("{P}/tradingclusters/prod"))
        .await;
    respond(
        g.reply,
        StatusCode::OK,
        &serde_json::to_value(cluster(3, etcd)).unwrap(),
    );
    let s = api.expect("GET", &format!("{P}/riskpolicies")).await;
    respond(s.reply, StatusCode::OK, &list("RiskPolicy", vec![]));
}

#[tokio::test]
async fn an_invalid_strategy_is_marked_invalid_with_the_reason_and_nothing_fails() {
    for (kind, limit, why) in [
        ("martingale", "0.1000", "martingale"),
        ("market_making", "-1", "max_position"),
    ] {
        let (client, mut api) = mock();
        let s: Strategy = serde_json::from_value(strategy("mm-x", kind, limit, json!({}))).unwrap();
        let task = tokio::spawn(controller::reconcile_strategy(
            Arc::new(s),
            ctx(client, None),
        ));
        strategy_inputs(&mut api, &[]).await;
        let ev = api
            .expect("POST", "/apis/events.k8s.io/v1/namespaces/trading/events")
            .await;
        assert_eq!(ev.body["type"], "Warning");
        assert_eq!(ev.body["reason"], "InvalidSpec");
        let body = ev.body.clone();
        respond(ev.reply, StatusCode::CREATED, &body);
        let st = api
            .expect("PATCH", &format!("{P}/strategies/mm-x/status"))
            .await;
        let status = st.body["status"].clone();
        let inv = condition(&status, "Invalid");
        assert_eq!(inv["status"], "True");
        assert_eq!(inv["reason"], "InvalidSpec");
        assert!(inv["message"].as_str().unwrap().contains(why), "{inv}");
        assert_eq!(condition(&status, "Ready")["reason"], "Invalid");
        let answer = strategy("mm-x", kind, limit, json!({ "status": status }));
        respond(st.reply, StatusCode::OK, &answer);
        // The operator goes on: the reconcile succeeds and waits for a new spec.
        assert_eq!(task.await.unwrap().unwrap(), Action::await_change());
    }
}

#[tokio::test]
async fn a_deleted_strategy_is_held_until_its_position_is_flat() {
    let etcd = etcd();
    let n = node(Some(&etcd)).await;
    // A long position of the strategy in the ledger.
    let fill = |exec: u64, side: hft_core::Side| {
        hft_ledger::Command::Fill(hft_ledger::LedgerFill {
            venue: "sim".into(),
            exec_id: exec,
            account: "main".into(),
            strategy: "mm-x".into(),
            instrument: "BTC-USD".into(),
            price_scale: 2,
            qty_scale: 4,
            side,
            price: hft_core::Price(6_500_000),
            qty: hft_core::Qty(100),
            fee: hft_core::Money(0),
            liquidity: hft_core::Liquidity::Maker,
            cl_ord_id: exec,
            ts: exec,
            epoch: 0,
        })
    };
    n.ledger
        .propose(vec![fill(1, hft_core::Side::Buy)])
        .await
        .unwrap()
        .unwrap();
    let deleting = json!({ "metadata": { "deletionTimestamp": "2026-01-01T00:00:00Z" } });
    let reconcile = |api_client: Client| {
        let s: Strategy = serde_json::from_value(strategy(
            "mm-x",
            "market_making",
            "0.1000",
            deleting.clone(),
        ))
        .unwrap();
        tokio::spawn(controller::reconcile_strategy(
            Arc::new(s),
            ctx(api_client, Some(n.url.clone())),
        ))
    };
    // Not flat: the finalizer stays, the status says why (and, long past the timeout,
    // that it is late).
    let (client, mut api) = mock();
    let task = reconcile(client);
    strategy_inputs(&mut api, &etcd.clients).await;
    secret(&mut api).await;
    let st = api
        .expect("PATCH", &format!("{P}/strategies/mm-x/status"))
        .await;
    let status = st.body["status"].clone();
    assert_eq!(status["position"], "0.0100");
    let ready = condition(&status, "Ready");
    assert_eq!(ready["reason"], "FlattenTimeout", "{ready}");
    assert_eq!(condition(&status, "Degraded")["status"], "True");
    respond(
        st.reply,
        StatusCode::OK,
        &strategy("mm-x", "market_making", "0.1000", deleting.clone()),
    );
    assert!(task.await.unwrap().is_err(), "the finalizer must stay");
    // Flat: the finalizer goes (a JSON patch that removes it).
    n.ledger
        .propose(vec![fill(2, hft_core::Side::Sell)])
        .await
        .unwrap()
        .unwrap();
    let (client, mut api) = mock();
    let task = reconcile(client);
    strategy_inputs(&mut api, &etcd.clients).await;
    secret(&mut api).await;
    let ev = api
        .expect("POST", "/apis/events.k8s.io/v1/namespaces/trading/events")
        .await;
    assert_eq!(ev.body["reason"], "Flat");
    let body = ev.body.clone();
    respond(ev.reply, StatusCode::CREATED, &body);
    let p = api.expect("PATCH", &format!("{P}/strategies/mm-x")).await;
    let ops = p.body.as_array().expect("a JSON patch");
    assert!(
        ops.iter()
            .any(|o| o["op"] == "remove" && o["path"] == "/metadata/finalizers/0"),
        "{}",
        p.body
    );
    respond(
        p.reply,
        StatusCode::OK,
        &strategy("mm-x", "market_making", "0.1000", deleting.clone()),
    );
    assert_eq!(task.await.unwrap().unwrap(), Action::await_change());
}

/// Through kube's own predicate filter, as the cluster controller's Strategy watch uses
/// it: status updates (the operator's own writes as positions move) do not reach the
/// cluster's reconcile; a new spec and the start of a deletion do.
#[tokio::test]
async fn only_a_strategys_spec_and_deletion_trigger_its_cluster() {
    use futures::StreamExt;
    use kube::runtime::watcher::Event;
    let s = |extra: Value| -> Strategy {
        serde_json::from_value(strategy("mm", "market_making", "1", extra)).unwrap()
    };
    let deleting =
        json!({"metadata": {"generation": 3, "deletionTimestamp": "2026-11-27T00:00:00Z"}});
    let seen: Vec<Event<Strategy>> = vec![
        Event::Init,
        Event::InitApply(s(json!({}))),
        Event::InitDone,
        Event::Apply(s(json!({"status": {"node": 2, "position": "0.5"}}))),
        Event::Apply(s(json!({"status": {"node": 2, "position": "0.7"}}))),
        Event::Apply(s(
            json!({"metadata": {"generation": 3}, "status": {"position": "0.7"}}),
        )),
        Event::Apply(s(
            json!({"metadata": {"generation": 3, "resourceVersion": "9"}}),
        )),
        Event::Apply(s(deleting.clone())),
        // Its status while the finalizer waits for a flat position, then its removal.
        Event::Apply(s(
            json!({"metadata": {"generation": 3, "deletionTimestamp": "2026-11-27T00:00:00Z"}, "status": {"position": "0"}}),
        )),
        Event::Delete(s(deleting)),
        // Created again under the same name: a new object.
        Event::Apply(s(json!({"metadata": {"uid": "uid-mm-2", "generation": 1}}))),
    ];
    let passed: Vec<Strategy> = controller::cluster_triggers(futures::stream::iter(
        seen.into_iter().map(Ok::<_, kube::runtime::watcher::Error>),
    ))
    .map(|r| r.unwrap())
    .collect()
    .await;
    let marks: Vec<(Option<i64>, bool)> = passed
        .iter()
        .map(|s| {
            (
                s.metadata.generation,
                s.metadata.deletion_timestamp.is_some(),
            )
        })
        .collect();
    assert_eq!(
        marks,
        vec![
            (Some(2), false),
            (Some(3), false),
            (Some(3), true),
            (Some(3), true),
            (Some(1), false)
        ]
    );
}

/// A RiskPolicy with `status` as it stands; the cluster `prod` of namespace `trading`.
fn risk_policy(kill: bool, status: Value) -> hft_operator::crd::RiskPolicy {
    serde_json::from_value(
        json!({ "apiVersion": "hft.dev/v1alpha1", "kind": "RiskPolicy",
        "metadata": { "name": "prod", "namespace": NS, "uid": "uid-rp", "generation": 4 },
        "spec": { "cluster": "prod", "killSwitch": kill },
        "status": status }),
    )
    .unwrap()
}

/// A call to the node's admin API, off the runtime that drives its ledger.
async fn admin(url: String, body: Option<Value>) -> Value {
    tokio::task::spawn_blocking(move || {
        let r = match body {
            Some(b) => ureq::post(&url).send_json(b),
            None => ureq::get(&url).call(),
        };
        r.unwrap().body_mut().read_json().unwrap()
    })
    .await
    .unwrap()
}

/// The global kill switch as the node's ledger holds it: (engaged, time of the change).
async fn ledger_kill(url: &str) -> Option<(bool, u64)> {
    let v = admin(format!("{url}/v1/ledger/positions"), None).await;
    v["kills"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["scope"] == "global")
        .map(|k| (k["engaged"].as_bool().unwrap(), k["ts"].as_u64().unwrap()))
}

/// A policy reconcile started against the node `n`, up to its cluster lookup.
async fn policy_reconcile(
    p: &hft_operator::crd::RiskPolicy,
    n: &Node,
    etcd: &[String],
) -> (
    ApiServer,
    tokio::task::JoinHandle<Result<Action, controller::Error>>,
) {
    let (client, mut api) = mock();
    let task = tokio::spawn(controller::reconcile_policy(
        Arc::new(p.clone()),
        ctx(client, Some(n.url.clone())),
    ));
    let g = api
        .expect("GET", &format!("{P}/tradingclusters/prod"))
        .await;
    respond(
        g.reply,
        StatusCode::OK,
        &serde_json::to_value(cluster(3, etcd)).unwrap(),
    );
    (api, task)
}

/// One policy reconcile that sends nothing to the ledger: the cluster lookup and the
/// status. Returns the status.
async fn policy_quiet(p: hft_operator::crd::RiskPolicy, n: &Node, etcd: &[String]) -> Value {
    let (mut api, task) = policy_reconcile(&p, n, etcd).await;
    let st = api
        .expect("PATCH", &format!("{P}/riskpolicies/prod/status"))
        .await;
    let status = st.body["status"].clone();
    respond(st.reply, StatusCode::OK, &serde_json::to_value(&p).unwrap());
    task.await.unwrap().unwrap();
    status
}

/// One policy reconcile that pushes its kill switch: the cluster lookup, the change
/// recorded in the status before the call (when `first`), the admin token, the event,
/// the final status. Returns the event's reason and the final status.
async fn policy_push(
    p: hft_operator::crd::RiskPolicy,
    n: &Node,
    etcd: &[String],
    first: bool,
) -> (Result<Action, controller::Error>, Value, Value) {
    let (mut api, task) = policy_reconcile(&p, n, etcd).await;
    let echo = serde_json::to_value(&p).unwrap();
    if first {
        let pending = api
            .expect("PATCH", &format!("{P}/riskpolicies/prod/status"))
            .await;
        let k = &pending.body["status"]["killSwitchPushed"];
        assert_eq!(k["done"], false, "recorded before the call: {k}");
        respond(pending.reply, StatusCode::OK, &echo);
    }
    secret(&mut api).await;
    let ev = api
        .expect("POST", "/apis/events.k8s.io/v1/namespaces/trading/events")
        .await;
    let event = ev.body.clone();
    respond(ev.reply, StatusCode::CREATED, &event);
    let st = api
        .expect("PATCH", &format!("{P}/riskpolicies/prod/status"))
        .await;
    let status = st.body["status"].clone();
    respond(st.reply, StatusCode::OK, &echo);
    (task.await.unwrap(), event, status)
}

/// A RiskPolicy that engages the kill switch sets it in the ledger at once (not only in
/// the configuration engines read at start), and releases what it engaged; a policy
/// created released asks nothing, and a change made by hand after the policy's is not
/// undone by it.
#[tokio::test]
async fn a_risk_policys_kill_switch_is_set_in_the_ledger_at_once() {
    let etcd = etcd();
    let n = node(Some(&etcd)).await;
    // Created released: the cluster lookup and the status, nothing sent to the ledger.
    let status = policy_quiet(risk_policy(false, json!({})), &n, &etcd.clients).await;
    assert!(status.get("killSwitchPushed").is_none());
    assert_eq!(ledger_kill(&n.url).await, None);
    // Engaged.
    let (r, event, status) =
        policy_push(risk_policy(true, json!({})), &n, &etcd.clients, true).await;
    r.unwrap();
    assert_eq!(event["reason"], "KillSwitchEngaged");
    let pushed = status["killSwitchPushed"].clone();
    assert_eq!(
        (pushed["engaged"].clone(), pushed["done"].clone()),
        (json!(true), json!(true))
    );
    let at = pushed["atNs"].as_u64().unwrap();
    assert_eq!(ledger_kill(&n.url).await, Some((true, at)));
    // Engaged and pushed: a reconcile asks nothing more of the ledger.
    policy_quiet(
        risk_policy(true, json!({ "killSwitchPushed": pushed })),
        &n,
        &etcd.clients,
    )
    .await;
    // Released by the policy.
    let (r, event, _) = policy_push(
        risk_policy(false, json!({ "killSwitchPushed": pushed })),
        &n,
        &etcd.clients,
        true,
    )
    .await;
    r.unwrap();
    assert_eq!(event["reason"], "KillSwitchReleased");
    assert_eq!(ledger_kill(&n.url).await.map(|k| k.0), Some(false));
    // Someone engages it by hand; a policy change the operator saw before that (a retry
    // of an engage-then-release, say) does not undo it.
    let by_hand = hft_cluster::coord::now_ns();
    let v = admin(
        format!("{}/v1/kill", n.url),
        Some(json!({ "scope": "global", "engaged": true, "at_ns": by_hand })),
    )
    .await;
    assert_eq!(v["engaged"], true);
    let stale = json!({ "killSwitchPushed": {
        "engaged": false, "atNs": by_hand - 1_000_000, "done": false, "message": "" } });
    let (r, event, status) = policy_push(risk_policy(false, stale), &n, &etcd.clients, false).await;
    r.unwrap();
    assert_eq!(event["reason"], "KillSwitchSuperseded");
    assert_eq!(status["killSwitchPushed"]["done"], true);
    assert_eq!(
        ledger_kill(&n.url).await,
        Some((true, by_hand)),
        "the later change stands"
    );
    assert_eq!(
        condition(&status, "Degraded")["reason"],
        "KillSwitchSuperseded"
    );
    // The policy engaged the switch at `at`; since then someone released it and engaged
    // it again by hand. The policy turning it off now releases nothing: the switch is
    // no longer the policy's.
    let engaged_earlier = json!({ "killSwitchPushed": {
        "engaged": true, "atNs": at, "done": true, "message": "" } });
    let (r, event, status) =
        policy_push(risk_policy(false, engaged_earlier), &n, &etcd.clients, true).await;
    r.unwrap();
    assert_eq!(event["reason"], "KillSwitchSuperseded");
    assert_eq!(status["killSwitchPushed"]["releases"], at);
    assert_eq!(
        ledger_kill(&n.url).await,
        Some((true, by_hand)),
        "the engage by hand stands"
    );
}

const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/ops/leases";

/// A Lease as the API server would hold it.
fn lease(holder: &str, version: &str, transitions: i32) -> Value {
    json!({ "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": { "name": "hft-operator", "namespace": "ops", "resourceVersion": version },
            "spec": { "holderIdentity": holder, "leaseDurationSeconds": 15,
                      "acquireTime": "2026-11-27T00:00:00.000000Z",
                      "renewTime": "2026-11-27T00:00:00.000000Z",
                      "leaseTransitions": transitions } })
}

/// One election round of `e` at `at`, the lease lookup answered with `current` (None:
/// no lease); returns the outcome and the write it made, if any (already answered
/// with `answer`).
async fn election_round(
    e: &Arc<hft_operator::leader::Elector>,
    api: &mut ApiServer,
    at: std::time::Instant,
    current: Option<Value>,
    answer: Option<StatusCode>,
) -> (hft_operator::leader::Outcome, Option<(String, Value)>) {
    let task = {
        let e = e.clone();
        tokio::spawn(async move { e.round(Some(at)).await })
    };
    let g = api.expect("GET", &format!("{LEASES}/hft-operator")).await;
    match current {
        Some(l) => respond(g.reply, StatusCode::OK, &l),
        None => not_found(g.reply, "lease"),
    }
    let mut wrote = None;
    if let Some(status) = answer {
        let w = api.next().await;
        let mut echo = w.body.clone();
        if status == StatusCode::CONFLICT {
            echo = json!({ "kind": "Status", "apiVersion": "v1", "metadata": {},
                "status": "Failure", "reason": "Conflict", "code": 409,
                "message": "the object has been modified" });
        }
        respond(w.reply, status, &echo);
        wrote = Some((format!("{} {}", w.method, w.path), w.body));
    }
    (task.await.unwrap().unwrap(), wrote)
}

/// Operator replicas elect one leader on a Lease: the first creates it; another takes
/// over only after seeing it unrenewed for a lease duration on its own clock, writing
/// back the version it read, so that of two racing candidates one wins; the leader
/// renews.
#[tokio::test]
async fn operator_replicas_elect_one_leader_on_a_lease() {
    use hft_operator::leader::{Elector, Outcome};
    let elector = |client: Client, id: &str| {
        Arc::new(Elector::new(
            kube::Api::namespaced(client, "ops"),
            "hft-operator",
            id,
            Duration::from_secs(15),
        ))
    };
    let t0 = std::time::Instant::now();
    let secs = |s| t0 + Duration::from_secs(s);
    // No lease: A creates it and leads.
    let (client, mut api) = mock();
    let a = elector(client, "op-a");
    let (out, wrote) = election_round(&a, &mut api, t0, None, Some(StatusCode::CREATED)).await;
    assert_eq!(out, Outcome::Leading);
    let (call, body) = wrote.unwrap();
    assert_eq!(call, format!("POST {LEASES}"));
    assert_eq!(body["spec"]["holderIdentity"], "op-a");
    assert_eq!(body["spec"]["leaseDurationSeconds"], 15);
    // B sees A's lease: it follows, and keeps following while the record is renewed or
    // for less than a lease duration unchanged.
    let (client, mut api_b) = mock();
    let b = elector(client, "op-b");
    let following = Outcome::Following {
        holder: "op-a".into(),
    };
    for (at, version) in [(0, "1"), (10, "1"), (20, "2"), (34, "2")] {
        let (out, wrote) = election_round(
            &b,
            &mut api_b,
            secs(at),
            Some(lease("op-a", version, 0)),
            None,
        )
        .await;
        assert_eq!((out, wrote), (following.clone(), None), "at {at} s");
    }
    // Unchanged for 15 s on B's clock (since 20 s): B takes it over, with the version it
    // read, a new holder and one more transition.
    let (out, wrote) = election_round(
        &b,
        &mut api_b,
        secs(35),
        Some(lease("op-a", "2", 0)),
        Some(StatusCode::OK),
    )
    .await;
    assert_eq!(out, Outcome::Leading);
    let (call, body) = wrote.unwrap();
    assert_eq!(call, format!("PUT {LEASES}/hft-operator"));
    assert_eq!(body["metadata"]["resourceVersion"], "2");
    assert_eq!(body["spec"]["holderIdentity"], "op-b");
    assert_eq!(body["spec"]["leaseTransitions"], 1);
    // C raced B for the same lapsed record and lost: a conflict, so it follows.
    let (client, mut api_c) = mock();
    let c = elector(client, "op-c");
    election_round(&c, &mut api_c, secs(20), Some(lease("op-a", "2", 0)), None).await;
    let (out, _) = election_round(
        &c,
        &mut api_c,
        secs(35),
        Some(lease("op-a", "2", 0)),
        Some(StatusCode::CONFLICT),
    )
    .await;
    assert_eq!(out, following);
    // The leader renews its own lease, keeping the version check and the transitions.
    let (out, wrote) = election_round(
        &b,
        &mut api_b,
        secs(37),
        Some(lease("op-b", "3", 1)),
        Some(StatusCode::OK),
    )
    .await;
    assert_eq!(out, Outcome::Leading);
    let (call, body) = wrote.unwrap();
    assert_eq!(call, format!("PUT {LEASES}/hft-operator"));
    assert_eq!(body["metadata"]["resourceVersion"], "3");
    assert_eq!(
        (
            body["spec"]["holderIdentity"].clone(),
            body["spec"]["leaseTransitions"].clone()
        ),
        (json!("op-b"), json!(1))
    );
    assert_ne!(body["spec"]["renewTime"], "2026-11-27T00:00:00.000000Z");
    // At shutdown the leader gives the lease up (a release by anyone else is a no-op),
    // and a standby takes it at its next round, without waiting 15 s.
    let task = {
        let b = b.clone();
        tokio::spawn(async move { b.release().await })
    };
    let g = api_b.expect("GET", &format!("{LEASES}/hft-operator")).await;
    respond(g.reply, StatusCode::OK, &lease("op-b", "4", 1));
    let put = api_b.expect("PUT", &format!("{LEASES}/hft-operator")).await;
    assert!(
        put.body["spec"].get("holderIdentity").is_none(),
        "{}",
        put.body
    );
    let released = put.body.clone();
    respond(put.reply, StatusCode::OK, &released);
    task.await.unwrap().unwrap();
    let mut free = released;
    free["metadata"]["resourceVersion"] = json!("5");
    let (out, wrote) =
        election_round(&c, &mut api_c, secs(38), Some(free), Some(StatusCode::OK)).await;
    assert_eq!(out, Outcome::Leading);
    assert_eq!(wrote.unwrap().1["spec"]["holderIdentity"], "op-c");
}

/// Scale-up from one founder to three: the new pods start as joiners; the operator adds
/// each as a learner in the ledger, and promotes a learner to a voter only once its pod
/// is ready (caught up), reporting the rest as catching up.
#[tokio::test]
async fn a_scale_up_adds_the_new_members_and_promotes_them_once_ready() {
    let etcd = etcd();
    let n = node(Some(&etcd)).await;
    let mut tc = cluster(3, &etcd.clients);
    tc.status = Some(hft_operator::crd::TradingClusterStatus {
        founders: Some(1),
        ..Default::default()
    });
    let reconcile = |round: Round| {
        let tc = tc.clone();
        let url = n.url.clone();
        async move {
            let (client, mut api) = mock();
            let task = tokio::spawn(controller::reconcile_cluster(
                Arc::new(tc),
                ctx(client, Some(url)),
            ));
            existing_sts(&mut api, 1).await;
            let (_, sts, status) = cluster_requests(&mut api, round).await;
            task.await.unwrap().unwrap();
            (sts, status)
        }
    };
    // Both new pods still catching up: added as learners, neither promoted.
    let (sts, status) = reconcile(Round {
        scale_up: Some((vec![2, 3], vec![(2, false), (3, false)])),
        ..round(vec![], 1, true)
    })
    .await;
    assert_eq!(sts["spec"]["replicas"], 3);
    let args = sts["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
    assert!(args.contains("--founders=1"), "{args}");
    let st = n.ledger.status().await.unwrap();
    assert_eq!(
        (st.voters.clone(), st.learners.clone()),
        (vec![1], vec![2, 3])
    );
    let p = condition(&status, "Progressing");
    assert_eq!(
        (p["status"].as_str(), p["reason"].as_str()),
        (Some("True"), Some("AddingMembers"))
    );
    assert!(p["message"].as_str().unwrap().contains("[2, 3]"), "{p}");
    assert_eq!(condition(&status, "Ready")["status"], "False");
    // Member 3 marks itself as having lost its log (a restart before it saw its own
    // re-add would): a learner already, it is not removed again, and the mark is gone.
    let mut coord =
        hft_cluster::coord::Coord::connect(&etcd.clients, "prod", Duration::from_secs(5))
            .await
            .unwrap();
    coord.mark_rejoining(3).await.unwrap();
    assert_eq!(coord.rejoining().await.unwrap(), [3]);
    // Member 2's pod is ready: it is promoted; 3 is still a learner.
    let (_, status) = reconcile(Round {
        rejoin_marks: true,
        scale_up: Some((vec![], vec![(2, true), (3, false)])),
        // The cluster object still has no revision in its status: the event again.
        ..round(vec![], 2, true)
    })
    .await;
    let st = n.ledger.status().await.unwrap();
    assert_eq!((st.voters, st.learners), (vec![1, 2], vec![3]));
    assert!(coord.rejoining().await.unwrap().is_empty());
    assert_eq!(status["ledgerMembers"], 2);
    assert!(
        condition(&status, "Progressing")["message"]
            .as_str()
            .unwrap()
            .contains("[3]")
    );
    assert_eq!(condition(&status, "Degraded")["status"], "False");
}

/// A cluster with a managed etcd: `spec.etcd.managed` instead of endpoints.
fn managed_cluster(members: i32) -> TradingCluster {
    let mut tc = cluster(3, &[]);
    tc.spec.etcd = serde_json::from_value(json!({ "managed": { "replicas": members } })).unwrap();
    tc
}

/// A new cluster with a managed etcd gets the etcd's headless Service, StatefulSet and
/// PodDisruptionBudget first; its nodes point at the etcd members' stable names; while
/// etcd is not up yet nothing is written to it and the cluster says so.
#[tokio::test]
async fn a_managed_etcd_is_created_before_the_nodes_that_use_it() {
    let (client, mut api) = mock();
    let task = tokio::spawn(controller::reconcile_cluster(
        Arc::new(managed_cluster(3)),
        ctx(client, None),
    ));
    let g = api
        .expect("GET", "/apis/apps/v1/namespaces/trading/statefulsets/prod")
        .await;
    not_found(g.reply, "statefulsets");
    let g = api
        .expect(
            "GET",
            "/apis/apps/v1/namespaces/trading/statefulsets/prod-etcd",
        )
        .await;
    not_found(g.reply, "statefulsets");
    let svc = api
        .expect_apply("/api/v1/namespaces/trading/services/prod-etcd", json!({}))
        .await;
    assert_eq!(svc["spec"]["clusterIP"], "None");
    assert_eq!(svc["spec"]["publishNotReadyAddresses"], true);
    assert_eq!(
        svc["spec"]["selector"]["app.kubernetes.io/component"],
        "etcd"
    );
    let etcd = api
        .expect_apply(
            "/apis/apps/v1/namespaces/trading/statefulsets/prod-etcd",
            json!({ "status": { "replicas": 3, "readyReplicas": 1 } }),
        )
        .await;
    assert_eq!(etcd["spec"]["replicas"], 3);
    assert_eq!(etcd["metadata"]["ownerReferences"][0]["uid"], "uid-prod");
    let args = etcd["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
    assert!(
        args.contains("--initial-cluster=prod-etcd-0=http://prod-etcd-0.prod-etcd.trading.svc:2380,prod-etcd-1=http://prod-etcd-1.prod-etcd.trading.svc:2380,prod-etcd-2=http://prod-etcd-2.prod-etcd.trading.svc:2380"),
        "{args}"
    );
    assert!(args.contains("--initial-cluster-state=new"), "{args}");
    let pdb = api
        .expect_apply(
            "/apis/policy/v1/namespaces/trading/poddisruptionbudgets/prod-etcd",
            json!({}),
        )
        .await;
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
    let (_, sts, status) = cluster_requests(
        &mut api,
        Round {
            written: false,
            ..round(
                vec![strategy("mm-a", "market_making", "0.1000", json!({}))],
                0,
                false,
            )
        },
    )
    .await;
    task.await.unwrap().unwrap();
    let args = sts["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
    assert!(
        args.contains("--etcd=http://prod-etcd-0.prod-etcd.trading.svc:2379,http://prod-etcd-1.prod-etcd.trading.svc:2379,http://prod-etcd-2.prod-etcd.trading.svc:2379"),
        "{args}"
    );
    let p = condition(&status, "Progressing");
    assert_eq!(p["reason"], "EtcdStarting");
    assert!(
        p["message"]
            .as_str()
            .unwrap()
            .contains("1 of 3 members ready"),
        "{p}"
    );
    assert_eq!(
        condition(&status, "Degraded")["status"],
        "False",
        "not an etcd failure"
    );
}

/// Both an existing etcd and a managed one, a managed etcd resized, no venue link, two
/// kinds of venue link or one name twice: `Invalid` with the reason, and nothing is
/// written.
#[tokio::test]
async fn a_cluster_spec_the_operator_cannot_act_on_is_invalid() {
    let with_venues = |single: bool, names: &[&str]| {
        let mut tc = cluster(3, &["http://etcd:2379".into()]);
        if !single {
            tc.spec.venue = None;
        }
        tc.spec.venues = names
            .iter()
            .map(|n| serde_json::from_value(json!({ "name": n, "address": "v:7070" })).unwrap())
            .collect();
        tc
    };
    for (tc, current, reason, says) in [
        (
            {
                let mut tc = managed_cluster(3);
                tc.spec.etcd.endpoints = vec!["http://etcd:2379".into()];
                tc
            },
            None,
            "InvalidEtcd",
            "spec.etcd",
        ),
        (managed_cluster(5), Some(3), "EtcdResize", "spec.etcd"),
        (
            with_venues(false, &[]),
            None,
            "InvalidVenues",
            "give `venue`",
        ),
        (
            with_venues(true, &["east"]),
            None,
            "InvalidVenues",
            "both set",
        ),
        (
            with_venues(false, &["east", "west", "east"]),
            None,
            "InvalidVenues",
            "\"east\" is named twice",
        ),
    ] {
        let (client, mut api) = mock();
        let task = tokio::spawn(controller::reconcile_cluster(
            Arc::new(tc),
            ctx(client, None),
        ));
        if let Some(n) = current {
            existing_sts(&mut api, 3).await;
            let g = api
                .expect(
                    "GET",
                    "/apis/apps/v1/namespaces/trading/statefulsets/prod-etcd",
                )
                .await;
            respond(
                g.reply,
                StatusCode::OK,
                &json!({ "apiVersion": "apps/v1", "kind": "StatefulSet",
                    "metadata": { "name": "prod-etcd", "namespace": NS },
                    "spec": { "replicas": n, "selector": {}, "template": {}, "serviceName": "prod-etcd" } }),
            );
        }
        let ev = api
            .expect("POST", "/apis/events.k8s.io/v1/namespaces/trading/events")
            .await;
        assert_eq!(ev.body["type"], "Warning");
        let body = ev.body.clone();
        respond(ev.reply, StatusCode::CREATED, &body);
        let st = api
            .expect("PATCH", &format!("{P}/tradingclusters/prod/status"))
            .await;
        let status = st.body["status"].clone();
        respond(
            st.reply,
            StatusCode::OK,
            &serde_json::to_value(cluster(3, &[])).unwrap(),
        );
        assert_eq!(task.await.unwrap().unwrap(), Action::await_change());
        let inv = condition(&status, "Invalid");
        assert_eq!(
            (inv["status"].as_str(), inv["reason"].as_str()),
            (Some("True"), Some(reason))
        );
        assert!(inv["message"].as_str().unwrap().contains(says), "{inv}");
        assert_eq!(condition(&status, "Ready")["status"], "False");
    }
}
