//! Numerical building blocks for statistical-arbitrage and ML strategies: rolling
//! regressions and statistics, a Kalman hedge ratio, the ADF stationarity test, EWMAs,
//! order-book features and a small logistic model.
//!
//! Everything here runs on the engine thread between market events, so the per-sample
//! methods never allocate (rings are sized in `new`) and never panic: a non-finite
//! input is ignored or yields `None`, because one bad tick must not take a strategy
//! down or poison its state for the rest of the session.

use hft_book::L2Book;

/// Largest ring any rolling window allocates (2^24 samples), so that a configuration
/// typo cannot ask the allocator for an impossible buffer and abort the process.
const MAX_WINDOW: usize = 1 << 24;

/// Rolling OLS y = alpha + beta * x over the last `window` samples (ring buffer, running sums,
/// recompute sums from the ring every `window` pushes to bound floating drift).
///
/// It estimates the hedge ratio of a pair over a recent window so the spread adapts to
/// regime changes. Sums are kept about a reference point (re-centred at each recompute)
/// so that prices far from zero do not lose their variance to cancellation.
#[derive(Clone, Debug)]
pub struct RollingOls {
    xs: Vec<f64>,
    ys: Vec<f64>,
    /// Next slot to write.
    head: usize,
    len: usize,
    pushes: usize,
    /// Reference point the sums are taken about.
    kx: f64,
    ky: f64,
    sx: f64,
    sy: f64,
    sxx: f64,
    sxy: f64,
}

impl RollingOls {
    /// A regression over the last `window` samples; `window` is clamped to `[2, 2^24]`
    /// because a line needs two points and the ring is allocated here, once.
    pub fn new(window: usize) -> Self {
        let window = window.clamp(2, MAX_WINDOW);
        Self {
            xs: vec![0.0; window],
            ys: vec![0.0; window],
            head: 0,
            len: 0,
            pushes: 0,
            kx: 0.0,
            ky: 0.0,
            sx: 0.0,
            sy: 0.0,
            sxx: 0.0,
            sxy: 0.0,
        }
    }

    /// Adds a sample, evicting the oldest once full; non-finite inputs are ignored so a
    /// bad print cannot poison the sums.
    pub fn push(&mut self, x: f64, y: f64) {
        if !(x.is_finite() && y.is_finite()) {
            return;
        }
        let cap = self.xs.len();
        if self.len == 0 {
            (self.kx, self.ky) = (x, y);
        }
        if self.len == cap {
            let (ox, oy) = (self.xs[self.head] - self.kx, self.ys[self.head] - self.ky);
            self.sx -= ox;
            self.sy -= oy;
            self.sxx -= ox * ox;
            self.sxy -= ox * oy;
        } else {
            self.len += 1;
        }
        self.xs[self.head] = x;
        self.ys[self.head] = y;
        self.head = (self.head + 1) % cap;
        let (dx, dy) = (x - self.kx, y - self.ky);
        self.sx += dx;
        self.sy += dy;
        self.sxx += dx * dx;
        self.sxy += dx * dy;
        self.pushes += 1;
        if self.pushes % cap == 0 {
            self.recompute();
        }
    }

    /// Rebuilds the sums from the ring about the current means, discarding the rounding
    /// error that add/subtract updates accumulate.
    fn recompute(&mut self) {
        let n = self.len as f64;
        let (mx, my) = (
            self.iter().map(|(x, _)| x).sum::<f64>() / n,
            self.iter().map(|(_, y)| y).sum::<f64>() / n,
        );
        if !(mx.is_finite() && my.is_finite()) {
            return;
        }
        (self.kx, self.ky) = (mx, my);
        let (mut sx, mut sy, mut sxx, mut sxy) = (0.0, 0.0, 0.0, 0.0);
        for (x, y) in self.iter() {
            let (dx, dy) = (x - mx, y - my);
            sx += dx;
            sy += dy;
            sxx += dx * dx;
            sxy += dx * dy;
        }
        (self.sx, self.sy, self.sxx, self.sxy) = (sx, sy, sxx, sxy);
    }

    /// Samples held, oldest first.
    fn iter(&self) -> impl Iterator<Item = (f64, f64)> + '_ {
        let cap = self.xs.len();
        let start = (self.head + cap - self.len) % cap;
        (0..self.len).map(move |i| {
            let j = (start + i) % cap;
            (self.xs[j], self.ys[j])
        })
    }

    /// Number of samples held (at most the window), to tell a warm estimate from a cold one.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True before the first sample, when there is nothing to fit.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// True once the window is full, i.e. the fit uses as much history as configured.
    pub fn is_full(&self) -> bool {
        self.len == self.xs.len()
    }

    /// `(alpha, beta)` of the least-squares line; `None` with fewer than two samples or
    /// when x barely varies, since beta is then meaningless rather than merely noisy.
    pub fn fit(&self) -> Option<(f64, f64)> {
        if self.len < 2 {
            return None;
        }
        let n = self.len as f64;
        let (mx, my) = (self.sx / n, self.sy / n);
        let var_x = self.sxx - self.sx * mx;
        let cov = self.sxy - self.sx * my;
        if !(var_x > 1e-12 * self.sxx && var_x > 0.0) {
            return None;
        }
        let beta = cov / var_x;
        let alpha = (self.ky + my) - beta * (self.kx + mx);
        (alpha.is_finite() && beta.is_finite()).then_some((alpha, beta))
    }

    /// Residuals y - alpha - beta x of the samples held, oldest first, written into `out` (cleared first).
    ///
    /// The caller owns `out` so it can reuse one buffer (e.g. for [`adf_stat`]) without
    /// allocating per call once its capacity covers the window.
    pub fn residuals_into(&self, alpha: f64, beta: f64, out: &mut Vec<f64>) {
        out.clear();
        out.extend(self.iter().map(|(x, y)| y - alpha - beta * x));
    }
}

/// Kalman filter on a time-varying hedge (state [alpha, beta] as a random walk; observation y = alpha + beta x + noise).
///
/// Unlike a rolling OLS it has no window edge: every observation updates the hedge,
/// and the standardized innovation is a ready-made spread z-score.
#[derive(Clone, Debug)]
pub struct KalmanHedge {
    theta: [f64; 2],
    /// State covariance, symmetric.
    p: [[f64; 2]; 2],
    /// Process noise variance per state component, `delta / (1 - delta)`.
    vw: f64,
    obs_var: f64,
}

impl KalmanHedge {
    /// `delta` = state drift per step relative (e.g. 1e-4; Vw = delta/(1-delta) * I), `obs_var` = observation noise variance R.
    ///
    /// A `delta` outside `(0, 1)` is replaced by 1e-4 and a non-positive or non-finite
    /// `obs_var` by 1e-3, so a bad config yields a working filter, not NaNs. The state
    /// starts at zero with unit covariance, which the first observations quickly override.
    pub fn new(delta: f64, obs_var: f64) -> Self {
        let delta = if delta > 0.0 && delta < 1.0 {
            delta
        } else {
            1e-4
        };
        let obs_var = if obs_var > 0.0 && obs_var.is_finite() {
            obs_var
        } else {
            1e-3
        };
        Self {
            theta: [0.0, 0.0],
            p: [[1.0, 0.0], [0.0, 1.0]],
            vw: delta / (1.0 - delta),
            obs_var,
        }
    }

    /// One observation; returns (alpha, beta, z) where z is the innovation divided by its predicted std (standardized forecast error); None for non-finite input.
    ///
    /// z is computed from the prediction made before seeing `y`, so it is an honest
    /// out-of-sample signal. If the update would produce a non-finite state (absurd
    /// magnitudes) it is skipped and `None` returned, leaving the filter usable.
    pub fn update(&mut self, x: f64, y: f64) -> Option<(f64, f64, f64)> {
        if !(x.is_finite() && y.is_finite()) {
            return None;
        }
        // Predict: the state is a random walk, so only its covariance grows.
        let r = [
            [self.p[0][0] + self.vw, self.p[0][1]],
            [self.p[1][0], self.p[1][1] + self.vw],
        ];
        let f = [1.0, x];
        let e = y - (self.theta[0] + self.theta[1] * x);
        // R F' and the innovation variance Q = F R F' + Ve.
        let rf = [r[0][0] + r[0][1] * x, r[1][0] + r[1][1] * x];
        let q = f[0] * rf[0] + f[1] * rf[1] + self.obs_var;
        if !(q > 0.0 && q.is_finite() && e.is_finite()) {
            return None;
        }
        let k = [rf[0] / q, rf[1] / q];
        let theta = [self.theta[0] + k[0] * e, self.theta[1] + k[1] * e];
        // P = R - K F R = R - (R F')(R F')' / Q, symmetrised against rounding.
        let p00 = r[0][0] - k[0] * rf[0];
        let p11 = r[1][1] - k[1] * rf[1];
        let p01 = 0.5 * ((r[0][1] - k[0] * rf[1]) + (r[1][0] - k[1] * rf[0]));
        let z = e / q.sqrt();
        let all_finite = [theta[0], theta[1], p00, p01, p11, z]
            .iter()
            .all(|v| v.is_finite());
        if !all_finite {
            return None;
        }
        self.theta = theta;
        self.p = [[p00.max(0.0), p01], [p01, p11.max(0.0)]];
        Some((theta[0], theta[1], z))
    }

    /// The current `(alpha, beta)`, for sizing the hedge leg between observations.
    pub fn state(&self) -> (f64, f64) {
        (self.theta[0], self.theta[1])
    }
}

/// Rolling mean / standard deviation of a value over a window (ring).
///
/// The usual z-score normaliser for a spread; sums are re-centred every `window`
/// pushes so that float drift stays bounded over a long session.
#[derive(Clone, Debug)]
pub struct RollingStats {
    ring: Vec<f64>,
    head: usize,
    len: usize,
    pushes: usize,
    /// Reference point the sums are taken about.
    k: f64,
    s: f64,
    ss: f64,
}

impl RollingStats {
    /// Statistics over the last `window` values; `window` is clamped to `[2, 2^24]`
    /// since a spread needs two samples, and the ring is allocated here, once.
    pub fn new(window: usize) -> Self {
        Self {
            ring: vec![0.0; window.clamp(2, MAX_WINDOW)],
            head: 0,
            len: 0,
            pushes: 0,
            k: 0.0,
            s: 0.0,
            ss: 0.0,
        }
    }

    /// Adds a value, evicting the oldest once full; non-finite values are ignored.
    pub fn push(&mut self, v: f64) {
        if !v.is_finite() {
            return;
        }
        let cap = self.ring.len();
        if self.len == 0 {
            self.k = v;
        }
        if self.len == cap {
            let o = self.ring[self.head] - self.k;
            self.s -= o;
            self.ss -= o * o;
        } else {
            self.len += 1;
        }
        self.ring[self.head] = v;
        self.head = (self.head + 1) % cap;
        let d = v - self.k;
        self.s += d;
        self.ss += d * d;
        self.pushes += 1;
        if self.pushes % cap == 0 {
            let n = self.len as f64;
            let m = self.ring[..self.len].iter().sum::<f64>() / n;
            if m.is_finite() {
                self.k = m;
                self.s = self.ring[..self.len].iter().map(|v| v - m).sum();
                self.ss = self.ring[..self.len]
                    .iter()
                    .map(|v| (v - m) * (v - m))
                    .sum();
            }
        }
    }

    /// Number of values held (at most the window).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True before the first value.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Mean of the values held; `None` when empty.
    pub fn mean(&self) -> Option<f64> {
        (self.len > 0).then(|| self.k + self.s / self.len as f64)
    }

    /// Sample standard deviation (n - 1 denominator); `None` with fewer than two values.
    pub fn std(&self) -> Option<f64> {
        if self.len < 2 {
            return None;
        }
        let n = self.len as f64;
        let var = ((self.ss - self.s * self.s / n) / (n - 1.0)).max(0.0);
        let sd = var.sqrt();
        sd.is_finite().then_some(sd)
    }

    /// `(v - mean) / std`; `None` for a non-finite `v` or when the std is ~0 relative
    /// to the mean, where a z-score would be pure rounding noise.
    pub fn z(&self, v: f64) -> Option<f64> {
        let (m, sd) = (self.mean()?, self.std()?);
        if !v.is_finite() || sd <= 1e-12 * (1.0 + m.abs()) {
            return None;
        }
        let z = (v - m) / sd;
        z.is_finite().then_some(z)
    }
}

/// Augmented Dickey-Fuller t-statistic (regression of diff(y)_t on a constant, y_{t-1} and `lags` lagged differences; returns the t-stat of the y_{t-1} coefficient). None if too few points (need > lags + 3 + a few) or a singular system. Solve the small normal equations with Gaussian elimination with partial pivoting (write it; dimension <= lags + 2).
///
/// The stationarity check behind pair selection: compare against [`ADF_CRIT_5PCT`] for a
/// raw series or [`EG_CRIT_5PCT`] for regression residuals. Needs at least
/// `lags + 7` usable differences; any non-finite point gives `None`. It allocates
/// (k x k system), so call it on a timer, not per tick.
pub fn adf_stat(series: &[f64], lags: usize) -> Option<f64> {
    let k = lags.checked_add(2)?;
    let n = series.len().checked_sub(1)?.checked_sub(lags)?;
    if n < k.checked_add(5)? || series.iter().any(|v| !v.is_finite()) {
        return None;
    }
    // The t-stat of y_{t-1} is invariant to shifting it (the constant absorbs the
    // shift), so centre it for a better-conditioned system.
    let mean = series.iter().sum::<f64>() / series.len() as f64;
    let dy = |t: usize| series[t] - series[t - 1];
    // Regressors of observation t (t = lags+1 .. len-1): [1, y_{t-1}, dy_{t-1}, ..].
    let row = |t: usize, j: usize| match j {
        0 => 1.0,
        1 => series[t - 1] - mean,
        _ => dy(t - (j - 1)),
    };
    let ts = lags + 1..series.len();
    let mut a = vec![0.0; k * k];
    let mut b = vec![0.0; k];
    for t in ts.clone() {
        for i in 0..k {
            let ri = row(t, i);
            b[i] += ri * dy(t);
            for j in 0..k {
                a[i * k + j] += ri * row(t, j);
            }
        }
    }
    let mut e1 = vec![0.0; k];
    e1[1] = 1.0;
    let (coef, inv_col) = solve2(a, k, b, e1)?;
    let ssr: f64 = ts
        .map(|t| {
            let fit: f64 = (0..k).map(|j| coef[j] * row(t, j)).sum();
            (dy(t) - fit).powi(2)
        })
        .sum();
    let sigma2 = ssr / (n - k) as f64;
    let se = (sigma2 * inv_col[1]).sqrt();
    let t = coef[1] / se;
    (se > 0.0 && t.is_finite()).then_some(t)
}

/// Solves `a x = b` and `a z = c` (`a` is k x k, row-major) by Gaussian elimination with
/// partial pivoting; `None` if a pivot is negligible against the matrix scale.
fn solve2(
    mut a: Vec<f64>,
    k: usize,
    mut b: Vec<f64>,
    mut c: Vec<f64>,
) -> Option<(Vec<f64>, Vec<f64>)> {
    let scale = a.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    if !(scale > 0.0 && scale.is_finite()) {
        return None;
    }
    for col in 0..k {
        let piv =
            (col..k).max_by(|&i, &j| a[i * k + col].abs().total_cmp(&a[j * k + col].abs()))?;
        if a[piv * k + col].abs() <= 1e-13 * scale {
            return None;
        }
        if piv != col {
            for j in 0..k {
                a.swap(piv * k + j, col * k + j);
            }
            b.swap(piv, col);
            c.swap(piv, col);
        }
        for i in col + 1..k {
            let f = a[i * k + col] / a[col * k + col];
            for j in col..k {
                a[i * k + j] -= f * a[col * k + j];
            }
            b[i] -= f * b[col];
            c[i] -= f * c[col];
        }
    }
    for i in (0..k).rev() {
        for j in i + 1..k {
            b[i] -= a[i * k + j] * b[j];
            c[i] -= a[i * k + j] * c[j];
        }
        b[i] /= a[i * k + i];
        c[i] /= a[i * k + i];
    }
    Some((b, c))
}

/// MacKinnon 5% critical value of the ADF test with a constant (about -2.86).
///
/// An ADF statistic below it rejects a unit root: the series mean-reverts.
pub const ADF_CRIT_5PCT: f64 = -2.86;

/// 5% critical value of the Engle-Granger residual test for two variables (about -3.34).
///
/// Stricter than [`ADF_CRIT_5PCT`] because the residuals come from a fitted hedge, which
/// already makes them look more stationary than they are.
pub const EG_CRIT_5PCT: f64 = -3.34;

/// Exponentially weighted mean with a half-life in samples.
///
/// O(1) state smoothing for flow, volatility and similar noisy signals; a half-life is
/// easier to reason about than a raw decay factor.
#[derive(Clone, Debug)]
pub struct Ewma {
    alpha: f64,
    value: Option<f64>,
}

impl Ewma {
    /// An EWMA whose weight on a sample halves every `halflife` samples. A non-positive or
    /// NaN half-life means no smoothing (the value is the last sample); an infinite one
    /// keeps the first sample forever.
    pub fn new(halflife: f64) -> Self {
        let alpha = if halflife > 0.0 {
            1.0 - 0.5f64.powf(1.0 / halflife)
        } else {
            1.0
        };
        Self { alpha, value: None }
    }

    /// Folds in a sample and returns the new mean. The first sample sets the mean (no
    /// bias toward zero). A non-finite sample is ignored and the current mean returned,
    /// or NaN if there is none yet.
    pub fn push(&mut self, v: f64) -> f64 {
        if v.is_finite() {
            let next = match self.value {
                Some(m) => m + self.alpha * (v - m),
                None => v,
            };
            if next.is_finite() {
                self.value = Some(next);
            }
        }
        self.value.unwrap_or(f64::NAN)
    }

    /// The current mean; `None` before the first finite sample.
    pub fn value(&self) -> Option<f64> {
        self.value
    }
}

/// Names of the model features, in order.
///
/// The model file stores them so that a model trained on another feature set is
/// refused at load time instead of silently trading on misaligned inputs.
pub const FEATURE_NAMES: [&str; 4] = [
    "imbalance",
    "microprice_offset_ticks",
    "trade_flow",
    "volatility_bps",
];

/// Book and trade-flow features of one instrument, updated incrementally.
///
/// Trade flow and volatility need history the book does not keep, so they are folded
/// in event by event here; book features are read fresh in [`vector`](Self::vector).
#[derive(Clone, Debug)]
pub struct Features {
    signed_flow: Ewma,
    abs_flow: Ewma,
    var_bps2: Ewma,
    last_mid: Option<f64>,
}

impl Features {
    /// `flow_halflife` and `vol_halflife` in events (trades for flow, mid changes for volatility).
    pub fn new(flow_halflife: f64, vol_halflife: f64) -> Self {
        Self {
            signed_flow: Ewma::new(flow_halflife),
            abs_flow: Ewma::new(flow_halflife),
            var_bps2: Ewma::new(vol_halflife),
            last_mid: None,
        }
    }

    /// A trade: aggressor sign (+1 buy aggressor, -1 sell) times quantity (any positive scale) into an EWMA of signed flow normalised by an EWMA of absolute flow, so trade_flow is in [-1, 1].
    ///
    /// A non-positive or non-finite quantity is ignored.
    pub fn on_trade(&mut self, buy_aggressor: bool, qty: f64) {
        if !(qty > 0.0 && qty.is_finite()) {
            return;
        }
        let sign = if buy_aggressor { 1.0 } else { -1.0 };
        self.signed_flow.push(sign * qty);
        self.abs_flow.push(qty);
    }

    /// A book update: mid (f64 price) changes feed an EWMA of squared log returns in bps^2; volatility_bps is its sqrt.
    ///
    /// An unchanged mid is not an event (it would dilute volatility with book noise);
    /// a non-positive or non-finite mid is ignored.
    pub fn on_mid(&mut self, mid: f64) {
        if !(mid > 0.0 && mid.is_finite()) {
            return;
        }
        if let Some(prev) = self.last_mid
            && prev != mid
        {
            let r = (mid / prev).ln() * 1e4;
            if r.is_finite() {
                self.var_bps2.push(r * r);
            }
        }
        self.last_mid = Some(mid);
    }

    /// Signed over absolute flow EWMA, 0 before any trade.
    fn trade_flow(&self) -> f64 {
        match (self.signed_flow.value(), self.abs_flow.value()) {
            (Some(s), Some(a)) if a > 0.0 => (s / a).clamp(-1.0, 1.0),
            _ => 0.0,
        }
    }

    /// The current feature vector from the top of `book` (hft_book::L2Book: use best_bid()/best_ask() returning Option<(Price, Qty)> with .raw() i64 values, and microprice()), `tick` = tick size in raw price units (i64 > 0): imbalance = (bidq-askq)/(bidq+askq); microprice_offset_ticks = (microprice - mid)/tick; trade_flow; volatility_bps. None if a side is empty.
    ///
    /// Ordered as [`FEATURE_NAMES`]. A non-positive `tick` is taken as 1 raw unit.
    pub fn vector(&self, book: &L2Book, tick: i64) -> Option<[f64; 4]> {
        let (bid, bid_q) = book.best_bid()?;
        let (ask, ask_q) = book.best_ask()?;
        let micro = book.microprice()?;
        let (bq, aq) = (bid_q.raw() as f64, ask_q.raw() as f64);
        if bq + aq <= 0.0 {
            return None;
        }
        let mid = 0.5 * (bid.raw() as f64 + ask.raw() as f64);
        let tick = tick.max(1) as f64;
        let vol = self.var_bps2.value().unwrap_or(0.0).max(0.0).sqrt();
        Some([
            (bq - aq) / (bq + aq),
            (micro.raw() as f64 - mid) / tick,
            self.trade_flow(),
            vol,
        ])
    }
}

/// Logistic regression on standardised features: the model file the `hft train` command writes and the ML strategy loads.
///
/// Small enough to evaluate in nanoseconds on the hot path and to update online, and
/// its JSON form is human-readable for review before deployment.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LogisticModel {
    /// Feature names, must equal [`FEATURE_NAMES`] so inputs line up with weights.
    pub feature_names: Vec<String>,
    /// Per-feature mean subtracted before weighting.
    pub means: Vec<f64>,
    /// Per-feature scale divided by before weighting (positive).
    pub stds: Vec<f64>,
    /// Weights on the standardised features.
    pub weights: Vec<f64>,
    /// Intercept (log-odds at the feature means).
    pub bias: f64,
}

impl Default for LogisticModel {
    fn default() -> Self {
        Self::new()
    }
}

/// Raw features standardised by the model's means and stds.
fn standardise<'a>(
    x: &'a [f64],
    means: &'a [f64],
    stds: &'a [f64],
) -> impl Iterator<Item = f64> + 'a {
    x.iter().zip(means).zip(stds).map(|((x, m), s)| (x - m) / s)
}

/// Numerically stable logistic function.
fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

impl LogisticModel {
    /// Zero weights, identity standardisation (means 0, stds 1) for `FEATURE_NAMES`.
    ///
    /// Predicts 0.5 everywhere: a neutral starting point for online learning.
    pub fn new() -> Self {
        let n = FEATURE_NAMES.len();
        Self {
            feature_names: FEATURE_NAMES.iter().map(|s| (*s).to_string()).collect(),
            means: vec![0.0; n],
            stds: vec![1.0; n],
            weights: vec![0.0; n],
            bias: 0.0,
        }
    }

    /// Log-odds for raw features, `None` on a length mismatch or a non-finite result.
    fn logit(&self, x: &[f64]) -> Option<f64> {
        let n = self.weights.len();
        if x.len() != n || self.means.len() != n || self.stds.len() != n {
            return None;
        }
        let z = self.bias
            + (self.weights.iter())
                .zip(standardise(x, &self.means, &self.stds))
                .map(|(w, s)| w * s)
                .sum::<f64>();
        z.is_finite().then_some(z)
    }

    /// Probability that the label is true for raw (unstandardised) features x. Non-finite -> 0.5.
    ///
    /// A length mismatch also gives 0.5: no opinion rather than a panic.
    pub fn predict(&self, x: &[f64]) -> f64 {
        self.logit(x).map_or(0.5, sigmoid)
    }

    /// One SGD step of log-loss with L2 penalty `l2` at learning rate `lr` (online learning in the strategy).
    ///
    /// Skipped (no change) for unusable input or if the step would make a parameter
    /// non-finite, so the live model cannot be corrupted by one bad sample.
    pub fn update(&mut self, x: &[f64], y: bool, lr: f64, l2: f64) {
        let Some(z) = self.logit(x) else { return };
        if !(lr.is_finite() && l2.is_finite()) {
            return;
        }
        let g = sigmoid(z) - f64::from(u8::from(y));
        let next = |w: f64, s: f64| w - lr * (g * s + l2 * w);
        let ok = (self.weights.iter())
            .zip(standardise(x, &self.means, &self.stds))
            .all(|(&w, s)| next(w, s).is_finite())
            && (self.bias - lr * g).is_finite();
        if !ok {
            return;
        }
        for (w, s) in (self.weights.iter_mut()).zip(standardise(x, &self.means, &self.stds)) {
            *w = next(*w, s);
        }
        self.bias -= lr * g;
    }

    /// Fit by full-batch gradient descent for `epochs` over (x, y) rows, first setting means/stds from the rows (std floor 1e-12 -> 1).
    ///
    /// Starts from zero weights for [`FEATURE_NAMES`]; rows with a non-finite feature are
    /// skipped, and only `min(xs.len(), ys.len())` rows are used. The bias is not
    /// penalised.
    pub fn fit(&mut self, xs: &[[f64; 4]], ys: &[bool], epochs: usize, lr: f64, l2: f64) {
        *self = Self::new();
        let rows = || {
            xs.iter()
                .zip(ys)
                .filter(|(x, _)| x.iter().all(|v| v.is_finite()))
        };
        let n = rows().count();
        if n == 0 || !(lr.is_finite() && l2.is_finite()) {
            return;
        }
        let nf = n as f64;
        for i in 0..4 {
            let m = rows().map(|(x, _)| x[i]).sum::<f64>() / nf;
            let var = rows().map(|(x, _)| (x[i] - m).powi(2)).sum::<f64>() / nf;
            let sd = var.sqrt();
            self.means[i] = if m.is_finite() { m } else { 0.0 };
            self.stds[i] = if sd.is_finite() && sd >= 1e-12 {
                sd
            } else {
                1.0
            };
        }
        for _ in 0..epochs {
            let (mut gw, mut gb) = ([0.0; 4], 0.0);
            for (x, &y) in rows() {
                let g = self.predict(x) - f64::from(u8::from(y));
                for (gw, s) in gw.iter_mut().zip(standardise(x, &self.means, &self.stds)) {
                    *gw += g * s;
                }
                gb += g;
            }
            for (w, gw) in self.weights.iter_mut().zip(gw) {
                *w -= lr * (gw / nf + l2 * *w);
            }
            self.bias -= lr * gb / nf;
        }
    }

    /// Mean log-loss and accuracy (threshold 0.5) on rows.
    ///
    /// Probabilities are clipped to `[1e-15, 1 - 1e-15]` so one confident miss cannot
    /// make the loss infinite. `(NaN, NaN)` with no rows.
    pub fn evaluate(&self, xs: &[[f64; 4]], ys: &[bool]) -> (f64, f64) {
        let (mut loss, mut hits, mut n) = (0.0, 0usize, 0usize);
        for (x, &y) in xs.iter().zip(ys) {
            let p = self.predict(x).clamp(1e-15, 1.0 - 1e-15);
            loss -= if y { p.ln() } else { (1.0 - p).ln() };
            hits += usize::from((p >= 0.5) == y);
            n += 1;
        }
        if n == 0 {
            return (f64::NAN, f64::NAN);
        }
        (loss / n as f64, hits as f64 / n as f64)
    }

    /// The model as pretty JSON, the format [`from_json`](Self::from_json) reads back.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Parse and validate (lengths match FEATURE_NAMES and each other, names equal FEATURE_NAMES, all finite, stds > 0); error message says what is wrong and how to fix it.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let m: Self = serde_json::from_str(text).map_err(|e| {
            format!(
                "model file is not a valid logistic model ({e}); expected a JSON object with \
                 feature_names, means, stds, weights (arrays of finite numbers) and bias: \
                 regenerate it with `hft train`"
            )
        })?;
        let want = FEATURE_NAMES.len();
        let retrain = "retrain the model with `hft train` for this build";
        for (name, len) in [
            ("feature_names", m.feature_names.len()),
            ("means", m.means.len()),
            ("stds", m.stds.len()),
            ("weights", m.weights.len()),
        ] {
            if len != want {
                return Err(format!(
                    "model field `{name}` has {len} entries but this build uses {want} \
                     features {FEATURE_NAMES:?}; {retrain}"
                ));
            }
        }
        if m.feature_names
            .iter()
            .zip(FEATURE_NAMES)
            .any(|(a, b)| a != b)
        {
            return Err(format!(
                "model features {:?} differ from this build's {FEATURE_NAMES:?}; {retrain}",
                m.feature_names
            ));
        }
        for (name, v) in [
            ("means", &m.means),
            ("weights", &m.weights),
            ("stds", &m.stds),
        ] {
            if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                return Err(format!(
                    "model field `{name}[{i}]` ({}) is not finite; {retrain}",
                    FEATURE_NAMES[i]
                ));
            }
        }
        if !m.bias.is_finite() {
            return Err(format!("model `bias` is not finite; {retrain}"));
        }
        if let Some(i) = m.stds.iter().position(|s| *s <= 0.0) {
            return Err(format!(
                "model field `stds[{i}]` ({}) is {} but must be > 0 (use 1 for an \
                 unscaled feature)",
                FEATURE_NAMES[i], m.stds[i]
            ));
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hft_core::{InstrumentId, Price, Qty, Side};

    /// Deterministic xorshift64 with a sum-of-uniforms approximately normal draw.
    struct Rng(u64);

    impl Rng {
        fn uniform(&mut self) -> f64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }

        fn normal(&mut self) -> f64 {
            (0..12).map(|_| self.uniform()).sum::<f64>() - 6.0
        }
    }

    #[test]
    fn api_signatures() {
        let _: fn(usize) -> RollingOls = RollingOls::new;
        let _: fn(&mut RollingOls, f64, f64) = RollingOls::push;
        let _: fn(&RollingOls) -> Option<(f64, f64)> = RollingOls::fit;
        let _: fn(&RollingOls, f64, f64, &mut Vec<f64>) = RollingOls::residuals_into;
        let _: fn(f64, f64) -> KalmanHedge = KalmanHedge::new;
        type KfUpdate = fn(&mut KalmanHedge, f64, f64) -> Option<(f64, f64, f64)>;
        let _: KfUpdate = KalmanHedge::update;
        let _: fn(&RollingStats, f64) -> Option<f64> = RollingStats::z;
        let _: fn(&[f64], usize) -> Option<f64> = adf_stat;
        let _: fn(&mut Ewma, f64) -> f64 = Ewma::push;
        let _: fn(&Features, &L2Book, i64) -> Option<[f64; 4]> = Features::vector;
        type Fit = fn(&mut LogisticModel, &[[f64; 4]], &[bool], usize, f64, f64);
        let _: Fit = LogisticModel::fit;
        let _: fn(&str) -> Result<LogisticModel, String> = LogisticModel::from_json;
        assert_eq!(LogisticModel::default(), LogisticModel::new());
    }

    #[test]
    fn ols_recovers_line_then_forgets_it() {
        let mut ols = RollingOls::new(50);
        let mut rng = Rng(7);
        for i in 0..200 {
            let x = 1e4 + f64::from(i % 37) * 0.5;
            ols.push(x, 2.0 + 3.0 * (x - 1e4) + 0.01 * rng.normal());
        }
        let (a, b) = ols.fit().unwrap();
        assert!((b - 3.0).abs() < 0.01, "beta {b}");
        assert!((a - (2.0 - 3e4)).abs() < 100.0 * 0.01, "alpha {a}");
        assert!(ols.is_full() && ols.len() == 50);
        // A new regime replaces the old one completely after one window.
        for i in 0..50 {
            let x = f64::from(i);
            ols.push(x, -1.0 + 0.5 * x);
        }
        let (a, b) = ols.fit().unwrap();
        assert!((a + 1.0).abs() < 1e-9 && (b - 0.5).abs() < 1e-9, "{a} {b}");
        let mut res = Vec::with_capacity(50);
        ols.residuals_into(a, b, &mut res);
        assert_eq!(res.len(), 50);
        assert!(res.iter().all(|r| r.abs() < 1e-9));
        ols.residuals_into(0.0, 0.0, &mut res);
        assert_eq!((res[0], res[49]), (-1.0, -1.0 + 0.5 * 49.0), "oldest first");
    }

    #[test]
    fn ols_edge_cases() {
        let mut ols = RollingOls::new(0);
        assert!(ols.is_empty() && ols.fit().is_none());
        ols.push(f64::NAN, 1.0);
        ols.push(1.0, f64::INFINITY);
        assert!(ols.is_empty());
        for _ in 0..3 {
            ols.push(1.0, 2.0);
        }
        assert_eq!(ols.len(), 2, "window clamped to 2");
        assert!(ols.fit().is_none(), "zero variance of x");
        ols.push(1e300, 1e300);
        ols.push(-1e300, 1e300);
        let _ = ols.fit();
    }

    #[test]
    fn kalman_converges_to_hedge_ratio() {
        let mut kf = KalmanHedge::new(1e-4, 1e-2);
        let mut rng = Rng(11);
        let mut x = 100.0;
        let mut last = None;
        for _ in 0..2000 {
            x += rng.normal();
            last = kf.update(x, 1.5 * x + 0.1 * rng.normal());
        }
        let (_, beta, z) = last.unwrap();
        assert!((beta - 1.5).abs() < 0.02, "beta {beta}");
        assert!(z.is_finite() && z.abs() < 6.0, "z {z}");
        let before = kf.state();
        assert!(kf.update(f64::NAN, 1.0).is_none());
        assert!(kf.update(1.0, f64::NEG_INFINITY).is_none());
        assert_eq!(kf.state(), before);
        let mut bad = KalmanHedge::new(f64::NAN, -1.0);
        let _ = bad.update(1e300, -1e300);
        let _ = bad.update(1e300, -1e300);
        assert!(bad.state().0.is_finite() && bad.state().1.is_finite());
    }

    #[test]
    fn rolling_stats_match_naive() {
        let mut rs = RollingStats::new(20);
        let mut rng = Rng(3);
        let mut all = Vec::new();
        for _ in 0..250 {
            let v = 1e6 + rng.normal();
            rs.push(v);
            all.push(v);
            let w = &all[all.len().saturating_sub(20)..];
            let n = w.len() as f64;
            let m = w.iter().sum::<f64>() / n;
            assert!((rs.mean().unwrap() - m).abs() < 1e-7);
            if w.len() >= 2 {
                let sd = (w.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
                assert!(
                    (rs.std().unwrap() - sd).abs() < 1e-6 * sd,
                    "{:?} {sd}",
                    rs.std()
                );
                let z = rs.z(m + 2.0 * sd).unwrap();
                assert!((z - 2.0).abs() < 1e-5, "z {z}");
            }
        }
        assert_eq!(rs.len(), 20);
        rs.push(f64::NAN);
        assert!(rs.z(f64::NAN).is_none());
        let mut flat = RollingStats::new(1);
        assert!(flat.mean().is_none() && flat.std().is_none());
        flat.push(5.0);
        assert_eq!((flat.mean(), flat.std()), (Some(5.0), None));
        flat.push(5.0);
        flat.push(5.0);
        assert_eq!(flat.len(), 2);
        assert_eq!(flat.std(), Some(0.0));
        assert!(flat.z(5.0).is_none(), "zero std");
    }

    #[test]
    fn adf_separates_mean_reversion_from_random_walk() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let noise: Vec<f64> = (0..500).map(|_| rng.normal()).collect();
        let (mut ar, mut rw) = (vec![100.0], vec![100.0]);
        for e in &noise {
            ar.push(100.0 + 0.5 * (ar[ar.len() - 1] - 100.0) + e);
            rw.push(rw[rw.len() - 1] + e);
        }
        for lags in [0, 1, 3] {
            let s_ar = adf_stat(&ar, lags).unwrap();
            let s_rw = adf_stat(&rw, lags).unwrap();
            assert!(s_ar < EG_CRIT_5PCT, "AR(1) lags {lags}: {s_ar}");
            assert!(s_rw > ADF_CRIT_5PCT, "random walk lags {lags}: {s_rw}");
        }
        // phi = 0.5 means the lag coefficient is about -0.5: a very strong rejection.
        assert!(adf_stat(&ar, 1).unwrap() < -10.0);
    }

    #[test]
    fn adf_rejects_bad_input() {
        assert!(adf_stat(&[], 0).is_none());
        assert!(
            adf_stat(&[1.0, 2.0, 3.0, 4.0, 5.0], 0).is_none(),
            "too few points"
        );
        assert!(adf_stat(&[1.0; 100], 1).is_none(), "singular");
        assert!(adf_stat(&[1.0; 10], usize::MAX).is_none());
        let mut s: Vec<f64> = (0..100).map(|i| f64::from(i % 7)).collect();
        assert!(adf_stat(&s, 1).is_some());
        s[50] = f64::NAN;
        assert!(adf_stat(&s, 1).is_none());
    }

    #[test]
    fn ewma_halflife() {
        let mut e = Ewma::new(1.0);
        assert!(e.push(f64::NAN).is_nan() && e.value().is_none());
        assert_eq!(e.push(0.0), 0.0);
        assert!((e.push(1.0) - 0.5).abs() < 1e-12);
        assert!((e.push(f64::INFINITY) - 0.5).abs() < 1e-12);
        let mut raw = Ewma::new(f64::NAN);
        raw.push(1.0);
        assert_eq!(raw.push(7.0), 7.0);
    }

    fn book(bid: (i64, i64), ask: (i64, i64)) -> L2Book {
        let mut b = L2Book::with_capacity(InstrumentId(0), 16);
        b.apply_level(Side::Buy, Price(bid.0), Qty(bid.1)).unwrap();
        b.apply_level(Side::Sell, Price(ask.0), Qty(ask.1)).unwrap();
        b
    }

    #[test]
    fn features_from_book_and_flow() {
        let mut f = Features::new(5.0, 10.0);
        // Bid-heavy: microprice (1000*10 + 1004*30)/40 = 1003, mid 1002, tick 2.
        let v = f.vector(&book((1000, 30), (1004, 10)), 2).unwrap();
        assert_eq!(v, [0.5, 0.5, 0.0, 0.0]);
        let v = f.vector(&book((1000, 10), (1004, 30)), 2).unwrap();
        assert_eq!((v[0], v[1]), (-0.5, -0.5));
        let mut one_sided = L2Book::with_capacity(InstrumentId(0), 16);
        assert!(f.vector(&one_sided, 1).is_none());
        one_sided.apply_level(Side::Buy, Price(10), Qty(1)).unwrap();
        assert!(f.vector(&one_sided, 0).is_none());

        f.on_trade(true, 3.0);
        let b = book((1000, 10), (1002, 10));
        assert_eq!(f.vector(&b, 1).unwrap()[2], 1.0);
        for _ in 0..50 {
            f.on_trade(false, 1.0);
        }
        f.on_trade(true, f64::NAN);
        f.on_trade(true, -1.0);
        let flow = f.vector(&b, 1).unwrap()[2];
        assert!((-1.0..-0.9).contains(&flow), "flow {flow}");

        f.on_mid(100.0);
        f.on_mid(100.0);
        f.on_mid(f64::NAN);
        f.on_mid(-3.0);
        assert_eq!(f.vector(&b, 1).unwrap()[3], 0.0, "no mid change yet");
        f.on_mid(100.01);
        let vol = f.vector(&b, 1).unwrap()[3];
        assert!((vol - 1.0).abs() < 1e-3, "vol {vol}");
    }

    fn separable(n: usize) -> (Vec<[f64; 4]>, Vec<bool>) {
        let mut rng = Rng(42);
        let xs: Vec<[f64; 4]> = (0..n)
            .map(|_| {
                [
                    rng.uniform() * 2.0 - 1.0,
                    100.0 + 10.0 * rng.uniform(),
                    rng.uniform(),
                    50.0 * rng.normal(),
                ]
            })
            .collect();
        let ys = xs
            .iter()
            .map(|x| 3.0 * x[0] - 0.4 * (x[1] - 105.0) + 0.01 * x[3] > 0.0)
            .collect();
        (xs, ys)
    }

    #[test]
    fn logistic_fits_separable_data_and_round_trips() {
        let (xs, ys) = separable(1000);
        let mut m = LogisticModel::new();
        let (loss0, _) = m.evaluate(&xs, &ys);
        assert!((loss0 - 2f64.ln()).abs() < 1e-12);
        m.fit(&xs, &ys, 300, 1.0, 0.0);
        let (loss, acc) = m.evaluate(&xs, &ys);
        assert!(acc > 0.9 && loss < 0.3, "acc {acc} loss {loss}");
        assert!(m.weights[0] > 0.0 && m.weights[1] < 0.0);
        assert!((m.means[1] - 105.0).abs() < 1.0 && (m.stds[1] - 2.89).abs() < 0.2);

        // serde_json's default float parser may be 1 ulp off, hence the tolerance.
        let back = LogisticModel::from_json(&m.to_json()).unwrap();
        assert_eq!(back.feature_names, m.feature_names);
        let close = |a: &[f64], b: &[f64]| {
            a.len() == b.len()
                && a.iter()
                    .zip(b)
                    .all(|(a, b)| (a - b).abs() <= 1e-12 * b.abs())
        };
        assert!(close(&back.means, &m.means) && close(&back.stds, &m.stds));
        assert!(close(&back.weights, &m.weights) && close(&[back.bias], &[m.bias]));
        assert_eq!(
            LogisticModel::from_json(&back.to_json()).unwrap().to_json(),
            back.to_json()
        );

        // Online updates move the prediction toward the label.
        let x = [0.0, 105.0, 0.5, 0.0];
        let p0 = m.predict(&x);
        for _ in 0..20 {
            m.update(&x, true, 0.1, 1e-4);
        }
        assert!(m.predict(&x) > p0);
        let before = m.clone();
        m.update(&[f64::NAN, 0.0, 0.0, 0.0], true, 0.1, 0.0);
        m.update(&x, true, f64::NAN, 0.0);
        m.update(&[1.0], false, 0.1, 0.0);
        assert_eq!(m, before);
        assert_eq!(m.predict(&[f64::NAN, 0.0, 0.0, 0.0]), 0.5);
        assert_eq!(m.predict(&[]), 0.5);
    }

    #[test]
    fn from_json_explains_rejections() {
        let good = LogisticModel::new();
        let mut short = good.clone();
        short.weights.pop();
        let err = LogisticModel::from_json(&short.to_json()).unwrap_err();
        assert!(
            err.contains("weights") && err.contains("3 entries") && err.contains("hft train"),
            "{err}"
        );

        let mut nan = good.clone();
        nan.means[2] = f64::NAN;
        let err = LogisticModel::from_json(&nan.to_json()).unwrap_err();
        assert!(err.contains("hft train"), "{err}");
        let text = good.to_json().replace("\"bias\": 0.0", "\"bias\": 1e999");
        assert!(LogisticModel::from_json(&text).is_err());

        let mut zero = good.clone();
        zero.stds[1] = 0.0;
        let err = LogisticModel::from_json(&zero.to_json()).unwrap_err();
        assert!(
            err.contains("stds[1]") && err.contains("microprice_offset_ticks"),
            "{err}"
        );

        let mut renamed = good.clone();
        renamed.feature_names[3] = "vol".into();
        let err = LogisticModel::from_json(&renamed.to_json()).unwrap_err();
        assert!(err.contains("differ"), "{err}");

        assert!(LogisticModel::from_json("").is_err());
        assert!(LogisticModel::from_json("{\"means\": []}").is_err());
    }

    #[test]
    fn degenerate_inputs_do_not_panic() {
        let mut m = LogisticModel::new();
        let (loss, acc) = m.evaluate(&[], &[]);
        assert!(loss.is_nan() && acc.is_nan());
        m.fit(&[], &[], 10, 0.1, 0.0);
        assert_eq!(m, LogisticModel::new());
        let rows = [[f64::NAN; 4], [1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0]];
        m.fit(&rows, &[true, false, true], 10, 0.1, 0.01);
        assert_eq!(m.stds, vec![1.0; 4], "zero spread floors to 1");
        assert!(m.weights.iter().all(|w| w.is_finite()) && m.bias.is_finite());
        m.fit(&rows, &[true], 5, f64::INFINITY, 0.0);
        m.means.clear();
        assert_eq!(m.predict(&[0.0; 4]), 0.5);
        let mut f = Features::new(0.0, -1.0);
        f.on_trade(false, f64::INFINITY);
        f.on_mid(f64::INFINITY);
        f.on_mid(1e-300);
        f.on_mid(1e300);
        assert!(f.vector(&book((1, 1), (2, 1)), i64::MIN).is_some());
        let mut rs = RollingStats::new(usize::MAX);
        rs.push(1e308);
        rs.push(-1e308);
        let _ = (rs.mean(), rs.std(), rs.z(0.0));
    }
}
