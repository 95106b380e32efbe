//! The live actor tree: a strategy that keeps panicking is restarted with backoff and
//! then halted, while the other strategy keeps trading and the node stays up.

use hft_cluster::live::{LiveOptions, run};
use hft_cluster::ring::IdleMode;
use hft_config::Config;
use hft_strategy::{Context, Strategy};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

struct Crashy(u32);

impl Strategy for Crashy {
    fn on_market(&mut self, _ctx: &mut Context<'_>, _ev: &hft_core::MarketEvent) {
        self.0 += 1;
        if self.0 == 20 {
            panic!("crashy strategy: deliberate failure");
        }
    }
}

#[test]
fn panicking_strategy_is_restarted_then_halted_and_the_node_keeps_trading() {
    let config = hft_config::load_str(
        "test.toml",
        "[engine]\nmax_restarts = 2\nrestart_backoff_ms = 50\nrestart_window_s = 60\n",
        std::iter::empty(),
    )
    .unwrap();
    let mut parts = hft_cluster::node::build(&config, 1, 0);
    parts.slots[1].factory = Arc::new(|| Box::new(Crashy(0)));
    let opts = LiveOptions {
        duration: Some(Duration::from_secs(4)),
        shutdown: Arc::new(AtomicBool::new(false)),
        ring_capacity: 8192,
        timer_interval: Duration::from_millis(100),
        status_interval: Duration::from_secs(1),
        idle: IdleMode::Park,
        seed: 1,
        booking: None,
        reload: None,
    };
    let report = run(parts, opts, |_, _| {}).unwrap();
    let healthy = &report.strategies[0];
    let crashy = &report.strategies[1];
    assert_eq!(crashy.restarts, 2, "{crashy:?}");
    assert_eq!(crashy.panics, 3);
    assert!(
        crashy.halted.as_deref().unwrap_or("").contains("3 crashes"),
        "{:?}",
        crashy.halted
    );
    assert_eq!(crashy.state, "halted");
    assert!(
        healthy.orders > 0 && healthy.halted.is_none(),
        "{healthy:?}"
    );
    assert!(report.events > 1_000);
    let _ = Config::default_embedded();
}

/// Takes a millisecond per market message: far slower than the market.
struct Sluggish;

impl Strategy for Sluggish {
    fn on_market(&mut self, _ctx: &mut Context<'_>, _ev: &hft_core::MarketEvent) {
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn a_slow_engine_loses_data_then_is_resynchronised_by_snapshot() {
    let config = Config::default_embedded();
    let mut parts = hft_cluster::node::build(&config, 2, 0);
    parts.slots[1].factory = Arc::new(|| Box::new(Sluggish));
    let opts = LiveOptions {
        duration: Some(Duration::from_secs(3)),
        shutdown: Arc::new(AtomicBool::new(false)),
        ring_capacity: 1024,
        timer_interval: Duration::from_millis(100),
        status_interval: Duration::from_secs(1),
        idle: IdleMode::Park,
        seed: 2,
        booking: None,
        reload: None,
    };
    let report = run(parts, opts, |_, _| {}).unwrap();
    assert!(
        report.md_dropped > 0,
        "the slow engine's ring never overflowed"
    );
    assert!(report.md_resyncs > 0, "no snapshot was sent");
    assert!(report.strategies[1].gaps > 0);
    // The healthy engine lost nothing.
    assert_eq!(report.strategies[0].gaps, 0);
    assert!(report.strategies[0].orders > 0);
}
