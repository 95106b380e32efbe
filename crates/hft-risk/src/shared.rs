//! Node-wide risk state shared by every engine: written rarely, read on every order,
//! so it is plain atomics rather than anything with a lock.

use hft_core::Money;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

/// The node's kill switch. When engaged every engine refuses new orders, cancels what
/// rests, and the node exits with code 3.
#[derive(Clone, Debug, Default)]
pub struct KillSwitch(Arc<AtomicBool>);

impl KillSwitch {
    /// A switch in the given state.
    pub fn new(engaged: bool) -> Self {
        Self(Arc::new(AtomicBool::new(engaged)))
    }

    /// Stops all trading on the node.
    pub fn engage(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Allows trading again (an operator decision, never automatic).
    pub fn reset(&self) {
        self.0.store(false, Ordering::SeqCst);
    }

    /// Read on every order; relaxed is enough because engines re-check on each event.
    #[inline]
    pub fn is_engaged(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Gross exposure of the node: each engine publishes |position| x mark of its slot,
/// and checks the sum of all slots against the node limit.
#[derive(Clone, Debug)]
pub struct NodeExposure {
    slots: Arc<[AtomicI64]>,
    limit: Money,
}

impl NodeExposure {
    /// One slot per strategy instance.
    pub fn new(slots: usize, limit: Money) -> Self {
        Self {
            slots: (0..slots).map(|_| AtomicI64::new(0)).collect(),
            limit,
        }
    }

    /// Publishes the absolute exposure of one strategy.
    #[inline]
    pub fn publish(&self, slot: usize, exposure: Money) {
        if let Some(s) = self.slots.get(slot) {
            s.store(exposure.raw().saturating_abs(), Ordering::Relaxed);
        }
    }

    /// Sum of all published exposures.
    #[inline]
    pub fn gross(&self) -> Money {
        Money(
            self.slots
                .iter()
                .fold(0i64, |acc, s| acc.saturating_add(s.load(Ordering::Relaxed))),
        )
    }

    /// The node limit.
    #[inline]
    pub fn limit(&self) -> Money {
        self.limit
    }
}
