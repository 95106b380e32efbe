//! Backtest reports: `metrics.json`, `fills.csv`, `orders.csv` and a self-contained
//! `report.html` with the equity, drawdown and position plots as inline SVG. Every
//! number is formatted the same way on every run, so identical runs give
//! byte-identical files.

use crate::run::Outcome;
use hft_core::{InstrumentSpec, Liquidity, MONEY_SCALE, OrderKind, OrderReportKind, Side};
use serde_json::json;
use std::fmt::Write as _;
use std::path::Path;

fn money(raw: i64) -> f64 {
    raw as f64 / 10f64.powi(i32::from(MONEY_SCALE))
}

/// Summary figures of a run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Metrics {
    /// PnL after fees, quote currency.
    pub pnl: f64,
    /// Realized PnL after fees.
    pub realized: f64,
    /// Fees paid (negative: rebates earned).
    pub fees: f64,
    /// Sharpe ratio over the run: the mean per-sample PnL change over its standard
    /// deviation, times the square root of the number of samples, i.e. how many standard
    /// errors the mean change lies from zero. Unlike an annualised figure it means
    /// something on a run of minutes, and it ranks runs over the same span (a sweep) as
    /// the annualised one would.
    pub sharpe: f64,
    /// Sortino ratio over the run: as `sharpe`, with the downside deviation.
    pub sortino: f64,
    /// Annualised Sharpe ratio, for runs of at least [`ANNUALISE_MIN_SPAN_S`].
    pub sharpe_annualised: Option<f64>,
    /// Annualised Sortino ratio, for runs of at least [`ANNUALISE_MIN_SPAN_S`].
    pub sortino_annualised: Option<f64>,
    /// Largest fall from a PnL peak, quote currency.
    pub max_drawdown: f64,
    /// Traded notional, quote currency.
    pub turnover: f64,
    /// Orders with at least one fill, over orders sent.
    pub fill_ratio: f64,
    /// Fills that increased realized PnL, over fills that changed it.
    pub hit_rate: f64,
    /// Mean time from an order's arrival at the venue to its maker fills, ns.
    pub mean_queue_wait_ns: f64,
    /// Orders sent.
    pub orders: u64,
    /// Fills.
    pub fills: u64,
    /// Recorded events replayed.
    pub events: u64,
    /// Simulated span, s.
    pub span_s: f64,
}

/// Shortest run whose Sharpe and Sortino ratios are also given annualised. Below a day
/// the annualising factor, the square root of the samples in a year, turns the noise of
/// a few minutes into ratios in the thousands that say nothing about the strategy.
pub const ANNUALISE_MIN_SPAN_S: f64 = 86_400.0;

/// Sharpe and Sortino ratios of per-sample PnL changes `steps` taken every `sample_s`
/// over `span_s`: over the run, then annualised when the run is long enough.
fn risk_ratios(steps: &[f64], sample_s: f64, span_s: f64) -> [(f64, Option<f64>); 2] {
    let n = steps.len().max(1) as f64;
    let mean = steps.iter().sum::<f64>() / n;
    let sd = (steps.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt();
    let down = (steps.iter().map(|x| x.min(0.0).powi(2)).sum::<f64>() / n).sqrt();
    let per_sample = |den: f64| if den > 0.0 { mean / den } else { 0.0 };
    let annual = (365.0 * 86_400.0 / sample_s.max(1e-9)).sqrt();
    [sd, down].map(|den| {
        let r = per_sample(den);
        (
            r * n.sqrt(),
            (span_s >= ANNUALISE_MIN_SPAN_S).then_some(r * annual),
        )
    })
}

/// Computes the metrics of a run; `sample_s` is the equity sampling period.
pub fn metrics(o: &Outcome, specs: &[InstrumentSpec], sample_s: f64) -> Metrics {
    let pnl = o.samples.last().map_or(0, |s| s.pnl);
    // Every leg of every strategy.
    let legs = || {
        o.engines
            .iter()
            .flat_map(|e| specs.iter().map(move |s| e.position(s.id)))
    };
    let realized: i64 = legs().map(|p| p.realized_net().raw()).sum();
    let fees: i64 = legs().map(|p| p.fees.raw()).sum();
    let steps: Vec<f64> = o
        .samples
        .windows(2)
        .map(|w| money(w[1].pnl - w[0].pnl))
        .collect();
    let span_s = o.span as f64 / 1e9;
    let [(sharpe, sharpe_annualised), (sortino, sortino_annualised)] =
        risk_ratios(&steps, sample_s, span_s);
    let (mut peak, mut dd) = (i64::MIN, 0i64);
    for s in &o.samples {
        peak = peak.max(s.pnl);
        dd = dd.max(peak - s.pnl);
    }
    let mut turnover = 0i64;
    let (mut maker_wait, mut makers) = (0f64, 0u64);
    let (mut hits, mut decided) = (0u64, 0u64);
    let mut last_realized = std::collections::HashMap::new();
    let mut filled_orders = std::collections::HashSet::new();
    for f in &o.fills {
        if let OrderReportKind::Fill(x) = f.report.kind {
            let spec = &specs[f.report.instrument.index()];
            turnover += spec.notional(x.price, x.qty).raw();
            if x.liquidity == Liquidity::Maker {
                maker_wait += f.queue_wait as f64;
                makers += 1;
            }
            let key = f.report.cl_ord_id.strategy().index();
            let before = last_realized.insert(key, f.realized_after).unwrap_or(0);
            if f.realized_after != before {
                decided += 1;
                hits += u64::from(f.realized_after > before);
            }
            filled_orders.insert(f.report.cl_ord_id.0);
        }
    }
    let orders = o.orders.len() as u64;
    Metrics {
        pnl: money(pnl),
        realized: money(realized),
        fees: money(fees),
        sharpe,
        sortino,
        sharpe_annualised,
        sortino_annualised,
        max_drawdown: money(dd),
        turnover: money(turnover),
        fill_ratio: filled_orders.len() as f64 / orders.max(1) as f64,
        hit_rate: hits as f64 / decided.max(1) as f64,
        mean_queue_wait_ns: maker_wait / makers.max(1) as f64,
        orders,
        fills: o.fills.len() as u64,
        events: o.events,
        span_s,
    }
}

fn round(x: f64, places: i32) -> f64 {
    let m = 10f64.powi(places);
    (x * m).round() / m
}

/// What one strategy did, and what its risk gate did, for reports.
pub fn strategy_summary(e: &hft_exec::Engine, specs: &[InstrumentSpec]) -> serde_json::Value {
    let spec = &specs[e.instrument().index()];
    let p = e.position(e.instrument());
    json!({
        "instrument": spec.symbol,
        "position": p.qty.display(spec.qty_scale).to_string(),
        "max_position": p.max_abs_qty.display(spec.qty_scale).to_string(),
        "realized": round(money(p.realized_net().raw()), 8),
        "fees": round(money(p.fees.raw()), 8),
        "orders": e.oms_stats().orders,
        "fills": e.fill_count(),
        "state": e.risk().state().to_string(),
        "risk_rejects": e.risk().rejects().0.iter().sum::<u64>(),
        "stale_gaps": e.stats().gaps,
        "market_events": e.stats().events,
    })
}

/// Writes every report file into `dir`.
pub fn write(
    dir: &Path,
    o: &Outcome,
    specs: &[InstrumentSpec],
    m: &Metrics,
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let parts = attribution(o, specs);
    let strategies: Vec<_> = o
        .engines
        .iter()
        .map(|e| strategy_summary(e, specs))
        .collect();
    let v = json!({
        "pnl": round(m.pnl, 8),
        "realized_pnl": round(m.realized, 8),
        "fees": round(m.fees, 8),
        "sharpe": round(m.sharpe, 6),
        "sortino": round(m.sortino, 6),
        "sharpe_annualised": m.sharpe_annualised.map(|x| round(x, 6)),
        "sortino_annualised": m.sortino_annualised.map(|x| round(x, 6)),
        "max_drawdown": round(m.max_drawdown, 8),
        "turnover": round(m.turnover, 8),
        "fill_ratio": round(m.fill_ratio, 6),
        "hit_rate": round(m.hit_rate, 6),
        "mean_queue_wait_ns": round(m.mean_queue_wait_ns, 1),
        "orders": m.orders,
        "fills": m.fills,
        "events": m.events,
        "span_s": round(m.span_s, 6),
        "strategies": strategies,
        "attribution": attribution_json(&parts),
        "data": specs.iter().zip(&o.crossed).map(|(s, c)| json!({
            "instrument": s.symbol,
            "crossed_moments": c,
        })).collect::<Vec<_>>(),
    });
    let text = serde_json::to_string_pretty(&v).unwrap_or_default();
    std::fs::write(dir.join("metrics.json"), text + "\n")?;
    let side = |s: Side| if s == Side::Buy { "buy" } else { "sell" };
    let mut fills =
        String::from("local_ts_ns,strategy,symbol,side,price,qty,liquidity,fee,queue_wait_ns\n");
    for f in &o.fills {
        if let OrderReportKind::Fill(x) = f.report.kind {
            let spec = &specs[f.report.instrument.index()];
            let _ = writeln!(
                fills,
                "{},{},{},{},{},{},{},{},{}",
                f.local_ts,
                f.report.cl_ord_id.strategy().index(),
                spec.symbol,
                side(x.side),
                x.price.display(spec.price_scale),
                x.qty.display(spec.qty_scale),
                if x.liquidity == Liquidity::Maker {
                    "maker"
                } else {
                    "taker"
                },
                x.fee.raw(),
                f.queue_wait
            );
        }
    }
    std::fs::write(dir.join("fills.csv"), fills)?;
    let mut orders =
        String::from("sent_ts_ns,strategy,cl_ord_id,symbol,side,price,qty,post_only,last_report\n");
    for s in &o.orders {
        if let OrderKind::New {
            side: sd,
            price,
            qty,
            post_only,
            ..
        } = s.cmd.kind
        {
            let spec = &specs[s.cmd.instrument.index()];
            let last = match s.last {
                None => "none".to_string(),
                Some(OrderReportKind::Accepted) => "accepted".into(),
                Some(OrderReportKind::Canceled) => "canceled".into(),
                Some(OrderReportKind::Fill(f)) if f.leaves.raw() == 0 => "filled".into(),
                Some(OrderReportKind::Fill(_)) => "partially_filled".into(),
                Some(OrderReportKind::Rejected(r)) => format!("rejected:{r:?}"),
                Some(OrderReportKind::CancelRejected(r)) => format!("cancel_rejected:{r:?}"),
            };
            let _ = writeln!(
                orders,
                "{},{},{},{},{},{},{},{},{}",
                s.sent,
                s.cmd.cl_ord_id.strategy().index(),
                s.cmd.cl_ord_id.0,
                spec.symbol,
                side(sd),
                price.display(spec.price_scale),
                qty.display(spec.qty_scale),
                post_only,
                last
            );
        }
    }
    std::fs::write(dir.join("orders.csv"), orders)?;
    std::fs::write(dir.join("report.html"), html(o, m, &parts))
}

/// A polyline chart of `(x, y)` points as inline SVG.
fn chart(title: &str, points: &[(f64, f64)], color: &str) -> String {
    let (w, h, pad) = (900.0, 220.0, 40.0);
    let (x0, x1) = points
        .iter()
        .fold((f64::MAX, f64::MIN), |a, p| (a.0.min(p.0), a.1.max(p.0)));
    let (y0, y1) = points
        .iter()
        .fold((f64::MAX, f64::MIN), |a, p| (a.0.min(p.1), a.1.max(p.1)));
    let (xs, ys) = ((x1 - x0).max(1e-9), (y1 - y0).max(1e-9));
    let mut path = String::new();
    for (k, (x, y)) in points.iter().enumerate() {
        let px = pad + (x - x0) / xs * (w - 2.0 * pad);
        let py = h - pad - (y - y0) / ys * (h - 2.0 * pad);
        let _ = write!(path, "{}{px:.1},{py:.1}", if k == 0 { "" } else { " " });
    }
    format!(
        "<h2>{title}</h2><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\">\
<rect x=\"0\" y=\"0\" width=\"{w}\" height=\"{h}\" fill=\"#fafafa\" stroke=\"#ccc\"/>\
<text x=\"{pad}\" y=\"16\" font-size=\"12\">max {y1:.4}</text><text x=\"{pad}\" y=\"{}\" font-size=\"12\">min {y0:.4}</text>\
<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\" points=\"{path}\"/></svg>",
        h - 6.0
    )
}

fn html(o: &Outcome, m: &Metrics, attribution: &[Attribution]) -> String {
    // At most ~2000 points per plot.
    let step = (o.samples.len() / 2000).max(1);
    let t0 = o.samples.first().map_or(0, |s| s.ts);
    let pts = |f: &dyn Fn(&crate::run::Sample) -> f64| -> Vec<(f64, f64)> {
        o.samples
            .iter()
            .step_by(step)
            .map(|s| ((s.ts - t0) as f64 / 1e9, f(s)))
            .collect()
    };
    let mut peak = f64::MIN;
    let dd: Vec<(f64, f64)> = pts(&|s| money(s.pnl))
        .into_iter()
        .map(|(x, y)| {
            peak = peak.max(y);
            (x, y - peak)
        })
        .collect();
    let annualised = |x: Option<f64>| {
        x.map_or_else(
            || "— (run shorter than a day)".to_owned(),
            |x| format!("{x:.3}"),
        )
    };
    let rows = [
        ("PnL after fees", format!("{:.4}", m.pnl)),
        ("realized", format!("{:.4}", m.realized)),
        ("fees", format!("{:.4}", m.fees)),
        ("Sharpe (over the run)", format!("{:.3}", m.sharpe)),
        ("Sortino (over the run)", format!("{:.3}", m.sortino)),
        ("Sharpe (annualised)", annualised(m.sharpe_annualised)),
        ("Sortino (annualised)", annualised(m.sortino_annualised)),
        ("max drawdown", format!("{:.4}", m.max_drawdown)),
        ("turnover", format!("{:.2}", m.turnover)),
        ("fill ratio", format!("{:.4}", m.fill_ratio)),
        ("hit rate", format!("{:.4}", m.hit_rate)),
        (
            "mean queue wait",
            format!("{:.3} ms", m.mean_queue_wait_ns / 1e6),
        ),
        ("orders / fills", format!("{} / {}", m.orders, m.fills)),
        ("events / span", format!("{} / {:.1} s", m.events, m.span_s)),
    ];
    // The samples sum every strategy's position: in the instruments' units when they
    // share a quantity scale, else only raw units add up.
    let scales: Vec<u8> = o
        .engines
        .iter()
        .map(|e| e.spec(e.instrument()).qty_scale)
        .collect();
    let (position_title, unit) = match scales.first() {
        Some(&q) if scales.iter().all(|&x| x == q) => ("Position", 10f64.powi(i32::from(q))),
        _ => ("Position (raw units: the instruments' scales differ)", 1.0),
    };
    let table: String = rows
        .iter()
        .map(|(k, v)| format!("<tr><td>{k}</td><td>{v}</td></tr>"))
        .collect();
    format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>hft backtest</title>\
<style>body{{font-family:sans-serif;margin:24px}}td{{padding:2px 12px}}</style></head><body>\
<h1>Backtest report</h1><table>{table}</table>{}{}{}{}</body></html>\n",
        chart(
            "Equity (PnL after fees)",
            &pts(&|s| money(s.pnl)),
            "#1f77b4"
        ),
        chart("Drawdown", &dd, "#d62728"),
        chart(
            position_title,
            &pts(&|s| s.position as f64 / unit),
            "#2ca02c"
        ),
        attribution_chart(attribution),
    )
}

/// Where one strategy's PnL in one instrument came from. The parts add up to `total`
/// exactly; each fill of `q` at `p` with side sign `s` splits as
/// `s·q·(m_decision − p)` (spread captured against the mid the strategy saw when it
/// sent the order) + `s·q·(m_fill − m_decision)` (slippage: the mid moving between
/// decision and fill) + `s·q·(m_end − m_fill)` (inventory: holding through later
/// moves), minus fees. Inventory is computed as what is left, so rounding cannot make
/// the parts disagree with the total.
#[derive(Clone, Debug, PartialEq)]
pub struct Attribution {
    /// Strategy index.
    pub strategy: usize,
    /// Instrument symbol.
    pub symbol: String,
    /// PnL after fees, money raw units.
    pub total: i64,
    /// Spread capture.
    pub spread: i64,
    /// Slippage (negative when the market moved against an order before it filled).
    pub slippage: i64,
    /// Inventory (mark-to-market of held positions).
    pub inventory: i64,
    /// Fees paid (negative for net rebates); subtracted from the other parts.
    pub fees: i64,
    /// Fills.
    pub fills: u64,
}

/// `v / 2` price-times-quantity raw units of `spec` in money raw units, rounded.
fn money_of_x2(spec: &InstrumentSpec, v: i128) -> i64 {
    let scale = i32::from(spec.price_scale) + i32::from(spec.qty_scale) - i32::from(MONEY_SCALE);
    let r = if scale >= 0 {
        hft_core::div_round(v, 2 * 10i128.pow(scale as u32))
    } else {
        v.saturating_mul(10i128.pow((-scale) as u32)) / 2
    };
    r.clamp(i128::from(i64::MIN + 1), i128::from(i64::MAX)) as i64
}

/// Performance attribution per strategy and instrument traded.
pub fn attribution(o: &Outcome, specs: &[InstrumentSpec]) -> Vec<Attribution> {
    // (strategy, instrument) -> (spread x2, slippage x2, fees, fills)
    let mut acc: std::collections::BTreeMap<(usize, usize), (i128, i128, i64, u64)> =
        std::collections::BTreeMap::new();
    for f in &o.fills {
        let OrderReportKind::Fill(x) = f.report.kind else {
            continue;
        };
        let i = f.report.instrument.index();
        if i >= specs.len() {
            continue;
        }
        let (p2, q) = (2 * i128::from(x.price.raw()), i128::from(x.qty.raw()));
        let s: i128 = if x.side == Side::Buy { 1 } else { -1 };
        let fill_mid = f.fill_mid_x2.map_or(p2, i128::from);
        let decision = f.decision_mid_x2.map_or(fill_mid, i128::from);
        let e = acc
            .entry((f.report.cl_ord_id.strategy().index(), i))
            .or_default();
        e.0 += s * q * (decision - p2);
        e.1 += s * q * (fill_mid - decision);
        e.2 += x.fee.raw();
        e.3 += 1;
    }
    acc.into_iter()
        .map(|((k, i), (spread, slip, fees, fills))| {
            let spec = &specs[i];
            let total = o.engines.get(k).map_or(0, |e| e.pnl_of(spec.id).raw());
            let (spread, slippage) = (money_of_x2(spec, spread), money_of_x2(spec, slip));
            Attribution {
                strategy: k,
                symbol: spec.symbol.clone(),
                total,
                spread,
                slippage,
                inventory: total - spread - slippage + fees,
                fees,
                fills,
            }
        })
        .collect()
}

fn attribution_json(a: &[Attribution]) -> serde_json::Value {
    a.iter()
        .map(|x| {
            json!({
                "strategy": x.strategy,
                "instrument": x.symbol,
                "pnl": round(money(x.total), 8),
                "spread_capture": round(money(x.spread), 8),
                "slippage": round(money(x.slippage), 8),
                "inventory": round(money(x.inventory), 8),
                "fees": round(money(x.fees), 8),
                "fills": x.fills,
            })
        })
        .collect()
}

/// One bar of the attribution chart: label, colour, value.
type Part = (&'static str, &'static str, fn(&Attribution) -> i64);

/// Horizontal bars of each (strategy, instrument)'s PnL and its parts.
fn attribution_chart(a: &[Attribution]) -> String {
    if a.is_empty() {
        return String::new();
    }
    let parts: [Part; 5] = [
        ("total", "#333333", |x| x.total),
        ("spread", "#1f77b4", |x| x.spread),
        ("slippage", "#ff7f0e", |x| x.slippage),
        ("inventory", "#2ca02c", |x| x.inventory),
        ("fees", "#d62728", |x| -x.fees),
    ];
    let max = a
        .iter()
        .flat_map(|x| parts.iter().map(move |(_, _, f)| money(f(x)).abs()))
        .fold(1e-12, f64::max);
    let (w, label_w, bar_h) = (760.0, 220.0, 14.0);
    let half = (w - label_w) / 2.0;
    let group_h = bar_h * (parts.len() + 1) as f64 + 12.0;
    let h = group_h * a.len() as f64 + 24.0;
    let mut svg = format!(
        "<h2>PnL by strategy and instrument</h2><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\">"
    );
    let zero = label_w + half;
    let _ = write!(
        svg,
        "<line x1=\"{zero}\" y1=\"0\" x2=\"{zero}\" y2=\"{h}\" stroke=\"#999\"/>"
    );
    for (g, x) in a.iter().enumerate() {
        let y0 = g as f64 * group_h + 4.0;
        let _ = write!(
            svg,
            "<text x=\"0\" y=\"{:.1}\" font-size=\"12\">strategy {} {}</text>",
            y0 + 12.0,
            x.strategy,
            x.symbol
        );
        for (k, (name, color, f)) in parts.iter().enumerate() {
            let v = money(f(x));
            let len = v.abs() / max * (half - 60.0);
            let bx = if v < 0.0 { zero - len } else { zero };
            let by = y0 + (k + 1) as f64 * bar_h;
            let _ = write!(
                svg,
                "<rect x=\"{bx:.1}\" y=\"{by:.1}\" width=\"{len:.1}\" height=\"{:.1}\" fill=\"{color}\"/><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\">{name} {v:.4}</text>",
                bar_h - 2.0,
                16.0,
                by + bar_h - 4.0
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

/// The outcome of an A/B comparison.
#[derive(Clone, Debug, PartialEq)]
pub struct AbResult {
    /// Mean per-interval PnL difference A − B, quote currency.
    pub mean_diff: f64,
    /// 95% confidence interval of that mean (paired bootstrap).
    pub ci: (f64, f64),
    /// Intervals compared.
    pub intervals: usize,
    /// "A", "B" or "no difference".
    pub verdict: &'static str,
}

/// Compares two runs over the same data and sampling: the per-interval PnL changes are
/// paired by interval, and the mean difference is resampled `rounds` times with a
/// seeded generator (the same inputs give the same interval).
pub fn ab_compare(a: &Outcome, b: &Outcome, rounds: usize, seed: u64) -> AbResult {
    let path = |o: &Outcome| -> Vec<i64> { o.samples.iter().map(|s| s.pnl).collect() };
    ab_compare_paths(&path(a), &path(b), rounds, seed)
}

/// `ab_compare` over two PnL paths sampled at the same instants (money raw units): two
/// backtests on the same data, or the two arms of a live A/B test over one session.
pub fn ab_compare_paths(a: &[i64], b: &[i64], rounds: usize, seed: u64) -> AbResult {
    use rand::{Rng, SeedableRng};
    let steps = |p: &[i64]| -> Vec<f64> {
        p.windows(2)
            .map(|w| money(w[1].saturating_sub(w[0])))
            .collect()
    };
    let (sa, sb) = (steps(a), steps(b));
    let d: Vec<f64> = sa.iter().zip(&sb).map(|(x, y)| x - y).collect();
    let n = d.len();
    if n == 0 {
        return AbResult {
            mean_diff: 0.0,
            ci: (0.0, 0.0),
            intervals: 0,
            verdict: "no difference",
        };
    }
    let mean = d.iter().sum::<f64>() / n as f64;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut means: Vec<f64> = (0..rounds.max(1))
        .map(|_| (0..n).map(|_| d[rng.random_range(0..n)]).sum::<f64>() / n as f64)
        .collect();
    means.sort_by(f64::total_cmp);
    let at = |q: f64| means[((means.len() - 1) as f64 * q).round() as usize];
    let ci = (at(0.025), at(0.975));
    let verdict = if ci.0 > 0.0 {
        "A"
    } else if ci.1 < 0.0 {
        "B"
    } else {
        "no difference"
    };
    AbResult {
        mean_diff: mean,
        ci,
        intervals: n,
        verdict,
    }
}

impl AbResult {
    /// The result as the `ab` fields of a JSON report.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "intervals": self.intervals,
            "mean_diff_per_interval": self.mean_diff,
            "ci95": [self.ci.0, self.ci.1],
            "verdict": self.verdict,
        })
    }

    /// One line for people: the difference per interval of `interval_s`, its interval
    /// and the verdict.
    pub fn line(&self, interval_s: f64) -> String {
        format!(
            "A - B per {interval_s} s interval: {:.6} (95% CI {:.6} .. {:.6}, {} intervals): {}",
            self.mean_diff,
            self.ci.0,
            self.ci.1,
            self.intervals,
            match self.verdict {
                "A" => "A is better",
                "B" => "B is better",
                _ => "no significant difference",
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::Sample;

    fn outcome(pnl: impl Fn(u64) -> i64) -> Outcome {
        Outcome {
            engines: Vec::new(),
            orders: Vec::new(),
            fills: Vec::new(),
            samples: (0..500u64)
                .map(|t| Sample {
                    ts: t,
                    pnl: pnl(t),
                    position: 0,
                })
                .collect(),
            events: 0,
            span: 500,
            crossed: Vec::new(),
        }
    }

    #[test]
    fn risk_ratios_are_annualised_only_over_a_day_or_more() {
        // Alternating +3, -1: mean 1, standard deviation 2, downside deviation 1/sqrt(2).
        let steps: Vec<f64> = (0..400)
            .map(|i| if i % 2 == 0 { 3.0 } else { -1.0 })
            .collect();
        let [(sharpe, sharpe_y), (sortino, sortino_y)] = risk_ratios(&steps, 1.0, 400.0);
        assert!((sharpe - 0.5 * 20.0).abs() < 1e-9, "{sharpe}");
        assert!((sortino - 2f64.sqrt() * 20.0).abs() < 1e-9, "{sortino}");
        assert_eq!((sharpe_y, sortino_y), (None, None), "400 s is too short");
        let [(_, sharpe_y), (_, sortino_y)] = risk_ratios(&steps, 216.0, 86_400.0);
        let year = (365.0f64 * 400.0).sqrt(); // samples of 216 s in a year
        assert!((sharpe_y.unwrap() - 0.5 * year).abs() < 1e-6);
        assert!((sortino_y.unwrap() - 2f64.sqrt() * year).abs() < 1e-6);
        // A flat run has no ratio rather than a division by zero.
        assert_eq!(
            risk_ratios(&[0.0; 10], 1.0, 10.0),
            [(0.0, None), (0.0, None)]
        );
    }

    #[test]
    fn ab_finds_a_real_edge_and_none_in_noise() {
        let noise = |t: u64, k: u64| ((t * 7919 + k * 104_729) % 101) as i64 * 1_000_000;
        // A earns 0.5 more per interval than B, on top of the same noise.
        let a = outcome(|t| (0..=t).map(|u| noise(u, 1) + 50_000_000).sum());
        let b = outcome(|t| (0..=t).map(|u| noise(u, 1)).sum());
        let r = ab_compare(&a, &b, 2_000, 1);
        assert_eq!(r.verdict, "A");
        assert!((r.mean_diff - 0.5).abs() < 1e-9 && r.ci.0 > 0.0);
        // Two strategies that differ only by noise.
        let c = outcome(|t| (0..=t).map(|u| noise(u, 2)).sum());
        let r = ab_compare(&b, &c, 2_000, 1);
        assert_eq!(r.verdict, "no difference", "{r:?}");
        assert_eq!(ab_compare(&b, &c, 2_000, 1), r, "seeded: the same interval");
    }
}
