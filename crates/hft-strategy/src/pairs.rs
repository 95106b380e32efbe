//! Pairs statistical arbitrage: two instruments whose log prices move together, a
//! hedge ratio from rolling least squares or a Kalman filter, and trades on the
//! z-score of the spread only while a Dickey–Fuller test finds the spread stationary.

use crate::legs::{Touch, round_lot, trade_toward};
use crate::params::{HedgeMethod, PairsParams};
use crate::signals::{KalmanHedge, RollingOls, RollingStats, adf_stat};
use crate::{Context, Strategy};
use hft_core::{InstrumentId, MarketEvent, Nanos};

/// The pairs trader (see [`PairsParams`]).
pub struct PairsTrader {
    y: InstrumentId,
    p: PairsParams,
    ols: RollingOls,
    kalman: Option<KalmanHedge>,
    spread: RollingStats,
    /// Residuals of the window, reused for each cointegration test.
    resid: Vec<f64>,
    next_sample: Nanos,
    samples: u64,
    /// Last ADF statistic of the window's spread.
    adf: Option<f64>,
    /// +1 long the spread (long y, short x), -1 short it, 0 flat.
    state: i8,
    /// Size of the x leg fixed when the position opened (raw quantity).
    x_qty: i64,
}

impl PairsTrader {
    /// A pairs trader on `y` (its own instrument) and `params.other`.
    pub fn new(y: InstrumentId, params: PairsParams) -> Self {
        let kalman = match params.hedge {
            HedgeMethod::Ols => None,
            HedgeMethod::Kalman { delta } => Some(KalmanHedge::new(delta, 1e-4)),
        };
        Self {
            y,
            ols: RollingOls::new(params.window),
            spread: RollingStats::new(params.window),
            resid: Vec::with_capacity(params.window),
            kalman,
            p: params,
            next_sample: 0,
            samples: 0,
            adf: None,
            state: 0,
            x_qty: 0,
        }
    }

    /// The last cointegration statistic (ADF on the window's spread), if tested yet.
    pub fn adf(&self) -> Option<f64> {
        self.adf
    }

    /// +1 long the spread, -1 short, 0 flat.
    pub fn state(&self) -> i8 {
        self.state
    }

    fn sample(&mut self, ctx: &mut Context<'_>) {
        let (y, x) = (self.y, self.p.other);
        let (Some(ty), Some(tx)) = (Touch::of(ctx, y), Touch::of(ctx, x)) else {
            return;
        };
        let (py, px) = (
            ty.mid(ctx.spec(y).price_scale),
            tx.mid(ctx.spec(x).price_scale),
        );
        let (ly, lx) = (py.ln(), px.ln());
        self.ols.push(lx, ly);
        self.samples += 1;
        // The Kalman spread is taken against the state before this sample (after
        // it, the filter has already absorbed most of the move).
        let fit = match &mut self.kalman {
            Some(k) => {
                let before = k.state();
                k.update(lx, ly).map(|_| before)
            }
            None => self.ols.fit(),
        };
        let Some((alpha, beta)) = fit else {
            return;
        };
        let s = ly - alpha - beta * lx;
        let z = self.spread.z(s);
        self.spread.push(s);
        // Test cointegration on the window once full, then every quarter window.
        let every = (self.p.window as u64 / 4).max(1);
        if self.ols.is_full() && self.samples % every == 0 {
            if let Some((a, b)) = self.ols.fit() {
                self.ols.residuals_into(a, b, &mut self.resid);
                self.adf = adf_stat(&self.resid, self.p.adf_lags);
            }
        }
        let cointegrated = self.adf.is_some_and(|t| t < self.p.adf_critical);
        let Some(z) = z else {
            return;
        };
        if self.state == 0 {
            // Hedge the y notional by beta in x (beta of log prices is an elasticity:
            // a move of 1% in x goes with beta% in y). A non-positive beta is no hedge,
            // and a hedge too small to trade leaves y naked: neither opens.
            let y_qty = self.p.order_qty.raw() as f64;
            let x_qty = round_lot(
                (beta * y_qty * py / px).round() as i64,
                ctx.spec(self.p.other).lot_size,
            );
            if cointegrated && z.abs() > self.p.entry_z && beta > 0.0 && x_qty > 0 {
                self.state = if z > 0.0 { -1 } else { 1 };
                self.x_qty = x_qty;
            }
        } else if z.abs() < self.p.exit_z {
            self.state = 0;
        }
    }

    fn trade(&mut self, ctx: &mut Context<'_>) {
        let s = i64::from(self.state);
        let y_target = s * self.p.order_qty.raw();
        let x_target = -s * self.x_qty;
        trade_toward(ctx, self.y, y_target);
        trade_toward(ctx, self.p.other, x_target);
    }

    /// Samples and trades once per sample period: an order that was refused is
    /// tried again a period later, not on every event.
    fn step(&mut self, ctx: &mut Context<'_>) {
        if ctx.now() >= self.next_sample {
            self.next_sample = ctx.now() + self.p.sample_ms * 1_000_000;
            self.sample(ctx);
            self.trade(ctx);
        }
    }
}

impl Strategy for PairsTrader {
    fn on_market(&mut self, ctx: &mut Context<'_>, ev: &MarketEvent) {
        if ev.instrument == self.y || ev.instrument == self.p.other {
            self.step(ctx);
        }
    }

    fn on_timer(&mut self, ctx: &mut Context<'_>) {
        self.step(ctx);
    }
}
