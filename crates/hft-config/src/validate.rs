//! Semantic validation: turns the merged raw document into a [`Config`], checking ranges,
//! exact decimals, references and uniqueness. A problem names the dotted path of the field;
//! the loader then finds the layer and line that set it.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;

use hft_core::{
    CoreError, InstrumentId, InstrumentSpec, MAX_SCALE, MONEY_SCALE, Money, Price, Qty,
};
use hft_feed::SimParams;
use hft_risk::{NodeRiskLimits, RiskLimits};
use hft_strategy::params::{CrossArbParams, HedgeMethod, MlParams, PairsParams, TriangularParams};
use hft_strategy::signals::LogisticModel;
use hft_strategy::{MarketMakingParams, TouchParams};

use crate::error::ErrorKind;
use crate::model::{
    Config, EngineConfig, FEE_BPS_SCALE, InstrumentConfig, LedgerConfig, LogFormat, NodeConfig,
    SimulatorConfig, StrategyConfig, StrategyKind, TelemetryConfig, Variant,
};
use crate::path::FieldPath;
use crate::raw::{RawConfig, RawInstrument, RawMarketMaking, RawSim, RawStrategy, RawStrategyRisk};

/// One semantic problem, located by field path only.
#[derive(Debug)]
pub(crate) struct Problem {
    pub(crate) path: FieldPath,
    pub(crate) kind: ErrorKind,
    pub(crate) message: String,
    pub(crate) hint: String,
}

impl Problem {
    fn invalid(path: FieldPath, message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self {
            path,
            kind: ErrorKind::Invalid,
            message: message.into(),
            hint: hint.into(),
        }
    }
}

type Check<T> = Result<T, Problem>;

const LOG_LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];
/// Client order ids keep the strategy index in 16 bits.
const MAX_STRATEGIES: usize = 1 << 16;

/// Validates the merged document; the first problem in document order is returned.
pub(crate) fn validate(raw: &RawConfig) -> Check<Config> {
    let root = FieldPath::default();

    let node_path = root.key("node");
    let name = non_empty(node_path.key("name"), &raw.node.name, "name = \"local\"")?;

    let t = &raw.telemetry;
    let tp = root.key("telemetry");
    let log_format = match t.log_format.as_str() {
        "text" => LogFormat::Text,
        "json" => LogFormat::Json,
        other => {
            return Err(Problem::invalid(
                tp.key("log_format"),
                format!("unknown log format {other:?}"),
                "valid values: \"text\", \"json\"",
            ));
        }
    };
    if !LOG_LEVELS.contains(&t.log_level.as_str()) {
        return Err(Problem::invalid(
            tp.key("log_level"),
            format!("unknown log level {:?}", t.log_level),
            "valid values: \"error\", \"warn\", \"info\", \"debug\", \"trace\"",
        ));
    }
    let metrics_addr = if t.metrics_addr.is_empty() {
        None
    } else {
        let addr = t.metrics_addr.parse::<SocketAddr>().map_err(|e| {
            Problem::invalid(
                tp.key("metrics_addr"),
                format!("{:?} is not a socket address: {e}", t.metrics_addr),
                "use \"IP:PORT\", e.g. \"127.0.0.1:9100\" or \"[::1]:9100\", or \"\" to disable the endpoint",
            )
        })?;
        Some(addr)
    };
    let telemetry = TelemetryConfig {
        log_format,
        log_level: t.log_level.clone(),
        metrics_addr,
        status_interval_ms: int_in(
            tp.key("status_interval_ms"),
            t.status_interval_ms,
            100,
            60_000,
        )?,
    };

    let e = &raw.engine;
    let ep = root.key("engine");
    let ring_path = ep.key("ring_capacity");
    let ring = int_in(ring_path.clone(), e.ring_capacity, 1024, 4_194_304)?;
    if !ring.is_power_of_two() {
        return Err(Problem::invalid(
            ring_path,
            format!("{ring} is not a power of two"),
            format!(
                "use a power of two between 1024 and 4194304, e.g. {} or {}",
                ring.next_power_of_two() / 2,
                ring.next_power_of_two()
            ),
        ));
    }
    let engine = EngineConfig {
        timer_interval_ms: int_in(ep.key("timer_interval_ms"), e.timer_interval_ms, 1, 60_000)?,
        ring_capacity: to_narrow(ring_path, ring)?,
        max_restarts: to_narrow(
            ep.key("max_restarts"),
            int_in(ep.key("max_restarts"), e.max_restarts, 0, 100)?,
        )?,
        restart_window_s: int_in(ep.key("restart_window_s"), e.restart_window_s, 1, 86_400)?,
        restart_backoff_ms: int_in(
            ep.key("restart_backoff_ms"),
            e.restart_backoff_ms,
            10,
            60_000,
        )?,
    };

    let s = &raw.simulator;
    let sp = root.key("simulator");
    let simulator = SimulatorConfig {
        seed: s.seed,
        md_latency_us: int_in(sp.key("md_latency_us"), s.md_latency_us, 0, 1_000_000)?,
        order_latency_us: int_in(sp.key("order_latency_us"), s.order_latency_us, 0, 1_000_000)?,
    };

    let rp = root.key("risk");
    let risk = NodeRiskLimits {
        max_gross_notional: money(
            rp.key("max_gross_notional"),
            &raw.risk.max_gross_notional,
            Sign::Positive,
        )?,
        kill_switch: raw.risk.kill_switch,
    };

    let ip = root.key("instruments");
    let mut instruments = Vec::with_capacity(raw.instruments.len());
    let mut symbols: HashMap<&str, usize> = HashMap::new();
    for (i, ri) in raw.instruments.iter().enumerate() {
        let path = ip.index(i);
        let id = InstrumentId(to_narrow(path.clone(), i)?);
        let inst = instrument(&path, id, ri)?;
        if let Some(first) = symbols.insert(ri.symbol.as_str(), i) {
            return Err(Problem::invalid(
                path.key("symbol"),
                format!("duplicate instrument symbol {:?}", ri.symbol),
                format!(
                    "symbols must be unique; {:?} is already defined by instruments[{first}]",
                    ri.symbol
                ),
            ));
        }
        instruments.push(inst);
    }

    let stp = root.key("strategies");
    if raw.strategies.len() > MAX_STRATEGIES {
        return Err(Problem {
            path: stp,
            kind: ErrorKind::OutOfRange,
            message: format!("{} strategies configured", raw.strategies.len()),
            hint: format!("at most {MAX_STRATEGIES} strategies per node (strategy ids are 16-bit)"),
        });
    }
    let mut strategies = Vec::with_capacity(raw.strategies.len());
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (i, rs) in raw.strategies.iter().enumerate() {
        let path = stp.index(i);
        let st = strategy(&path, rs, &raw.instruments, &instruments, &symbols)?;
        if let Some(first) = names.insert(rs.name.as_str(), i) {
            return Err(Problem::invalid(
                path.key("name"),
                format!("duplicate strategy name {:?}", rs.name),
                format!(
                    "strategy names must be unique; {:?} is already used by strategies[{first}]",
                    rs.name
                ),
            ));
        }
        strategies.push(st);
    }
    // A live A/B test needs both arms running.
    let arms = |v| strategies.iter().any(|s| s.enabled && s.variant == Some(v));
    if let Some((has, missing)) = [(Variant::A, Variant::B), (Variant::B, Variant::A)]
        .into_iter()
        .find(|&(has, missing)| arms(has) && !arms(missing))
    {
        return Err(Problem::invalid(
            stp.clone(),
            format!(
                "enabled strategies run variant {} of an A/B test but none runs variant {}",
                has.as_str(),
                missing.as_str()
            ),
            format!(
                "give at least one enabled strategy variant = \"{}\", or remove the variants",
                missing.as_str()
            ),
        ));
    }

    let lp = root.key("ledger");
    let account = non_empty(lp.key("account"), &raw.ledger.account, "account = \"main\"")?;
    if account.len() > 255 {
        return Err(Problem::invalid(
            lp.key("account"),
            format!("account name of {} bytes", account.len()),
            "at most 255 bytes",
        ));
    }
    let ledger = LedgerConfig {
        enabled: raw.ledger.enabled,
        dir: (!raw.ledger.dir.is_empty()).then(|| std::path::PathBuf::from(&raw.ledger.dir)),
        account,
    };

    Ok(Config {
        node: NodeConfig { name },
        telemetry,
        engine,
        simulator,
        risk,
        ledger,
        instruments,
        strategies,
    })
}

fn instrument(path: &FieldPath, id: InstrumentId, ri: &RawInstrument) -> Check<InstrumentConfig> {
    let symbol = non_empty(path.key("symbol"), &ri.symbol, "symbol = \"BTC-USD\"")?;
    let max = u64::from(MAX_SCALE);
    let price_scale: u8 = to_narrow(
        path.key("price_scale"),
        int_in(path.key("price_scale"), ri.price_scale, 0, max)?,
    )?;
    let qty_scale: u8 = to_narrow(
        path.key("qty_scale"),
        int_in(path.key("qty_scale"), ri.qty_scale, 0, max)?,
    )?;
    let price = |key: &str, text: &str| {
        let raise = Some("price_scale");
        fixed(
            path.key(key),
            text,
            price_scale,
            raise,
            Sign::Any,
            parse_price,
        )
        .map(Price)
    };
    let qty = |key: &str, text: &str, sign| {
        fixed(
            path.key(key),
            text,
            qty_scale,
            Some("qty_scale"),
            sign,
            parse_qty,
        )
        .map(Qty)
    };
    let spec = InstrumentSpec {
        id,
        symbol,
        price_scale,
        qty_scale,
        tick_size: price("tick_size", &ri.tick_size)?,
        lot_size: qty("lot_size", &ri.lot_size, Sign::Any)?,
        min_qty: qty("min_qty", &ri.min_qty, Sign::NonNegative)?,
        min_notional: money(
            path.key("min_notional"),
            &ri.min_notional,
            Sign::NonNegative,
        )?,
        maker_fee_micros: fee(path.key("maker_fee_bps"), &ri.maker_fee_bps)?,
        taker_fee_micros: fee(path.key("taker_fee_bps"), &ri.taker_fee_bps)?,
    };
    // The core's own check is the single source of truth for tradability (zero tick or
    // lot, scales that overflow notional, negative minimums).
    spec.validate().map_err(|e| spec_problem(path, e))?;
    let sim = sim(&path.key("sim"), &ri.sim, price_scale)?;
    Ok(InstrumentConfig { spec, sim })
}

/// Maps an `InstrumentSpec::validate` error onto the key it concerns.
fn spec_problem(path: &FieldPath, e: CoreError) -> Problem {
    let CoreError::InvalidSpec { field, reason, .. } = e else {
        return Problem::invalid(path.clone(), e.to_string(), "fix the instrument's values");
    };
    let (key, hint) = match field {
        "tick_size" => (
            "tick_size",
            "use a positive price increment, e.g. tick_size = \"0.01\"",
        ),
        "lot_size" => (
            "lot_size",
            "use a positive quantity increment, e.g. lot_size = \"0.001\"",
        ),
        "symbol" => ("symbol", "set the venue symbol, e.g. symbol = \"BTC-USD\""),
        "price_scale + qty_scale" => (
            "qty_scale",
            "lower price_scale or qty_scale so that their sum is at most 16",
        ),
        "min_qty/min_notional" => ("min_qty", "minimums must be zero or positive"),
        "fees" => (
            "maker_fee_bps",
            "fees must lie strictly between -10000 and 10000 bps",
        ),
        _ => ("price_scale", "scales must lie in 0..=12"),
    };
    let kind = if field.contains("scale") {
        ErrorKind::OutOfRange
    } else {
        ErrorKind::Invalid
    };
    Problem {
        path: path.key(key),
        kind,
        message: format!("{field} {reason}"),
        hint: hint.into(),
    }
}

fn sim(path: &FieldPath, r: &RawSim, price_scale: u8) -> Check<SimParams> {
    let f = |key: &str, v: f64, rule: FloatRule| float(path.key(key), v, rule);
    Ok(SimParams {
        initial_price: fixed(
            path.key("initial_price"),
            &r.initial_price,
            price_scale,
            Some("price_scale"),
            Sign::Positive,
            parse_price,
        )
        .map(Price)?,
        volatility_bps: f(
            "volatility_bps",
            r.volatility_bps,
            FloatRule::positive_max(1000.0),
        )?,
        jump_rate_per_min: f(
            "jump_rate_per_min",
            r.jump_rate_per_min,
            FloatRule::at_least(0.0),
        )?,
        jump_bps: f("jump_bps", r.jump_bps, FloatRule::at_least(0.0))?,
        regime_switch_per_min: f(
            "regime_switch_per_min",
            r.regime_switch_per_min,
            FloatRule::at_least(0.0),
        )?,
        volatile_multiplier: f(
            "volatile_multiplier",
            r.volatile_multiplier,
            FloatRule::at_least(1.0),
        )?,
        limit_rate_hz: f(
            "limit_rate_hz",
            r.limit_rate_hz,
            FloatRule::positive_max(1e6),
        )?,
        market_rate_hz: f("market_rate_hz", r.market_rate_hz, FloatRule::at_least(0.0))?,
        cancel_rate_hz: f("cancel_rate_hz", r.cancel_rate_hz, FloatRule::positive())?,
        mean_order_lots: f(
            "mean_order_lots",
            r.mean_order_lots,
            FloatRule::at_least(1.0),
        )?,
        depth_ticks: to_narrow(
            path.key("depth_ticks"),
            int_in(path.key("depth_ticks"), r.depth_ticks, 1, 10_000)?,
        )?,
    })
}

fn strategy(
    path: &FieldPath,
    rs: &RawStrategy,
    raw_instruments: &[RawInstrument],
    instruments: &[InstrumentConfig],
    symbols: &HashMap<&str, usize>,
) -> Check<StrategyConfig> {
    let name = non_empty(path.key("name"), &rs.name, "name = \"mm-btc\"")?;
    let Some(&index) = symbols.get(rs.instrument.as_str()) else {
        let known: Vec<String> = raw_instruments
            .iter()
            .map(|i| format!("{:?}", i.symbol))
            .collect();
        let hint = if known.is_empty() {
            "no instruments are configured; add an [[instruments]] table".to_owned()
        } else {
            format!(
                "valid instruments: {} (an overlay that replaces [[instruments]] must also replace [[strategies]])",
                known.join(", ")
            )
        };
        return Err(Problem::invalid(
            path.key("instrument"),
            format!("unknown instrument {:?}", rs.instrument),
            hint,
        ));
    };
    let Some(inst) = instruments.get(index) else {
        return Err(Problem::invalid(
            path.key("instrument"),
            "instrument was not validated",
            "report this as a bug",
        ));
    };
    let spec = &inst.spec;
    let kind = strategy_kind(path, rs, instruments, symbols, spec)?;
    let risk = strategy_risk(&path.key("risk"), &rs.risk, spec)?;
    let variant = match rs.variant.as_deref() {
        None => None,
        Some("A") => Some(Variant::A),
        Some("B") => Some(Variant::B),
        Some(other) => {
            return Err(Problem::invalid(
                path.key("variant"),
                format!("unknown A/B variant {other:?}"),
                "use variant = \"A\" or variant = \"B\", or leave it out",
            ));
        }
    };
    if let Some(bad) = rs.nodes.iter().find(|&&n| n == 0) {
        return Err(Problem::invalid(
            path.key("nodes"),
            format!("node id {bad}"),
            "node ids start at 1 (the ledger member ids); list the nodes it may run on, or leave nodes out for any",
        ));
    }
    let mut nodes = rs.nodes.clone();
    nodes.sort_unstable();
    nodes.dedup();
    let venue = match rs.venue.as_str() {
        "" => None,
        v if is_venue_name(v) => Some(v.to_owned()),
        v => {
            return Err(Problem::invalid(
                path.key("venue"),
                format!("venue link name {v:?}"),
                "name a venue link of the nodes (--venue NAME=HOST:PORT): 1 to 32 lowercase letters, digits, '-' or '_', starting with a letter or digit; or leave venue out for the node's first link",
            ));
        }
    };
    Ok(StrategyConfig {
        name,
        instrument: spec.id,
        enabled: rs.enabled,
        variant,
        nodes,
        venue,
        kind,
        risk,
    })
}

/// The one kind sub-table of a strategy, validated.
fn strategy_kind(
    path: &FieldPath,
    rs: &RawStrategy,
    instruments: &[InstrumentConfig],
    symbols: &HashMap<&str, usize>,
    spec: &InstrumentSpec,
) -> Check<StrategyKind> {
    const KINDS: &str = "market_making (Avellaneda-Stoikov quoting), touch (join the touch), \
        cross_arb (same asset on two venues), triangular (three pairs), pairs (statistical \
        arbitrage), ml (logistic model of the next move)";
    let present = [
        rs.market_making.is_some(),
        rs.touch.is_some(),
        rs.cross_arb.is_some(),
        rs.triangular.is_some(),
        rs.pairs.is_some(),
        rs.ml.is_some(),
    ];
    match present.iter().filter(|&&p| p).count() {
        0 => {
            return Err(Problem::invalid(
                path.clone(),
                "the strategy has no kind",
                format!(
                    "add one kind sub-table, e.g. [strategies.market_making]; valid kinds: {KINDS}"
                ),
            ));
        }
        1 => {}
        _ => {
            return Err(Problem::invalid(
                path.clone(),
                "the strategy has more than one kind sub-table",
                format!("keep exactly one of: {KINDS}"),
            ));
        }
    }
    // A dotted key below the strategy, e.g. "pairs.other".
    let at = |key: &str| key.split('.').fold(path.clone(), |p, k| p.key(k));
    // Another leg: a configured instrument, not the strategy's own, quantities at the
    // same scale (one set of per-order risk limits applies to every leg).
    let leg = |key: &str, symbol: &str| -> Check<InstrumentId> {
        let p = at(key);
        let Some(&i) = symbols.get(symbol) else {
            let known: Vec<&str> = symbols.keys().copied().collect();
            return Err(Problem::invalid(
                p,
                format!("unknown instrument {symbol:?}"),
                format!("name one of the [[instruments]]: {}", known.join(", ")),
            ));
        };
        let Some(other) = instruments.get(i) else {
            return Err(Problem::invalid(
                p,
                "instrument was not validated",
                "report this as a bug",
            ));
        };
        let o = &other.spec;
        if o.id == spec.id {
            return Err(Problem::invalid(
                p,
                format!("{symbol:?} is the strategy's own instrument"),
                "name a different instrument for this leg",
            ));
        }
        if o.qty_scale != spec.qty_scale {
            return Err(Problem::invalid(
                p,
                format!(
                    "{symbol:?} has qty_scale {} but {} has {}",
                    o.qty_scale, spec.symbol, spec.qty_scale
                ),
                "give every leg of the strategy the same qty_scale, so its risk limits mean the same on each",
            ));
        }
        Ok(o.id)
    };
    let f = |key: &str, v: f64, rule: FloatRule| float(at(key), v, rule);
    let qty = |key: &str, text: &str| strategy_qty(at(key), text, spec);
    if let Some(mm) = &rs.market_making {
        return Ok(StrategyKind::MarketMaking(market_making(
            &path.key("market_making"),
            mm,
            spec,
        )?));
    }
    if let Some(t) = &rs.touch {
        let p = path.key("touch");
        return Ok(StrategyKind::Touch(TouchParams {
            order_qty: strategy_qty(p.key("order_qty"), &t.order_qty, spec)?,
            max_position: strategy_qty(p.key("max_position"), &t.max_position, spec)?,
        }));
    }
    if let Some(a) = &rs.cross_arb {
        let other = leg("cross_arb.other", &a.other)?;
        if instruments[other.index()].spec.price_scale != spec.price_scale {
            return Err(Problem::invalid(
                at("cross_arb.other"),
                format!(
                    "{:?} prices have a different price_scale from {}",
                    a.other, spec.symbol
                ),
                "the two legs' prices are compared directly; give both the same price_scale",
            ));
        }
        return Ok(StrategyKind::CrossArb(CrossArbParams {
            other,
            order_qty: qty("cross_arb.order_qty", &a.order_qty)?,
            min_edge_bps: f(
                "cross_arb.min_edge_bps",
                a.min_edge_bps,
                FloatRule::at_least(0.0),
            )?,
            max_position: qty("cross_arb.max_position", &a.max_position)?,
            cooldown_ms: int_in(at("cross_arb.cooldown_ms"), a.cooldown_ms, 0, 60_000)?,
        }));
    }
    if let Some(t) = &rs.triangular {
        let second = leg("triangular.second", &t.second)?;
        let cross = leg("triangular.cross", &t.cross)?;
        if second == cross {
            return Err(Problem::invalid(
                at("triangular.cross"),
                "the cross is the same instrument as the second leg",
                "name the pair that links the two, e.g. ETHBTC for BTCUSDT and ETHUSDT",
            ));
        }
        return Ok(StrategyKind::Triangular(TriangularParams {
            second,
            cross,
            order_qty: qty("triangular.order_qty", &t.order_qty)?,
            min_edge_bps: f(
                "triangular.min_edge_bps",
                t.min_edge_bps,
                FloatRule::at_least(0.0),
            )?,
            max_position: qty("triangular.max_position", &t.max_position)?,
            cooldown_ms: int_in(at("triangular.cooldown_ms"), t.cooldown_ms, 0, 60_000)?,
        }));
    }
    if let Some(p) = &rs.pairs {
        let hedge = match p.hedge.as_str() {
            "ols" => HedgeMethod::Ols,
            "kalman" => HedgeMethod::Kalman {
                delta: f(
                    "pairs.kalman_delta",
                    p.kalman_delta,
                    FloatRule::positive_max(0.5),
                )?,
            },
            other => {
                return Err(Problem::invalid(
                    at("pairs.hedge"),
                    format!("unknown hedge method {other:?}"),
                    "use \"ols\" (rolling least squares) or \"kalman\" (adaptive)",
                ));
            }
        };
        let entry_z = f("pairs.entry_z", p.entry_z, FloatRule::positive_max(20.0))?;
        let exit_z = f("pairs.exit_z", p.exit_z, FloatRule::at_least(0.0))?;
        if exit_z >= entry_z {
            return Err(Problem::invalid(
                at("pairs.exit_z"),
                format!("exit_z {exit_z} is not below entry_z {entry_z}"),
                "a position must close inside the band that opened it; lower exit_z",
            ));
        }
        let window = int_in(at("pairs.window"), p.window, 20, 100_000)?;
        let adf_lags = int_in(at("pairs.adf_lags"), p.adf_lags, 0, 10)?;
        if window < 2 * adf_lags + 8 {
            return Err(Problem::invalid(
                at("pairs.window"),
                format!(
                    "window {window} is too short for adf_lags {adf_lags}: the test would never run"
                ),
                format!("use window >= {} or fewer adf_lags", 2 * adf_lags + 8),
            ));
        }
        return Ok(StrategyKind::Pairs(PairsParams {
            other: leg("pairs.other", &p.other)?,
            hedge,
            sample_ms: int_in(at("pairs.sample_ms"), p.sample_ms, 1, 3_600_000)?,
            window: window as usize,
            entry_z,
            exit_z,
            adf_lags: adf_lags as usize,
            adf_critical: f(
                "pairs.adf_critical",
                p.adf_critical,
                FloatRule::at_least(-50.0),
            )?,
            order_qty: qty("pairs.order_qty", &p.order_qty)?,
        }));
    }
    if let Some(m) = &rs.ml {
        let model = if m.model.is_empty() {
            LogisticModel::new()
        } else {
            let text = std::fs::read_to_string(&m.model).map_err(|e| {
                Problem::invalid(
                    at("ml.model"),
                    format!("cannot read model file {:?}: {e}", m.model),
                    "write one with `hft train --data PATH --symbol SYM --out FILE`, or set model = \"\" for an untrained model",
                )
            })?;
            LogisticModel::from_json(&text).map_err(|e| {
                Problem::invalid(
                    at("ml.model"),
                    format!("model file {:?} is invalid: {e}", m.model),
                    "write it again with `hft train`",
                )
            })?
        };
        let threshold = f("ml.threshold", m.threshold, FloatRule::positive_max(1.0))?;
        if threshold <= 0.5 {
            return Err(Problem::invalid(
                at("ml.threshold"),
                format!("{threshold} is not above 0.5"),
                "the strategy bids above threshold and offers below 1 - threshold; use e.g. 0.6",
            ));
        }
        return Ok(StrategyKind::Ml {
            params: MlParams {
                model,
                threshold,
                order_qty: qty("ml.order_qty", &m.order_qty)?,
                max_position: qty("ml.max_position", &m.max_position)?,
                horizon_ms: int_in(at("ml.horizon_ms"), m.horizon_ms, 1, 3_600_000)?,
                learning_rate: f(
                    "ml.learning_rate",
                    m.learning_rate,
                    FloatRule::at_least(0.0),
                )?,
            },
            model_path: m.model.clone(),
        });
    }
    Err(Problem::invalid(
        path.clone(),
        "the strategy has no kind",
        format!("valid kinds: {KINDS}"),
    ))
}

fn market_making(
    path: &FieldPath,
    r: &RawMarketMaking,
    spec: &InstrumentSpec,
) -> Check<MarketMakingParams> {
    let f = |key: &str, v: f64| float(path.key(key), v, FloatRule::positive());
    let order_qty = strategy_qty(path.key("order_qty"), &r.order_qty, spec)?;
    if order_qty.raw() % spec.lot_size.raw() != 0 {
        return Err(Problem::invalid(
            path.key("order_qty"),
            format!(
                "{:?} is not a multiple of the lot size {}",
                r.order_qty,
                spec.lot_size.display(spec.qty_scale)
            ),
            format!(
                "every quote would be refused; use a multiple of {} (instrument {})",
                spec.lot_size.display(spec.qty_scale),
                spec.symbol
            ),
        ));
    }
    Ok(MarketMakingParams {
        risk_aversion: f("risk_aversion", r.risk_aversion)?,
        liquidity: f("liquidity", r.liquidity)?,
        horizon_s: f("horizon_s", r.horizon_s)?,
        order_qty,
        max_inventory: strategy_qty(path.key("max_inventory"), &r.max_inventory, spec)?,
        requote_ticks: r.requote_ticks,
        vol_halflife_s: f("vol_halflife_s", r.vol_halflife_s)?,
    })
}

fn strategy_risk(
    path: &FieldPath,
    r: &RawStrategyRisk,
    spec: &InstrumentSpec,
) -> Check<RiskLimits> {
    let bounded = |key: &str, v: u64, lo: u64, hi: u64| -> Check<u32> {
        to_narrow(path.key(key), int_in(path.key(key), v, lo, hi)?)
    };
    Ok(RiskLimits {
        max_order_qty: strategy_qty(path.key("max_order_qty"), &r.max_order_qty, spec)?,
        max_order_notional: money(
            path.key("max_order_notional"),
            &r.max_order_notional,
            Sign::Positive,
        )?,
        price_band_bps: bounded("price_band_bps", r.price_band_bps, 1, 10_000)?,
        max_position: strategy_qty(path.key("max_position"), &r.max_position, spec)?,
        max_orders_per_sec: bounded("max_orders_per_sec", r.max_orders_per_sec, 1, 1_000_000)?,
        max_open_orders: bounded("max_open_orders", r.max_open_orders, 1, 10_000)?,
        max_daily_loss: money(
            path.key("max_daily_loss"),
            &r.max_daily_loss,
            Sign::Positive,
        )?,
    })
}

fn parse_price(text: &str, scale: u8) -> Result<i64, CoreError> {
    Price::parse(text, scale).map(Price::raw)
}

fn parse_qty(text: &str, scale: u8) -> Result<i64, CoreError> {
    Qty::parse(text, scale).map(Qty::raw)
}

/// A positive quantity at the strategy's instrument's scale.
fn strategy_qty(path: FieldPath, text: &str, spec: &InstrumentSpec) -> Check<Qty> {
    let scale_key = format!("qty_scale of {}", spec.symbol);
    fixed(
        path,
        text,
        spec.qty_scale,
        Some(&scale_key),
        Sign::Positive,
        parse_qty,
    )
    .map(Qty)
}

fn non_empty(path: FieldPath, value: &str, example: &str) -> Check<String> {
    if value.trim().is_empty() {
        return Err(Problem::invalid(
            path,
            "must not be empty",
            format!("set it, e.g. {example}"),
        ));
    }
    Ok(value.to_owned())
}

fn int_in(path: FieldPath, v: u64, lo: u64, hi: u64) -> Check<u64> {
    if (lo..=hi).contains(&v) {
        Ok(v)
    } else {
        Err(Problem {
            path,
            kind: ErrorKind::OutOfRange,
            message: format!("{v} is out of range"),
            hint: format!("valid range: {lo}..={hi}"),
        })
    }
}

/// Narrows an already range-checked integer; fails only if a range constant is wrong.
fn to_narrow<T: TryFrom<U>, U: Copy + fmt::Display>(path: FieldPath, v: U) -> Check<T> {
    T::try_from(v).map_err(|_| Problem {
        path,
        kind: ErrorKind::OutOfRange,
        message: format!("{v} is out of range"),
        hint: "use a smaller value".into(),
    })
}

/// Which signs a decimal amount may take.
#[derive(Clone, Copy)]
enum Sign {
    /// Any value (the core validates tick and lot sizes itself).
    Any,
    /// Zero or more.
    NonNegative,
    /// Strictly greater than zero.
    Positive,
}

/// Parses a decimal string exactly at `scale` decimals with `parse` (one of the core
/// parsers), so a value with more decimals than the scale is refused, never rounded.
fn fixed(
    path: FieldPath,
    text: &str,
    scale: u8,
    raise: Option<&str>,
    sign: Sign,
    parse: fn(&str, u8) -> Result<i64, CoreError>,
) -> Check<i64> {
    let raw = parse(text, scale).map_err(|e| {
        let example = Money(12_345).display(scale.min(4));
        let hint = match raise {
            Some(key) => format!(
                "write a quoted plain decimal with at most {scale} decimals ({key} = {scale}), \
                 e.g. \"{example}\"; round the value or raise {key}"
            ),
            None => format!(
                "write a quoted plain decimal with at most {scale} decimals, e.g. \"{example}\""
            ),
        };
        Problem::invalid(path.clone(), e.to_string(), hint)
    })?;
    let (ok, rule, hint) = match sign {
        Sign::Any => (true, "", ""),
        Sign::NonNegative => (
            raw >= 0,
            "must not be negative",
            "use zero or a positive amount",
        ),
        Sign::Positive => (
            raw > 0,
            "must be greater than zero",
            "use a positive amount",
        ),
    };
    if !ok {
        return Err(Problem {
            path,
            kind: ErrorKind::OutOfRange,
            message: format!("{text:?} {rule}"),
            hint: hint.into(),
        });
    }
    Ok(raw)
}

/// An amount of quote currency, exact to `MONEY_SCALE` decimals.
fn money(path: FieldPath, text: &str, sign: Sign) -> Check<Money> {
    fixed(path, text, MONEY_SCALE, None, sign, |s, _| {
        Money::parse_quote(s).map(Money::raw)
    })
    .map(Money)
}

/// A fee in basis points, exact to 0.01 bp, returned in micros of notional (the same
/// integer: one hundredth of a basis point is 1e-6).
fn fee(path: FieldPath, text: &str) -> Check<i64> {
    let micros = fixed(
        path.clone(),
        text,
        FEE_BPS_SCALE,
        None,
        Sign::Any,
        |s, scale| Money::parse(s, scale).map(Money::raw),
    )?;
    if micros.unsigned_abs() >= 1_000_000 {
        return Err(Problem {
            path,
            kind: ErrorKind::OutOfRange,
            message: format!("{text:?} bps is not below 100% of notional"),
            hint: "fees must lie strictly between -10000 and 10000 bps".into(),
        });
    }
    Ok(micros)
}

/// The valid range of a float parameter; every rule also requires a finite number.
#[derive(Clone, Copy)]
struct FloatRule {
    min: f64,
    min_inclusive: bool,
    max: Option<f64>,
}

impl FloatRule {
    const fn positive() -> Self {
        Self {
            min: 0.0,
            min_inclusive: false,
            max: None,
        }
    }

    const fn positive_max(max: f64) -> Self {
        Self {
            min: 0.0,
            min_inclusive: false,
            max: Some(max),
        }
    }

    const fn at_least(min: f64) -> Self {
        Self {
            min,
            min_inclusive: true,
            max: None,
        }
    }

    fn accepts(self, v: f64) -> bool {
        let above = if self.min_inclusive {
            v >= self.min
        } else {
            v > self.min
        };
        v.is_finite() && above && self.max.is_none_or(|max| v <= max)
    }
}

impl fmt::Display for FloatRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = if self.min_inclusive { ">=" } else { ">" };
        write!(f, "a finite number {op} {}", self.min)?;
        if let Some(max) = self.max {
            write!(f, " and <= {max}")?;
        }
        Ok(())
    }
}

fn float(path: FieldPath, v: f64, rule: FloatRule) -> Check<f64> {
    if rule.accepts(v) {
        Ok(v)
    } else {
        Err(Problem {
            path,
            kind: ErrorKind::OutOfRange,
            message: format!("{v} is out of range"),
            hint: format!("valid range: {rule}"),
        })
    }
}

/// Whether `name` can name a venue link: it appears in ledger fills, kill switch scopes
/// and command lines, so it is kept to a plain token.
pub fn is_venue_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && name.as_bytes()[0].is_ascii_alphanumeric()
}
