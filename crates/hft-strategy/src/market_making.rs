//! Avellaneda–Stoikov market making (Avellaneda & Stoikov, "High-frequency trading in a
//! limit order book", 2008): quote around a reservation price that leans against
//! inventory, with a spread set by risk aversion, volatility and order-arrival decay.
//!
//! Working units are ticks and seconds: σ² is estimated online as an EWMA of squared
//! mid changes per second, q is inventory in multiples of the quote size.

use crate::{Context, MarketMakingParams, Strategy};
use hft_core::{
    Fill, InstrumentId, MarketEvent, NANOS_PER_SEC, OpenOrder, Price, Qty, Side, TimeInForce,
    TradingState,
};

/// Mid changes needed before the volatility estimate is trusted enough to quote.
const WARMUP_SAMPLES: u32 = 20;

/// Online volatility estimate in ticks² per second.
#[derive(Clone, Debug)]
struct VolEstimator {
    halflife_ns: f64,
    var_per_s: f64,
    last_mid_x2: Option<i64>,
    last_ts: u64,
    samples: u32,
}

impl VolEstimator {
    fn new(halflife_s: f64) -> Self {
        Self {
            halflife_ns: halflife_s * NANOS_PER_SEC as f64,
            var_per_s: 0.0,
            last_mid_x2: None,
            last_ts: 0,
            samples: 0,
        }
    }

    /// Time-weighted EWMA: each observed squared change per elapsed second, weighted
    /// by how much time it covers, so bursts and lulls are both counted fairly.
    fn update(&mut self, mid_x2: i64, ts: u64, tick: i64) {
        let Some(prev) = self.last_mid_x2 else {
            self.last_mid_x2 = Some(mid_x2);
            self.last_ts = ts;
            return;
        };
        if mid_x2 == prev {
            return;
        }
        let dt = ts.saturating_sub(self.last_ts).max(1_000) as f64;
        let dticks = (mid_x2 - prev) as f64 / (2.0 * tick as f64);
        let inst = dticks * dticks / (dt / NANOS_PER_SEC as f64);
        let w = 1.0 - (-dt * std::f64::consts::LN_2 / self.halflife_ns).exp();
        self.var_per_s = if self.samples == 0 {
            inst * w.max(0.05)
        } else {
            self.var_per_s + w * (inst - self.var_per_s)
        };
        self.samples = self.samples.saturating_add(1);
        self.last_mid_x2 = Some(mid_x2);
        self.last_ts = ts;
    }

    fn ready(&self) -> bool {
        self.samples >= WARMUP_SAMPLES
    }
}

/// The quotes the model wants, in raw prices; `None` for a side it will not quote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quotes {
    /// Bid price.
    pub bid: Option<Price>,
    /// Ask price.
    pub ask: Option<Price>,
}

/// Avellaneda–Stoikov market maker on one instrument.
#[derive(Clone, Debug)]
pub struct MarketMaking {
    instrument: InstrumentId,
    params: MarketMakingParams,
    vol: VolEstimator,
    /// (2/γ)·ln(1 + γ/k): the inventory-free part of the spread, fixed by the parameters.
    base_spread: f64,
    /// Inputs of the last market-driven requote.
    last_inputs: Option<QuoteInputs>,
}

/// What the quoting decision depends on, compared to skip requotes that cannot change
/// anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct QuoteInputs {
    bid: Option<Price>,
    ask: Option<Price>,
    position: Qty,
    open: usize,
    cancels_pending: usize,
    state: TradingState,
}

impl MarketMaking {
    /// A market maker quoting `instrument`.
    pub fn new(instrument: InstrumentId, params: MarketMakingParams) -> Self {
        let vol = VolEstimator::new(params.vol_halflife_s);
        let g = params.risk_aversion;
        let base_spread = (2.0 / g) * (1.0 + g / params.liquidity).ln();
        Self {
            instrument,
            params,
            vol,
            base_spread,
            last_inputs: None,
        }
    }

    /// Parameters in force.
    pub fn params(&self) -> &MarketMakingParams {
        &self.params
    }

    /// The model's quotes for the current book and position; pure, so it is unit-tested
    /// without an engine.
    pub fn target_quotes(&self, ctx: &Context<'_>) -> Quotes {
        let none = Quotes {
            bid: None,
            ask: None,
        };
        let book = ctx.book(self.instrument);
        let (Some((best_bid, _)), Some((best_ask, _)), Some(mid_x2)) =
            (book.best_bid(), book.best_ask(), book.mid_x2())
        else {
            return none;
        };
        if !self.vol.ready() || best_bid >= best_ask {
            return none;
        }
        let spec = ctx.spec(self.instrument);
        let tick = spec.tick_size.raw();
        let p = &self.params;
        let pos = ctx.position(self.instrument).qty.raw();
        let q = pos as f64 / p.order_qty.raw().max(1) as f64;
        let g = p.risk_aversion;
        let var_tau = self.vol.var_per_s * p.horizon_s;
        let mid_ticks = mid_x2 as f64 / (2.0 * tick as f64);
        let reservation = mid_ticks - q * g * var_tau;
        let half_spread = (g * var_tau + self.base_spread) / 2.0;
        let half_spread = half_spread.max(0.5);
        let to_price = |ticks: f64| Price((ticks as i64).saturating_mul(tick));
        // Post-only quotes must not cross: clamp inside the opposite touch.
        let bid = to_price((reservation - half_spread).floor()).min(Price(best_ask.raw() - tick));
        let ask = to_price((reservation + half_spread).ceil()).max(Price(best_bid.raw() + tick));
        let max_inv = p.max_inventory.raw();
        let size = p.order_qty.raw();
        let reducing = ctx.trading_state() == TradingState::Reducing;
        let bid_ok = pos + size <= max_inv && (!reducing || pos < 0);
        let ask_ok = pos - size >= -max_inv && (!reducing || pos > 0);
        Quotes {
            bid: bid_ok.then_some(bid),
            ask: ask_ok.then_some(ask),
        }
    }

    /// Everything `target_quotes` and `work_side` read, except volatility (which only
    /// changes with the mid): equal inputs give equal actions.
    fn quote_inputs(&self, ctx: &Context<'_>) -> QuoteInputs {
        let book = ctx.book(self.instrument);
        let mine = || {
            ctx.open_orders()
                .iter()
                .filter(|o| o.instrument == self.instrument)
        };
        QuoteInputs {
            bid: book.best_bid().map(|b| b.0),
            ask: book.best_ask().map(|a| a.0),
            position: ctx.position(self.instrument).qty,
            open: mine().count(),
            cancels_pending: mine().filter(|o| o.cancel_pending).count(),
            state: ctx.trading_state(),
        }
    }

    fn requote(&mut self, ctx: &mut Context<'_>) {
        if ctx.trading_state() == TradingState::Halted {
            return;
        }
        let targets = self.target_quotes(ctx);
        let tick = ctx.spec(self.instrument).tick_size.raw();
        let threshold = i64::from(self.params.requote_ticks.max(1)) * tick;
        for (side, target) in [(Side::Buy, targets.bid), (Side::Sell, targets.ask)] {
            self.work_side(ctx, side, target, threshold);
        }
    }

    /// Keeps one quote per side: leave it if close enough to the target (its queue
    /// place is worth more than a tick), otherwise cancel and re-place.
    fn work_side(&self, ctx: &mut Context<'_>, side: Side, target: Option<Price>, threshold: i64) {
        let mut resting: Option<OpenOrder> = None;
        let mut extra = [None; 4];
        let mut n_extra = 0;
        for o in ctx
            .open_orders()
            .iter()
            .filter(|o| o.instrument == self.instrument && o.side == side)
        {
            if o.cancel_pending {
                // A cancel is in flight on this side: wait for it before placing more.
                return;
            }
            if resting.is_none() {
                resting = Some(*o);
            } else if n_extra < extra.len() {
                extra[n_extra] = Some(o.cl_ord_id);
                n_extra += 1;
            }
        }
        for id in extra.iter().flatten() {
            ctx.cancel(*id);
        }
        let qty: Qty = self.params.order_qty;
        match (resting, target) {
            (None, Some(px)) => {
                ctx.place(self.instrument, side, px, qty, TimeInForce::Gtc, true);
            }
            (Some(o), Some(px)) if (o.price.raw() - px.raw()).abs() >= threshold => {
                ctx.replace(o.cl_ord_id, px, qty, true);
            }
            (Some(o), None) => {
                ctx.cancel(o.cl_ord_id);
            }
            _ => {}
        }
    }
}

impl Strategy for MarketMaking {
    fn on_market(&mut self, ctx: &mut Context<'_>, event: &MarketEvent) {
        if event.instrument != self.instrument {
            return;
        }
        let tick = ctx.spec(self.instrument).tick_size.raw();
        if let Some(m) = ctx.book(self.instrument).mid_x2() {
            self.vol.update(m, event.ts_exchange, tick);
        }
        // Most messages change the book away from the touch: nothing the quotes depend
        // on moved, so there is nothing to do (the timer still requotes periodically).
        let key = self.quote_inputs(ctx);
        if self.last_inputs == Some(key) {
            return;
        }
        self.last_inputs = Some(key);
        self.requote(ctx);
    }

    fn on_fill(&mut self, ctx: &mut Context<'_>, _order: &OpenOrder, _fill: &Fill) {
        // Inventory changed: the reservation price moved with it.
        self.last_inputs = None;
        self.requote(ctx);
    }

    fn on_timer(&mut self, ctx: &mut Context<'_>) {
        self.requote(ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ActionBuffer, ContextParts};
    use hft_book::L2Book;
    use hft_core::{InstrumentSpec, Position, StrategyId};

    fn spec() -> InstrumentSpec {
        InstrumentSpec::new(InstrumentId(0), "T", 2, 0, Price(1), Qty(1))
    }

    fn params() -> MarketMakingParams {
        MarketMakingParams {
            risk_aversion: 0.1,
            liquidity: 0.5,
            horizon_s: 1.0,
            order_qty: Qty(1),
            max_inventory: Qty(5),
            requote_ticks: 1,
            vol_halflife_s: 10.0,
        }
    }

    fn quotes_with(position: i64) -> Quotes {
        let specs = [spec()];
        let mut book = L2Book::with_capacity(InstrumentId(0), 16);
        book.apply_level(Side::Buy, Price(9_990), Qty(10)).unwrap();
        book.apply_level(Side::Sell, Price(10_010), Qty(10))
            .unwrap();
        let books = [book];
        let positions = [Position {
            qty: Qty(position),
            ..Default::default()
        }];
        let mut seq = 0;
        let mut actions = ActionBuffer::with_capacity(8);
        let cache = hft_book::HotCache::new(1, hft_book::CacheSizes::default());
        let ctx = Context::new(ContextParts {
            now: 0,
            strategy: StrategyId(0),
            specs: &specs,
            books: &books,
            cache: &cache,
            positions: &positions,
            open_orders: &[],
            state: TradingState::Active,
            next_seq: &mut seq,
            actions: &mut actions,
        });
        let mut mm = MarketMaking::new(InstrumentId(0), params());
        mm.vol.samples = WARMUP_SAMPLES;
        mm.vol.var_per_s = 16.0;
        mm.target_quotes(&ctx)
    }

    #[test]
    fn flat_quotes_are_symmetric_around_mid() {
        let q = quotes_with(0);
        let (b, a) = (q.bid.unwrap().raw(), q.ask.unwrap().raw());
        assert_eq!(10_000 - b, a - 10_000, "bid {b} ask {a}");
        assert!(b < 10_000 && a > 10_000);
    }

    #[test]
    fn long_inventory_skews_quotes_down() {
        let flat = quotes_with(0);
        let long = quotes_with(3);
        assert!(long.bid.unwrap() < flat.bid.unwrap());
        assert!(long.ask.unwrap() < flat.ask.unwrap());
    }

    #[test]
    fn max_inventory_stops_the_growing_side() {
        let q = quotes_with(5);
        assert_eq!(q.bid, None);
        assert!(q.ask.is_some());
        let q = quotes_with(-5);
        assert_eq!(q.ask, None);
    }

    #[test]
    fn quotes_never_cross_the_touch() {
        for pos in -4..=4 {
            let q = quotes_with(pos);
            if let Some(b) = q.bid {
                assert!(b < Price(10_010));
            }
            if let Some(a) = q.ask {
                assert!(a > Price(9_990));
            }
        }
    }
}
