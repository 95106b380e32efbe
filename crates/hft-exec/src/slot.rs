//! A strategy instance as the node supervises it: its engine, how to build a fresh
//! strategy after a crash, the restart policy, and its latency histogram.

use crate::engine::{Engine, OrderSink, StrategyPanic};
use crate::supervision::{RestartDecision, RestartPolicy};
use hdrhistogram::Histogram;
use hft_core::{Nanos, TradingState};
use hft_strategy::Strategy;

/// Builds a fresh strategy instance (at start and after each crash); shared between the
/// engine and its supervisor.
pub type StrategyFactory = std::sync::Arc<dyn Fn() -> Box<dyn Strategy> + Send + Sync>;

/// One supervised strategy instance.
pub struct StrategySlot {
    /// Configured name.
    pub name: String,
    /// The engine (books, OMS, risk, positions survive strategy restarts).
    pub engine: Engine,
    /// Builds the strategy.
    pub factory: StrategyFactory,
    /// Crash policy.
    pub policy: RestartPolicy,
    /// Restarts done.
    pub restarts: u32,
    /// Set when the strategy was halted for good, with the reason.
    pub halted: Option<String>,
    /// Tick-to-order latency, nanoseconds.
    pub latency: Histogram<u64>,
}

impl StrategySlot {
    /// A slot whose strategy is not started yet.
    pub fn new(
        name: String,
        engine: Engine,
        factory: StrategyFactory,
        policy: RestartPolicy,
    ) -> Self {
        Self {
            name,
            engine,
            factory,
            policy,
            restarts: 0,
            halted: None,
            // 1 ns .. 60 s at 3 significant digits: fixed size, recording never allocates.
            latency: Histogram::new_with_bounds(1, 60_000_000_000, 3).unwrap_or_else(|_| {
                Histogram::new(3).expect("histogram with 3 significant figures")
            }),
        }
    }

    /// Installs a fresh strategy from the factory and starts it.
    pub fn start(&mut self, now: Nanos, sink: &mut impl OrderSink) -> Result<(), StrategyPanic> {
        let s = (self.factory)();
        self.engine.install(s, now, sink)
    }

    /// Records a crash; returns when to restart, or halts the strategy for good.
    pub fn on_crash(&mut self, panic: &StrategyPanic, now: Nanos) -> Option<Nanos> {
        match self.policy.on_crash(now) {
            RestartDecision::RestartAfter(d) => {
                tracing::warn!(strategy = %self.name, message = %panic.message, backoff_ms = d / 1_000_000, "strategy panicked; restarting after backoff");
                Some(d)
            }
            RestartDecision::Halt { crashes } => {
                let reason = format!("halted after {crashes} crashes; last: {}", panic.message);
                tracing::error!(strategy = %self.name, %reason, "strategy halted");
                self.engine.set_trading_state(TradingState::Halted);
                self.halted = Some(reason);
                None
            }
        }
    }

    /// Restarts after a backoff; a panic during start counts as another crash.
    pub fn restart(&mut self, now: Nanos, sink: &mut impl OrderSink) -> Result<(), StrategyPanic> {
        self.restarts += 1;
        tracing::info!(strategy = %self.name, restarts = self.restarts, "strategy restarted");
        self.start(now, sink)
    }
}
