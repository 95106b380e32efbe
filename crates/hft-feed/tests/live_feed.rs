//! The live feed against a local venue: a WebSocket server that replays real captured
//! Binance messages and an HTTP server that serves depth snapshots of the venue's true
//! book at request time. The server injects the faults a real connection sees — lost,
//! duplicated and reordered diffs, malformed frames, disconnects, a silent stream,
//! failing snapshot requests — and each test checks that the feed's book converges to
//! the venue's.

use futures_util::{SinkExt, StreamExt};
use hft_book::L2Book;
use hft_core::{
    FLAG_SNAPSHOT, InstrumentId, InstrumentSpec, MarketEvent, MarketEventKind, Price, Qty, Side,
};
use hft_feed::InstrumentRegistry;
use hft_feed::binance::parse_wire;
use hft_feed::capture::CaptureReader;
use hft_feed::live::{LiveConfig, LiveCounters, Market, run};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

fn data(name: &str) -> PathBuf {
    let root = std::env::var_os("DATA").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"),
        PathBuf::from,
    );
    let p = root.join("binance_ws_raw").join(name);
    assert!(p.exists(), "test data {} missing (set DATA)", p.display());
    p
}

/// Bid and ask levels `(price, qty)` in 1e-8 units, best first.
type Top = (Vec<(i64, i64)>, Vec<(i64, i64)>);

/// The venue's true book of one symbol, as decimal strings keyed by exact price.
#[derive(Clone, Debug, Default)]
struct VenueBook {
    last_id: u64,
    bids: BTreeMap<i64, (String, String)>,
    asks: BTreeMap<i64, (String, String)>,
}

impl VenueBook {
    fn apply(&mut self, side: &str, levels: &serde_json::Value) {
        let book = if side == "b" || side == "bids" {
            &mut self.bids
        } else {
            &mut self.asks
        };
        for l in levels.as_array().into_iter().flatten() {
            let (p, q) = (l[0].as_str().unwrap_or(""), l[1].as_str().unwrap_or(""));
            let (Some(pk), Some(qk)) = (parse_wire(p), parse_wire(q)) else {
                continue;
            };
            if qk == 0 {
                book.remove(&pk);
            } else {
                book.insert(pk, (p.to_owned(), q.to_owned()));
            }
        }
    }

    fn snapshot_json(&self, limit: usize) -> String {
        let side = |it: &mut dyn Iterator<Item = &(String, String)>| {
            it.take(limit)
                .map(|(p, q)| format!("[\"{p}\",\"{q}\"]"))
                .collect::<Vec<_>>()
                .join(",")
        };
        format!(
            "{{\"lastUpdateId\":{},\"bids\":[{}],\"asks\":[{}]}}",
            self.last_id,
            side(&mut self.bids.values().rev()),
            side(&mut self.asks.values())
        )
    }

    /// Top `n` levels per side in 1e-8 units.
    fn top(&self, n: usize) -> Top {
        let q = |v: &(String, String)| parse_wire(&v.1).unwrap_or(-1);
        (
            self.bids
                .iter()
                .rev()
                .take(n)
                .map(|(p, v)| (*p, q(v)))
                .collect(),
            self.asks.iter().take(n).map(|(p, v)| (*p, q(v))).collect(),
        )
    }
}

/// One captured stream message.
struct Msg {
    symbol: String,
    /// `(U, u)` of depth messages.
    depth: Option<(u64, u64)>,
    json: String,
}

/// What the server does to the message at an index.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    /// Lost on the wire (the venue's book still moves).
    Drop,
    /// Sent twice.
    Duplicate,
    /// Sent after the next message.
    SwapWithNext,
    /// A malformed frame goes out before it.
    MalformedBefore,
    /// The connection is closed before it (it is sent on the next connection).
    Disconnect,
    /// The stream goes silent before it, connection open, until the client gives up.
    Silence,
}

struct Venue {
    msgs: Vec<Msg>,
    books: HashMap<String, VenueBook>,
    cursor: usize,
    faults: HashMap<usize, Fault>,
    /// Snapshot requests to fail with HTTP 500 before serving one.
    failing_snapshots: u32,
    /// Messages streamed before the server waits for every book's snapshot: 0 makes
    /// each snapshot older than every diff, more makes the client buffer diffs first.
    stream_before_snapshots: usize,
    snapshots_served: u32,
    connections: u32,
    /// True while every client book is synchronised; a fault is injected only then, so
    /// that each one lands on a live book whatever the machine's load.
    client_synced: Option<Arc<dyn Fn() -> bool + Send + Sync>>,
}

impl Venue {
    /// The capture files' messages after their REST snapshot, merged by receive time.
    fn load(files: &[&str], per_file: usize) -> Self {
        let mut books = HashMap::new();
        let mut all: Vec<(u64, Msg)> = Vec::new();
        for f in files {
            let mut reader = CaptureReader::open(&data(f)).unwrap();
            // The snapshot and its `lastUpdateId`.
            let mut snapshot: Option<(u64, serde_json::Value)> = None;
            let mut symbol = String::new();
            // Diffs received before the snapshot's response: the capturing client
            // buffered them, and the first diff after the snapshot can be among them
            // (the one straddling its id), so they are kept like the later ones.
            let mut early: Vec<(u64, Msg)> = Vec::new();
            let mut n = 0;
            while let Some(line) = reader.next() {
                let line = line.unwrap();
                let v: serde_json::Value = serde_json::from_str(line.message).unwrap();
                if let Some(id) = v.get("lastUpdateId").and_then(|i| i.as_u64()) {
                    snapshot = Some((id, v));
                    for (ts, m) in early.drain(..) {
                        if m.depth.is_some_and(|(_, u)| u > id) {
                            all.push((ts, m));
                            n += 1;
                        }
                    }
                    continue;
                }
                let data = &v["data"];
                symbol = data["s"].as_str().unwrap().to_owned();
                let depth = data
                    .get("U")
                    .map(|_| (data["U"].as_u64().unwrap(), data["u"].as_u64().unwrap()));
                let msg = Msg {
                    symbol: symbol.clone(),
                    depth,
                    json: line.message.to_owned(),
                };
                let Some((snap_id, _)) = &snapshot else {
                    early.push((line.local_ts, msg));
                    continue;
                };
                if depth.is_some_and(|(_, u)| u <= *snap_id) {
                    continue;
                }
                all.push((line.local_ts, msg));
                n += 1;
                if n >= per_file {
                    break;
                }
            }
            let (last_id, snap) = snapshot.expect("capture has a snapshot");
            let mut book = VenueBook {
                last_id,
                ..Default::default()
            };
            book.apply("bids", &snap["bids"]);
            book.apply("asks", &snap["asks"]);
            books.insert(symbol, book);
        }
        all.sort_by_key(|(ts, _)| *ts);
        // The venue is consistent: each book's first diff continues its snapshot, so a
        // client snapshotting before any diff went out sees no gap.
        for (symbol, book) in &books {
            let first = all
                .iter()
                .find_map(|(_, m)| m.depth.filter(|_| &m.symbol == symbol));
            assert!(
                first.is_some_and(|(first, last)| first <= book.last_id + 1 && last > book.last_id),
                "{symbol}: first diff {first:?} does not continue the snapshot {}",
                book.last_id
            );
        }
        Venue {
            msgs: all.into_iter().map(|(_, m)| m).collect(),
            books,
            cursor: 0,
            faults: HashMap::new(),
            failing_snapshots: 0,
            snapshots_served: 0,
            connections: 0,
            client_synced: None,
            stream_before_snapshots: 20,
        }
    }

    /// Index of the `k`-th depth message of `symbol`.
    fn depth_index(&self, symbol: &str, k: usize) -> usize {
        self.msgs
            .iter()
            .enumerate()
            .filter(|(_, m)| m.symbol == symbol && m.depth.is_some())
            .nth(k)
            .unwrap()
            .0
    }

    /// The venue's book moves with every message, delivered or not.
    fn advance(&mut self, i: usize) {
        let m = &self.msgs[i];
        if let Some((_, u)) = m.depth {
            let v: serde_json::Value = serde_json::from_str(&m.json).unwrap();
            let book = self.books.get_mut(&m.symbol).unwrap();
            book.apply("b", &v["data"]["b"]);
            book.apply("a", &v["data"]["a"]);
            book.last_id = u;
        }
    }
}

type Shared = Arc<Mutex<Venue>>;

/// Streams the venue's messages to one client, with the faults; returns when the
/// connection is to be closed or the client left.
async fn serve_ws(venue: Shared, stream: tokio::net::TcpStream) {
    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    venue.lock().unwrap().connections += 1;
    loop {
        // Past the first messages, stream only once every book was snapshotted, so that
        // the faults below land on synchronised books and both orders of snapshot and
        // diffs are exercised whatever the machine's load.
        let waited = tokio::time::Instant::now();
        while {
            let v = venue.lock().unwrap();
            let fault_next = v.faults.contains_key(&v.cursor);
            let synced = v.client_synced.as_ref().is_none_or(|f| f());
            (v.cursor >= v.stream_before_snapshots && (v.snapshots_served as usize) < v.books.len())
                || (fault_next && !synced && waited.elapsed() < Duration::from_secs(10))
        } {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let step = {
            let mut v = venue.lock().unwrap();
            let i = v.cursor;
            if i >= v.msgs.len() {
                None
            } else {
                let fault = v.faults.remove(&i);
                let mut out = Vec::new();
                let mut close = false;
                let mut silence = false;
                match fault {
                    Some(Fault::Disconnect) => close = true,
                    Some(Fault::Silence) => silence = true,
                    Some(Fault::SwapWithNext) => {
                        // Held back until the next diff of its book has gone out.
                        let sym = v.msgs[i].symbol.clone();
                        let j = (i + 1..v.msgs.len())
                            .find(|&j| v.msgs[j].symbol == sym && v.msgs[j].depth.is_some())
                            .unwrap_or(i);
                        for k in i..=j {
                            v.advance(k);
                            if k != i {
                                out.push(v.msgs[k].json.clone());
                            }
                        }
                        out.push(v.msgs[i].json.clone());
                        v.cursor = j + 1;
                    }
                    f => {
                        v.advance(i);
                        match f {
                            Some(Fault::Drop) => {}
                            Some(Fault::Duplicate) => {
                                out.push(v.msgs[i].json.clone());
                                out.push(v.msgs[i].json.clone());
                            }
                            Some(Fault::MalformedBefore) => {
                                let sym = v.msgs[i].symbol.to_ascii_lowercase();
                                out.push(format!("{{\"stream\":\"{sym}@depth@100ms\",\"data\":{{\"e\":\"depthUpdate\",\"U\":-3,\"b\":[[\"NaN\""));
                                out.push("not json at all".into());
                                out.push(v.msgs[i].json.clone());
                            }
                            _ => out.push(v.msgs[i].json.clone()),
                        }
                        v.cursor += 1;
                    }
                }
                Some((out, close, silence))
            }
        };
        match step {
            None => {
                // Everything sent: keep the connection open (answering pings) until the
                // client leaves.
                while let Some(Ok(m)) = ws.next().await {
                    if let Message::Close(_) = m {
                        return;
                    }
                }
                return;
            }
            Some((_, true, _)) => {
                let _ = ws.close(None).await;
                return;
            }
            Some((_, _, true)) => {
                // Silent but connected: the client must notice and reconnect.
                while let Some(Ok(_)) = ws.next().await {}
                return;
            }
            Some((frames, _, _)) => {
                for f in frames {
                    if ws.send(Message::Text(f.into())).await.is_err() {
                        return;
                    }
                }
                // Let snapshot requests interleave with the stream, as on a real venue.
                tokio::task::yield_now().await;
            }
        }
    }
}

/// Minimal HTTP/1.1 server for `GET /api/v3/depth?symbol=X&limit=N` and its futures twin.
async fn serve_http(venue: Shared, mut stream: tokio::net::TcpStream) {
    let mut req = Vec::new();
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => req.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&req).into_owned();
    let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
    let param = |k: &str| {
        path.split(['?', '&'])
            .find_map(|kv| kv.strip_prefix(&format!("{k}=")).map(str::to_owned))
    };
    let (status, body) = {
        let mut v = venue.lock().unwrap();
        let symbol = param("symbol").unwrap_or_default();
        let limit: usize = param("limit").and_then(|l| l.parse().ok()).unwrap_or(100);
        if !(path.starts_with("/api/v3/depth") || path.starts_with("/fapi/v1/depth")) {
            ("404 Not Found", "{\"code\":-1}".to_owned())
        } else if v.failing_snapshots > 0 {
            v.failing_snapshots -= 1;
            (
                "500 Internal Server Error",
                "{\"code\":-1001,\"msg\":\"busy\"}".to_owned(),
            )
        } else if let Some(b) = v.books.get(&symbol) {
            let json = b.snapshot_json(limit);
            v.snapshots_served += 1;
            ("200 OK", json)
        } else {
            (
                "400 Bad Request",
                "{\"code\":-1121,\"msg\":\"Invalid symbol.\"}".to_owned(),
            )
        }
    };
    let resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(resp.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// The client's books, rebuilt from the events the feed emits.
#[derive(Default)]
struct ClientBooks {
    books: HashMap<InstrumentId, L2Book>,
    /// Per book: a snapshot applied since the last invalidation.
    synced: HashMap<InstrumentId, bool>,
    clears_without_snapshot: u64,
    events: u64,
}

impl ClientBooks {
    fn apply(&mut self, e: &MarketEvent) {
        self.events += 1;
        if e.kind == MarketEventKind::Clear {
            let snapshot = e.flags & FLAG_SNAPSHOT != 0;
            self.clears_without_snapshot += u64::from(!snapshot);
            self.synced.insert(e.instrument, snapshot);
        }
        let book = self
            .books
            .entry(e.instrument)
            .or_insert_with(|| L2Book::with_capacity(e.instrument, 4096));
        let _ = book.apply(e);
    }

    fn top(&self, id: InstrumentId, n: usize) -> Top {
        let Some(b) = self.books.get(&id) else {
            return (vec![], vec![]);
        };
        let side = |s| {
            b.levels(s)
                .take(n)
                .map(|(p, q): (Price, Qty)| (p.raw(), q.raw()))
                .collect()
        };
        (side(Side::Buy), side(Side::Sell))
    }
}

struct Run {
    venue: Shared,
    counters: Arc<LiveCounters>,
    stats: hft_feed::binance::HandlerStats,
    converged: bool,
    detail: String,
}

/// Runs the feed against the venue until the client's books equal the venue's, every
/// level, after every message was streamed, or a time limit.
/// `stale_after` is long except where a test needs silence detected: a reconnect
/// resynchronises every book and would hide a book that went wrong.
async fn run_against(
    mut venue: Venue,
    market: Market,
    symbols: &[&str],
    stale_after: Duration,
) -> Run {
    let client = Arc::new(Mutex::new(ClientBooks::default()));
    let (c, n) = (client.clone(), symbols.len());
    venue.client_synced = Some(Arc::new(move || {
        let c = c.lock().unwrap();
        c.synced.len() == n && c.synced.values().all(|s| *s)
    }));
    const TOP: usize = usize::MAX;
    let venue: Shared = Arc::new(Mutex::new(venue));
    let ws = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (ws_addr, http_addr) = (ws.local_addr().unwrap(), http.local_addr().unwrap());
    let v = venue.clone();
    let ws_task = tokio::spawn(async move {
        while let Ok((s, _)) = ws.accept().await {
            tokio::spawn(serve_ws(v.clone(), s));
        }
    });
    let v = venue.clone();
    let http_task = tokio::spawn(async move {
        while let Ok((s, _)) = http.accept().await {
            tokio::spawn(serve_http(v.clone(), s));
        }
    });
    let specs: Vec<InstrumentSpec> = symbols
        .iter()
        .enumerate()
        .map(|(i, s)| InstrumentSpec::new(InstrumentId(i as u32), *s, 8, 8, Price(1), Qty(1)))
        .collect();
    let mut cfg = LiveConfig::binance(market, symbols.iter().map(|s| s.to_string()).collect());
    cfg.ws_base = format!("ws://{ws_addr}");
    cfg.rest_base = format!("http://{http_addr}");
    cfg.backoff_min = Duration::from_millis(20);
    cfg.backoff_max = Duration::from_millis(200);
    cfg.stale_after = stale_after;
    cfg.ping_interval = Duration::from_millis(300);
    cfg.io_timeout = Duration::from_secs(5);
    // Deep enough that the snapshot holds the whole book, so every level is compared.
    cfg.snapshot_limit = 5000;
    let counters = Arc::new(LiveCounters::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let c = client.clone();
    let feed = tokio::spawn(run(
        cfg,
        InstrumentRegistry::new(specs),
        move |e| c.lock().unwrap().apply(&e),
        counters.clone(),
        stop_rx,
    ));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let (mut converged, mut detail) = (false, String::new());
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let v = venue.lock().unwrap();
        if v.cursor < v.msgs.len() {
            continue;
        }
        let c = client.lock().unwrap();
        let diffs: Vec<String> = symbols
            .iter()
            .enumerate()
            .filter(|(i, s)| c.top(InstrumentId(*i as u32), TOP) != v.books[**s].top(TOP))
            .map(|(_, s)| s.to_string())
            .collect();
        if diffs.is_empty() {
            converged = true;
            break;
        }
        detail = format!("books differ for {diffs:?}");
    }
    let _ = stop_tx.send(true);
    let stats = tokio::time::timeout(Duration::from_secs(5), feed)
        .await
        .unwrap()
        .unwrap();
    ws_task.abort();
    http_task.abort();
    Run {
        venue,
        counters,
        stats,
        converged,
        detail,
    }
}

/// No stale-stream reconnect within a test.
const QUIET: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_stream_of_two_symbols_matches_the_venue() {
    // Snapshots taken before any diff went out, then after the client buffered some.
    for before in [0, 20] {
        let mut venue = Venue::load(
            &["spot_btcusdt_20240808.gz", "spot_ethusdt_20240808.gz"],
            3000,
        );
        venue.stream_before_snapshots = before;
        let r = run_against(venue, Market::Spot, &["BTCUSDT", "ETHUSDT"], QUIET).await;
        assert!(r.converged, "{before} diffs first: {}", r.detail);
        assert_eq!(r.stats.gaps, 0, "{before} diffs first");
        assert_eq!(r.stats.bad_frames, 0);
        assert!(r.stats.snapshots >= 2);
        assert_eq!(r.counters.connects.load(Ordering::Relaxed), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_duplicated_reordered_and_malformed_messages_are_healed() {
    let mut venue = Venue::load(
        &["spot_btcusdt_20240808.gz", "spot_ethusdt_20240808.gz"],
        6000,
    );
    let faults = [
        (venue.depth_index("BTCUSDT", 40), Fault::Drop),
        (venue.depth_index("BTCUSDT", 150), Fault::Duplicate),
        (venue.depth_index("ETHUSDT", 60), Fault::SwapWithNext),
        (venue.depth_index("ETHUSDT", 250), Fault::MalformedBefore),
        (venue.depth_index("BTCUSDT", 350), Fault::Drop),
    ];
    venue.faults.extend(faults);
    let r = run_against(venue, Market::Spot, &["BTCUSDT", "ETHUSDT"], QUIET).await;
    assert!(r.converged, "{}", r.detail);
    // Two losses and a reordering break continuity; the malformed depth frame
    // invalidates its book without a gap.
    assert!(r.stats.gaps >= 3, "gaps {}", r.stats.gaps);
    assert!(r.stats.stale_diffs >= 1, "the duplicate is dropped");
    assert_eq!(r.stats.bad_frames, 2);
    assert!(r.stats.snapshots >= 2 + 4);
    assert_eq!(r.counters.connects.load(Ordering::Relaxed), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnects_silence_and_failing_snapshots_are_survived() {
    let mut venue = Venue::load(&["spot_btcusdt_20240808.gz"], 3000);
    let faults = [
        (venue.depth_index("BTCUSDT", 50), Fault::Disconnect),
        (venue.depth_index("BTCUSDT", 120), Fault::Silence),
    ];
    venue.faults.extend(faults);
    venue.failing_snapshots = 3;
    let r = run_against(
        venue,
        Market::Spot,
        &["BTCUSDT"],
        Duration::from_millis(1500),
    )
    .await;
    assert!(r.converged, "{}", r.detail);
    let c = &r.counters;
    assert!(
        c.connects.load(Ordering::Relaxed) >= 3,
        "reconnected after the close and the silence"
    );
    assert!(c.stale_streams.load(Ordering::Relaxed) >= 1);
    assert!(c.snapshot_failures.load(Ordering::Relaxed) >= 3);
    assert!(r.venue.lock().unwrap().connections >= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn futures_books_chain_by_previous_id_through_a_gap() {
    let mut venue = Venue::load(&["usdm_btcusdt_20240808.gz"], 4000);
    let i = venue.depth_index("BTCUSDT", 100);
    venue.faults.insert(i, Fault::Drop);
    let r = run_against(venue, Market::UsdmFutures, &["BTCUSDT"], QUIET).await;
    assert!(r.converged, "{}", r.detail);
    assert_eq!(r.stats.gaps, 1);
    assert!(r.stats.snapshots >= 2);
}
