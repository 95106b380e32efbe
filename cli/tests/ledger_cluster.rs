//! Three `hft node` processes on loopback: kill -9 the ledger leader mid-stream of
//! fills; no acknowledged fill is lost or doubled, a new leader serves within the
//! election timeout, and the killed member rejoins from its WAL and snapshot.

mod support;

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Longest election timeout of `hft node` at its default 20 ms tick (20 ticks), plus
/// the pre-vote and vote round trips and one client retry; generous for a loaded CI
/// machine but far below what a stuck cluster would show.
const FAILOVER_BOUND: Duration = Duration::from_millis(1500);

struct Node {
    id: u64,
    admin: String,
    child: Option<Child>,
}

struct Cluster {
    dir: PathBuf,
    peers: String,
    nodes: Vec<Node>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        if std::thread::panicking() {
            support::print_log_tails(&self.dir);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_ports(n: usize) -> Vec<u16> {
    let ls: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    ls.iter().map(|l| l.local_addr().unwrap().port()).collect()
}

fn spawn(dir: &Path, peers: &str, id: u64, admin: &str) -> Child {
    spawn_with(dir, peers, id, admin, &[])
}

fn spawn_with(dir: &Path, peers: &str, id: u64, admin: &str, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_hft"))
        .args([
            "node",
            "--id",
            &id.to_string(),
            "--cluster",
            "test",
            "--ledger-peers",
            peers,
            "--ledger-dir",
            &dir.join(format!("m{id}")).to_string_lossy(),
            "--admin",
            admin,
        ])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join(format!("node{id}.log"))).expect("log file"))
        .spawn()
        .expect("hft node starts")
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(2)))
        .http_status_as_error(false)
        .build()
        .into()
}

fn get(admin: &str, path: &str) -> Option<Value> {
    get_as(admin, path, None)
}

/// GET with an optional bearer token; None unless 2xx.
fn get_as(admin: &str, path: &str, token: Option<&str>) -> Option<Value> {
    let mut req = agent().get(format!("http://{admin}{path}"));
    if let Some(t) = token {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    let mut r = req.call().ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.body_mut().read_json().ok()
}

fn fill(exec_id: u64) -> Value {
    json!([{
        "venue": "sim", "exec_id": exec_id, "account": "main", "strategy": "mm",
        "instrument": "BTC-USD", "price_scale": 2, "qty_scale": 4,
        "side": if exec_id % 3 == 0 { "sell" } else { "buy" },
        "price": 6_500_000 + exec_id as i64, "qty": 10, "fee": 1,
        "liquidity": "maker", "cl_ord_id": exec_id, "ts": 1_000 + exec_id
    }])
}

/// Proposes one fill through `admin`; true when the ledger acknowledged it. A refusal
/// (4xx) fails the test at once: retrying cannot help it.
fn propose(admin: &str, exec_id: u64) -> bool {
    propose_as(admin, exec_id, None)
}

/// [`propose`] with an optional bearer token.
fn propose_as(admin: &str, exec_id: u64, token: Option<&str>) -> bool {
    let mut req = agent().post(format!("http://{admin}/v1/ledger/fills"));
    if let Some(t) = token {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    let r = req.send_json(fill(exec_id));
    match r {
        Ok(mut resp) if resp.status().is_client_error() => panic!(
            "fill refused: {}",
            resp.body_mut().read_to_string().unwrap_or_default()
        ),
        Ok(resp) => resp.status().is_success(),
        Err(_) => false,
    }
}

fn leader(c: &Cluster) -> Option<u64> {
    leader_as(c, None)
}

/// [`leader`] with an optional bearer token.
fn leader_as(c: &Cluster, token: Option<&str>) -> Option<u64> {
    c.nodes.iter().filter(|n| n.child.is_some()).find_map(|n| {
        let s = get_as(&n.admin, "/v1/ledger/status", token)?;
        (s["role"] == "Leader").then_some(n.id)
    })
}

/// The leader, once there is one; fails the test after 30 s.
fn wait_leader(c: &Cluster, token: Option<&str>) -> u64 {
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(l) = leader_as(c, token) {
            return l;
        }
        assert!(Instant::now() < end, "no ledger leader within 30 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Three `hft node` processes on loopback taking `extra` arguments, in a fresh
/// directory named after `name`: the directory, the ports (ledger 1..3, admin 1..3)
/// and the cluster, whose nodes are killed when it is dropped.
fn three_nodes(name: &str, extra: &[&str]) -> (PathBuf, Vec<u16>, Cluster) {
    let dir = std::env::temp_dir().join(format!("hft-ledger-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ports = free_ports(6);
    let peers = (1..=3)
        .map(|i| format!("{i}=127.0.0.1:{}", ports[i - 1]))
        .collect::<Vec<_>>()
        .join(",");
    let mut c = Cluster {
        dir: dir.clone(),
        peers: peers.clone(),
        nodes: Vec::new(),
    };
    for id in 1..=3u64 {
        let admin = format!("127.0.0.1:{}", ports[2 + id as usize]);
        let child = spawn_with(&dir, &peers, id, &admin, extra);
        c.nodes.push(Node {
            id,
            admin,
            child: Some(child),
        });
    }
    (dir, ports, c)
}

#[test]
fn kill_9_of_the_leader_loses_no_acknowledged_fill() {
    let (dir, _, mut c) = three_nodes("procs", &[]);
    wait_leader(&c, None);
    let end = Instant::now() + Duration::from_secs(30);

    let mut acked = BTreeSet::new();
    let mut next = 1u64;
    let mut via = 0usize;
    let mut failover = None;
    let mut killed = None;
    while acked.len() < 300 {
        if acked.len() == 120 && killed.is_none() {
            let l = leader(&c).expect("a leader before the kill");
            let node = &mut c.nodes[l as usize - 1];
            let mut child = node.child.take().unwrap();
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            killed = Some((l, Instant::now()));
        }
        let alive: Vec<&Node> = c.nodes.iter().filter(|n| n.child.is_some()).collect();
        let n = alive[via % alive.len()];
        if propose(&n.admin, next) {
            acked.insert(next);
            if let (Some((_, at)), None) = (killed, failover) {
                failover = Some(at.elapsed());
            }
            next += 1;
        } else {
            // Not acknowledged: may or may not be booked. Retry the same fill (the
            // ledger books it once) through another member.
            via += 1;
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            Instant::now() < end + Duration::from_secs(60),
            "stream stalled at {} acknowledged fills",
            acked.len()
        );
    }
    let failover = failover.expect("a fill was acknowledged after the kill");
    eprintln!("first acknowledged fill {failover:?} after kill -9 of the leader");
    assert!(
        failover < FAILOVER_BOUND,
        "new leader served after {failover:?}"
    );

    // The killed member restarts from its WAL and snapshot and catches up.
    let (dead, _) = killed.unwrap();
    let admin = c.nodes[dead as usize - 1].admin.clone();
    c.nodes[dead as usize - 1].child = Some(spawn(&dir, &c.peers, dead, &admin));
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let hashes: Vec<Option<Value>> = c
            .nodes
            .iter()
            .map(|n| get(&n.admin, "/v1/ledger/hash"))
            .collect();
        let done = hashes.iter().all(|h| {
            h.as_ref().is_some_and(|h| {
                h["fills"] == acked.len() as u64 && h["hash"] == hashes[0].as_ref().unwrap()["hash"]
            })
        });
        if done {
            break;
        }
        assert!(Instant::now() < end, "members did not converge: {hashes:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Every acknowledged fill is booked exactly once on every member.
    for n in &c.nodes {
        let fills = get(&n.admin, "/v1/ledger/fills?since=0&limit=100000").expect("fills");
        let ids: Vec<u64> = fills
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["exec_id"].as_u64().unwrap())
            .collect();
        let unique: BTreeSet<u64> = ids.iter().copied().collect();
        assert_eq!(
            ids.len(),
            unique.len(),
            "member {} booked a fill twice",
            n.id
        );
        assert_eq!(unique, acked, "member {} lost an acknowledged fill", n.id);
    }
}

#[test]
fn bench_ledger_measures_both_clusters_in_one_run() {
    let out = Command::new(env!("CARGO_BIN_EXE_hft"))
        .args([
            "bench",
            "ledger",
            "--samples",
            "20",
            "--secs",
            "1",
            "--concurrency",
            "4",
            "--batch",
            "8",
            "--recovery-fills",
            "5000",
            "--json",
        ])
        .output()
        .expect("hft runs");
    assert!(
        out.status.success(),
        "bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    for k in [
        "commit_p50_us",
        "commit_p99_us",
        "throughput_per_s",
        "etcd_commit_p99_us",
        "etcd_throughput_per_s",
        "etcd_txn_throughput_per_s",
        "recovery_ms",
    ] {
        assert!(v[k].as_f64().is_some_and(|x| x > 0.0), "{k} in {v}");
    }
    assert!(v["commit_p99_us"].as_f64() >= v["commit_p50_us"].as_f64());
    assert_eq!(v["recovery_fills"], 5000);
}

#[test]
fn node_arguments_are_checked_with_a_clear_message() {
    let run = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_hft"))
            .args(args)
            .output()
            .expect("hft runs");
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (code, err) = run(&["node", "--id", "4", "--ledger-peers", "1=127.0.0.1:1"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("does not list this node's id 4"), "{err}");
    let (code, err) = run(&["node", "--id", "1", "--ledger-peers", "1=127.0.0.1:1,x"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("is not ID=HOST:PORT"), "{err}");
    let (code, err) = run(&["ledger", "status", "--endpoint", "http://127.0.0.1:1"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("cannot reach the admin API"), "{err}");
}

fn hft_out(args: &[&str]) -> (Option<i32>, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_hft"))
        .args(args)
        .env_remove("HFT_ENDPOINT")
        .output()
        .expect("hft runs");
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn config_in_etcd_is_validated_versioned_and_nodes_register_and_fence() {
    let dir = std::env::temp_dir().join(format!("hft-etcd-cli-{}", std::process::id()));
    let mut etcd =
        hft_cluster::local_etcd::LocalEtcd::start(Path::new("etcd"), &dir.join("etcd"), 1)
            .expect("etcd runs (scripts/test.sh installs etcd-server)");
    let url = etcd.clients[0].clone();
    let with = |args: &[&str]| {
        let mut v: Vec<&str> = args.to_vec();
        v.extend(["--etcd", &url, "--cluster", "cli"]);
        hft_out(&v)
    };
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[engine]\ntimer_interval_ms = 0\n").unwrap();
    let good = dir.join("good.toml");
    std::fs::write(&good, "[engine]\ntimer_interval_ms = 50\n").unwrap();
    let (code, _, err) = with(&["config", "set", bad.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("timer_interval_ms"), "{err}");
    let (code, out, err) = with(&[
        "config",
        "set",
        good.to_str().unwrap(),
        "--expect-revision",
        "0",
    ]);
    assert_eq!(code, Some(0), "{err}");
    let rev: i64 = out.trim().rsplit(' ').next().unwrap().parse().unwrap();
    let (code, _, err) = with(&[
        "config",
        "set",
        good.to_str().unwrap(),
        "--expect-revision",
        "0",
    ]);
    assert_eq!(code, Some(2));
    assert!(err.contains(&format!("now {rev}")), "{err}");
    let (_, out, _) = with(&["config", "get", "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["revision"], rev);
    std::fs::write(&good, "[engine]\ntimer_interval_ms = 75\n").unwrap();
    let (_, out, _) = with(&["config", "diff", good.to_str().unwrap()]);
    assert!(
        out.contains("-timer_interval_ms = 50") && out.contains("+timer_interval_ms = 75"),
        "{out}"
    );
    with(&["config", "set", good.to_str().unwrap()]);
    let (code, out, err) = with(&["config", "rollback", "--to", &rev.to_string()]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains(&format!("revision {rev} stored again")),
        "{out}"
    );
    let (_, out, _) = with(&["config", "history", "--json"]);
    let h: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(h.as_array().unwrap().len(), 3);
    assert!(h[2]["text"].as_str().unwrap().contains("= 50"));

    // Every configuration change is in the audit trail, chained.
    let (code, out, err) = with(&["audit", "verify"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("ok: 3 audit records"), "{out}");

    let (code, token, err) = with(&["token", "create", "--name", "ops", "--role", "viewer"]);
    assert_eq!(code, Some(0), "{err}");
    let token = token.trim().to_owned();

    // A node registers under a lease, is listed, and fences itself once etcd is gone.
    let ports = free_ports(2);
    let admin = format!("127.0.0.1:{}", ports[1]);
    let mut node = Command::new(env!("CARGO_BIN_EXE_hft"))
        .args([
            "node",
            "--id",
            "1",
            "--cluster",
            "cli",
            "--etcd",
            &url,
            "--ledger-peers",
            &format!("1=127.0.0.1:{}", ports[0]),
            "--ledger-dir",
            &dir.join("l1").to_string_lossy(),
            "--admin",
            &admin,
        ])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("node.log")).unwrap())
        .spawn()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = get_as(&admin, "/v1/status", Some(&token)) {
            break s;
        }
        assert!(Instant::now() < end, "node did not start");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status["registered"], true);
    assert_eq!(status["fenced"], false);
    assert!(
        get(&admin, "/v1/status").is_none(),
        "a node in a cluster needs a token"
    );
    // The CLI sends HFT_TOKEN; a viewer may look but not kill.
    let as_user = |token: &str, args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_hft"))
            .args(args)
            .args(["--endpoint", &format!("http://{admin}")])
            .env("HFT_TOKEN", token)
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (code, out, err) = as_user(&token, &["status"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("fenced false"), "{out}");
    let (code, _, err) = as_user(&token, &["kill", "--strategy", "mm"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("403") && err.contains("needs trader"), "{err}");
    let (_, trader, _) = with(&["token", "create", "--name", "desk", "--role", "trader"]);
    let end = Instant::now() + Duration::from_secs(20);
    while !get_as(&admin, "/v1/ledger/status", Some(&token)).is_some_and(|s| s["role"] == "Leader")
    {
        assert!(
            Instant::now() < end,
            "the node's ledger member did not lead"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let (code, out, err) = as_user(trader.trim(), &["kill", "--strategy", "mm"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("strategy:mm engaged"), "{out}");
    let (code, _, err) = as_user(trader.trim(), &["kill", "--strategy", "mm", "--release"]);
    assert_eq!(code, Some(1), "releasing needs admin: {err}");
    let (_, out, _) = as_user(&token, &["positions", "--json"]);
    assert!(out.contains("\"strategy:mm\""), "{out}");
    let (_, out, _) = with(&["nodes", "--json"]);
    let nodes: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(nodes[0]["admin"], admin);
    etcd.kill(0);
    // Fenced, the node stops and exits for its supervisor to start it again (a new
    // process registers under a new lease).
    let gone = Instant::now();
    let status = loop {
        if let Some(s) = node.try_wait().unwrap() {
            break s;
        }
        assert!(
            gone.elapsed() < Duration::from_secs(15),
            "node never fenced itself and stopped"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(1));
    let log = std::fs::read_to_string(dir.join("node.log")).unwrap();
    assert!(log.contains("node fenced"), "{log}");
    assert!(
        log.contains("fenced (its etcd lease lapsed)") && log.contains("start it again"),
        "{log}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A node whose ledger storage fails (here a WAL write error injected at the
/// `ledger::wal-sync` fail point; in the chaos suite, a full disk) stops with exit 1 and
/// names the directory, instead of running on with a member that books nothing.
#[cfg(feature = "failpoints")]
#[test]
fn a_node_whose_ledger_storage_fails_stops() {
    let dir = std::env::temp_dir().join(format!("hft-storage-fails-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let p = free_ports(2);
    let admin = format!("127.0.0.1:{}", p[1]);
    let mut c = Cluster {
        dir: dir.clone(),
        peers: format!("1=127.0.0.1:{}", p[0]),
        nodes: Vec::new(),
    };
    let child = spawn(&dir, &c.peers, 1, &admin);
    c.nodes.push(Node {
        id: 1,
        admin: admin.clone(),
        child: Some(child),
    });
    let end = Instant::now() + Duration::from_secs(30);
    while !propose(&admin, 1) {
        assert!(Instant::now() < end, "the node never booked a fill");
        std::thread::sleep(Duration::from_millis(50));
    }
    let armed = agent()
        .put(format!("http://{admin}/v1/failpoints/ledger::wal-sync"))
        .send("return")
        .expect("admin answers");
    assert_eq!(armed.status(), 200);
    // The write fails: the fill is not acknowledged, and the node goes.
    assert!(
        !propose(&admin, 2),
        "a fill was acknowledged without its write"
    );
    let child = c.nodes[0].child.as_mut().unwrap();
    let end = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < end,
            "the node ran on after its storage failed"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(1));
    let log = std::fs::read_to_string(dir.join("node1.log")).unwrap();
    assert!(
        log.contains("ledger member 1 stopped: its storage in") && log.contains("m1"),
        "{log}"
    );
    // What was acknowledged before is still there after a restart.
    c.nodes[0].child = Some(spawn(&dir, &c.peers, 1, &admin));
    let end = Instant::now() + Duration::from_secs(30);
    let ids = loop {
        if let Some(f) = get(&admin, "/v1/ledger/fills?since=0&limit=10") {
            break f;
        }
        assert!(
            Instant::now() < end,
            "the restarted node never served its fills"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let ids: Vec<u64> = ids
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["exec_id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, vec![1]);
}

/// Members' ids of a node's ledger configuration, as its status reports them.
fn members(admin: &str, kind: &str) -> Option<Vec<u64>> {
    members_as(admin, kind, None)
}

/// [`members`] with an optional bearer token.
fn members_as(admin: &str, kind: &str, token: Option<&str>) -> Option<Vec<u64>> {
    let s = get_as(admin, "/v1/ledger/status", token)?;
    s[kind]
        .as_array()
        .map(|v| v.iter().filter_map(Value::as_u64).collect())
}

fn post(admin: &str, path: &str, body: Value) -> (u16, Value) {
    post_as(admin, path, body, None)
}

/// [`post`] with an optional bearer token.
fn post_as(admin: &str, path: &str, body: Value, token: Option<&str>) -> (u16, Value) {
    let mut req = agent().post(format!("http://{admin}{path}"));
    if let Some(t) = token {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    match req.send_json(body) {
        Ok(mut r) => (
            r.status().as_u16(),
            r.body_mut().read_json().unwrap_or(Value::Null),
        ),
        Err(e) => panic!("{path}: {e}"),
    }
}

/// Every node of a group takes one set of arguments, listing the members it may grow
/// to (a Kubernetes StatefulSet's pods do): with `--founders 2`, nodes 1 and 2 found the
/// ledger and node 3 waits to be added; added as a learner and promoted, it holds what
/// was booked before it came.
#[test]
fn a_group_grows_past_its_founders_with_one_set_of_arguments() {
    let (_, ports, c) = three_nodes("founders", &["--founders", "2"]);
    let l = wait_leader(&c, None);
    assert!(l <= 2, "node 3 is no founder, yet it leads");
    let la = c.nodes[l as usize - 1].admin.clone();
    assert_eq!(members(&la, "voters"), Some(vec![1, 2]));
    assert_eq!(members(&la, "learners"), Some(vec![]));
    for exec in 1..=20 {
        assert!(propose(&la, exec), "fill {exec}");
    }
    // Node 3 runs, outside the ledger until it is added.
    let third = c.nodes[2].admin.clone();
    let before = get(&third, "/v1/ledger/status").expect("node 3 answers");
    assert_ne!(before["role"], "Leader");
    let addr = format!("127.0.0.1:{}", ports[2]);
    let (code, v) = post(
        &la,
        "/v1/ledger/members",
        json!({ "action": "add-learner", "id": 3, "addr": addr }),
    );
    assert_eq!(code, 200, "{v}");
    // It catches up as a learner, then is promoted to a voter.
    let end = Instant::now() + Duration::from_secs(30);
    while get(&third, "/v1/ledger/positions").is_none_or(|p| p["fills"].as_u64() < Some(20)) {
        assert!(Instant::now() < end, "node 3 did not catch up within 30 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (code, v) = post(
        &la,
        "/v1/ledger/members",
        json!({ "action": "promote", "id": 3 }),
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(members(&la, "voters"), Some(vec![1, 2, 3]));
}

/// A local etcd for the test `name` and an admin token of cluster `test` in it: the
/// etcd, its directory and the token.
fn etcd_with_token(name: &str) -> (hft_cluster::local_etcd::LocalEtcd, PathBuf, String) {
    let dir = std::env::temp_dir().join(format!("hft-ledger-{name}-etcd-{}", std::process::id()));
    let etcd = hft_cluster::local_etcd::LocalEtcd::start(Path::new("etcd"), &dir, 1)
        .expect("etcd (Debian's etcd-server) is needed");
    let token = support::admin_token(&etcd.clients.join(","), Some("test"));
    (etcd, dir, token)
}

/// Kills node `id`, deletes its ledger directory and starts it again with `extra`, as
/// after its volume was lost; returns its ledger status once it answers.
fn restart_on_empty_disk(
    c: &mut Cluster,
    dir: &Path,
    id: u64,
    extra: &[&str],
    token: Option<&str>,
) -> Value {
    let node = &mut c.nodes[id as usize - 1];
    let mut child = node.child.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    std::fs::remove_dir_all(dir.join(format!("m{id}"))).unwrap();
    node.child = Some(spawn_with(dir, &c.peers, id, &node.admin, extra));
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(s) = get_as(&node.admin, "/v1/ledger/status", token) {
            return s;
        }
        assert!(
            Instant::now() < end,
            "the restarted node {id} never answered"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A founder whose disk is lost (its volume replaced, or deleted by a scale-down) does
/// not found a second ledger when it starts again: etcd remembers the founding, so it
/// starts empty, rejoining. While the leader still counts it as a voter with entries it
/// lost, it neither votes nor crashes on the leader's commit index. Removed and added
/// back as a learner, then promoted (what the operator does), it catches up with
/// everything booked.
#[test]
fn a_founder_restarted_on_an_empty_disk_joins_the_ledger_it_founded() {
    let (etcd, etcd_dir, token) = etcd_with_token("empty");
    let e = etcd.clients.join(",");
    let t = Some(token.as_str());
    let extra = ["--founders", "3", "--etcd", &e];
    let (dir, ports, mut c) = three_nodes("empty-disk", &extra);
    let l = wait_leader(&c, t);
    let la = c.nodes[l as usize - 1].admin.clone();
    for exec in 1..=20 {
        assert!(propose_as(&la, exec, t), "fill {exec}");
    }
    let victim = if l == 3 { 2 } else { 3 };
    // It serves, rejoining: it founded nothing of its own, and votes for no one while
    // the leader may still count entries it lost as its own.
    let status = restart_on_empty_disk(&mut c, &dir, victim, &extra, t);
    assert_eq!(status["rejoining"], true, "{status}");
    let va = c.nodes[victim as usize - 1].admin.clone();
    let log = std::fs::read_to_string(dir.join(format!("node{victim}.log"))).unwrap();
    assert!(log.contains("joining the existing ledger"), "{log}");
    // The ledger books on without it.
    for exec in 21..=25 {
        assert!(propose_as(&la, exec, t), "fill {exec}");
    }
    let (code, v) = post_as(
        &la,
        "/v1/ledger/members",
        json!({ "action": "remove", "id": victim }),
        t,
    );
    assert_eq!(code, 200, "{v}");
    let addr = format!("127.0.0.1:{}", ports[victim as usize - 1]);
    let (code, v) = post_as(
        &la,
        "/v1/ledger/members",
        json!({ "action": "add-learner", "id": victim, "addr": addr }),
        t,
    );
    assert_eq!(code, 200, "{v}");
    let end = Instant::now() + Duration::from_secs(30);
    while get_as(&va, "/v1/ledger/positions", t).is_none_or(|p| p["fills"].as_u64() < Some(25)) {
        assert!(
            Instant::now() < end,
            "the restarted node did not catch up within 30 s: {}",
            std::fs::read_to_string(dir.join(format!("node{victim}.log"))).unwrap()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (code, v) = post_as(
        &la,
        "/v1/ledger/members",
        json!({ "action": "promote", "id": victim }),
        t,
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(members_as(&la, "voters", t), Some(vec![1, 2, 3]));
    let status = get_as(&va, "/v1/ledger/status", t).unwrap();
    assert_eq!(status["rejoining"], false, "{status}");
    let _ = std::fs::remove_dir_all(&etcd_dir);
}

/// A member added by a scale-up that later loses its volume is caught like a founder:
/// once it holds a log, etcd records that it does, so on an empty disk it starts
/// rejoining (voting for no one) instead of as a fresh joiner.
#[test]
fn a_member_added_later_that_loses_its_disk_starts_rejoining() {
    let (etcd, etcd_dir, token) = etcd_with_token("joiner");
    let e = etcd.clients.join(",");
    let t = Some(token.as_str());
    let extra = ["--founders", "2", "--etcd", &e];
    let (dir, ports, mut c) = three_nodes("joiner-disk", &extra);
    let l = wait_leader(&c, t);
    let la = c.nodes[l as usize - 1].admin.clone();
    for exec in 1..=10 {
        assert!(propose_as(&la, exec, t), "fill {exec}");
    }
    let addr = format!("127.0.0.1:{}", ports[2]);
    let (code, v) = post_as(
        &la,
        "/v1/ledger/members",
        json!({ "action": "add-learner", "id": 3, "addr": addr }),
        t,
    );
    assert_eq!(code, 200, "{v}");
    let third = c.nodes[2].admin.clone();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut coord = rt
        .block_on(hft_cluster::coord::Coord::connect(
            &etcd.clients,
            "test",
            Duration::from_secs(5),
        ))
        .unwrap();
    let end = Instant::now() + Duration::from_secs(30);
    while !rt.block_on(coord.held_log(3)).unwrap() {
        assert!(Instant::now() < end, "member 3's log was never recorded");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        get_as(&third, "/v1/ledger/positions", t).is_some_and(|p| p["fills"].as_u64() == Some(10))
    );
    let status = restart_on_empty_disk(&mut c, &dir, 3, &extra, t);
    assert_eq!(status["rejoining"], true, "{status}");
    let log = std::fs::read_to_string(dir.join("node3.log")).unwrap();
    assert!(log.contains("this member's log is gone"), "{log}");
    assert_eq!(rt.block_on(coord.rejoining()).unwrap(), [3]);
    let _ = std::fs::remove_dir_all(&etcd_dir);
}
