//! A seeded, deterministic order-flow simulator.
//!
//! Each instrument has a latent fair price following a geometric random walk whose
//! volatility switches between a calm and a volatile regime, plus Poisson jumps. Order
//! flow arrives as independent Poisson streams: limit orders placed around the fair
//! price (so a fair-price move crosses the stale side of the book and the market
//! follows), cancels of resting simulated orders, and market orders leaning towards the
//! fair price. The flow goes to the venue's matching engine like anyone else's orders,
//! so a strategy's passive order fills only when the queue ahead of it is gone.

use crate::SimParams;
use hft_core::{InstrumentId, InstrumentSpec, NANOS_PER_SEC, Nanos, Price, Qty, Side};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp1, StandardNormal};

/// One simulated order-flow event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowEvent {
    /// When it reaches the venue.
    pub ts: Nanos,
    /// Instrument.
    pub instrument: InstrumentId,
    /// What the simulated participant does.
    pub action: FlowAction,
}

/// What a simulated participant does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowAction {
    /// A limit order identified by `order_ref` (unique per simulator).
    Limit {
        /// Reference for later cancels.
        order_ref: u64,
        /// Side.
        side: Side,
        /// Limit price on the tick grid.
        price: Price,
        /// Quantity on the lot grid.
        qty: Qty,
    },
    /// Cancel of an earlier limit order (it may have filled meanwhile).
    Cancel {
        /// The order's reference.
        order_ref: u64,
    },
    /// An immediate-or-cancel order with no price limit.
    Market {
        /// Side.
        side: Side,
        /// Quantity.
        qty: Qty,
    },
}

#[derive(Clone, Debug)]
struct InstrumentFlow {
    id: InstrumentId,
    tick: i64,
    lot: i64,
    params: SimParams,
    rng: ChaCha8Rng,
    log_fair: f64,
    volatile: bool,
    next_ts: Nanos,
    last_ts: Nanos,
    live: Vec<u64>,
}

impl InstrumentFlow {
    fn activity(&self) -> f64 {
        if self.volatile {
            self.params.volatile_multiplier
        } else {
            1.0
        }
    }

    fn total_rate(&self) -> f64 {
        let a = self.activity();
        a * (self.params.limit_rate_hz + self.params.market_rate_hz)
            + self.params.cancel_rate_hz * self.live.len() as f64
    }

    fn schedule(&mut self, from: Nanos) {
        let wait: f64 = Exp1.sample(&mut self.rng);
        let dt = (wait / self.total_rate().max(1e-9) * NANOS_PER_SEC as f64)
            .clamp(1.0, 60.0 * NANOS_PER_SEC as f64);
        self.next_ts = from + dt as Nanos;
    }

    /// Moves the fair price over `dt` (diffusion, regime switch, jump).
    fn evolve(&mut self, dt_ns: Nanos) {
        let dt = dt_ns as f64 / NANOS_PER_SEC as f64;
        let p = &self.params;
        if self.rng.random::<f64>() < p.regime_switch_per_min / 60.0 * dt {
            self.volatile = !self.volatile;
        }
        let sigma = p.volatility_bps * 1e-4 * self.activity();
        let z: f64 = StandardNormal.sample(&mut self.rng);
        self.log_fair += sigma * dt.sqrt() * z - 0.5 * sigma * sigma * dt;
        if self.rng.random::<f64>() < p.jump_rate_per_min / 60.0 * dt {
            let j: f64 = StandardNormal.sample(&mut self.rng);
            self.log_fair += p.jump_bps * 1e-4 * j;
        }
    }

    fn fair_ticks(&self) -> f64 {
        self.log_fair.exp() / self.tick as f64
    }

    fn size(&mut self) -> Qty {
        // Geometric number of lots with the configured mean (at least one lot).
        let mean = self.params.mean_order_lots.max(1.0);
        let u: f64 = self.rng.random::<f64>().max(f64::MIN_POSITIVE);
        let lots = 1.0 + (u.ln() / (1.0 - 1.0 / mean).max(1e-9).ln()).floor();
        Qty((lots.min(1e6) as i64).max(1) * self.lot)
    }

    fn draw(&mut self, mid_ticks: Option<f64>, next_ref: &mut u64) -> FlowAction {
        let a = self.activity();
        let limit = a * self.params.limit_rate_hz;
        let market = a * self.params.market_rate_hz;
        let cancel = self.params.cancel_rate_hz * self.live.len() as f64;
        let x = self.rng.random::<f64>() * (limit + market + cancel);
        let fair = self.fair_ticks();
        if x < limit {
            let side = if self.rng.random::<bool>() {
                Side::Buy
            } else {
                Side::Sell
            };
            // Distance from fair in ticks: geometric, mean a quarter of the depth.
            let depth = f64::from(self.params.depth_ticks.max(1));
            let e: f64 = Exp1.sample(&mut self.rng);
            let dist = (1.0 + e * depth / 4.0).min(depth);
            let px_ticks = match side {
                Side::Buy => (fair - dist).floor(),
                Side::Sell => (fair + dist).ceil(),
            };
            let price = Price((px_ticks.max(1.0) as i64) * self.tick);
            *next_ref += 1;
            self.live.push(*next_ref);
            FlowAction::Limit {
                order_ref: *next_ref,
                side,
                price,
                qty: self.size(),
            }
        } else if x < limit + market {
            // Informed flow: buy more often when the book is below the fair price.
            let lean = mid_ticks.map_or(0.0, |m| ((fair - m) / 2.0).tanh() * 0.4);
            let side = if self.rng.random::<f64>() < 0.5 + lean {
                Side::Buy
            } else {
                Side::Sell
            };
            FlowAction::Market {
                side,
                qty: self.size(),
            }
        } else {
            let i = self.rng.random_range(0..self.live.len());
            FlowAction::Cancel {
                order_ref: self.live.swap_remove(i),
            }
        }
    }
}

/// The order-flow simulator of all instruments of a node.
#[derive(Clone, Debug)]
pub struct MarketSimulator {
    flows: Vec<InstrumentFlow>,
    next_ref: u64,
    now: Nanos,
}

impl MarketSimulator {
    /// A simulator starting at time `start`. The same seed gives the same flow.
    pub fn new(seed: u64, start: Nanos, instruments: &[(InstrumentSpec, SimParams)]) -> Self {
        let flows = instruments
            .iter()
            .map(|(spec, params)| {
                let mut f = InstrumentFlow {
                    id: spec.id,
                    tick: spec.tick_size.raw().max(1),
                    lot: spec.lot_size.raw().max(1),
                    params: params.clone(),
                    rng: ChaCha8Rng::seed_from_u64(
                        seed ^ (u64::from(spec.id.0) + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                    ),
                    log_fair: (params.initial_price.raw().max(1) as f64).ln(),
                    volatile: false,
                    next_ts: start,
                    last_ts: start,
                    live: Vec::with_capacity(4096),
                };
                f.schedule(start);
                f
            })
            .collect();
        Self {
            flows,
            next_ref: 0,
            now: start,
        }
    }

    /// Initial resting orders so the book has depth before the first event: `levels`
    /// price levels per side around each fair price.
    pub fn seed_book(&mut self, levels: u32) -> Vec<FlowEvent> {
        let mut out = Vec::new();
        for f in &mut self.flows {
            let fair = f.fair_ticks().round() as i64;
            for d in 1..=i64::from(levels) {
                for side in [Side::Buy, Side::Sell] {
                    let px = match side {
                        Side::Buy => fair - d,
                        Side::Sell => fair + d,
                    };
                    self.next_ref += 1;
                    f.live.push(self.next_ref);
                    let qty = f.size();
                    out.push(FlowEvent {
                        ts: self.now,
                        instrument: f.id,
                        action: FlowAction::Limit {
                            order_ref: self.next_ref,
                            side,
                            price: Price(px.max(1) * f.tick),
                            qty,
                        },
                    });
                }
            }
        }
        out
    }

    /// Time of the next event.
    pub fn next_ts(&self) -> Nanos {
        self.flows
            .iter()
            .map(|f| f.next_ts)
            .min()
            .unwrap_or(Nanos::MAX)
    }

    /// Produces the next event; `mid` gives the venue's current mid (in raw price units)
    /// so market orders can lean towards the fair price.
    pub fn next_event(&mut self, mid: impl Fn(InstrumentId) -> Option<Price>) -> Option<FlowEvent> {
        let i = (0..self.flows.len()).min_by_key(|i| (self.flows[*i].next_ts, *i))?;
        let f = &mut self.flows[i];
        let ts = f.next_ts;
        f.evolve(ts.saturating_sub(f.last_ts));
        f.last_ts = ts;
        self.now = self.now.max(ts);
        let mid_ticks = mid(f.id).map(|p| p.raw() as f64 / f.tick as f64);
        let action = f.draw(mid_ticks, &mut self.next_ref);
        f.schedule(ts);
        Some(FlowEvent {
            ts,
            instrument: f.id,
            action,
        })
    }

    /// Current fair price of an instrument (raw units, rounded), for diagnostics.
    pub fn fair_price(&self, id: InstrumentId) -> Option<Price> {
        let f = self.flows.iter().find(|f| f.id == id)?;
        Some(Price(f.log_fair.exp().round() as i64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(seed: u64) -> MarketSimulator {
        let spec = InstrumentSpec::new(InstrumentId(0), "T", 2, 3, Price(10), Qty(10));
        let params = SimParams {
            volatility_bps: 2.0,
            jump_rate_per_min: 1.0,
            ..SimParams::typical(Price(6_000_000))
        };
        MarketSimulator::new(seed, 0, &[(spec, params)])
    }

    #[test]
    fn same_seed_same_flow() {
        let (mut a, mut b) = (setup(3), setup(3));
        for _ in 0..10_000 {
            assert_eq!(a.next_event(|_| None), b.next_event(|_| None));
        }
        let mut c = setup(4);
        let differs = (0..100).any(|_| a.next_event(|_| None) != c.next_event(|_| None));
        assert!(differs);
    }

    #[test]
    fn flow_is_on_grid_ordered_and_at_the_configured_rate() {
        let mut s = setup(1);
        let mut last = 0;
        let (mut limits, mut markets, mut cancels) = (0u32, 0u32, 0u32);
        let mut n = 0u64;
        while s.next_ts() < 10 * NANOS_PER_SEC {
            let e = s.next_event(|_| Some(Price(6_000_000))).unwrap();
            assert!(e.ts >= last);
            last = e.ts;
            n += 1;
            match e.action {
                FlowAction::Limit { price, qty, .. } => {
                    assert_eq!(price.raw() % 10, 0);
                    assert!(qty.raw() > 0 && qty.raw() % 10 == 0);
                    limits += 1;
                }
                FlowAction::Market { qty, .. } => {
                    assert!(qty.raw() > 0);
                    markets += 1;
                }
                FlowAction::Cancel { .. } => cancels += 1,
            }
        }
        // 10 s of at least calm-regime rates: >= 15k limits, >= 1.2k market orders.
        assert!(
            limits >= 12_000 && markets >= 900 && cancels > 1_000,
            "{limits} {markets} {cancels}"
        );
        assert!(n > 15_000);
    }
}
