//! When to restart a crashed strategy and when to give up: the same policy for the
//! actor supervisor and the deterministic simulation.

use hft_core::{NANOS_PER_SEC, Nanos};

/// Restart policy: exponential backoff, and a halt after too many crashes in a window.
#[derive(Clone, Debug)]
pub struct RestartPolicy {
    max_restarts: u32,
    window: Nanos,
    base_backoff: Nanos,
    crashes: Vec<Nanos>,
}

/// What to do after a crash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestartDecision {
    /// Restart after this delay.
    RestartAfter(Nanos),
    /// Too many crashes: halt the strategy for good.
    Halt {
        /// Crashes counted in the window.
        crashes: u32,
    },
}

impl RestartPolicy {
    /// At most `max_restarts` restarts within `window_s`; backoff starts at `backoff_ms`
    /// and doubles with each crash in the window.
    pub fn new(max_restarts: u32, window_s: u64, backoff_ms: u64) -> Self {
        Self {
            max_restarts,
            window: window_s.saturating_mul(NANOS_PER_SEC),
            base_backoff: backoff_ms.saturating_mul(1_000_000),
            crashes: Vec::new(),
        }
    }

    /// Records a crash at `now` and decides.
    pub fn on_crash(&mut self, now: Nanos) -> RestartDecision {
        self.crashes
            .retain(|t| now.saturating_sub(*t) < self.window);
        self.crashes.push(now);
        let n = self.crashes.len() as u32;
        if n > self.max_restarts {
            RestartDecision::Halt { crashes: n }
        } else {
            RestartDecision::RestartAfter(self.base_backoff.saturating_mul(1 << (n - 1).min(20)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_then_halts() {
        let mut p = RestartPolicy::new(2, 60, 100);
        assert_eq!(p.on_crash(0), RestartDecision::RestartAfter(100_000_000));
        assert_eq!(p.on_crash(1), RestartDecision::RestartAfter(200_000_000));
        assert_eq!(p.on_crash(2), RestartDecision::Halt { crashes: 3 });
    }

    #[test]
    fn old_crashes_leave_the_window() {
        let mut p = RestartPolicy::new(1, 10, 100);
        assert_eq!(p.on_crash(0), RestartDecision::RestartAfter(100_000_000));
        assert_eq!(
            p.on_crash(11 * NANOS_PER_SEC),
            RestartDecision::RestartAfter(100_000_000)
        );
    }
}
