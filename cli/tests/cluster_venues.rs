//! A cluster trading two venues, with real processes on loopback: two venue processes,
//! a local etcd and two `hft node`s linked to both. Each strategy's orders reach only
//! the venue its configuration names, its fills are booked under that venue's name, and
//! a venue kill switch halts only the strategies on that venue. A node missing a venue
//! its configuration names refuses to start.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::{HFT, hft, post, spawn, until};

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
    let (dir, etcd, mut procs) = support::cluster_dir("cluster-venues");
    let e = etcd.clients.join(",");
    let ports = hft_cluster::local_etcd::free_ports(6).unwrap();
    let secret = support::SECRET;
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
        let child = spawn(&dir, &format!("{name}.log"), &args, secret);
        procs.children.push(child);
    }
    let token = support::admin_token(&e, None);
    let peers: Vec<String> = (1..=2)
        .map(|i| format!("{i}=127.0.0.1:{}", ports[1 + i]))
        .collect();
    let admin = |id: u64| format!("http://127.0.0.1:{}", ports[3 + id as usize]);
    let node_args = |id: u64, venues: &[String]| {
        let admin = admin(id);
        let addr = admin.trim_start_matches("http://");
        support::node_args(&dir, id, &e, &peers.join(","), addr, venues)
    };

    // A node without the east link refuses to start, naming the strategy and its links.
    let mut lacking = spawn(
        &dir,
        "lacking.log",
        &node_args(1, &[format!("west={west}")]),
        secret,
    );
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
        let child = spawn(
            &dir,
            &format!("node-{id}.log"),
            &node_args(id, &both),
            secret,
        );
        procs.children.push(child);
    }
    // Each engine as `hft status` shows it: strategy, venue link, orders sent.
    let engines = |node: u64| -> Vec<(String, String, u64)> {
        hft(&["status", "--endpoint", &admin(node)], &token)
            .and_then(|s| {
                let list = s["node"]["engines"].as_array()?.clone();
                Some(
                    list.iter()
                        .filter_map(|e| {
                            Some((
                                e["strategy"].as_str()?.to_owned(),
                                e["venue"].as_str()?.to_owned(),
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
            .filter(|(s, _, _)| s == strategy)
            .map(|(_, _, n)| n)
            .sum()
    };
    until("both strategies trading", || {
        (orders("mm-btc") > 0 && orders("mm-eth") > 0).then_some(())
    });
    let links: std::collections::BTreeSet<(String, String)> =
        (1..=2).flat_map(engines).map(|(s, v, _)| (s, v)).collect();
    assert_eq!(
        links.into_iter().collect::<Vec<_>>(),
        [
            ("mm-btc".to_owned(), "east".to_owned()),
            ("mm-eth".to_owned(), "west".to_owned())
        ],
        "hft status shows each engine's venue"
    );
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
    post(
        &["kill", "--venue", "east", "--endpoint", &admin(1)],
        &token,
    );
    // Until no node lists an open mm-btc order; on a timeout, what the nodes said and
    // logged.
    let end = std::time::Instant::now() + Duration::from_secs(30);
    let halted = loop {
        let seen: Vec<_> = (1..=2)
            .map(|n| hft(&["orders", "--endpoint", &admin(n)], &token))
            .collect();
        let open = seen.iter().any(|v| {
            v.as_ref().is_none_or(|v| {
                v["orders"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|x| x["strategy"] == "mm-btc")
            })
        });
        if !open {
            break orders("mm-btc");
        }
        if std::time::Instant::now() > end {
            let logs: Vec<String> = ["node-1.log", "node-2.log", "east.log"]
                .iter()
                .map(|f| std::fs::read_to_string(dir.join(f)).unwrap_or_default())
                .collect();
            panic!("mm-btc not halted within 30 s: orders {seen:?}\nlogs: {logs:#?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let eth_before = orders("mm-eth");
    std::thread::sleep(Duration::from_millis(1_000));
    assert_eq!(orders("mm-btc"), halted, "a killed engine sent orders");
    assert!(
        orders("mm-eth") > eth_before,
        "mm-eth stopped with venue east"
    );
}
