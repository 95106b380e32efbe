//! A cluster trading two venues, with real processes on loopback: two venue processes,
//! a local etcd and two `hft node`s linked to both. Each strategy's orders reach only
//! the venue its configuration names, its fills are booked under that venue's name, and
//! a venue kill switch halts only the strategies on that venue. A node missing a venue
//! its configuration names refuses to start.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const HFT: &str = env!("CARGO_BIN_EXE_hft");

struct Procs {
    children: Vec<Child>,
    dir: PathBuf,
}

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn command(dir: &Path, log: &str, args: &[String], secret: &str) -> Command {
    let f = std::fs::File::create(dir.join(log)).unwrap();
    let mut c = Command::new(HFT);
    c.args(args)
        .env("HFT_CLUSTER_SECRET", secret)
        .stdin(Stdio::null())
        .stdout(f.try_clone().unwrap())
        .stderr(f);
    c
}

/// A read that may fail while the cluster settles.
fn hft(args: &[&str], token: &str) -> Option<Value> {
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

fn until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "{what}: not within 30 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The strategy ids of the orders a venue accepted, from its history.
fn accepted_by(history: &Path) -> std::collections::BTreeSet<u64> {
    std::fs::read_to_string(history)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["t"] == "accept")
        .filter_map(|v| v["strategy"].as_u64())
        .collect()
}

#[test]
fn each_strategy_trades_and_books_on_its_own_venue() {
    let dir = std::env::temp_dir().join(format!("hft-cluster-venues-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let etcd = hft_cluster::local_etcd::LocalEtcd::start(Path::new("etcd"), &dir.join("etcd"), 1)
        .expect("etcd (Debian's etcd-server) is needed");
    let e = etcd.clients.join(",");
    let ports = hft_cluster::local_etcd::free_ports(6).unwrap();
    let secret = "a-cluster-secret-of-enough-bytes";
    let mut procs = Procs {
        children: Vec::new(),
        dir: dir.clone(),
    };
    // The default strategies, mm-btc (strategy id 0) on venue east, mm-eth (id 1) on
    // the first link, west.
    let strategies =
        &hft_config::DEFAULT_TOML[hft_config::DEFAULT_TOML.find("\n[[strategies]]").unwrap()..];
    let overlay = strategies.replacen(
        "name = \"mm-btc\"\n",
        "name = \"mm-btc\"\nvenue = \"east\"\n",
        1,
    );
    assert_ne!(overlay, strategies);
    std::fs::write(dir.join("venues.toml"), &overlay).unwrap();
    let set = Command::new(HFT)
        .args(["config", "set", dir.join("venues.toml").to_str().unwrap()])
        .args(["--etcd", &e])
        .output()
        .unwrap();
    assert!(
        set.status.success(),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );

    let (west, east) = (
        format!("127.0.0.1:{}", ports[0]),
        format!("127.0.0.1:{}", ports[1]),
    );
    for (name, addr) in [("west", &west), ("east", &east)] {
        let history = dir.join(format!("{name}.jsonl"));
        let args: Vec<String> = ["venue", "--listen", addr, "--history"]
            .iter()
            .map(|s| s.to_string())
            .chain([history.to_str().unwrap().to_owned()])
            .collect();
        let child = command(&dir, &format!("{name}.log"), &args, secret)
            .spawn()
            .unwrap();
        procs.children.push(child);
    }
    let token = Command::new(HFT)
        .args([
            "token", "create", "--name", "ops", "--role", "admin", "--etcd", &e,
        ])
        .output()
        .unwrap();
    assert!(
        token.status.success(),
        "{}",
        String::from_utf8_lossy(&token.stderr)
    );
    let token = String::from_utf8(token.stdout).unwrap().trim().to_owned();
    let peers: Vec<String> = (1..=2)
        .map(|i| format!("{i}=127.0.0.1:{}", ports[1 + i]))
        .collect();
    let admin = |id: u64| format!("http://127.0.0.1:{}", ports[3 + id as usize]);
    let node_args = |id: u64, venues: &[String]| -> Vec<String> {
        let mut a: Vec<String> = [
            "node",
            "--id",
            &id.to_string(),
            "--etcd",
            &e,
            "--ledger-peers",
            &peers.join(","),
            "--ledger-dir",
            dir.join(format!("l{id}")).to_str().unwrap(),
            "--admin",
            admin(id).trim_start_matches("http://"),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for v in venues {
            a.extend(["--venue".to_owned(), v.clone()]);
        }
        a
    };

    // A node without the east link refuses to start, naming the strategy and its links.
    let mut lacking = command(
        &dir,
        "lacking.log",
        &node_args(1, &[format!("west={west}")]),
        secret,
    )
    .spawn()
    .unwrap();
    let code = until("the node without venue east exits", || {
        lacking.try_wait().unwrap()
    });
    assert_eq!(code.code(), Some(2));
    let log = std::fs::read_to_string(dir.join("lacking.log")).unwrap();
    assert!(
        log.contains("mm-btc") && log.contains("\"east\"") && log.contains("it has west"),
        "{log}"
    );

    let both = [format!("west={west}"), format!("east={east}")];
    for id in 1..=2u64 {
        let child = command(
            &dir,
            &format!("node-{id}.log"),
            &node_args(id, &both),
            secret,
        )
        .spawn()
        .unwrap();
        procs.children.push(child);
    }
    let engines = |node: u64| -> Vec<(String, u64)> {
        hft(&["status", "--endpoint", &admin(node)], &token)
            .and_then(|s| {
                let list = s["node"]["engines"].as_array()?.clone();
                Some(
                    list.iter()
                        .filter_map(|e| {
                            Some((
                                e["strategy"].as_str()?.to_owned(),
                                e["live"]["orders"].as_u64()?,
                            ))
                        })
                        .collect(),
                )
            })
            .unwrap_or_default()
    };
    let orders = |strategy: &str| -> u64 {
        (1..=2)
            .flat_map(engines)
            .filter(|(s, _)| s == strategy)
            .map(|(_, n)| n)
            .sum()
    };
    until("both strategies trading", || {
        (orders("mm-btc") > 0 && orders("mm-eth") > 0).then_some(())
    });
    // Each venue accepted orders of its strategy only.
    let (on_west, on_east) = until("both venues accepted orders", || {
        let (w, e) = (
            accepted_by(&dir.join("west.jsonl")),
            accepted_by(&dir.join("east.jsonl")),
        );
        (!w.is_empty() && !e.is_empty()).then_some((w, e))
    });
    assert_eq!(on_west.into_iter().collect::<Vec<_>>(), [1], "west");
    assert_eq!(on_east.into_iter().collect::<Vec<_>>(), [0], "east");

    // Fills are booked under the venue they were executed on.
    let venues_of = |fills: &Value, strategy: &str| -> std::collections::BTreeSet<String> {
        fills
            .as_array()
            .into_iter()
            .flatten()
            .filter(|f| f["strategy"] == strategy)
            .filter_map(|f| f["venue"].as_str().map(str::to_owned))
            .collect()
    };
    let fills = until("fills of both strategies in the ledger", || {
        let f = hft(&["ledger", "fills", "--endpoint", &admin(1)], &token)?;
        (!venues_of(&f, "mm-btc").is_empty() && !venues_of(&f, "mm-eth").is_empty()).then_some(f)
    });
    assert_eq!(
        venues_of(&fills, "mm-btc").into_iter().collect::<Vec<_>>(),
        ["east"]
    );
    assert_eq!(
        venues_of(&fills, "mm-eth").into_iter().collect::<Vec<_>>(),
        ["west"]
    );

    // A kill switch on venue east halts mm-btc; mm-eth, on west, trades on.
    let kill = Command::new(HFT)
        .args(["kill", "--venue", "east", "--endpoint", &admin(1)])
        .env("HFT_TOKEN", &token)
        .output()
        .unwrap();
    assert!(
        kill.status.success(),
        "{}",
        String::from_utf8_lossy(&kill.stderr)
    );
    let halted = until("mm-btc halted", || {
        let o = hft(&["orders", "--endpoint", &admin(1)], &token)?;
        let p = hft(&["orders", "--endpoint", &admin(2)], &token)?;
        let open = [o, p].iter().any(|v| {
            v["orders"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|x| x["strategy"] == "mm-btc")
        });
        (!open).then(|| orders("mm-btc"))
    });
    let eth_before = orders("mm-eth");
    std::thread::sleep(Duration::from_millis(1_000));
    assert_eq!(orders("mm-btc"), halted, "a killed engine sent orders");
    assert!(
        orders("mm-eth") > eth_before,
        "mm-eth stopped with venue east"
    );
}
