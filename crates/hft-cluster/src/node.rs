//! Builds the pieces of a node from its validated configuration.

use hft_config::{Config, StrategyKind};
use hft_core::{InstrumentId, InstrumentSpec, Nanos, StrategyId};
use hft_exec::{Engine, EngineSetup, RestartPolicy, SimVenue, StrategyFactory, StrategySlot};
use hft_feed::SimParams;
use hft_risk::{KillSwitch, NodeExposure, PreTradeRisk};
use hft_strategy::{CrossVenueArb, MarketMaking, MlTrader, PairsTrader, TouchMaker, TriangularArb};

/// Levels per side each engine book is sized for (growth past it is amortised).
pub const BOOK_DEPTH: usize = 512;
/// Price levels per side the simulated venue starts with.
pub const SEED_LEVELS: u32 = 25;

/// Everything a node trades with, built from a config.
pub struct NodeParts {
    /// Instrument specs indexed by id.
    pub specs: Vec<InstrumentSpec>,
    /// The simulated venue.
    pub venue: SimVenue,
    /// One slot per enabled strategy, indexed by strategy id.
    pub slots: Vec<StrategySlot>,
    /// The node's kill switch.
    pub kill: KillSwitch,
}

/// Builds venue, engines and strategy factories. `start` is the venue clock origin.
pub fn build(config: &Config, seed: u64, start: Nanos) -> NodeParts {
    let specs: Vec<InstrumentSpec> = config.instruments.iter().map(|i| i.spec.clone()).collect();
    let sims: Vec<(InstrumentSpec, SimParams)> = config
        .instruments
        .iter()
        .map(|i| (i.spec.clone(), i.sim.clone()))
        .collect();
    let venue = SimVenue::new(seed, start, &sims, SEED_LEVELS);
    let (slots, kill) = build_slots(config, &specs, Some);
    NodeParts {
        specs,
        venue,
        slots,
        kill,
    }
}

/// One slot per enabled strategy, trading `specs` (indexed by id), each strategy's
/// configured instrument mapped through `instrument_of` (strategies whose instrument
/// maps to nothing are left out); and the node's kill switch.
pub fn build_slots(
    config: &Config,
    specs: &[InstrumentSpec],
    instrument_of: impl Fn(InstrumentId) -> Option<InstrumentId>,
) -> (Vec<StrategySlot>, KillSwitch) {
    let kill = KillSwitch::new(config.risk.kill_switch);
    let enabled: Vec<_> = config
        .strategies
        .iter()
        .filter(|s| s.enabled)
        .filter_map(|s| instrument_of(s.instrument).map(|i| (s, i)))
        .collect();
    let exposure = NodeExposure::new(enabled.len(), config.risk.max_gross_notional);
    let slots = enabled
        .iter()
        .enumerate()
        .map(|(i, (s, instrument))| {
            let instrument = *instrument;
            let setup = EngineSetup {
                strategy: StrategyId(i as u16),
                instrument,
                specs: specs.to_vec(),
                book_depth: BOOK_DEPTH,
                max_open_orders: s.risk.max_open_orders as usize,
                epoch: 0,
                cache: hft_book::CacheSizes::default(),
            };
            let engine = Engine::new(
                setup,
                PreTradeRisk::new(s.risk.clone(), kill.clone(), exposure.clone()),
            );
            let factory = strategy_factory(&s.kind, instrument);
            let e = &config.engine;
            let policy =
                RestartPolicy::new(e.max_restarts, e.restart_window_s, e.restart_backoff_ms);
            StrategySlot::new(s.name.clone(), engine, factory, policy)
        })
        .collect();
    (slots, kill)
}

/// Builds instances of a configured strategy on `instrument`: what an engine installs
/// at start, after a crash, and when a configuration reload changes its parameters.
pub fn strategy_factory(kind: &StrategyKind, instrument: InstrumentId) -> StrategyFactory {
    match kind {
        StrategyKind::MarketMaking(p) => {
            let p = p.clone();
            std::sync::Arc::new(move || Box::new(MarketMaking::new(instrument, p.clone())))
        }
        StrategyKind::Touch(p) => {
            let p = p.clone();
            std::sync::Arc::new(move || Box::new(TouchMaker::new(instrument, p.clone())))
        }
        StrategyKind::CrossArb(p) => {
            let p = p.clone();
            std::sync::Arc::new(move || Box::new(CrossVenueArb::new(instrument, p.clone())))
        }
        StrategyKind::Triangular(p) => {
            let p = p.clone();
            std::sync::Arc::new(move || Box::new(TriangularArb::new(instrument, p.clone())))
        }
        StrategyKind::Pairs(p) => {
            let p = p.clone();
            std::sync::Arc::new(move || Box::new(PairsTrader::new(instrument, p.clone())))
        }
        StrategyKind::Ml { params, .. } => {
            let p = params.clone();
            std::sync::Arc::new(move || Box::new(MlTrader::new(instrument, p.clone())))
        }
    }
}
