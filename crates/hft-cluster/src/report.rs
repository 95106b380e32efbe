//! The end-of-session summary: per strategy and for the node, as a table for people and
//! as JSON for scripts.

use hft_core::{InstrumentSpec, Money, Qty};
use hft_exec::StrategySlot;
use hft_risk::RejectCounts;
use hft_telemetry::LatencySummary;
use sha2::{Digest, Sha256};

/// Summary of one strategy instance.
#[derive(Clone, Debug)]
pub struct StrategyReport {
    /// Configured name.
    pub name: String,
    /// Instrument symbol.
    pub symbol: String,
    /// Orders sent.
    pub orders: u64,
    /// Cancels sent.
    pub cancels: u64,
    /// Fills.
    pub fills: u64,
    /// Traded quantity, instrument units (decimal string).
    pub volume: String,
    /// Net position at the end (decimal string).
    pub position: String,
    /// Largest |position| (decimal string).
    pub max_position: String,
    /// Realized PnL after fees.
    pub realized_pnl: Money,
    /// Unrealized PnL at the last mid.
    pub unrealized_pnl: Money,
    /// Fees paid (negative = rebates earned).
    pub fees: Money,
    /// Rejections by reason.
    pub rejects: RejectCounts,
    /// Trading state at the end.
    pub state: String,
    /// Strategy crashes.
    pub panics: u64,
    /// Market data sequence gaps seen (each answered by a snapshot).
    pub gaps: u64,
    /// Restarts.
    pub restarts: u32,
    /// Why it was halted, if it was.
    pub halted: Option<String>,
    /// Tick-to-order latency.
    pub latency: LatencySummary,
}

/// Summary of a session.
#[derive(Clone, Debug)]
pub struct SessionReport {
    /// "live" or "deterministic".
    pub mode: &'static str,
    /// Seed of the simulator.
    pub seed: u64,
    /// Session length, seconds (simulated in deterministic mode).
    pub duration_s: f64,
    /// Market events delivered to engines (summed over engines).
    pub events: u64,
    /// Simulated order-flow events at the venue.
    pub venue_events: u64,
    /// Per strategy.
    pub strategies: Vec<StrategyReport>,
    /// Node tick-to-order latency (all strategies).
    pub tick_to_order: LatencySummary,
    /// SHA-256 over the strategies' fill digests, hex.
    pub fills_hash: String,
    /// Kill switch engaged at the end.
    pub killed: bool,
    /// Market data events dropped on full engine rings (live mode).
    pub md_dropped: u64,
    /// Snapshots sent to engines that lost market data (live mode).
    pub md_resyncs: u64,
    /// What the ledger booked (live mode with the ledger enabled).
    pub ledger: Option<LedgerSummary>,
    /// Each strategy's PnL over the session, for comparing strategies interval by
    /// interval (a live A/B test).
    pub pnl_path: PnlPath,
}

/// Every strategy's PnL sampled at a fixed interval over a session. Memory is bounded:
/// past `MAX_ROWS` samples every other one is dropped and the interval doubles, so a
/// session of any length keeps between half and all of `MAX_ROWS` rows.
#[derive(Clone, Debug, PartialEq)]
pub struct PnlPath {
    /// Nanoseconds between consecutive rows.
    pub interval_ns: u64,
    /// One row per sample: each strategy's PnL after fees marked at its mid, money raw
    /// units, in the order of the report's strategies.
    pub rows: Vec<Vec<i64>>,
    /// Samples offered since the start; every `stride`-th is kept.
    offered: u64,
    stride: u64,
}

/// Samples the interval of which a PnL path starts with.
pub const PNL_SAMPLE_INTERVAL_NS: u64 = 1_000_000_000;

impl PnlPath {
    /// Rows kept at most (even: see `offer`).
    pub const MAX_ROWS: usize = 16_384;

    /// An empty path sampled every `interval_ns`.
    pub fn new(interval_ns: u64) -> Self {
        Self {
            interval_ns,
            rows: Vec::new(),
            offered: 0,
            stride: 1,
        }
    }

    /// One sample, taken `interval_ns` (as given to `new`) after the previous one.
    pub fn offer(&mut self, pnl: impl Iterator<Item = i64>) {
        let keep = self.offered % self.stride == 0;
        self.offered += 1;
        if !keep {
            return;
        }
        if self.rows.len() == Self::MAX_ROWS {
            let mut i = 0;
            self.rows.retain(|_| {
                i += 1;
                i % 2 == 1
            });
            // Every kept sample is a multiple of the new stride too (MAX_ROWS is even).
            self.stride *= 2;
            self.interval_ns *= 2;
        }
        self.rows.push(pnl.collect());
    }

    /// A sample of the slots' engines.
    pub fn offer_slots(&mut self, slots: &[StrategySlot]) {
        self.offer(slots.iter().map(|s| s.engine.pnl().raw()));
    }

    /// The summed PnL of the strategies `pick` selects, per row.
    pub fn sum_of(&self, pick: impl Fn(usize) -> bool) -> Vec<i64> {
        self.rows
            .iter()
            .map(|r| {
                r.iter()
                    .enumerate()
                    .filter(|&(i, _)| pick(i))
                    .map(|(_, v)| *v)
                    .fold(0i64, i64::saturating_add)
            })
            .collect()
    }
}

/// The ledger's side of a session.
#[derive(Clone, Debug, Default)]
pub struct LedgerSummary {
    /// Where the member kept its log ("" when it was a removed temporary directory).
    pub dir: String,
    /// Fills the gateway handed to the ledger.
    pub fills: u64,
    /// Fills newly booked.
    pub booked: u64,
    /// Fills the ledger already had.
    pub duplicates: u64,
    /// Fills the ledger's rules refused.
    pub rejected: u64,
    /// Batches proposed again after a leader change.
    pub retries: u64,
    /// Engines whose final positions differ from the ledger's.
    pub mismatches: Vec<crate::booking::Mismatch>,
}

fn qty(spec: &InstrumentSpec, q: Qty) -> String {
    q.display(spec.qty_scale).to_string()
}

impl SessionReport {
    /// Builds the summary from the strategy slots at the end of a session.
    pub fn build(
        mode: &'static str,
        seed: u64,
        duration_s: f64,
        venue_events: u64,
        slots: &[StrategySlot],
        killed: bool,
        pnl_path: PnlPath,
    ) -> Self {
        let mut all = hft_telemetry::latency_histogram();
        let mut digest = Sha256::new();
        let strategies = slots
            .iter()
            .map(|s| {
                let e = &s.engine;
                let spec = e.spec(e.instrument());
                let pos = e.position(e.instrument());
                let unrealized = e.mark().map_or(Money::ZERO, |m| pos.unrealized(spec, m));
                let _ = all.add(&s.latency);
                digest.update(s.name.as_bytes());
                digest.update(e.fills_digest());
                StrategyReport {
                    name: s.name.clone(),
                    symbol: spec.symbol.clone(),
                    orders: e.oms_stats().orders,
                    cancels: e.oms_stats().cancels,
                    fills: e.fill_count(),
                    volume: qty(spec, pos.volume),
                    position: qty(spec, pos.qty),
                    max_position: qty(spec, pos.max_abs_qty),
                    realized_pnl: pos.realized_net(),
                    unrealized_pnl: unrealized,
                    fees: pos.fees,
                    rejects: *e.risk().rejects(),
                    state: e.risk().state().to_string(),
                    panics: e.stats().panics,
                    gaps: e.stats().gaps,
                    restarts: s.restarts,
                    halted: s.halted.clone(),
                    latency: LatencySummary::of(&s.latency),
                }
            })
            .collect();
        let events = slots.iter().map(|s| s.engine.stats().events).sum();
        let hash: [u8; 32] = digest.finalize().into();
        Self {
            mode,
            seed,
            duration_s,
            events,
            venue_events,
            strategies,
            tick_to_order: LatencySummary::of(&all),
            fills_hash: hft_ledger::member::hex(&hash),
            killed,
            md_dropped: 0,
            md_resyncs: 0,
            ledger: None,
            pnl_path,
        }
    }

    /// Orders over all strategies.
    pub fn orders(&self) -> u64 {
        self.strategies.iter().map(|s| s.orders).sum()
    }

    /// Fills over all strategies.
    pub fn fills(&self) -> u64 {
        self.strategies.iter().map(|s| s.fills).sum()
    }

    /// Rejections over all strategies, by reason.
    pub fn rejects(&self) -> RejectCounts {
        let mut r = RejectCounts::default();
        for s in &self.strategies {
            r.merge(&s.rejects);
        }
        r
    }

    /// Realized PnL over all strategies.
    pub fn realized_pnl(&self) -> Money {
        Money(self.strategies.iter().map(|s| s.realized_pnl.raw()).sum())
    }

    /// Unrealized PnL over all strategies.
    pub fn unrealized_pnl(&self) -> Money {
        Money(self.strategies.iter().map(|s| s.unrealized_pnl.raw()).sum())
    }

    /// The summary table printed at the end of `hft run`.
    pub fn table(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "session: {} mode, seed {}, {:.1} s, {} events, {} orders, {} fills, fills_hash {}",
            self.mode,
            self.seed,
            self.duration_s,
            self.events,
            self.orders(),
            self.fills(),
            &self.fills_hash[..16]
        );
        let _ = writeln!(
            out,
            "{:<10} {:<8} {:>7} {:>6} {:>10} {:>9} {:>9} {:>11} {:>11} {:>9} {:>8} {:>8} {:>8}  rejects",
            "strategy",
            "symbol",
            "orders",
            "fills",
            "volume",
            "position",
            "max_pos",
            "realized",
            "unrealized",
            "state",
            "p50_ns",
            "p99_ns",
            "p999_ns",
        );
        for s in &self.strategies {
            let rejects: Vec<String> = s
                .rejects
                .nonzero()
                .map(|(r, n)| format!("{r}={n}"))
                .collect();
            let _ = writeln!(
                out,
                "{:<10} {:<8} {:>7} {:>6} {:>10} {:>9} {:>9} {:>11} {:>11} {:>9} {:>8} {:>8} {:>8}  {}",
                s.name,
                s.symbol,
                s.orders,
                s.fills,
                s.volume,
                s.position,
                s.max_position,
                s.realized_pnl.to_string(),
                s.unrealized_pnl.to_string(),
                s.state,
                s.latency.p50,
                s.latency.p99,
                s.latency.p999,
                if rejects.is_empty() {
                    "-".to_owned()
                } else {
                    rejects.join(" ")
                }
            );
            if let Some(h) = &s.halted {
                let _ = writeln!(out, "  {}: {h}", s.name);
            }
        }
        if let Some(l) = &self.ledger {
            let _ = writeln!(
                out,
                "ledger: {} of {} fills booked ({} duplicate, {} refused, {} batches retried); {}",
                l.booked,
                l.fills,
                l.duplicates,
                l.rejected,
                l.retries,
                if l.mismatches.is_empty() {
                    "every engine position matches the ledger".to_owned()
                } else {
                    format!("{} positions differ from the ledger", l.mismatches.len())
                }
            );
            for m in &l.mismatches {
                let _ = writeln!(
                    out,
                    "  {} {}: engine {} ledger {} (raw units)",
                    m.strategy, m.instrument, m.engine, m.ledger
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::PnlPath;

    #[test]
    fn a_pnl_path_thins_to_bounded_memory_and_keeps_an_even_grid() {
        let mut p = PnlPath::new(1_000);
        let n = 5 * PnlPath::MAX_ROWS as i64 + 3;
        // Two strategies: one earns the sample's index, the other loses it.
        for k in 0..n {
            p.offer([k, -k].into_iter());
        }
        assert!(p.rows.len() <= PnlPath::MAX_ROWS && p.rows.len() > PnlPath::MAX_ROWS / 2);
        // 5 x MAX_ROWS samples: thinned three times, every 8th sample kept.
        assert_eq!(p.interval_ns, 8_000);
        for (i, r) in p.rows.iter().enumerate() {
            assert_eq!(r, &[8 * i as i64, -8 * i as i64]);
        }
        assert_eq!(p.sum_of(|i| i == 0)[3], 24);
        assert!(p.sum_of(|_| true).iter().all(|&v| v == 0));
    }
}
