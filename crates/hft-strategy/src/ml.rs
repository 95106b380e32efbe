//! The machine-learned strategy: book and trade-flow features into a logistic model
//! of the mid's next move over a horizon. It joins the touch (post-only) on the side
//! the model favours, up to a position limit, and learns online from the labels the
//! market hands it one horizon later.

use crate::params::MlParams;
use crate::signals::Features;
use crate::{Context, Strategy};
use hft_core::{InstrumentId, MarketEvent, MarketEventKind, Nanos, Qty, Side, TimeInForce};
use std::collections::VecDeque;

/// Samples waiting for their label; older ones are dropped beyond this.
const PENDING: usize = 4096;

/// The ML strategy (see [`MlParams`]).
pub struct MlTrader {
    id: InstrumentId,
    p: MlParams,
    features: Features,
    /// (time, mid, features) of samples whose label is not known yet.
    pending: VecDeque<(Nanos, f64, [f64; 4])>,
    next_sample: Nanos,
    last_mid: f64,
    /// Labels learned from.
    learned: u64,
    /// Last model probability of an up move.
    last_p: f64,
}

/// One sample period per this fraction of the horizon.
const SAMPLES_PER_HORIZON: u64 = 4;

impl MlTrader {
    /// The strategy on `id`.
    pub fn new(id: InstrumentId, params: MlParams) -> Self {
        Self {
            id,
            p: params,
            features: Features::new(50.0, 100.0),
            pending: VecDeque::with_capacity(PENDING),
            next_sample: 0,
            last_mid: 0.0,
            learned: 0,
            last_p: 0.5,
        }
    }

    /// Labels learned from online so far.
    pub fn learned(&self) -> u64 {
        self.learned
    }

    /// The model's last probability of an up move.
    pub fn last_probability(&self) -> f64 {
        self.last_p
    }

    fn on_sample(&mut self, ctx: &mut Context<'_>, mid: f64, x: [f64; 4]) {
        let now = ctx.now();
        let horizon = self.p.horizon_ms * 1_000_000;
        // Samples a horizon old get their label from the mid now.
        while let Some(&(t, m, fx)) = self.pending.front() {
            if t + horizon > now {
                break;
            }
            self.pending.pop_front();
            if mid != m && self.p.learning_rate > 0.0 {
                self.p
                    .model
                    .update(&fx, mid > m, self.p.learning_rate, 1e-4);
                self.learned += 1;
            }
        }
        if self.pending.len() == PENDING {
            self.pending.pop_front();
        }
        self.pending.push_back((now, mid, x));
    }

    /// Keeps at most one post-only order, at the touch on the side that moves the
    /// position towards `target`; cancels anything else.
    fn quote_toward(&self, ctx: &mut Context<'_>, target: i64) {
        let pos = ctx.position(self.id).qty.raw();
        let book = ctx.book(self.id);
        let want = if target > pos {
            book.best_bid().map(|(p, _)| (Side::Buy, p))
        } else if target < pos {
            book.best_ask().map(|(p, _)| (Side::Sell, p))
        } else {
            None
        };
        let mut keep = false;
        // Copied out (at most a few orders) so cancelling can borrow the context.
        let mut open = [None; 8];
        for (slot, o) in
            open.iter_mut().zip(ctx.open_orders().iter().filter(|o| {
                o.instrument == self.id && !o.status.is_terminal() && !o.cancel_pending
            }))
        {
            *slot = Some((o.cl_ord_id, o.side, o.price, o.status));
        }
        for (id, side, price, status) in open.into_iter().flatten() {
            if status == hft_core::OrderStatus::PendingNew {
                keep |= want.is_some_and(|(s, _)| s == side);
                continue;
            }
            if want == Some((side, price)) && !keep {
                keep = true;
            } else {
                ctx.cancel(id);
            }
        }
        if let (Some((side, price)), false) = (want, keep) {
            let spec = ctx.spec(self.id);
            let qty = crate::legs::round_lot(
                self.p.order_qty.raw().min((target - pos).abs()),
                spec.lot_size,
            );
            // Not an order the venue would refuse (and refuse again next event).
            if qty > 0 && spec.check_order(price, Qty(qty)).is_ok() {
                let _ = ctx.place(self.id, side, price, Qty(qty), TimeInForce::Gtc, true);
            }
        }
    }
}

impl Strategy for MlTrader {
    fn on_market(&mut self, ctx: &mut Context<'_>, ev: &MarketEvent) {
        if ev.instrument != self.id {
            return;
        }
        if let MarketEventKind::Trade { aggressor, qty, .. } = ev.kind {
            self.features
                .on_trade(aggressor == Side::Buy, qty.raw() as f64);
        }
        let book = ctx.book(self.id);
        let (Some((bid, _)), Some((ask, _))) = (book.best_bid(), book.best_ask()) else {
            return;
        };
        if bid >= ask {
            // A crossed moment: no features (training skips them too).
            return;
        }
        let mid = (bid.raw() as f64 + ask.raw() as f64) / 2.0;
        if mid != self.last_mid {
            self.features.on_mid(mid);
            self.last_mid = mid;
        }
        let tick = ctx.spec(self.id).tick_size.raw().max(1);
        let Some(x) = self.features.vector(ctx.book(self.id), tick) else {
            return;
        };
        if ctx.now() >= self.next_sample {
            self.next_sample =
                ctx.now() + (self.p.horizon_ms * 1_000_000 / SAMPLES_PER_HORIZON).max(1);
            self.on_sample(ctx, mid, x);
        }
        let p = self.p.model.predict(&x);
        self.last_p = p;
        let max = self.p.max_position.raw();
        let pos = ctx.position(self.id).qty.raw();
        let target = if p > self.p.threshold {
            max
        } else if p < 1.0 - self.p.threshold {
            -max
        } else {
            pos
        };
        self.quote_toward(ctx, target);
    }
}
