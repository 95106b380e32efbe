//! The validated configuration handed to the rest of the node. Every value here has passed
//! its range and consistency checks, and amounts are exact fixed-point values, so consumers
//! never re-validate or re-parse.

use std::net::SocketAddr;

use hft_core::{InstrumentId, InstrumentSpec, MONEY_SCALE, Money, Qty};
use hft_feed::SimParams;
use hft_risk::{NodeRiskLimits, RiskLimits};
use hft_strategy::params::{CrossArbParams, HedgeMethod, MlParams, PairsParams, TriangularParams};
use hft_strategy::{MarketMakingParams, TouchParams};

use crate::raw::{
    RawConfig, RawCrossArb, RawEngine, RawInstrument, RawLedger, RawMarketMaking, RawMl, RawNode,
    RawNodeRisk, RawPairs, RawSim, RawSimulator, RawStrategy, RawStrategyRisk, RawTelemetry,
    RawTouch, RawTriangular,
};

/// The effective configuration of a node: embedded default, overlay file and environment
/// merged and validated.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Identity of the node.
    pub node: NodeConfig,
    /// Logging and metrics.
    pub telemetry: TelemetryConfig,
    /// Engine threads, rings and the crash-restart policy.
    pub engine: EngineConfig,
    /// The seeded market simulator.
    pub simulator: SimulatorConfig,
    /// Node-wide risk limits.
    pub risk: NodeRiskLimits,
    /// Where fills are booked.
    pub ledger: LedgerConfig,
    /// Tradable instruments; an instrument's id is its index here.
    pub instruments: Vec<InstrumentConfig>,
    /// Strategy instances, each bound to one instrument.
    pub strategies: Vec<StrategyConfig>,
}

/// `[node]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeConfig {
    /// Name of the node in logs, metrics and the cluster (non-empty).
    pub name: String,
}

/// `[ledger]`: the Raft-replicated book of record of fills and positions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LedgerConfig {
    /// Book every fill in the ledger.
    pub enabled: bool,
    /// Member directory (WAL and snapshots); `None`: a fresh one under the system temp
    /// directory, removed at the end of the session.
    pub dir: Option<std::path::PathBuf>,
    /// Account fills are booked to.
    pub account: String,
}

/// `[telemetry]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TelemetryConfig {
    /// Log line format.
    pub log_format: LogFormat,
    /// Least severe level logged: one of `error`, `warn`, `info`, `debug`, `trace`.
    pub log_level: String,
    /// Prometheus endpoint; `None` when disabled.
    pub metrics_addr: Option<SocketAddr>,
    /// Period of the status log line, milliseconds.
    pub status_interval_ms: u64,
}

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

impl LogFormat {
    /// The configuration spelling (`"text"` or `"json"`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Json => "json",
        }
    }
}

/// `[engine]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineConfig {
    /// Period of the strategy timer callback, milliseconds.
    pub timer_interval_ms: u64,
    /// Slots per event ring; a power of two.
    pub ring_capacity: usize,
    /// Crashes tolerated within the window before a strategy is halted.
    pub max_restarts: u32,
    /// Window over which crashes are counted, seconds.
    pub restart_window_s: u64,
    /// First restart delay, milliseconds; doubles per crash.
    pub restart_backoff_ms: u64,
}

/// `[simulator]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimulatorConfig {
    /// Seed of the simulator's random streams.
    pub seed: u64,
    /// Venue -> engine latency in deterministic mode, microseconds.
    pub md_latency_us: u64,
    /// Engine -> venue latency in deterministic mode, microseconds.
    pub order_latency_us: u64,
}

/// One instrument: trading rules plus how the simulator drives it.
#[derive(Clone, Debug, PartialEq)]
pub struct InstrumentConfig {
    /// Trading rules; `spec.id` is the instrument's index in [`Config::instruments`].
    pub spec: InstrumentSpec,
    /// Simulated order flow.
    pub sim: SimParams,
}

/// One strategy instance.
#[derive(Clone, Debug, PartialEq)]
pub struct StrategyConfig {
    /// Unique name of the instance.
    pub name: String,
    /// The instrument it trades.
    pub instrument: InstrumentId,
    /// A disabled strategy is validated but not started.
    pub enabled: bool,
    /// Which arm of a live A/B test it runs in, if any: the session compares the PnL of
    /// the strategies of arm A with those of arm B.
    pub variant: Option<Variant>,
    /// On a cluster, the nodes (ids) its engine may run on, for a reason placement
    /// cannot see (co-location with a venue, a licence, a GPU); empty: any node. When
    /// none of them is up, the strategy waits unplaced rather than run elsewhere.
    pub nodes: Vec<u64>,
    /// On a cluster, the named venue link its engine trades through (a node's
    /// `--venue NAME=HOST:PORT`), for clusters that trade on several venues; `None`:
    /// the node's first link. Every leg of the strategy trades through that one link.
    pub venue: Option<String>,
    /// Which strategy and its parameters.
    pub kind: StrategyKind,
    /// Its pre-trade limits.
    pub risk: RiskLimits,
}

/// An arm of a live A/B test (`variant = "A"` or `"B"` on a strategy): the instruments are
/// split between two parameter sets that trade side by side over the same period.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Variant {
    /// The control arm.
    A,
    /// The challenger arm.
    B,
}

impl Variant {
    /// "A" or "B", as in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::A => "A",
            Self::B => "B",
        }
    }
}

/// The strategy kind with its parameters; in TOML the kind is the name of the sub-table.
#[derive(Clone, Debug, PartialEq)]
pub enum StrategyKind {
    /// Avellaneda–Stoikov market making (`[strategies.market_making]`).
    MarketMaking(MarketMakingParams),
    /// One post-only order at each side of the touch (`[strategies.touch]`).
    Touch(TouchParams),
    /// Cross-venue arbitrage (`[strategies.cross_arb]`).
    CrossArb(CrossArbParams),
    /// Triangular arbitrage (`[strategies.triangular]`).
    Triangular(TriangularParams),
    /// Pairs statistical arbitrage (`[strategies.pairs]`).
    Pairs(PairsParams),
    /// Logistic-model directional strategy (`[strategies.ml]`).
    Ml {
        /// Parameters with the model loaded.
        params: MlParams,
        /// Where the model came from ("" for an untrained model), as configured.
        model_path: String,
    },
}

impl StrategyKind {
    /// The TOML sub-table name of the kind.
    pub fn name(&self) -> &'static str {
        match self {
            Self::MarketMaking(_) => "market_making",
            Self::Touch(_) => "touch",
            Self::CrossArb(_) => "cross_arb",
            Self::Triangular(_) => "triangular",
            Self::Pairs(_) => "pairs",
            Self::Ml { .. } => "ml",
        }
    }

    /// Every instrument the strategy trades besides its own.
    pub fn other_legs(&self) -> Vec<InstrumentId> {
        match self {
            Self::CrossArb(p) => vec![p.other],
            Self::Triangular(p) => vec![p.second, p.cross],
            Self::Pairs(p) => vec![p.other],
            Self::MarketMaking(_) | Self::Touch(_) | Self::Ml { .. } => Vec::new(),
        }
    }
}

impl Config {
    /// The instrument with venue symbol `symbol`.
    pub fn instrument_by_symbol(&self, symbol: &str) -> Option<&InstrumentConfig> {
        self.instruments.iter().find(|i| i.spec.symbol == symbol)
    }

    /// The embedded default configuration alone (no overlay, no environment): what a node
    /// runs with when nothing is configured, and the base of examples and tests.
    ///
    /// # Panics
    ///
    /// Never in practice: the embedded default is a compile-time constant and a test
    /// asserts that it loads.
    pub fn default_embedded() -> Config {
        match crate::load(None, std::iter::empty()) {
            Ok(config) => config,
            Err(e) => panic!("the embedded default configuration is invalid: {e}"),
        }
    }

    /// Renders the effective configuration as TOML in the schema's own format (decimal
    /// strings for amounts), for `hft config show`; loading the output as an overlay yields
    /// an equal `Config`.
    ///
    /// A `Config` built by hand can hold what TOML cannot express (a `u64` above
    /// `i64::MAX`, a strategy pointing at a missing instrument); such values render as a
    /// leading comment or an empty symbol, so that the output fails validation instead of
    /// silently changing meaning.
    pub fn to_toml_string(&self) -> String {
        let raw = self.to_raw();
        toml::to_string(&raw)
            .unwrap_or_else(|e| format!("# cannot render the configuration as TOML: {e}\n"))
    }

    fn to_raw(&self) -> RawConfig {
        RawConfig {
            node: RawNode {
                name: self.node.name.clone(),
            },
            telemetry: RawTelemetry {
                log_format: self.telemetry.log_format.as_str().into(),
                log_level: self.telemetry.log_level.clone(),
                metrics_addr: self
                    .telemetry
                    .metrics_addr
                    .map(|a| a.to_string())
                    .unwrap_or_default(),
                status_interval_ms: self.telemetry.status_interval_ms,
            },
            engine: RawEngine {
                timer_interval_ms: self.engine.timer_interval_ms,
                // usize is at most 64 bits on every supported target.
                ring_capacity: u64::try_from(self.engine.ring_capacity).unwrap_or(u64::MAX),
                max_restarts: u64::from(self.engine.max_restarts),
                restart_window_s: self.engine.restart_window_s,
                restart_backoff_ms: self.engine.restart_backoff_ms,
            },
            simulator: RawSimulator {
                seed: self.simulator.seed,
                md_latency_us: self.simulator.md_latency_us,
                order_latency_us: self.simulator.order_latency_us,
            },
            risk: RawNodeRisk {
                max_gross_notional: money_string(self.risk.max_gross_notional),
                kill_switch: self.risk.kill_switch,
            },
            ledger: RawLedger {
                enabled: self.ledger.enabled,
                dir: self
                    .ledger
                    .dir
                    .as_ref()
                    .map(|d| d.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                account: self.ledger.account.clone(),
            },
            instruments: self.instruments.iter().map(instrument_to_raw).collect(),
            strategies: self
                .strategies
                .iter()
                .map(|s| self.strategy_to_raw(s))
                .collect(),
        }
    }

    fn strategy_to_raw(&self, s: &StrategyConfig) -> RawStrategy {
        let inst = self.instruments.get(s.instrument.index());
        let symbol = inst.map(|i| i.spec.symbol.clone()).unwrap_or_default();
        let qty_scale = inst.map_or(0, |i| i.spec.qty_scale);
        let qty = |q: Qty| q.display(qty_scale).to_string();
        let sym = |id: InstrumentId| {
            self.instruments
                .get(id.index())
                .map(|i| i.spec.symbol.clone())
                .unwrap_or_default()
        };
        let mut raw = RawStrategy {
            name: s.name.clone(),
            instrument: symbol,
            enabled: s.enabled,
            variant: s.variant.map(|v| v.as_str().to_owned()),
            nodes: s.nodes.clone(),
            venue: s.venue.clone().unwrap_or_default(),
            ..RawStrategy::default()
        };
        match &s.kind {
            StrategyKind::MarketMaking(mm) => {
                raw.market_making = Some(RawMarketMaking {
                    risk_aversion: mm.risk_aversion,
                    liquidity: mm.liquidity,
                    horizon_s: mm.horizon_s,
                    order_qty: qty(mm.order_qty),
                    max_inventory: qty(mm.max_inventory),
                    requote_ticks: mm.requote_ticks,
                    vol_halflife_s: mm.vol_halflife_s,
                });
            }
            StrategyKind::Touch(t) => {
                raw.touch = Some(RawTouch {
                    order_qty: qty(t.order_qty),
                    max_position: qty(t.max_position),
                });
            }
            StrategyKind::CrossArb(a) => {
                raw.cross_arb = Some(RawCrossArb {
                    other: sym(a.other),
                    order_qty: qty(a.order_qty),
                    min_edge_bps: a.min_edge_bps,
                    max_position: qty(a.max_position),
                    cooldown_ms: a.cooldown_ms,
                });
            }
            StrategyKind::Triangular(t) => {
                raw.triangular = Some(RawTriangular {
                    second: sym(t.second),
                    cross: sym(t.cross),
                    order_qty: qty(t.order_qty),
                    min_edge_bps: t.min_edge_bps,
                    max_position: qty(t.max_position),
                    cooldown_ms: t.cooldown_ms,
                });
            }
            StrategyKind::Pairs(p) => {
                let (hedge, kalman_delta) = match p.hedge {
                    HedgeMethod::Ols => ("ols", RawPairs::default().kalman_delta),
                    HedgeMethod::Kalman { delta } => ("kalman", delta),
                };
                raw.pairs = Some(RawPairs {
                    other: sym(p.other),
                    hedge: hedge.into(),
                    kalman_delta,
                    sample_ms: p.sample_ms,
                    window: p.window as u64,
                    entry_z: p.entry_z,
                    exit_z: p.exit_z,
                    adf_lags: p.adf_lags as u64,
                    adf_critical: p.adf_critical,
                    order_qty: qty(p.order_qty),
                });
            }
            StrategyKind::Ml { params, model_path } => {
                raw.ml = Some(RawMl {
                    model: model_path.clone(),
                    threshold: params.threshold,
                    order_qty: qty(params.order_qty),
                    max_position: qty(params.max_position),
                    horizon_ms: params.horizon_ms,
                    learning_rate: params.learning_rate,
                });
            }
        }
        RawStrategy {
            risk: RawStrategyRisk {
                max_order_qty: qty(s.risk.max_order_qty),
                max_order_notional: money_string(s.risk.max_order_notional),
                price_band_bps: u64::from(s.risk.price_band_bps),
                max_position: qty(s.risk.max_position),
                max_orders_per_sec: u64::from(s.risk.max_orders_per_sec),
                max_open_orders: u64::from(s.risk.max_open_orders),
                max_daily_loss: money_string(s.risk.max_daily_loss),
            },
            ..raw
        }
    }
}

fn instrument_to_raw(i: &InstrumentConfig) -> RawInstrument {
    let s = &i.spec;
    RawInstrument {
        symbol: s.symbol.clone(),
        price_scale: u64::from(s.price_scale),
        qty_scale: u64::from(s.qty_scale),
        tick_size: s.tick_size.display(s.price_scale).to_string(),
        lot_size: s.lot_size.display(s.qty_scale).to_string(),
        min_qty: s.min_qty.display(s.qty_scale).to_string(),
        min_notional: money_string(s.min_notional),
        maker_fee_bps: fee_bps_string(s.maker_fee_micros),
        taker_fee_bps: fee_bps_string(s.taker_fee_micros),
        sim: RawSim {
            initial_price: i.sim.initial_price.display(s.price_scale).to_string(),
            volatility_bps: i.sim.volatility_bps,
            jump_rate_per_min: i.sim.jump_rate_per_min,
            jump_bps: i.sim.jump_bps,
            regime_switch_per_min: i.sim.regime_switch_per_min,
            volatile_multiplier: i.sim.volatile_multiplier,
            limit_rate_hz: i.sim.limit_rate_hz,
            market_rate_hz: i.sim.market_rate_hz,
            cancel_rate_hz: i.sim.cancel_rate_hz,
            mean_order_lots: i.sim.mean_order_lots,
            depth_ticks: u64::from(i.sim.depth_ticks),
        },
    }
}

/// Fee rates are stored in micros (1e-6 of notional) which are exactly hundredths of a
/// basis point, so the bps string is the micros with two decimals.
fn fee_bps_string(micros: i64) -> String {
    Money(micros).display(FEE_BPS_SCALE).to_string()
}

/// Decimals of a fee in basis points that fit `InstrumentSpec::*_fee_micros` exactly.
pub(crate) const FEE_BPS_SCALE: u8 = 2;

/// Money with the full `MONEY_SCALE` precision but without trailing zeros beyond cents,
/// so `2000000` renders as `"2000000.00"` rather than with eight decimals.
fn money_string(m: Money) -> String {
    let full = m.display(MONEY_SCALE).to_string();
    let keep = full.trim_end_matches('0');
    let min_len = full.len() - usize::from(MONEY_SCALE - 2);
    if keep.len() < min_len {
        full[..min_len].to_owned()
    } else {
        keep.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_keeps_cents_and_all_significant_digits() {
        assert_eq!(
            money_string(Money::parse_quote("2000000").unwrap()),
            "2000000.00"
        );
        assert_eq!(
            money_string(Money::parse_quote("-0.12345678").unwrap()),
            "-0.12345678"
        );
        assert_eq!(money_string(Money::parse_quote("10.5").unwrap()), "10.50");
        assert_eq!(fee_bps_string(-25), "-0.25");
        assert_eq!(fee_bps_string(500), "5.00");
    }
}
