//! The `hft` binary end to end: exit codes, error messages, determinism, shutdown.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn hft() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hft"));
    // The node reads HFT_* variables as configuration: start from a clean slate.
    for (k, _) in std::env::vars() {
        if k.starts_with("HFT_") {
            c.env_remove(k);
        }
    }
    c
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hft-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// A file of the shared market data set (`DATA` or `../shared/data`).
fn shared_data(rel: &str) -> PathBuf {
    let root = std::env::var_os("DATA").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"),
        PathBuf::from,
    );
    let p = root.join(rel);
    assert!(p.exists(), "test data {} missing (set DATA)", p.display());
    p
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn summary(path: &PathBuf) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn unknown_config_key_exits_2_with_location_and_hint() {
    let f = tmp("bad.toml");
    std::fs::write(&f, "[simulator]\nseed = 3\nno_such_key_xyz = 1\n").unwrap();
    let o = hft()
        .args(["run", "--duration", "1s", "--config"])
        .arg(&f)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("bad.toml:3"), "{e}");
    assert!(e.contains("no_such_key_xyz") && e.contains("hint"), "{e}");
}

#[test]
fn zero_tick_size_exits_2() {
    let f = tmp("zero_tick.toml");
    let text = hft_config::DEFAULT_TOML.replacen("tick_size = \"0.50\"", "tick_size = \"0\"", 1);
    assert_ne!(
        text,
        hft_config::DEFAULT_TOML,
        "default config changed: update this test"
    );
    std::fs::write(&f, text).unwrap();
    let o = hft().args(["config", "check"]).arg(&f).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("tick_size"), "{}", stderr(&o));
}

#[test]
fn bad_arguments_exit_2() {
    for args in [
        &["run", "--duration", "ten"][..],
        &["run", "--seed", "-4"],
        &["frobnicate"],
        &["bench", "core-loop", "--events", "x"],
    ] {
        let o = hft().args(args).output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
    }
    let o = hft()
        .env("HFT_SIMULATOR__SEED", "many")
        .args(["run", "--duration", "1s"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("HFT_SIMULATOR__SEED"), "{}", stderr(&o));
}

#[test]
fn deterministic_runs_repeat_exactly() {
    let run = |name: &str, seed: &str| {
        let f = tmp(name);
        let o = hft()
            .args([
                "run",
                "--deterministic",
                "--duration",
                "20s",
                "--seed",
                seed,
                "--summary-json",
            ])
            .arg(&f)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        summary(&f)
    };
    let a = run("d1.json", "5");
    let b = run("d2.json", "5");
    let c = run("d3.json", "6");
    assert_eq!(a["fills_hash"], b["fills_hash"]);
    assert_eq!(a["fills"], b["fills"]);
    assert_ne!(a["fills_hash"], c["fills_hash"]);
    assert!(a["fills"].as_u64().unwrap() > 0);
    for key in [
        "events",
        "orders",
        "fills",
        "rejects",
        "realized_pnl",
        "fills_hash",
    ] {
        assert!(a.get(key).is_some(), "summary lacks {key}");
    }
    for key in ["p50", "p99", "p999"] {
        assert!(a["tick_to_order_ns"][key].as_u64().is_some());
    }
    // Fills on both sides: traded volume exceeds the net position of every strategy.
    for st in a["strategies"].as_array().unwrap() {
        let num = |k: &str| st[k].as_str().unwrap().parse::<f64>().unwrap();
        assert!(st["fills"].as_u64().unwrap() > 0, "{st}");
        assert!(
            num("volume") > num("position").abs(),
            "one-sided trading: {st}"
        );
    }
}

#[test]
fn kill_switch_halts_everything_and_exits_3() {
    let f = tmp("killed.json");
    let o = hft()
        .env("HFT_RISK__KILL_SWITCH", "true")
        .args([
            "run",
            "--deterministic",
            "--duration",
            "5s",
            "--summary-json",
        ])
        .arg(&f)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let s = summary(&f);
    assert_eq!(s["orders"], 0);
    assert_eq!(s["killed"], true);
    for st in s["strategies"].as_array().unwrap() {
        assert_eq!(st["state"], "halted");
    }
}

#[test]
fn config_show_renders_a_config_that_checks() {
    let o = hft().args(["config", "show"]).output().unwrap();
    assert!(o.status.success());
    let f = tmp("shown.toml");
    std::fs::write(&f, &o.stdout).unwrap();
    let o = hft().args(["config", "check"]).arg(&f).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn sigterm_cancels_and_prints_the_summary() {
    let f = tmp("live.json");
    let child = hft()
        .args(["run", "--summary-json"])
        .arg(&f)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let started = Instant::now();
    let o = child.wait_with_output().unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("strategy"));
    let s = summary(&f);
    assert_eq!(s["mode"], "live");
    assert!(s["events"].as_u64().unwrap() > 0);
}

#[test]
fn live_run_serves_prometheus_metrics() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let child = hft()
        .args(["run", "--duration", "5s", "--metrics-addr", &addr])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(3_500));
    let mut body = String::new();
    {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        s.read_to_string(&mut body).unwrap();
    }
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success());
    for name in [
        "hft_engine_events_total{strategy=\"mm-btc\"}",
        "hft_engine_orders_total",
        "hft_risk_rejects_total{strategy=\"mm-eth\",reason=\"price_band\"}",
        "hft_strategy_position_units",
        "hft_strategy_pnl_quote",
        "hft_engine_tick_to_order_ns{quantile=\"0.99\"}",
    ] {
        assert!(body.contains(name), "metrics lack {name}:\n{body}");
    }
}

#[test]
fn data_import_inspect_and_replay() {
    let dir = tmp("data");
    std::fs::create_dir_all(&dir).unwrap();
    let capture = dir.join("capture.txt");
    std::fs::write(
        &capture,
        concat!(
            "1 {\"stream\":\"abc@depth\",\"data\":{\"e\":\"depthUpdate\",\"E\":1,\"s\":\"ABC\",\"U\":5,\"u\":5,\"b\":[],\"a\":[]}}\n",
            "2 {\"lastUpdateId\":5,\"bids\":[[\"9.5\",\"1\"]],\"asks\":[[\"10.5\",\"2\"]]}\n",
            "3 {\"stream\":\"abc@depth\",\"data\":{\"e\":\"depthUpdate\",\"E\":3,\"s\":\"ABC\",\"U\":6,\"u\":6,\"b\":[[\"10\",\"1\"]],\"a\":[]}}\n",
            "4 {\"stream\":\"abc@trade\",\"data\":{\"e\":\"trade\",\"E\":4,\"s\":\"ABC\",\"t\":1,\"p\":\"10\",\"q\":\"1\",\"T\":4,\"m\":true}}\n",
        ),
    )
    .unwrap();
    let store = dir.join("store");
    let o = hft()
        .args(["data", "import"])
        .arg(&capture)
        .arg("--out")
        .arg(&store)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let o = hft()
        .args(["data", "inspect", "--json"])
        .arg(&store)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let s = &v[0];
    assert_eq!(
        (
            s["symbol"].as_str(),
            s["levels"].as_u64(),
            s["trades"].as_u64(),
            s["crossed_moments"].as_u64()
        ),
        (Some("ABC"), Some(3), Some(1), Some(0))
    );
    let o = hft().args(["data", "replay"]).arg(&store).output().unwrap();
    assert!(o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("replayed 5 rows"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    std::fs::write(dir.join("bad.txt"), "1 {oops\n").unwrap();
    let o = hft()
        .args(["data", "import"])
        .arg(dir.join("bad.txt"))
        .arg("--out")
        .arg(&store)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("bad.txt: line 1"), "{}", stderr(&o));
}

/// A config for Binance spot BTCUSDT (the venue's tick and lot; book quantities carry
/// up to 8 decimals) with one market maker.
const BTCUSDT_CONFIG: &str = r#"
[[instruments]]
symbol = "BTCUSDT"
price_scale = 2
qty_scale = 8
tick_size = "0.01"
lot_size = "0.00001"
min_qty = "0.00001"
min_notional = "5"
maker_fee_bps = "1"
taker_fee_bps = "1"

[instruments.sim]
initial_price = "60000.00"

[[strategies]]
name = "mm-btcusdt"
instrument = "BTCUSDT"
enabled = true

[strategies.market_making]
risk_aversion = 0.1
liquidity = 1.5
horizon_s = 0.5
order_qty = "0.00100"
max_inventory = "0.01000"
requote_ticks = 20
vol_halflife_s = 20.0

[strategies.risk]
max_order_qty = "0.01000"
max_order_notional = "1000"
price_band_bps = 100
max_position = "0.02000"
max_orders_per_sec = 50
max_open_orders = 10
max_daily_loss = "1000"
"#;

#[test]
fn a_strategy_runs_on_a_recorded_real_capture_through_the_paper_venue() {
    let capture = shared_data("binance_ws_raw/spot_btcusdt_20240808.gz");
    let dir = tmp("paper");
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("btcusdt.toml");
    std::fs::write(&config, BTCUSDT_CONFIG).unwrap();
    let store = dir.join("store");
    let o = hft()
        .args(["data", "import"])
        .arg(&capture)
        .arg("--out")
        .arg(&store)
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = dir.join("summary.json");
    let o = hft()
        .args(["data", "replay", "--paper"])
        .arg(&store)
        .arg("--config")
        .arg(&config)
        .arg("--summary-json")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let s = summary(&out);
    let mm = &s["strategies"][0];
    assert_eq!(mm["symbol"], "BTCUSDT");
    assert!(mm["orders"].as_u64().unwrap() > 10, "{s}");
    assert!(s["events"].as_u64().unwrap() > 100_000, "{s}");
    // Without the config's instrument the default strategies have nothing to trade.
    let o = hft()
        .args(["data", "replay", "--paper"])
        .arg(&store)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("no enabled strategy trades"),
        "{}",
        stderr(&o)
    );
}

/// A local Binance: the capture's REST snapshot over HTTP and its first `n` stream
/// messages over WebSocket, then the connection stays open. The capture holds the
/// messages from before the snapshot was taken too, so the client can bridge them.
fn local_binance(
    capture: &std::path::Path,
    n: usize,
) -> (String, String, std::thread::JoinHandle<()>) {
    use futures_util::SinkExt;
    use std::io::BufRead;
    let reader = std::io::BufReader::new(flate2_reader(capture));
    let (mut snapshot, mut stream) = (None, Vec::new());
    for line in reader.lines() {
        let line = line.unwrap();
        let json = line.split_once(' ').unwrap().1.to_owned();
        if json.starts_with("{\"lastUpdateId\"") {
            snapshot = Some(json);
        } else if stream.len() < n {
            stream.push(json);
        }
        if snapshot.is_some() && stream.len() == n {
            break;
        }
    }
    let snapshot = snapshot.unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (ws, http) = rt.block_on(async {
        (
            tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
            tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        )
    });
    let urls = (
        format!("ws://{}", ws.local_addr().unwrap()),
        format!("http://{}", http.local_addr().unwrap()),
    );
    let thread = std::thread::spawn(move || {
        rt.block_on(async move {
            let body = snapshot.clone();
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                while let Ok((mut s, _)) = http.accept().await {
                    let mut buf = [0u8; 2048];
                    let _ = s.read(&mut buf).await;
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = s.write_all(resp.as_bytes()).await;
                }
            });
            // One connection: the client's snapshot comes from the same moment as the
            // first streamed message, as on the venue.
            if let Ok((s, _)) = ws.accept().await {
                let mut ws = tokio_tungstenite::accept_async(s).await.unwrap();
                for m in stream {
                    if ws.send(m.into()).await.is_err() {
                        return;
                    }
                }
                use futures_util::StreamExt;
                while let Some(Ok(_)) = ws.next().await {}
            }
        })
    });
    (urls.0, urls.1, thread)
}

fn flate2_reader(path: &std::path::Path) -> Box<dyn std::io::Read> {
    // The hft binary reads gzip itself; the test only needs the lines.
    let out = std::process::Command::new("gzip")
        .arg("-dc")
        .arg(path)
        .output()
        .unwrap();
    Box::new(std::io::Cursor::new(out.stdout))
}

#[test]
fn the_live_feed_records_and_paper_trades_from_a_local_venue() {
    let capture = shared_data("binance_ws_raw/spot_btcusdt_20240808.gz");
    let dir = tmp("live");
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("btcusdt.toml");
    std::fs::write(&config, BTCUSDT_CONFIG).unwrap();
    let (ws, rest, _venue) = local_binance(&capture, 20_000);
    let store = dir.join("recorded");
    let o = hft()
        .args([
            "feed",
            "binance",
            "--symbols",
            "BTCUSDT",
            "--duration",
            "6s",
            "--paper",
        ])
        .args(["--ws-url", &ws, "--rest-url", &rest])
        .arg("--record")
        .arg(&store)
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}\n{out}", stderr(&o));
    assert!(out.contains("0 bad frames, 0 gaps, 1 snapshots"), "{out}");
    assert!(
        out.contains("mm-btcusdt"),
        "the paper session reports the strategy: {out}"
    );
    let rows: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix("recorded "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(rows > 50_000, "{out}");
    // What was recorded replays, and holds a book that is never crossed.
    let o = hft()
        .args(["data", "inspect", "--json"])
        .arg(&store)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v[0]["rows"].as_u64(), Some(rows));
    assert_eq!(v[0]["crossed_moments"].as_u64(), Some(0));
}

#[test]
fn backtest_writes_a_report_and_reruns_byte_identically() {
    let capture = shared_data("binance_ws_raw/spot_btcusdt_20240808.gz");
    let dir = tmp("backtest");
    for run in ["a", "b"] {
        let o = hft()
            .args(["backtest", "--data"])
            .arg(&capture)
            .arg("--report")
            .arg(dir.join(run))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
    }
    for f in ["metrics.json", "fills.csv", "orders.csv", "report.html"] {
        let a = std::fs::read(dir.join("a").join(f)).unwrap();
        assert!(!a.is_empty(), "{f} is empty");
        assert_eq!(
            a,
            std::fs::read(dir.join("b").join(f)).unwrap(),
            "{f} differs"
        );
    }
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("a/metrics.json")).unwrap()).unwrap();
    assert!(m["orders"].as_u64().unwrap() > 100, "{m}");
    assert!(m["fills"].as_u64().unwrap() > 0, "{m}");
    let html = std::fs::read_to_string(dir.join("a/report.html")).unwrap();
    assert_eq!(
        html.matches("<polyline").count(),
        3,
        "equity, drawdown and position plots"
    );
    // One instrument: its position in its own units, not raw ones; waits in ms.
    assert!(html.contains("<h2>Position</h2>"), "{html}");
    assert!(html.contains(" ms</td>"), "{html}");
    let o = hft()
        .args(["backtest", "--data"])
        .arg(dir.join("missing.gz"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn backtest_ab_of_a_config_against_itself_finds_no_difference() {
    let capture = shared_data("binance_ws_raw/spot_btcusdt_20240808.gz");
    let dir = tmp("ab");
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("mm.toml");
    std::fs::write(&config, BTCUSDT_CONFIG).unwrap();
    let o = hft()
        .args(["backtest", "ab"])
        .arg(&config)
        .arg(&config)
        .arg("--data")
        .arg(&capture)
        .arg("--json")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["verdict"], "no difference", "{v}");
    assert_eq!(v["mean_diff_per_interval"].as_f64(), Some(0.0));
    assert!(v["intervals"].as_u64().unwrap() > 100, "{v}");
    assert_eq!(v["a"]["fills"], v["b"]["fills"], "{v}");
    assert!(
        v["a"]["fills"].as_u64().unwrap() > 0,
        "the market maker trades: {v}"
    );
}

#[test]
fn backtest_sweep_sorts_the_grid_and_reports_refused_points() {
    let capture = shared_data("binance_ws_raw/spot_btcusdt_20240808.gz");
    let dir = tmp("sweep");
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("mm.toml");
    std::fs::write(&config, BTCUSDT_CONFIG).unwrap();
    let o = hft()
        .args(["backtest", "sweep", "--json", "--sort", "fills"])
        .arg("--config")
        .arg(&config)
        .arg("--data")
        .arg(&capture)
        .args([
            "--param",
            "strategies.0.market_making.risk_aversion=0.02,0.1,-3",
        ])
        .args(["--param", "strategies.0.market_making.requote_ticks=2,20"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let rows: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 6, "3 x 2 points");
    let fills: Vec<u64> = rows.iter().filter_map(|r| r["fills"].as_u64()).collect();
    assert_eq!(
        fills.len(),
        4,
        "the negative risk aversion is refused twice"
    );
    assert!(
        fills.windows(2).all(|w| w[0] >= w[1]),
        "sorted by fills: {fills:?}"
    );
    assert!(rows[4]["error"].as_str().unwrap().contains("risk_aversion"));
    let o = hft()
        .args(["backtest", "sweep", "--param", "nonsense"])
        .arg("--config")
        .arg(&config)
        .arg("--data")
        .arg(&capture)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn backtest_stress_runs_every_scenario_and_the_position_limit_holds() {
    let capture = shared_data("binance_ws_raw/spot_ethusdt_20240808.gz");
    let o = hft()
        .args(["backtest", "stress", "--json", "--data"])
        .arg(&capture)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let rows: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 6, "baseline and five scenarios");
    assert_eq!(rows[0]["scenario"], "baseline");
    let pnl = |k: usize| rows[k]["pnl"].as_f64().unwrap();
    // A 10% jump with inventory on changes the result either way.
    assert!(pnl(1) != pnl(0) && pnl(2) != pnl(0), "{rows:?}");
    for r in &rows {
        let s = &r["strategies"][0];
        // The touch maker's limit is ten lots; the risk gate allows eleven.
        let max: f64 = s["max_position"].as_str().unwrap().parse().unwrap();
        assert!(max <= 11.0 * 0.0001 + 1e-12, "{r}");
    }
}

#[test]
fn a_live_session_books_every_fill_in_the_ledger_and_a_kept_ledger_continues() {
    let dir = tmp("kept-ledger");
    let _ = std::fs::remove_dir_all(&dir);
    let mut total = 0u64;
    for round in 0..2 {
        let f = tmp(&format!("ledger-{round}.json"));
        let o = hft()
            .env("HFT_LEDGER__DIR", &dir)
            .args(["run", "--duration", "2s", "--summary-json"])
            .arg(&f)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let s = summary(&f);
        let l = &s["ledger"];
        assert_eq!(l["fills"], s["fills"], "every fill reached the ledger: {l}");
        assert_eq!(l["booked"], s["fills"], "and was booked once: {l}");
        assert_eq!(l["reconciled"], true, "{l}");
        assert_eq!(l["dir"], dir.display().to_string());
        total += s["fills"].as_u64().unwrap();
    }
    // The kept ledger holds both sessions and rebuilds from its files.
    let o = hft()
        .args(["ledger", "verify", "--json", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["fills"], total);
}

#[test]
fn a_corrupt_ledger_refuses_to_start_with_the_repair_command() {
    let dir = tmp("corrupt-ledger");
    let _ = std::fs::remove_dir_all(&dir);
    let o = hft()
        .env("HFT_LEDGER__DIR", &dir)
        .args(["run", "--duration", "1s"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let seg = std::fs::read_dir(dir.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .next()
        .unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    assert!(bytes.len() > 64);
    bytes[40] ^= 0xFF; // inside an early record, with valid records after it
    std::fs::write(&seg, &bytes).unwrap();
    let o = hft()
        .env("HFT_LEDGER__DIR", &dir)
        .args(["run", "--duration", "1s"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("corrupt at byte"), "{err}");
    assert!(err.contains("hft ledger repair --dir"), "{err}");
    let o = hft()
        .args(["ledger", "repair", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("cut"));
}

#[test]
fn shell_completions_cover_the_subcommands() {
    for shell in ["bash", "zsh", "fish"] {
        let o = hft().args(["completions", shell]).output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        let s = String::from_utf8_lossy(&o.stdout);
        for word in ["ledger", "transfer-leader", "rollback", "token"] {
            assert!(s.contains(word), "{shell} completion lacks {word}");
        }
    }
    let o = hft().args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
}

/// The arguments hft-operator's StatefulSet gives every node (DNS names for the peers,
/// the venue and the control address; the id from the pod's host name) are ones this
/// binary accepts: parsed in full, then `--help` ends the run before anything starts.
#[test]
fn the_operators_node_arguments_parse() {
    let one = serde_json::json!({ "venue": { "address": "venue.trading.svc:7070" } });
    let named = serde_json::json!({ "venues": [
        { "name": "west", "address": "venue-west.trading.svc:7070" },
        { "name": "east", "address": "venue-east.trading.svc:7070" }
    ] });
    for (venues, want) in [
        (one, vec!["--venue=venue.trading.svc:7070"]),
        (
            named,
            vec![
                "--venue=west=venue-west.trading.svc:7070",
                "--venue=east=venue-east.trading.svc:7070",
            ],
        ),
    ] {
        let mut spec = serde_json::json!({
            "replicas": 3, "image": "hft:test",
            "etcd": { "endpoints": ["http://etcd-0.etcd.trading.svc:2379"] },
            "secrets": { "clusterSecret": { "name": "s", "key": "k" },
                         "adminToken": { "name": "s", "key": "t" } },
            "tls": { "secretName": "hft-tls" }
        });
        spec.as_object_mut()
            .unwrap()
            .extend(venues.as_object().unwrap().clone());
        let tc: hft_operator::crd::TradingCluster = serde_json::from_value(serde_json::json!({
            "apiVersion": "hft.dev/v1alpha1", "kind": "TradingCluster",
            "metadata": { "name": "prod", "namespace": "trading", "uid": "u" },
            "spec": spec
        }))
        .unwrap();
        let sts = hft_operator::resources::stateful_set(&tc, 3, 3);
        let c = &sts.spec.unwrap().template.spec.unwrap().containers[0];
        // Kubernetes expands $(POD_NAME) from the container's environment.
        let args: Vec<String> = c
            .args
            .clone()
            .unwrap()
            .into_iter()
            .map(|a| a.replace("$(POD_NAME)", "prod-1"))
            .collect();
        assert_eq!(args[0], "node");
        let given: Vec<&str> = args
            .iter()
            .filter(|a| a.starts_with("--venue="))
            .map(String::as_str)
            .collect();
        assert_eq!(given, want);
        let o = hft()
            .args(&args)
            .arg("--help")
            .env("HOSTNAME", "prod-1")
            .output()
            .unwrap();
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    }
    // Malformed ones are refused by the same parser, naming them.
    for bad in [
        "venue-without-port",
        "East=venue:7070",
        "east=venue-without-port",
    ] {
        let o = hft()
            .args(["node", "--ledger-peers=1=a:1"])
            .arg(format!("--venue={bad}"))
            .arg("--help")
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{bad}");
        let why = bad.rsplit('=').next().unwrap();
        let named = if bad.starts_with("East") { "East" } else { why };
        assert!(stderr(&o).contains(named), "{bad}: {}", stderr(&o));
    }
}

#[test]
fn a_live_ab_split_reports_the_arms_difference_with_an_interval_and_a_verdict() {
    let example = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config/examples/ab-live.toml");
    let run = |name: &str| {
        let f = tmp(name);
        let o = hft()
            .args(["run", "--deterministic", "--duration", "30s", "--config"])
            .arg(&example)
            .arg("--summary-json")
            .arg(&f)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(out.contains("A/B: A (mm-1-a, mm-3-a)"), "{out}");
        assert!(out.contains("per 1 s interval"), "{out}");
        summary(&f)
    };
    let s = run("ab1.json");
    let ab = &s["ab"];
    assert_eq!(
        ab["a"]["strategies"],
        serde_json::json!(["mm-1-a", "mm-3-a"])
    );
    assert_eq!(
        ab["b"]["strategies"],
        serde_json::json!(["mm-2-b", "mm-4-b"])
    );
    // One interval per second of the session, from its start.
    assert_eq!(ab["intervals"], 30, "{ab}");
    let (lo, mean, hi) = (
        ab["ci95"][0].as_f64().unwrap(),
        ab["mean_diff_per_interval"].as_f64().unwrap(),
        ab["ci95"][1].as_f64().unwrap(),
    );
    assert!(lo <= mean && mean <= hi, "{ab}");
    let verdict = if lo > 0.0 {
        "A"
    } else if hi < 0.0 {
        "B"
    } else {
        "no difference"
    };
    assert_eq!(ab["verdict"], verdict);
    // Each arm's PnL is its strategies' PnL at the end of the session.
    let pnl = |v: &serde_json::Value| v.as_str().unwrap().parse::<f64>().unwrap();
    for (arm, suffix) in [("a", "-a"), ("b", "-b")] {
        let sum: f64 = s["strategies"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|st| st["name"].as_str().unwrap().ends_with(suffix))
            .map(|st| pnl(&st["realized_pnl"]) + pnl(&st["unrealized_pnl"]))
            .sum();
        assert!(
            (pnl(&ab[arm]["pnl"]) - sum).abs() < 1e-6,
            "{arm}: {ab} vs {sum}"
        );
        assert!(s["fills"].as_u64().unwrap() > 0);
    }
    // The same session gives the same comparison.
    assert_eq!(run("ab2.json")["ab"], *ab);
}
