//! The node runtime: builds a node from its configuration and runs it either live
//! (hot-path threads under a ractor supervision tree) or deterministically (the same
//! engines and venue on a simulated clock in one thread).

pub mod admin;
pub mod auth;
pub mod bench;
pub mod booking;
pub mod cluster;
pub mod control;
pub mod coord;
pub mod live;
pub mod local_etcd;
pub mod node;
pub mod paper;
pub mod placement;
pub mod recorder;
pub mod reload;
pub mod report;
pub mod ring;

pub use report::{LedgerSummary, SessionReport, StrategyReport};

/// Whether this build has the chaos suite's fail points (the `failpoints` feature): the
/// chaos runner injects crashes and slow disks through them only when it does.
pub const FAILPOINTS: bool = cfg!(feature = "failpoints");

use hft_config::Config;
use hft_core::NANOS_PER_SEC;
use hft_exec::{SimSession, SimTiming};
use std::time::Duration;

/// Runs `duration` of simulated time in one thread; the same config and seed always
/// give the same fills (and `fills_hash`).
pub fn run_deterministic(config: &Config, seed: u64, duration: Duration) -> SessionReport {
    let parts = node::build(config, seed, 0);
    let timing = SimTiming {
        md_latency: config.simulator.md_latency_us * 1_000,
        order_latency: config.simulator.order_latency_us * 1_000,
        timer_interval: config.engine.timer_interval_ms * 1_000_000,
    };
    let mut session = SimSession::new(parts.venue, parts.slots, timing, 0);
    let until = duration.as_nanos().min(u128::from(u64::MAX)) as u64;
    let mut pnl_path = report::PnlPath::new(report::PNL_SAMPLE_INTERVAL_NS);
    pnl_path.offer_slots(session.slots());
    session.run_sampled(until, report::PNL_SAMPLE_INTERVAL_NS, |s| {
        pnl_path.offer_slots(s.slots());
    });
    session.shutdown();
    let venue_events = session.venue().flow_events();
    let slots = session.into_slots();
    SessionReport::build(
        "deterministic",
        seed,
        until as f64 / NANOS_PER_SEC as f64,
        venue_events,
        &slots,
        parts.kill.is_engaged(),
        pnl_path,
    )
}
