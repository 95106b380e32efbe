//! Reconcile cost of a 5-node TradingCluster with 20 Strategies and a RiskPolicy,
//! against the mock API server (answering at once, as a local API server would) and a
//! real etcd: `cargo bench -p hft-operator --bench reconcile`. Prints the wall time per
//! reconcile (p50, p99, max) and the process's peak resident memory.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hft_operator::controller::{self, Context};
use hft_operator::crd::TradingCluster;
use http::{Request, Response};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};

fn cluster(etcd: &[String]) -> Value {
    json!({
        "apiVersion": "hft.dev/v1alpha1", "kind": "TradingCluster",
        "metadata": { "name": "prod", "namespace": "trading", "uid": "u", "generation": 1 },
        "spec": {
            "replicas": 5, "image": "ghcr.io/hft-rs/hft:0.1.0",
            "etcd": { "endpoints": etcd }, "venue": { "address": "venue:7070" },
            "secrets": { "clusterSecret": { "name": "s", "key": "k" },
                         "adminToken": { "name": "s", "key": "t" } }
        }
    })
}

fn strategies() -> Value {
    let items: Vec<Value> = (0..20)
        .map(|i| {
            json!({
                "apiVersion": "hft.dev/v1alpha1", "kind": "Strategy",
                "metadata": { "name": format!("mm-{i}"), "namespace": "trading" },
                "spec": { "cluster": "prod", "kind": "market_making",
                          "instrument": if i % 2 == 0 { "BTC-USD" } else { "ETH-USD" },
                          "params": { "risk_aversion": 0.1 + f64::from(i) / 100.0 },
                          "risk": { "maxPosition": if i % 2 == 0 { "0.1000" } else { "1.000" } } }
            })
        })
        .collect();
    json!({ "apiVersion": "hft.dev/v1alpha1", "kind": "StrategyList",
            "metadata": { "resourceVersion": "1" }, "items": items })
}

/// Answers every request as the API server would, at once.
async fn serve(mut h: tower_test::mock::Handle<Request<Body>, Response<Body>>) {
    let strategies = strategies();
    let policies = json!({ "apiVersion": "hft.dev/v1alpha1", "kind": "RiskPolicyList",
        "metadata": {}, "items": [{ "apiVersion": "hft.dev/v1alpha1", "kind": "RiskPolicy",
        "metadata": { "name": "prod", "namespace": "trading" },
        "spec": { "cluster": "prod", "maxGrossNotional": "1000000" } }] });
    while let Some((req, reply)) = h.next_request().await {
        let (method, path) = (req.method().to_string(), req.uri().path().to_owned());
        let body: Value = serde_json::from_slice(&req.into_body().collect_bytes().await.unwrap())
            .unwrap_or(Value::Null);
        let (status, v) = match method.as_str() {
            "GET" if path.ends_with("/statefulsets/prod") => (
                200,
                json!({
                "apiVersion": "apps/v1", "kind": "StatefulSet",
                "metadata": { "name": "prod", "namespace": "trading" },
                "spec": { "replicas": 5, "selector": {}, "template": {}, "serviceName": "prod-nodes" } }),
            ),
            "GET" if path.contains("customresourcedefinitions") => (
                404,
                json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "reason": "NotFound", "code": 404 }),
            ),
            "GET" if path.ends_with("/strategies") => (200, strategies.clone()),
            "GET" if path.ends_with("/riskpolicies") => (200, policies.clone()),
            "PATCH" if path.ends_with("/statefulsets/prod") => {
                let mut b = body;
                b["status"] = json!({ "replicas": 5, "readyReplicas": 5 });
                (200, b)
            }
            "PATCH" if path.ends_with("/status") => {
                let mut b = cluster(&[]);
                b["status"] = body["status"].clone();
                (200, b)
            }
            _ => (if method == "POST" { 201 } else { 200 }, body),
        };
        reply.send_response(
            Response::builder()
                .status(status)
                .body(Body::from(serde_json::to_vec(&v).unwrap()))
                .unwrap(),
        );
    }
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = std::env::temp_dir().join(format!("hft-operator-bench-{}", std::process::id()));
    let etcd = hft_cluster::local_etcd::LocalEtcd::start(std::path::Path::new("etcd"), &dir, 1)
        .expect("etcd (Debian: etcd-server)");
    rt.block_on(async {
        let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        tokio::spawn(serve(handle));
        let ctx = Arc::new(Context {
            client: Client::new(svc, "default"),
            reporter: kube::runtime::events::Reporter {
                controller: "hft-operator".into(),
                instance: None,
            },
            etcd: Default::default(),
            admin_url: None,
        });
        let tc: TradingCluster = serde_json::from_value(cluster(&etcd.clients)).unwrap();
        let tc = Arc::new(tc);
        // The first writes the configuration to etcd; the rest find it unchanged.
        controller::reconcile_cluster(tc.clone(), ctx.clone()).await.unwrap();
        let mut ms: Vec<f64> = Vec::new();
        for _ in 0..100 {
            let t = Instant::now();
            controller::reconcile_cluster(tc.clone(), ctx.clone()).await.unwrap();
            ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        ms.sort_by(f64::total_cmp);
        let q = |p: f64| ms[((ms.len() - 1) as f64 * p) as usize];
        println!(
            "reconcile, 5 nodes, 20 strategies, 1 policy: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} runs)",
            q(0.5),
            q(0.99),
            ms[ms.len() - 1],
            ms.len()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    });
    println!(
        "peak resident memory: {:.1} MiB",
        peak_rss_kib() as f64 / 1024.0
    );
}
