//! The live Binance feed: one WebSocket connection to the combined stream of the
//! configured symbols (diff depth, `bookTicker`, trades), REST depth snapshots fetched
//! beside it, and the connection kept alive — pings, stale-stream detection and
//! reconnection with jittered exponential backoff. All book logic is in
//! [`FeedHandler`]; this module only moves bytes and time.

use crate::InstrumentRegistry;
use crate::binance::{FeedHandler, HandlerStats};
use futures_util::{SinkExt, StreamExt};
use hft_core::{MarketEvent, Nanos};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::Uri;
use hyper_util::rt::TokioIo;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

/// Largest REST snapshot body accepted (a 5000-level book is ~300 KB).
const MAX_SNAPSHOT_BYTES: usize = 8 << 20;

/// Which Binance market: they differ in hosts, paths and depth-id chaining.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Market {
    /// Spot (`U = u_prev + 1`).
    Spot,
    /// USD-M perpetual futures (`pu = u_prev`).
    UsdmFutures,
}

impl Market {
    /// Production WebSocket base.
    pub fn default_ws(self) -> &'static str {
        match self {
            Market::Spot => "wss://stream.binance.com:9443",
            Market::UsdmFutures => "wss://fstream.binance.com",
        }
    }

    /// Production REST base.
    pub fn default_rest(self) -> &'static str {
        match self {
            Market::Spot => "https://api.binance.com",
            Market::UsdmFutures => "https://fapi.binance.com",
        }
    }

    fn depth_path(self) -> &'static str {
        match self {
            Market::Spot => "/api/v3/depth",
            Market::UsdmFutures => "/fapi/v1/depth",
        }
    }
}

/// How to run a live feed.
#[derive(Clone, Debug)]
pub struct LiveConfig {
    /// Spot or USD-M futures.
    pub market: Market,
    /// WebSocket base URL (`ws://` or `wss://`), without path.
    pub ws_base: String,
    /// REST base URL (`http://` or `https://`), without path.
    pub rest_base: String,
    /// Venue symbols, e.g. `BTCUSDT`.
    pub symbols: Vec<String>,
    /// Depth stream speed suffix, e.g. `100ms` (spot) or `0ms` (futures).
    pub depth_speed: String,
    /// Trade stream: `trade` or `aggTrade`.
    pub trade_stream: String,
    /// Levels per side of the REST snapshot.
    pub snapshot_limit: u32,
    /// First reconnect delay; doubles per failed attempt up to `backoff_max`.
    pub backoff_min: Duration,
    /// Longest reconnect delay.
    pub backoff_max: Duration,
    /// Client ping period.
    pub ping_interval: Duration,
    /// A stream that delivers no data frame for this long is considered dead and
    /// reconnected (pongs do not count: a venue can answer pings on a dead stream).
    pub stale_after: Duration,
    /// Connect (TCP + TLS + upgrade) and snapshot request timeout.
    pub io_timeout: Duration,
}

impl LiveConfig {
    /// Production endpoints and the venue's documented limits for `symbols`.
    pub fn binance(market: Market, symbols: Vec<String>) -> Self {
        Self {
            market,
            ws_base: market.default_ws().into(),
            rest_base: market.default_rest().into(),
            symbols,
            depth_speed: "100ms".into(),
            trade_stream: "trade".into(),
            snapshot_limit: 1000,
            backoff_min: Duration::from_millis(250),
            backoff_max: Duration::from_secs(30),
            ping_interval: Duration::from_secs(30),
            stale_after: Duration::from_secs(10),
            io_timeout: Duration::from_secs(10),
        }
    }

    /// The combined-stream URL.
    pub fn stream_url(&self) -> String {
        let streams: Vec<String> = self
            .symbols
            .iter()
            .flat_map(|s| {
                let s = s.to_ascii_lowercase();
                [
                    format!("{s}@depth@{}", self.depth_speed),
                    format!("{s}@bookTicker"),
                    format!("{s}@{}", self.trade_stream),
                ]
            })
            .collect();
        format!(
            "{}/stream?streams={}",
            self.ws_base.trim_end_matches('/'),
            streams.join("/")
        )
    }

    /// The REST snapshot URL of `symbol`.
    pub fn snapshot_url(&self, symbol: &str) -> String {
        format!(
            "{}{}?symbol={}&limit={}",
            self.rest_base.trim_end_matches('/'),
            self.market.depth_path(),
            symbol.to_ascii_uppercase(),
            self.snapshot_limit
        )
    }
}

/// Connection-level counters, readable while the feed runs.
#[derive(Debug, Default)]
pub struct LiveCounters {
    /// Successful connections.
    pub connects: AtomicU64,
    /// Failed connection attempts.
    pub connect_failures: AtomicU64,
    /// Connections lost (closed, errored or stale).
    pub disconnects: AtomicU64,
    /// Of those, streams that went silent for `stale_after`.
    pub stale_streams: AtomicU64,
    /// Snapshot requests that failed (HTTP error, timeout, refused body).
    pub snapshot_failures: AtomicU64,
    /// Frames received.
    pub frames: AtomicU64,
    /// Frames refused.
    pub bad_frames: AtomicU64,
    /// Depth gaps.
    pub gaps: AtomicU64,
    /// Snapshots applied.
    pub snapshots: AtomicU64,
}

impl LiveCounters {
    fn publish(&self, s: &HandlerStats) {
        self.frames.store(s.frames, Ordering::Relaxed);
        self.bad_frames.store(s.bad_frames, Ordering::Relaxed);
        self.gaps.store(s.gaps, Ordering::Relaxed);
        self.snapshots.store(s.snapshots, Ordering::Relaxed);
    }
}

/// Exponential backoff with equal jitter: each delay is drawn from `[d/2, d]` where `d`
/// doubles per attempt, so reconnecting clients do not stampede the venue in step.
#[derive(Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
    rng: ChaCha8Rng,
}

impl Backoff {
    /// A backoff between `min` and `max`, jitter seeded by `seed`.
    pub fn new(min: Duration, max: Duration, seed: u64) -> Self {
        Self {
            min,
            max: max.max(min),
            attempt: 0,
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// The next delay.
    pub fn next_delay(&mut self) -> Duration {
        let d = self
            .min
            .saturating_mul(1u32 << self.attempt.min(20))
            .min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let half = d / 2;
        half + Duration::from_nanos(self.rng.random_range(0..=half.as_nanos() as u64))
    }

    /// Back to the shortest delay (after a connection proved healthy).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// Wall-clock nanoseconds since the Unix epoch, comparable with venue timestamps.
fn now_ns() -> Nanos {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as Nanos)
}

/// Why a snapshot request failed.
type FetchResult = Result<String, String>;

/// Runs the feed until `shutdown` turns true, emitting events to `sink`; returns the
/// handler's final counters.
pub async fn run(
    cfg: LiveConfig,
    registry: InstrumentRegistry,
    mut sink: impl FnMut(MarketEvent) + Send,
    counters: Arc<LiveCounters>,
    mut shutdown: watch::Receiver<bool>,
) -> HandlerStats {
    let mut handler = FeedHandler::new(&cfg.symbols, registry);
    let mut backoff = Backoff::new(cfg.backoff_min, cfg.backoff_max, now_ns());
    let mut snapshot_backoff: Vec<Backoff> = (0..handler.len())
        .map(|i| Backoff::new(cfg.backoff_min, cfg.backoff_max, now_ns() ^ i as u64))
        .collect();
    let (snap_tx, mut snap_rx) = mpsc::unbounded_channel::<(usize, FetchResult)>();
    let url = cfg.stream_url();
    let mut first = true;
    'connect: while !*shutdown.borrow() {
        if !first {
            let delay = backoff.next_delay();
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.changed() => break,
            }
        }
        first = false;
        let connector = match tls_config() {
            Ok(c) => tokio_tungstenite::Connector::Rustls(c),
            Err(e) => {
                tracing::error!(error = %e, "cannot set up TLS; the live feed stops");
                break;
            }
        };
        let ws = match tokio::time::timeout(
            cfg.io_timeout,
            tokio_tungstenite::connect_async_tls_with_config(
                url.as_str(),
                None,
                true,
                Some(connector),
            ),
        )
        .await
        {
            Ok(Ok((ws, _))) => ws,
            Ok(Err(e)) => {
                counters.connect_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(url = %url, error = %e, "cannot connect to the market data stream");
                continue;
            }
            Err(_) => {
                counters.connect_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(url = %url, "connecting to the market data stream timed out");
                continue;
            }
        };
        counters.connects.fetch_add(1, Ordering::Relaxed);
        tracing::info!(url = %url, "market data stream connected");
        let (mut write, mut read) = ws.split();
        let mut ping =
            tokio::time::interval_at(Instant::now() + cfg.ping_interval, cfg.ping_interval);
        let mut last_rx = Instant::now();
        let (mut frame_no, mut byte_offset) = (0u64, 0u64);
        loop {
            for i in handler.take_snapshot_requests() {
                let delay = if snapshot_backoff[i].attempt == 0 {
                    Duration::ZERO
                } else {
                    snapshot_backoff[i].next_delay()
                };
                let (tx, link, timeout) = (
                    snap_tx.clone(),
                    cfg.snapshot_url(handler.symbol(i)),
                    cfg.io_timeout,
                );
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let r = match tokio::time::timeout(timeout, http_get(&link)).await {
                        Ok(r) => r,
                        Err(_) => Err(format!("GET {link}: timed out")),
                    };
                    let _ = tx.send((i, r));
                });
            }
            tokio::select! {
                _ = shutdown.changed() => break 'connect,
                frame = tokio::time::timeout_at(last_rx + cfg.stale_after, read.next()) => {
                    let now = now_ns();
                    let msg = match frame {
                        Err(_) => {
                            counters.stale_streams.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(silent_for = ?cfg.stale_after, "market data stream went silent; reconnecting");
                            break;
                        }
                        Ok(None) => {
                            tracing::warn!("market data stream closed by the venue; reconnecting");
                            break;
                        }
                        Ok(Some(Err(e))) => {
                            tracing::warn!(error = %e, "market data stream failed; reconnecting");
                            break;
                        }
                        Ok(Some(Ok(m))) => m,
                    };
                    match msg {
                        Message::Text(text) => {
                            // Only data proves the stream alive: a venue can answer pings
                            // on a connection whose streams are dead.
                            last_rx = Instant::now();
                            frame_no += 1;
                            if let Err(e) = handler.on_frame(text.as_str(), now, &mut sink) {
                                tracing::warn!(frame = frame_no, byte_offset, error = %e, "market data frame refused; its book is resynchronised");
                            }
                            byte_offset += text.len() as u64;
                            backoff.reset();
                        }
                        Message::Binary(b) => {
                            last_rx = Instant::now();
                            frame_no += 1;
                            tracing::warn!(frame = frame_no, byte_offset, len = b.len(), "unexpected binary frame ignored");
                            byte_offset += b.len() as u64;
                        }
                        Message::Close(_) => {
                            tracing::warn!("market data stream closed by the venue; reconnecting");
                            break;
                        }
                        Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
                    }
                }
                Some((i, result)) = snap_rx.recv() => {
                    let now = now_ns();
                    let applied = match result {
                        Ok(body) => handler.on_snapshot(i, &body, now, &mut sink).map_err(|e| e.to_string()),
                        Err(e) => {
                            handler.snapshot_failed(i);
                            Err(e)
                        }
                    };
                    match applied {
                        Ok(()) => snapshot_backoff[i].reset(),
                        Err(e) => {
                            // First retry of a refused snapshot is immediate; the rest back off.
                            if snapshot_backoff[i].attempt == 0 {
                                snapshot_backoff[i].attempt = 1;
                            }
                            counters.snapshot_failures.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(symbol = handler.symbol(i), error = %e, "depth snapshot not applied; requesting another");
                        }
                    }
                }
                _ = ping.tick() => {
                    if let Err(e) = write.send(Message::Ping(Vec::new().into())).await {
                        tracing::warn!(error = %e, "ping failed; reconnecting");
                        break;
                    }
                }
            }
            counters.publish(&handler.stats());
        }
        counters.disconnects.fetch_add(1, Ordering::Relaxed);
        handler.reset(now_ns(), &mut sink);
        counters.publish(&handler.stats());
    }
    counters.publish(&handler.stats());
    handler.stats()
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// GET `link` over HTTP/1.1 (TLS for `https`), returning the body of a 200 response.
pub async fn http_get(link: &str) -> Result<String, String> {
    let fail = |what: &str, e: &dyn std::fmt::Display| format!("GET {link}: {what}: {e}");
    let uri: Uri = link.parse().map_err(|e| fail("bad URL", &e))?;
    let host = uri
        .host()
        .ok_or_else(|| format!("GET {link}: no host"))?
        .to_owned();
    let https = uri.scheme_str() == Some("https");
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let tcp = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| fail("connect", &e))?;
    let _ = tcp.set_nodelay(true);
    let io: Box<dyn Io> = if https {
        let name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|e| fail("bad host name", &e))?;
        let tls = tokio_rustls::TlsConnector::from(tls_config()?)
            .connect(name, tcp)
            .await
            .map_err(|e| fail("TLS", &e))?;
        Box::new(tls)
    } else {
        Box::new(tcp)
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| fail("HTTP handshake", &e))?;
    tokio::spawn(conn);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let req = hyper::Request::get(path)
        .header(hyper::header::HOST, host.as_str())
        .header(hyper::header::ACCEPT, "application/json")
        .body(Empty::<&'static [u8]>::new())
        .map_err(|e| fail("request", &e))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| fail("request", &e))?;
    let status = resp.status();
    let body = Limited::new(resp.into_body(), MAX_SNAPSHOT_BYTES)
        .collect()
        .await
        .map_err(|e| fail("body", &e))?
        .to_bytes();
    if !status.is_success() {
        let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
        return Err(format!("GET {link}: HTTP {status}: {text}"));
    }
    String::from_utf8(body.to_vec()).map_err(|e| fail("body is not UTF-8", &e))
}

/// Client TLS with the Mozilla root set and the ring provider, built once.
fn tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
    static CONFIG: std::sync::OnceLock<Result<Arc<rustls::ClientConfig>, String>> =
        std::sync::OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map(|b| Arc::new(b.with_root_certificates(roots).with_no_client_auth()))
                .map_err(|e| format!("TLS setup: {e}"))
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(1000), 1);
        let d: Vec<Duration> = (0..6).map(|_| b.next_delay()).collect();
        for (i, d) in d.iter().enumerate() {
            let full = Duration::from_millis((100u64 << i).min(1000));
            assert!(
                *d >= full / 2 && *d <= full,
                "attempt {i}: {d:?} not in [{:?}, {full:?}]",
                full / 2
            );
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }

    #[test]
    fn urls_follow_the_venue_layout() {
        let mut c = LiveConfig::binance(Market::UsdmFutures, vec!["BTCUSDT".into()]);
        c.depth_speed = "0ms".into();
        assert_eq!(
            c.stream_url(),
            "wss://fstream.binance.com/stream?streams=btcusdt@depth@0ms/btcusdt@bookTicker/btcusdt@trade"
        );
        assert_eq!(
            c.snapshot_url("btcusdt"),
            "https://fapi.binance.com/fapi/v1/depth?symbol=BTCUSDT&limit=1000"
        );
    }
}
