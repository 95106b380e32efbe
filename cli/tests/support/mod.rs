//! What the tests that run `hft` processes share: the binary, a set of child
//! processes killed at the end, `hft` calls with a token, waiting, admin tokens.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const HFT: &str = env!("CARGO_BIN_EXE_hft");

/// Child processes, killed (and their directory removed) when dropped.
pub struct Procs {
    pub children: Vec<Child>,
    pub dir: PathBuf,
}

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            print_log_tails(&self.dir);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Lines of each process log a failing test prints before its directory goes.
const LOG_TAIL: usize = 40;

/// Prints the end of every `*.log` in `dir` to stderr, so that a failure in CI shows
/// what the processes were doing.
pub fn print_log_tails(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut logs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    for p in logs {
        let text = std::fs::read_to_string(&p).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        eprintln!(
            "--- {} (last {} of {} lines) ---",
            p.display(),
            lines.len().min(LOG_TAIL),
            lines.len()
        );
        for l in &lines[lines.len().saturating_sub(LOG_TAIL)..] {
            eprintln!("{l}");
        }
    }
}

/// Starts `hft ARGS` with the cluster secret, its output in `dir/log`.
pub fn spawn(dir: &Path, log: &str, args: &[String], secret: &str) -> Child {
    let f = std::fs::File::create(dir.join(log)).unwrap();
    Command::new(HFT)
        .args(args)
        .env("HFT_CLUSTER_SECRET", secret)
        .stdin(Stdio::null())
        .stdout(f.try_clone().unwrap())
        .stderr(f)
        .spawn()
        .unwrap()
}

/// `hft ARGS --json` with a token: its output, or None if it failed (a read that may
/// fail while the cluster settles).
pub fn hft(args: &[&str], token: &str) -> Option<Value> {
    let out = Command::new(HFT)
        .args(args)
        .arg("--json")
        .env("HFT_TOKEN", token)
        .output()
        .unwrap();
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

/// Polls `f` until it gives a value; fails the test after 30 s.
pub fn until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "{what}: not within 30 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A new admin token of `cluster` (the default one when None) in the etcd at `etcd`.
pub fn admin_token(etcd: &str, cluster: Option<&str>) -> String {
    let mut c = Command::new(HFT);
    c.args([
        "token", "create", "--name", "ops", "--role", "admin", "--etcd", etcd,
    ]);
    if let Some(name) = cluster {
        c.args(["--cluster", name]);
    }
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// `hft ARGS --json` with a token, which must succeed: its output.
pub fn post(args: &[&str], token: &str) -> Value {
    hft(args, token).unwrap_or_else(|| {
        let out = Command::new(HFT)
            .args(args)
            .env("HFT_TOKEN", token)
            .output()
            .unwrap();
        panic!("hft {args:?}: {}", String::from_utf8_lossy(&out.stderr))
    })
}

/// The cluster secret the tests' nodes share.
pub const SECRET: &str = "a-cluster-secret-of-enough-bytes";

/// A fresh directory named after `name`, a local etcd in it, and an empty set of
/// processes, killed and the directory removed when it is dropped.
pub fn cluster_dir(name: &str) -> (PathBuf, hft_cluster::local_etcd::LocalEtcd, Procs) {
    let dir = std::env::temp_dir().join(format!("hft-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let etcd = hft_cluster::local_etcd::LocalEtcd::start(Path::new("etcd"), &dir.join("etcd"), 1)
        .expect("etcd (Debian's etcd-server) is needed");
    let procs = Procs {
        children: Vec::new(),
        dir: dir.clone(),
    };
    (dir, etcd, procs)
}

/// The `hft node` arguments of member `id` under `dir`: etcd, the ledger peers, the
/// admin address (HOST:PORT) and one `--venue` per link.
pub fn node_args(
    dir: &Path,
    id: u64,
    etcd: &str,
    peers: &str,
    admin: &str,
    venues: &[String],
) -> Vec<String> {
    let mut a: Vec<String> = [
        "node",
        "--id",
        &id.to_string(),
        "--etcd",
        etcd,
        "--ledger-peers",
        peers,
        "--ledger-dir",
        dir.join(format!("l{id}")).to_str().unwrap(),
        "--admin",
        admin,
        // These tests operate a healthy cluster. With the default 2 s lease a node is
        // fenced after 1.3 s without a renewal, which a 2-core host busy with other
        // tests' fsyncs can cause, and a fenced node exits (its supervisor would start
        // it again; here there is none). Fencing has its own tests: `cluster_failover`
        // and the chaos schedule.
        "--lease-ttl-s",
        "6",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for v in venues {
        a.extend(["--venue".to_owned(), v.clone()]);
    }
    a
}
