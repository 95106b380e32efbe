//! Latency and queue-position models.

use hft_core::Nanos;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal};

/// How long an order takes to reach the venue, or a response to come back.
#[derive(Clone, Debug)]
pub enum Latency {
    /// Always the same.
    Constant(Nanos),
    /// Log-normal around a median, with a seeded generator: the same seed gives the same
    /// draws, so backtests stay reproducible.
    LogNormal {
        /// Median, ns.
        median: Nanos,
        /// Log-space standard deviation.
        sigma: f64,
        /// Generator.
        rng: Box<ChaCha8Rng>,
    },
    /// Interpolated from a recorded series of `(time, latency)` points, sorted by time.
    Series(Vec<(Nanos, Nanos)>),
}

impl Latency {
    /// A seeded log-normal latency.
    pub fn log_normal(median: Nanos, sigma: f64, seed: u64) -> Self {
        Latency::LogNormal {
            median,
            sigma,
            rng: Box::new(ChaCha8Rng::seed_from_u64(seed)),
        }
    }

    /// The latency of a message sent at `t`.
    pub fn at(&mut self, t: Nanos) -> Nanos {
        match self {
            Latency::Constant(l) => *l,
            Latency::LogNormal { median, sigma, rng } => {
                match LogNormal::new((*median as f64).max(1.0).ln(), sigma.max(0.0)) {
                    Ok(d) => d.sample(rng.as_mut()).round() as Nanos,
                    Err(_) => *median,
                }
            }
            Latency::Series(points) => interpolate(points, t),
        }
    }
}

fn interpolate(points: &[(Nanos, Nanos)], t: Nanos) -> Nanos {
    let i = points.partition_point(|p| p.0 <= t);
    match (i.checked_sub(1).and_then(|k| points.get(k)), points.get(i)) {
        (Some(a), Some(b)) if b.0 > a.0 => {
            let w = (t - a.0) as f64 / (b.0 - a.0) as f64;
            (a.1 as f64 + w * (b.1 as f64 - a.1 as f64)).round() as Nanos
        }
        (Some(a), _) => a.1,
        (None, Some(b)) => b.1,
        (None, None) => 0,
    }
}

/// When the venue saw a recorded event, from the strategy's receive time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeedLatency {
    /// The venue and the strategy see it at the same time.
    Zero,
    /// The venue saw it this long before the strategy.
    Constant(Nanos),
    /// From the data: the venue timestamp, shifted by the smallest receive-minus-venue
    /// difference in the data (the recorder's clock offset), so the fastest message
    /// took no time.
    FromData,
}

/// Where a resting order stands in an L2 level, and how cancellations move it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum QueueModel {
    /// Only trades at the order's price advance it; a shrinking level moves it only
    /// when the level becomes shorter than the queue ahead (hftbacktest's risk-averse
    /// model).
    RiskAverse,
    /// A cancellation of `d` at the level takes `d * f(ahead) / (f(ahead) + f(behind))`
    /// from the queue ahead, `f(x) = x^n`.
    Power(f64),
    /// As `Power` with `f(x) = ln(1 + x)`.
    Log,
}

impl QueueModel {
    /// The queue ahead after the level went from `before` to `after` (`after < before`)
    /// without a trade; `ahead` is before the change, `own` the order's open quantity.
    pub fn on_cancel(&self, ahead: i64, own: i64, before: i64, after: i64) -> i64 {
        let removed = (before - after).max(0);
        let behind = (before - ahead - own).max(0);
        let taken = match *self {
            QueueModel::RiskAverse => 0.0,
            QueueModel::Power(n) => {
                share(ahead as f64, behind as f64, |x| x.powf(n)) * removed as f64
            }
            QueueModel::Log => {
                share(ahead as f64, behind as f64, |x| (1.0 + x).ln()) * removed as f64
            }
        };
        let ahead = ahead - taken.round() as i64;
        // Whatever the model, the queue ahead cannot be longer than the rest of the level.
        ahead.clamp(0, (after - own).max(0))
    }
}

fn share(ahead: f64, behind: f64, f: impl Fn(f64) -> f64) -> f64 {
    let (a, b) = (f(ahead), f(behind));
    if a + b <= 0.0 { 0.0 } else { a / (a + b) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_are_reproducible_and_series_interpolate() {
        let mut a = Latency::log_normal(100_000, 0.5, 7);
        let mut b = Latency::log_normal(100_000, 0.5, 7);
        let da: Vec<_> = (0..100).map(|t| a.at(t)).collect();
        let db: Vec<_> = (0..100).map(|t| b.at(t)).collect();
        assert_eq!(da, db);
        let median = {
            let mut s = da.clone();
            s.sort();
            s[50]
        };
        assert!((50_000..200_000).contains(&median), "{median}");
        let mut s = Latency::Series(vec![(100, 10), (200, 30)]);
        assert_eq!((s.at(0), s.at(150), s.at(300)), (10, 20, 30));
    }

    #[test]
    fn queue_models_bound_and_order() {
        // 10 ahead, own 1, 10 behind; the level loses 5 to cancels.
        let ra = QueueModel::RiskAverse.on_cancel(10, 1, 21, 16);
        let p2 = QueueModel::Power(2.0).on_cancel(10, 1, 21, 16);
        assert_eq!(ra, 10, "risk-averse: cancels are behind");
        assert!((5..10).contains(&p2), "{p2}");
        // A level shorter than the queue ahead caps it.
        assert_eq!(QueueModel::RiskAverse.on_cancel(10, 1, 21, 4), 3);
    }
}
