//! Operating a trading cluster from the CLI, with real processes on loopback: a venue
//! process, a local etcd and three `hft node`s. Disable and enable a strategy, drain a
//! node, change parameters (hot reload where the engine runs), engage and release a
//! kill switch held in the ledger.

mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::{HFT, hft, post, spawn, until};

fn owner(assign: &Value, strategy: &str) -> Option<u64> {
    assign["assignments"]
        .as_array()?
        .iter()
        .find(|a| a["strategy"] == strategy)
        .and_then(|a| a["node"].as_u64())
}

fn engine<'a>(status: &'a Value, strategy: &str) -> Option<&'a Value> {
    status["node"]["engines"]
        .as_array()?
        .iter()
        .find(|e| e["strategy"] == strategy)
}

#[test]
fn disable_enable_drain_reparameterize_and_kill_from_the_cli() {
    let (dir, etcd, mut procs) = support::cluster_dir("cluster-ops");
    let e = etcd.clients.join(",");
    let ports = hft_cluster::local_etcd::free_ports(7).unwrap();
    let secret = support::SECRET;
    let venue = format!("127.0.0.1:{}", ports[0]);
    procs.children.push(spawn(
        &dir,
        "venue.log",
        &["venue".into(), "--listen".into(), venue.clone()],
        secret,
    ));
    let token = support::admin_token(&e, None);
    let peers: Vec<String> = (1..=3)
        .map(|i| format!("{i}=127.0.0.1:{}", ports[i]))
        .collect();
    let admin = |id: u64| format!("http://127.0.0.1:{}", ports[3 + id as usize]);
    for id in 1..=3u64 {
        let admin = admin(id);
        let addr = admin.trim_start_matches("http://");
        let args = support::node_args(
            &dir,
            id,
            &e,
            &peers.join(","),
            addr,
            std::slice::from_ref(&venue),
        );
        procs
            .children
            .push(spawn(&dir, &format!("node-{id}.log"), &args, secret));
    }
    let ep = admin(1);
    let assignments = || hft(&["assignments", "--endpoint", &ep], &token).unwrap_or_default();
    let status =
        |node: u64| hft(&["status", "--endpoint", &admin(node)], &token).unwrap_or_default();
    let trading = |node: u64, strategy: &str| {
        engine(&status(node), strategy)
            .and_then(|e| e["live"]["orders"].as_u64())
            .is_some_and(|n| n > 0)
    };
    // Both engines placed, on two different non-leader nodes, and sending orders.
    let (btc, eth) = until("both engines trading", || {
        let a = assignments();
        let (b, e) = (owner(&a, "mm-btc")?, owner(&a, "mm-eth")?);
        (b != e && trading(b, "mm-btc") && trading(e, "mm-eth")).then_some((b, e))
    });

    // Disabled: unassigned, its engine gone from its node; enabled: placed again.
    post(
        &["strategy", "disable", "mm-eth", "--endpoint", &ep],
        &token,
    );
    until("mm-eth unassigned and stopped", || {
        let a = assignments();
        let off = a["disabled"].as_array()?.iter().any(|s| s == "mm-eth");
        (off && owner(&a, "mm-eth").is_none() && engine(&status(eth), "mm-eth").is_none())
            .then_some(())
    });
    post(&["strategy", "enable", "mm-eth", "--endpoint", &ep], &token);
    let eth = until("mm-eth trading again", || {
        let n = owner(&assignments(), "mm-eth")?;
        trading(n, "mm-eth").then_some(n)
    });

    // Draining mm-btc's node moves it elsewhere.
    post(&["drain", &btc.to_string(), "--endpoint", &ep], &token);
    let btc = until("mm-btc moved off the drained node", || {
        let n = owner(&assignments(), "mm-btc")?;
        (n != btc && trading(n, "mm-btc")).then_some(n)
    });

    // A parameter change reaches the engine where it runs.
    let set = post(
        &[
            "strategy",
            "set",
            "mm-btc",
            "requote_ticks=3",
            "--endpoint",
            &ep,
        ],
        &token,
    );
    let rev = set["revision"].as_u64().unwrap();
    until("the new parameters live in mm-btc's engine", || {
        let s = status(btc);
        let e = engine(&s, "mm-btc")?;
        (e["live"]["config_revision"].as_u64()? >= rev).then_some(())
    });
    // A bad value is refused with the field named, and nothing changes.
    let bad = Command::new(HFT)
        .args([
            "strategy",
            "set",
            "mm-btc",
            "requote_ticks=lots",
            "--endpoint",
            &ep,
        ])
        .env("HFT_TOKEN", &token)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("requote_ticks"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );

    // A strategy kill switch in the ledger halts the engine: its orders are cancelled
    // and it sends no more; the release lets it trade again.
    post(&["kill", "--strategy", "mm-btc", "--endpoint", &ep], &token);
    let halted_at = until("mm-btc halted with no open orders", || {
        let o = hft(&["orders", "--endpoint", &admin(btc)], &token)?;
        let open = o["orders"]
            .as_array()?
            .iter()
            .any(|x| x["strategy"] == "mm-btc");
        let sent = engine(&status(btc), "mm-btc")?["live"]["orders"].as_u64()?;
        (!open).then_some(sent)
    });
    // Quiet for a whole second (an active market maker requotes many times a second).
    std::thread::sleep(Duration::from_millis(1_000));
    let sent = engine(&status(btc), "mm-btc").unwrap()["live"]["orders"]
        .as_u64()
        .unwrap();
    assert_eq!(sent, halted_at, "a killed engine sent orders");
    post(
        &[
            "kill",
            "--strategy",
            "mm-btc",
            "--release",
            "--endpoint",
            &ep,
        ],
        &token,
    );
    until("mm-btc trading after the release", || {
        let n = engine(&status(btc), "mm-btc")?["live"]["orders"].as_u64()?;
        (n > sent).then_some(())
    });
    // mm-eth traded on throughout, the kill being scoped to mm-btc.
    let eth_orders = || {
        engine(&status(eth), "mm-eth")
            .and_then(|e| e["live"]["orders"].as_u64())
            .unwrap_or(0)
    };
    let before = eth_orders();
    until("mm-eth still sending orders", || {
        (eth_orders() > before).then_some(())
    });
    drop(procs);
    drop(etcd);
}
