//! The configuration as written in TOML, before validation.
//!
//! Every struct takes `#[serde(default, deny_unknown_fields)]` so that a partial layer (an
//! overlay that sets one key) deserializes on its own and unknown keys or wrong types are
//! reported with a span into that layer's text. The `Default` impls are the documented
//! defaults of `config/default.toml`; a test keeps the two in step. Decimal amounts stay
//! strings here and are parsed exactly, at the instrument's scale, by validation.

use serde::{Deserialize, Serialize};

/// The whole configuration document.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub(crate) node: RawNode,
    pub(crate) telemetry: RawTelemetry,
    pub(crate) engine: RawEngine,
    pub(crate) simulator: RawSimulator,
    pub(crate) risk: RawNodeRisk,
    pub(crate) ledger: RawLedger,
    pub(crate) instruments: Vec<RawInstrument>,
    pub(crate) strategies: Vec<RawStrategy>,
}

/// `[node]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawNode {
    pub(crate) name: String,
}

impl Default for RawNode {
    fn default() -> Self {
        Self {
            name: "local".into(),
        }
    }
}

/// `[telemetry]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawTelemetry {
    pub(crate) log_format: String,
    pub(crate) log_level: String,
    pub(crate) metrics_addr: String,
    pub(crate) status_interval_ms: u64,
}

impl Default for RawTelemetry {
    fn default() -> Self {
        Self {
            log_format: "text".into(),
            log_level: "info".into(),
            metrics_addr: String::new(),
            status_interval_ms: 1000,
        }
    }
}

/// `[ledger]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawLedger {
    pub(crate) enabled: bool,
    pub(crate) dir: String,
    pub(crate) account: String,
}

impl Default for RawLedger {
    fn default() -> Self {
        Self {
            enabled: true,
            dir: String::new(),
            account: "main".into(),
        }
    }
}

/// `[engine]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawEngine {
    pub(crate) timer_interval_ms: u64,
    pub(crate) ring_capacity: u64,
    pub(crate) max_restarts: u64,
    pub(crate) restart_window_s: u64,
    pub(crate) restart_backoff_ms: u64,
}

impl Default for RawEngine {
    fn default() -> Self {
        Self {
            timer_interval_ms: 100,
            ring_capacity: 65536,
            max_restarts: 3,
            restart_window_s: 60,
            restart_backoff_ms: 200,
        }
    }
}

/// `[simulator]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawSimulator {
    pub(crate) seed: u64,
    pub(crate) md_latency_us: u64,
    pub(crate) order_latency_us: u64,
}

impl Default for RawSimulator {
    fn default() -> Self {
        Self {
            seed: 1,
            md_latency_us: 25,
            order_latency_us: 50,
        }
    }
}

/// `[risk]`: node-wide limits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawNodeRisk {
    pub(crate) max_gross_notional: String,
    pub(crate) kill_switch: bool,
}

impl Default for RawNodeRisk {
    fn default() -> Self {
        Self {
            max_gross_notional: "2000000".into(),
            kill_switch: false,
        }
    }
}

/// One `[[instruments]]` element. The symbol has no default: it is required.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawInstrument {
    pub(crate) symbol: String,
    pub(crate) price_scale: u64,
    pub(crate) qty_scale: u64,
    pub(crate) tick_size: String,
    pub(crate) lot_size: String,
    pub(crate) min_qty: String,
    pub(crate) min_notional: String,
    pub(crate) maker_fee_bps: String,
    pub(crate) taker_fee_bps: String,
    pub(crate) sim: RawSim,
}

impl Default for RawInstrument {
    fn default() -> Self {
        Self {
            symbol: String::new(),
            price_scale: 2,
            qty_scale: 4,
            tick_size: "0.50".into(),
            lot_size: "0.0010".into(),
            min_qty: "0.0010".into(),
            min_notional: "10".into(),
            maker_fee_bps: "-0.25".into(),
            taker_fee_bps: "5".into(),
            sim: RawSim::default(),
        }
    }
}

/// `[instruments.sim]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawSim {
    pub(crate) initial_price: String,
    pub(crate) volatility_bps: f64,
    pub(crate) jump_rate_per_min: f64,
    pub(crate) jump_bps: f64,
    pub(crate) regime_switch_per_min: f64,
    pub(crate) volatile_multiplier: f64,
    pub(crate) limit_rate_hz: f64,
    pub(crate) market_rate_hz: f64,
    pub(crate) cancel_rate_hz: f64,
    pub(crate) mean_order_lots: f64,
    pub(crate) depth_ticks: u64,
}

impl Default for RawSim {
    fn default() -> Self {
        Self {
            initial_price: "60000.00".into(),
            volatility_bps: 0.4,
            jump_rate_per_min: 0.5,
            jump_bps: 20.0,
            regime_switch_per_min: 1.0,
            volatile_multiplier: 3.0,
            limit_rate_hz: 1500.0,
            market_rate_hz: 120.0,
            cancel_rate_hz: 0.8,
            mean_order_lots: 8.0,
            depth_ticks: 40,
        }
    }
}

/// One `[[strategies]]` element. Name, instrument and kind have no default: they are
/// required.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawStrategy {
    pub(crate) name: String,
    pub(crate) instrument: String,
    pub(crate) enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) variant: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) nodes: Vec<u64>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) venue: String,
    /// The kind is the name of the sub-table; exactly one is present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) market_making: Option<RawMarketMaking>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) touch: Option<RawTouch>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) cross_arb: Option<RawCrossArb>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) triangular: Option<RawTriangular>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) pairs: Option<RawPairs>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) ml: Option<RawMl>,
    pub(crate) risk: RawStrategyRisk,
}

impl Default for RawStrategy {
    fn default() -> Self {
        Self {
            name: String::new(),
            instrument: String::new(),
            enabled: true,
            variant: None,
            nodes: Vec::new(),
            venue: String::new(),
            market_making: None,
            touch: None,
            cross_arb: None,
            triangular: None,
            pairs: None,
            ml: None,
            risk: RawStrategyRisk::default(),
        }
    }
}

/// `[strategies.market_making]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawMarketMaking {
    pub(crate) risk_aversion: f64,
    pub(crate) liquidity: f64,
    pub(crate) horizon_s: f64,
    pub(crate) order_qty: String,
    pub(crate) max_inventory: String,
    pub(crate) requote_ticks: u32,
    pub(crate) vol_halflife_s: f64,
}

impl Default for RawMarketMaking {
    fn default() -> Self {
        Self {
            risk_aversion: 0.1,
            liquidity: 1.5,
            horizon_s: 0.5,
            order_qty: "0.0100".into(),
            max_inventory: "0.0500".into(),
            requote_ticks: 2,
            vol_halflife_s: 20.0,
        }
    }
}

/// `[strategies.touch]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawTouch {
    pub(crate) order_qty: String,
    pub(crate) max_position: String,
}

impl Default for RawTouch {
    fn default() -> Self {
        Self {
            order_qty: "0.0010".into(),
            max_position: "0.0100".into(),
        }
    }
}

/// `[strategies.cross_arb]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawCrossArb {
    pub(crate) other: String,
    pub(crate) order_qty: String,
    pub(crate) min_edge_bps: f64,
    pub(crate) max_position: String,
    pub(crate) cooldown_ms: u64,
}

impl Default for RawCrossArb {
    fn default() -> Self {
        Self {
            other: String::new(),
            order_qty: "0.0010".into(),
            min_edge_bps: 1.0,
            max_position: "0.0100".into(),
            cooldown_ms: 50,
        }
    }
}

/// `[strategies.triangular]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawTriangular {
    pub(crate) second: String,
    pub(crate) cross: String,
    pub(crate) order_qty: String,
    pub(crate) min_edge_bps: f64,
    pub(crate) max_position: String,
    pub(crate) cooldown_ms: u64,
}

impl Default for RawTriangular {
    fn default() -> Self {
        Self {
            second: String::new(),
            cross: String::new(),
            order_qty: "0.0100".into(),
            min_edge_bps: 1.0,
            max_position: "0.1000".into(),
            cooldown_ms: 50,
        }
    }
}

/// `[strategies.pairs]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawPairs {
    pub(crate) other: String,
    pub(crate) hedge: String,
    pub(crate) kalman_delta: f64,
    pub(crate) sample_ms: u64,
    pub(crate) window: u64,
    pub(crate) entry_z: f64,
    pub(crate) exit_z: f64,
    pub(crate) adf_lags: u64,
    pub(crate) adf_critical: f64,
    pub(crate) order_qty: String,
}

impl Default for RawPairs {
    fn default() -> Self {
        Self {
            other: String::new(),
            hedge: "ols".into(),
            kalman_delta: 1e-4,
            sample_ms: 1000,
            window: 120,
            entry_z: 2.0,
            exit_z: 0.5,
            adf_lags: 1,
            adf_critical: -3.34,
            order_qty: "0.0010".into(),
        }
    }
}

/// `[strategies.ml]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawMl {
    pub(crate) model: String,
    pub(crate) threshold: f64,
    pub(crate) order_qty: String,
    pub(crate) max_position: String,
    pub(crate) horizon_ms: u64,
    pub(crate) learning_rate: f64,
}

impl Default for RawMl {
    fn default() -> Self {
        Self {
            model: String::new(),
            threshold: 0.6,
            order_qty: "0.0010".into(),
            max_position: "0.0100".into(),
            horizon_ms: 1000,
            learning_rate: 0.0,
        }
    }
}

/// `[strategies.risk]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawStrategyRisk {
    pub(crate) max_order_qty: String,
    pub(crate) max_order_notional: String,
    pub(crate) price_band_bps: u64,
    pub(crate) max_position: String,
    pub(crate) max_orders_per_sec: u64,
    pub(crate) max_open_orders: u64,
    pub(crate) max_daily_loss: String,
}

impl Default for RawStrategyRisk {
    fn default() -> Self {
        Self {
            max_order_qty: "0.0500".into(),
            max_order_notional: "5000".into(),
            price_band_bps: 100,
            max_position: "0.1000".into(),
            max_orders_per_sec: 200,
            max_open_orders: 10,
            max_daily_loss: "2000".into(),
        }
    }
}

/// Every key of the schema with its default value, lists holding one example element:
/// the source of "valid keys" and "for example" hints, generated from the types so it
/// cannot drift from them.
pub(crate) fn schema() -> toml::Table {
    let example = RawConfig {
        instruments: vec![RawInstrument::default()],
        strategies: vec![RawStrategy {
            // Every kind, so hints know every kind's keys.
            market_making: Some(RawMarketMaking::default()),
            touch: Some(RawTouch::default()),
            cross_arb: Some(RawCrossArb::default()),
            triangular: Some(RawTriangular::default()),
            pairs: Some(RawPairs::default()),
            ml: Some(RawMl::default()),
            ..RawStrategy::default()
        }],
        ..RawConfig::default()
    };
    // Cannot fail: every default fits TOML's types. An empty schema only weakens hints.
    toml::Table::try_from(&example).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The struct defaults are what a partial layer falls back to, so they must be the
    /// values `config/default.toml` documents. When this fails after retuning the file,
    /// update the `Default` impls above to the file's first instrument and strategy.
    #[test]
    fn struct_defaults_match_the_default_file() {
        let file: RawConfig = toml::from_str(crate::DEFAULT_TOML).unwrap();
        let d = RawConfig::default();
        assert_eq!(file.node, d.node);
        assert_eq!(file.telemetry, d.telemetry);
        assert_eq!(file.ledger, d.ledger);
        assert_eq!(file.engine, d.engine);
        assert_eq!(file.simulator, d.simulator);
        assert_eq!(file.risk, d.risk);

        let mut inst = file.instruments[0].clone();
        assert_eq!(inst.symbol, "BTC-USD");
        inst.symbol.clear();
        assert_eq!(inst, RawInstrument::default());

        let mut strat = file.strategies[0].clone();
        assert_eq!(strat.market_making, Some(RawMarketMaking::default()));
        strat.name.clear();
        strat.instrument.clear();
        strat.market_making = None;
        assert_eq!(strat, RawStrategy::default());
    }

    #[test]
    fn schema_has_every_section() {
        let keys: Vec<String> = schema().keys().cloned().collect();
        assert_eq!(keys.len(), 8, "{keys:?}");
    }
}
