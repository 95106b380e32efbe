//! Logs, metrics and latency figures. Metric names follow `hft_<area>_<what>_<unit>`
//! and are defined here once so dashboards and alert rules have one source of truth.

use hdrhistogram::Histogram;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use thiserror::Error;

/// Metric names.
pub mod names {
    /// Market events applied, per strategy.
    pub const EVENTS: &str = "hft_engine_events_total";
    /// Orders sent to venues.
    pub const ORDERS: &str = "hft_engine_orders_total";
    /// Fills received.
    pub const FILLS: &str = "hft_engine_fills_total";
    /// Pre-trade and venue rejections, label `reason`.
    pub const REJECTS: &str = "hft_risk_rejects_total";
    /// Net position per strategy, in instrument units.
    pub const POSITION: &str = "hft_strategy_position_units";
    /// PnL after fees per strategy, quote currency.
    pub const PNL: &str = "hft_strategy_pnl_quote";
    /// Tick-to-order latency of the last second, nanoseconds, label `quantile`.
    pub const TICK_TO_ORDER: &str = "hft_engine_tick_to_order_ns";
    /// Strategy restarts after a crash.
    pub const RESTARTS: &str = "hft_strategy_restarts_total";
}

/// Telemetry set-up failures.
#[derive(Debug, Error)]
pub enum TelemetryError {
    /// The metrics endpoint could not bind.
    #[error(
        "cannot listen for metrics on {addr}: {source} (pick a free port or set telemetry.metrics_addr = \"\")"
    )]
    Bind {
        /// Address asked for.
        addr: SocketAddr,
        /// OS error.
        source: std::io::Error,
    },
    /// A global recorder was already installed.
    #[error("metrics recorder already installed")]
    Recorder,
}

/// Installs the tracing subscriber: human text (coloured on a terminal) or JSON lines,
/// on stderr so stdout stays for data.
pub fn init_tracing(json: bool, level: &str) {
    let level = level
        .parse::<tracing::Level>()
        .unwrap_or(tracing::Level::INFO);
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .with_target(false);
    let result = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init()
    };
    // A second init (tests, embedded use) keeps the first subscriber.
    let _ = result;
}

/// Installs the Prometheus recorder and, with an address, serves `GET /metrics` on a
/// small thread of its own (the admin API will serve it too once it exists; a second
/// HTTP stack here would only add weight).
pub fn install_metrics(addr: Option<SocketAddr>) -> Result<PrometheusHandle, TelemetryError> {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|_| TelemetryError::Recorder)?;
    if let Some(addr) = addr {
        let listener =
            TcpListener::bind(addr).map_err(|source| TelemetryError::Bind { addr, source })?;
        let h = handle.clone();
        std::thread::Builder::new()
            .name("metrics-http".into())
            .spawn(move || serve_metrics(listener, h))
            .map_err(|source| TelemetryError::Bind { addr, source })?;
    }
    Ok(handle)
}

fn serve_metrics(listener: TcpListener, handle: PrometheusHandle) {
    for stream in listener.incoming().flatten() {
        let mut stream = stream;
        let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(2)));
        let mut line = String::new();
        let mut reader = BufReader::new(&stream);
        if reader.read_line(&mut line).is_err() {
            continue;
        }
        // Drain the request headers.
        let mut h = String::new();
        while reader.read_line(&mut h).map(|n| n > 2).unwrap_or(false) {
            h.clear();
        }
        let (status, body) = if line.starts_with("GET /metrics ") {
            ("200 OK", handle.render())
        } else {
            (
                "404 Not Found",
                "only GET /metrics is served here\n".to_owned(),
            )
        };
        let _ = write!(
            stream,
            "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    }
}

/// Percentiles of a latency histogram.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LatencySummary {
    /// Median, ns.
    pub p50: u64,
    /// 99th percentile, ns.
    pub p99: u64,
    /// 99.9th percentile, ns.
    pub p999: u64,
    /// Largest, ns.
    pub max: u64,
    /// Samples.
    pub samples: u64,
}

impl LatencySummary {
    /// Reads the percentiles off a histogram.
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            p50: h.value_at_quantile(0.5),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            samples: h.len(),
        }
    }
}

/// A histogram for nanosecond latencies up to a minute; recording never allocates.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).expect("histogram with 3 significant figures"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_reads_percentiles() {
        let mut h = latency_histogram();
        for v in 1..=1000u64 {
            h.record(v * 100).unwrap();
        }
        let s = LatencySummary::of(&h);
        assert_eq!(s.samples, 1000);
        assert!((49_000..=51_000).contains(&s.p50), "{s:?}");
        assert!(s.p99 >= 98_000 && s.p999 >= s.p99 && s.max >= s.p999);
        assert_eq!(
            LatencySummary::of(&latency_histogram()),
            LatencySummary::default()
        );
    }

    #[test]
    fn metrics_endpoint_serves_prometheus_text() {
        let probe = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = probe.local_addr().unwrap();
        drop(probe);
        let _handle = install_metrics(Some(addr)).unwrap();
        metrics::counter!(names::ORDERS).increment(3);
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut body = String::new();
        std::io::Read::read_to_string(&mut s, &mut body).unwrap();
        assert!(body.starts_with("HTTP/1.1 200"), "{body}");
        assert!(body.contains("hft_engine_orders_total 3"), "{body}");
    }
}
