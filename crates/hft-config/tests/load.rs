//! Behaviour of the layered loader as an operator sees it: values, messages and locations.

use std::path::PathBuf;

use hft_config::{
    Config, ConfigError, DEFAULT_TOML, Diagnostic, ErrorKind, LogFormat, Origin, Position,
    StrategyKind, Variant, check_file, load, load_str,
};
use hft_core::{InstrumentId, Money, Price, Qty};
use proptest::prelude::*;

fn no_env() -> Vec<(String, String)> {
    Vec::new()
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn overlay_err(text: &str) -> Diagnostic {
    let e = load_str("overlay.toml", text, no_env()).expect_err("overlay should be rejected");
    e.diagnostic()
        .cloned()
        .unwrap_or_else(|| panic!("expected a diagnostic, got {e}"))
}

fn at(line: usize, column: usize) -> Origin {
    Origin::File {
        name: "overlay.toml".into(),
        position: Some(Position { line, column }),
    }
}

#[test]
fn default_loads_with_documented_values() {
    let c = Config::default_embedded();
    assert_eq!(c.node.name, "local");
    assert_eq!(c.telemetry.log_format, LogFormat::Text);
    assert_eq!(c.telemetry.log_level, "info");
    assert_eq!(c.telemetry.metrics_addr, None);
    assert_eq!(c.telemetry.status_interval_ms, 1000);
    assert_eq!(c.engine.ring_capacity, 65536);
    assert_eq!(c.engine.max_restarts, 3);
    assert_eq!(c.simulator.seed, 1);
    assert_eq!(c.simulator.md_latency_us, 25);
    assert_eq!(
        c.risk.max_gross_notional,
        Money::parse_quote("2000000").unwrap()
    );
    assert!(!c.risk.kill_switch);

    assert_eq!(c.instruments.len(), 2);
    let btc = c.instrument_by_symbol("BTC-USD").unwrap();
    assert_eq!(btc.spec.id, InstrumentId(0));
    assert_eq!(btc.spec.lot_size, Qty(10));
    assert_eq!(btc.spec.maker_fee_micros, -25);
    assert_eq!(btc.spec.taker_fee_micros, 500);
    assert_eq!(btc.sim.initial_price, Price(6_000_000));
    let eth = c.instrument_by_symbol("ETH-USD").unwrap();
    assert_eq!(eth.spec.id, InstrumentId(1));
    assert_eq!(eth.spec.qty_scale, 3);
    assert_eq!(eth.spec.lot_size, Qty(10));
    assert!(c.instrument_by_symbol("XRP-USD").is_none());

    assert_eq!(c.strategies.len(), 2);
    let eth_mm = &c.strategies[1];
    assert_eq!(eth_mm.name, "mm-eth");
    assert_eq!(eth_mm.instrument, InstrumentId(1));
    let StrategyKind::MarketMaking(mm) = &eth_mm.kind else {
        panic!("mm-eth is a market maker: {:?}", eth_mm.kind)
    };
    assert_eq!(mm.order_qty, Qty(200));
    assert_eq!(eth_mm.risk.max_position, Qty(2000));
    assert_eq!(
        eth_mm.risk.max_order_notional,
        Money::parse_quote("5000").unwrap()
    );

    // load() without overlay and env is the same thing.
    assert_eq!(load(None, no_env()).unwrap(), c);
}

#[test]
fn overlay_changes_one_value_and_keeps_the_rest() {
    let c = load_str("overlay.toml", "[simulator]\nseed = 42\n", no_env()).unwrap();
    let mut expected = Config::default_embedded();
    expected.simulator.seed = 42;
    assert_eq!(c, expected);
}

#[test]
fn overlay_replaces_lists_wholesale() {
    let text = r#"
[[instruments]]
symbol = "SOL-USD"
qty_scale = 2
lot_size = "0.01"
min_qty = "0.01"
[instruments.sim]
initial_price = "150.00"

[[strategies]]
name = "mm-sol"
instrument = "SOL-USD"
[strategies.market_making]
order_qty = "1.00"
[strategies.risk]
max_order_qty = "5"
max_position = "10"
"#;
    let c = load_str("overlay.toml", text, no_env()).unwrap();
    assert_eq!(c.instruments.len(), 1);
    assert_eq!(c.strategies.len(), 1);
    assert_eq!(c.strategies[0].instrument, InstrumentId(0));
    // Unset keys of a list element take the documented defaults (those of the first
    // instrument of the default file).
    let btc = Config::default_embedded().instruments.swap_remove(0);
    assert_eq!(c.instruments[0].spec.tick_size, btc.spec.tick_size);
    assert_eq!(c.instruments[0].sim.volatility_bps, btc.sim.volatility_bps);
}

#[test]
fn env_overrides_win_and_values_are_typed_by_the_schema() {
    let c = load_str(
        "overlay.toml",
        "[simulator]\nseed = 42\n",
        env(&[
            ("HFT_SIMULATOR__SEED", "5"),
            ("HFT_NODE__NAME", "node-2"),
            ("HFT_RISK__MAX_GROSS_NOTIONAL", "1000"),
            ("HFT_TELEMETRY__LOG_FORMAT", "\"json\""),
            ("HFT_TELEMETRY__METRICS_ADDR", "127.0.0.1:9100"),
            ("HFT_STRATEGIES__1__ENABLED", "false"),
            ("HFT_INSTRUMENTS__0__SIM__VOLATILITY_BPS", "2.5"),
            ("PATH", "/usr/bin"),
        ]),
    )
    .unwrap();
    assert_eq!(c.simulator.seed, 5);
    assert_eq!(c.node.name, "node-2");
    assert_eq!(
        c.risk.max_gross_notional,
        Money::parse_quote("1000").unwrap()
    );
    assert_eq!(c.telemetry.log_format, LogFormat::Json);
    assert_eq!(
        c.telemetry.metrics_addr,
        Some("127.0.0.1:9100".parse().unwrap())
    );
    assert!(c.strategies[0].enabled);
    assert!(!c.strategies[1].enabled);
    assert_eq!(c.instruments[0].sim.volatility_bps, 2.5);
}

#[test]
fn bad_env_value_names_the_variable() {
    let e = load(None, env(&[("HFT_SIMULATOR__SEED", "x")])).unwrap_err();
    let d = e.diagnostic().unwrap();
    assert_eq!(d.kind, ErrorKind::WrongType);
    assert_eq!(
        d.origin,
        Origin::Env {
            var: "HFT_SIMULATOR__SEED".into()
        }
    );
    assert_eq!(d.field, "simulator.seed");
    assert!(d.hint.contains("seed = 1"), "{e}");
    assert!(
        e.to_string()
            .contains("environment variable HFT_SIMULATOR__SEED"),
        "{e}"
    );

    // A range error from the environment points at the variable, not at the default file.
    let e = load(None, env(&[("HFT_TELEMETRY__STATUS_INTERVAL_MS", "5")])).unwrap_err();
    let d = e.diagnostic().unwrap();
    assert_eq!(d.kind, ErrorKind::OutOfRange);
    assert_eq!(
        d.origin,
        Origin::Env {
            var: "HFT_TELEMETRY__STATUS_INTERVAL_MS".into()
        }
    );

    let e = load(None, env(&[("HFT_SIMULATOR__SEDE", "5")])).unwrap_err();
    let d = e.diagnostic().unwrap();
    assert_eq!(d.kind, ErrorKind::UnknownKey);
    assert_eq!(d.field, "simulator.sede");
    assert!(
        d.hint.contains("md_latency_us, order_latency_us, seed"),
        "{e}"
    );

    let e = load(None, env(&[("HFT_STRATEGIES__7__ENABLED", "false")])).unwrap_err();
    let d = e.diagnostic().unwrap();
    assert_eq!(d.kind, ErrorKind::OutOfRange);
    assert_eq!(d.field, "strategies[7]");
    assert!(d.hint.contains("0..=1"), "{e}");

    let e = load(None, env(&[("HFT_STRATEGIES__ENABLED", "false")])).unwrap_err();
    assert_eq!(e.diagnostic().unwrap().field, "strategies", "{e}");
}

#[test]
fn unknown_top_level_key_is_located_and_lists_valid_keys() {
    let d = overlay_err("[simulator]\nseed = 2\n\nno_such_key_xyz = 1\n");
    // After `[simulator]` the key belongs to the simulator table.
    assert_eq!(d.kind, ErrorKind::UnknownKey);
    assert_eq!(d.field, "simulator.no_such_key_xyz");
    assert_eq!(d.origin, at(4, 1));

    let d = overlay_err("# top\nno_such_key_xyz = 1\n");
    assert_eq!(d.kind, ErrorKind::UnknownKey);
    assert_eq!(d.field, "no_such_key_xyz");
    assert_eq!(d.origin, at(2, 1));
    assert_eq!(d.message, "unknown key `no_such_key_xyz`");
    for key in [
        "node",
        "telemetry",
        "engine",
        "simulator",
        "risk",
        "instruments",
        "strategies",
    ] {
        assert!(d.hint.contains(key), "hint should list {key}: {}", d.hint);
    }
    let shown = d.to_string();
    assert!(
        shown.starts_with("overlay.toml:2:1: no_such_key_xyz: unknown key"),
        "{shown}"
    );
}

#[test]
fn unknown_nested_key_in_a_list_element() {
    let d = overlay_err(
        "[[strategies]]\nname = \"a\"\ninstrument = \"BTC-USD\"\n[strategies.market_making]\nrisk_aversionn = 0.1\n",
    );
    assert_eq!(d.kind, ErrorKind::UnknownKey);
    assert_eq!(d.field, "strategies[0].market_making.risk_aversionn");
    assert_eq!(d.origin, at(5, 1));
    assert!(
        d.hint.contains("in strategies[0].market_making"),
        "{}",
        d.hint
    );
    assert!(d.hint.contains("risk_aversion"), "{}", d.hint);
}

#[test]
fn wrong_type_is_located() {
    let d = overlay_err("[simulator]\nseed = \"x\"\n");
    assert_eq!(d.kind, ErrorKind::WrongType);
    assert_eq!(d.field, "simulator.seed");
    assert_eq!(d.origin, at(2, 8));
    assert!(d.message.contains("expected u64"), "{}", d.message);

    let d = overlay_err("[[instruments]]\nsymbol = \"X\"\ntick_size = 0.1\n");
    assert_eq!(d.kind, ErrorKind::WrongType);
    assert_eq!(d.field, "instruments[0].tick_size");
    assert!(d.hint.contains("tick_size = \""), "{}", d.hint);
}

#[test]
fn syntax_error_is_located() {
    let d = overlay_err("[simulator]\nseed = = 2\n");
    assert_eq!(d.kind, ErrorKind::Syntax);
    assert!(
        matches!(
            d.origin,
            Origin::File {
                position: Some(Position { line: 2, .. }),
                ..
            }
        ),
        "{d}"
    );
}

#[test]
fn out_of_range_is_located_with_range_hint() {
    let d = overlay_err("[telemetry]\nlog_level = \"debug\"\nstatus_interval_ms = 5\n");
    assert_eq!(d.kind, ErrorKind::OutOfRange);
    assert_eq!(d.field, "telemetry.status_interval_ms");
    assert_eq!(d.origin, at(3, 1));
    assert!(d.hint.contains("100..=60000"), "{}", d.hint);

    let d = overlay_err("[engine]\nring_capacity = 5000\n");
    assert_eq!(d.field, "engine.ring_capacity");
    assert!(d.hint.contains("4096 or 8192"), "{}", d.hint);

    let d =
        overlay_err("[[instruments]]\nsymbol = \"X\"\n[instruments.sim]\nvolatility_bps = nan\n");
    assert_eq!(d.kind, ErrorKind::OutOfRange);
    assert_eq!(d.field, "instruments[0].sim.volatility_bps");
    assert_eq!(d.origin, at(4, 1));
    assert!(d.hint.contains("> 0 and <= 1000"), "{}", d.hint);
}

#[test]
fn zero_tick_size_is_rejected() {
    let d = overlay_err("[[instruments]]\nsymbol = \"BTC-USD\"\ntick_size = \"0\"\n");
    assert_eq!(d.field, "instruments[0].tick_size");
    assert_eq!(d.message, "tick_size must be greater than zero");
    assert_eq!(d.origin, at(3, 1));
}

#[test]
fn strategy_on_unknown_instrument_is_rejected() {
    let d = overlay_err(
        "[[strategies]]\nname = \"s\"\ninstrument = \"DOGE-USD\"\n[strategies.market_making]\n",
    );
    assert_eq!(d.kind, ErrorKind::Invalid);
    assert_eq!(d.field, "strategies[0].instrument");
    assert_eq!(d.origin, at(3, 1));
    assert!(d.hint.contains("\"BTC-USD\", \"ETH-USD\""), "{}", d.hint);

    // Replacing the instruments but not the strategies: the error is in the default file,
    // where the dangling reference is.
    let d = overlay_err("[[instruments]]\nsymbol = \"SOL-USD\"\n");
    assert_eq!(d.field, "strategies[0].instrument");
    let Origin::File {
        name,
        position: Some(_),
    } = &d.origin
    else {
        panic!("expected a file position: {d}");
    };
    assert!(name.contains("config/default.toml"), "{d}");
    assert!(d.hint.contains("\"SOL-USD\""), "{}", d.hint);
}

#[test]
fn duplicate_strategy_names_are_rejected() {
    let text = "[[strategies]]\nname = \"a\"\ninstrument = \"BTC-USD\"\n[strategies.market_making]\n\n\
                [[strategies]]\nname = \"a\"\ninstrument = \"ETH-USD\"\n[strategies.market_making]\norder_qty = \"0.2\"\n";
    let d = overlay_err(text);
    assert_eq!(d.field, "strategies[1].name");
    assert_eq!(d.origin, at(7, 1));
    assert!(d.message.contains("duplicate"), "{}", d.message);
    assert!(d.hint.contains("strategies[0]"), "{}", d.hint);
}

#[test]
fn strategy_without_kind_is_rejected() {
    let d = overlay_err("[[strategies]]\nname = \"s\"\ninstrument = \"BTC-USD\"\n");
    assert_eq!(d.field, "strategies[0]");
    assert_eq!(d.origin, at(1, 1));
    assert!(d.hint.contains("market_making"), "{}", d.hint);
}

#[test]
fn too_many_decimals_are_rejected() {
    let d = overlay_err("[[instruments]]\nsymbol = \"BTC-USD\"\ntick_size = \"0.001\"\n");
    assert_eq!(d.kind, ErrorKind::Invalid);
    assert_eq!(d.field, "instruments[0].tick_size");
    assert!(d.message.contains("more decimals"), "{}", d.message);
    assert!(d.hint.contains("price_scale = 2"), "{}", d.hint);

    // Quantities are checked at the strategy's instrument's scale (ETH: 3 decimals).
    let e = load(
        None,
        env(&[("HFT_STRATEGIES__1__MARKET_MAKING__ORDER_QTY", "0.0001")]),
    )
    .unwrap_err();
    let d = e.diagnostic().unwrap();
    assert_eq!(d.field, "strategies[1].market_making.order_qty");
    assert_eq!(
        d.origin,
        Origin::Env {
            var: "HFT_STRATEGIES__1__MARKET_MAKING__ORDER_QTY".into()
        }
    );

    let d = overlay_err("[[instruments]]\nsymbol = \"BTC-USD\"\nmaker_fee_bps = \"0.125\"\n");
    assert_eq!(d.field, "instruments[0].maker_fee_bps");
}

#[test]
fn other_semantic_checks() {
    let d = overlay_err("[telemetry]\nlog_level = \"verbose\"\n");
    assert!(d.hint.contains("\"debug\""), "{}", d.hint);
    let d = overlay_err("[telemetry]\nmetrics_addr = \"localhost\"\n");
    assert_eq!(d.field, "telemetry.metrics_addr");
    let d = overlay_err("[node]\nname = \" \"\n");
    assert_eq!(d.field, "node.name");
    let d = overlay_err("[risk]\nmax_gross_notional = \"0\"\n");
    assert_eq!(d.kind, ErrorKind::OutOfRange);
    assert_eq!(d.message, "\"0\" must be greater than zero");
    let d = overlay_err("[[instruments]]\nsymbol = \"A\"\nmin_notional = \"-1\"\n");
    assert_eq!(d.field, "instruments[0].min_notional");
    let d = overlay_err("[risk]\nmax_gross_notional = \"1.000000001\"\n");
    assert!(d.hint.contains("at most 8 decimals"), "{}", d.hint);
    let d = overlay_err("[[instruments]]\nsymbol = \"A\"\n[[instruments]]\nsymbol = \"A\"\n");
    assert_eq!(d.field, "instruments[1].symbol");
    let d = overlay_err("[[instruments]]\nsymbol = \"A\"\nprice_scale = 13\n");
    assert_eq!(d.kind, ErrorKind::OutOfRange);
    let d = overlay_err("[[instruments]]\nsymbol = \"A\"\nprice_scale = 12\nqty_scale = 12\n");
    assert!(d.message.contains("at most 16"), "{}", d.message);
    // Right type, but not a value the field can hold.
    let d = overlay_err("[simulator]\nseed = -1\n");
    assert_eq!(d.kind, ErrorKind::OutOfRange);
    assert_eq!(d.field, "simulator.seed");
}

#[test]
fn effective_config_renders_and_loads_back_equal() {
    let c = load_str(
        "overlay.toml",
        "[telemetry]\nmetrics_addr = \"0.0.0.0:9100\"\n[risk]\nmax_gross_notional = \"1234.5678\"\n",
        env(&[("HFT_SIMULATOR__SEED", "77"), ("HFT_INSTRUMENTS__1__SIM__JUMP_BPS", "0.1")]),
    )
    .unwrap();
    let text = c.to_toml_string();
    assert!(text.contains("lot_size = \"0.0010\""), "{text}");
    assert!(text.contains("maker_fee_bps = \"-0.25\""), "{text}");
    assert!(
        text.contains("max_gross_notional = \"1234.5678\""),
        "{text}"
    );
    let back = load_str("shown.toml", &text, no_env()).unwrap();
    assert_eq!(back, c);
    assert_eq!(back.to_toml_string(), text);

    let d = Config::default_embedded();
    assert_eq!(
        load_str("shown.toml", &d.to_toml_string(), no_env()).unwrap(),
        d
    );
}

#[test]
fn check_file_reads_and_validates() {
    let dir = std::env::temp_dir().join(format!("hft-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.toml");
    std::fs::write(&good, "[simulator]\nseed = 9\n").unwrap();
    assert_eq!(check_file(&good).unwrap().simulator.seed, 9);

    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[simulator]\nseed = 9\nbogus = 1\n").unwrap();
    let e = check_file(&bad).unwrap_err();
    assert!(
        e.to_string()
            .starts_with(&format!("{}:3:1:", bad.display())),
        "{e}"
    );

    let missing: PathBuf = dir.join("missing.toml");
    let e = check_file(&missing).unwrap_err();
    assert!(matches!(e, ConfigError::Read { .. }), "{e}");
    assert!(e.to_string().contains("missing.toml"), "{e}");

    let binary = dir.join("binary.toml");
    std::fs::write(&binary, [0xff, 0xfe, 0x00, 0x80]).unwrap();
    assert!(matches!(check_file(&binary), Err(ConfigError::Read { .. })));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn every_key_of_the_default_file_is_documented_by_a_comment() {
    // Each key of the first instrument and strategy (and of the node sections) has a
    // comment line right above it; the second elements repeat the keys without comments.
    let first_eth = DEFAULT_TOML.find("symbol = \"ETH-USD\"").unwrap();
    let first_mm_eth = DEFAULT_TOML.find("name = \"mm-eth\"").unwrap();
    let mut prev = "";
    for (offset, line) in DEFAULT_TOML.split_inclusive('\n').scan(0, |o, l| {
        let start = *o;
        *o += l.len();
        Some((start, l))
    }) {
        let line_trim = line.trim();
        let is_key =
            !line_trim.is_empty() && !line_trim.starts_with('#') && !line_trim.starts_with('[');
        let in_repeat = (first_eth..DEFAULT_TOML.find("[[strategies]]").unwrap()).contains(&offset)
            || offset >= first_mm_eth;
        if is_key && !in_repeat {
            assert!(
                prev.trim_start().starts_with('#'),
                "key without a comment: {line_trim}"
            );
        }
        prev = line;
    }
}

fn garbage_env() -> impl Strategy<Value = Vec<(String, String)>> {
    let name = prop_oneof![
        "HFT_[A-Z_0-9]{0,30}",
        proptest::sample::select(vec![
            "HFT_SIMULATOR__SEED",
            "HFT_SIMULATOR",
            "HFT_TELEMETRY",
            "HFT_INSTRUMENTS",
            "HFT_INSTRUMENTS__1",
            "HFT_INSTRUMENTS__0__SIM",
            "HFT_INSTRUMENTS__0__SIM__DEPTH_TICKS",
            "HFT_STRATEGIES",
            "HFT_STRATEGIES__0__RISK",
            "HFT_STRATEGIES__1__MARKET_MAKING__ORDER_QTY",
        ])
        .prop_map(str::to_owned),
    ];
    let value = prop_oneof![".{0,20}", "[\\[\\]{}=\",.a-z0-9 -]{0,24}"];
    proptest::collection::vec((name, value), 0..4)
}

proptest! {
    #[test]
    fn random_text_never_panics(text in ".{0,300}") {
        let _ = load_str("fuzz.toml", &text, no_env());
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = load_str("fuzz.toml", &text, no_env());
    }

    #[test]
    fn mutated_default_never_panics(cut in 0usize..8000, len in 0usize..40, insert in "[\\[\\]={}\",.a-z0-9 \n-]{0,12}") {
        let mut text: Vec<char> = DEFAULT_TOML.chars().collect();
        let start = cut.min(text.len());
        let end = (start + len).min(text.len());
        text.splice(start..end, insert.chars());
        let text: String = text.into_iter().collect();
        if let Err(e) = load_str("fuzz.toml", &text, no_env()) {
            prop_assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn random_env_never_panics(vars in garbage_env()) {
        let _ = load(None, vars);
    }
}

#[test]
fn a_list_where_a_table_belongs_is_a_wrong_type() {
    let d = overlay_err("simulator = [1, 25, 50]\n");
    assert_eq!(d.kind, ErrorKind::WrongType);
    assert_eq!(d.field, "simulator");
    assert_eq!(d.origin, at(1, 13));
    let d = overlay_err("[[strategies]]\nname = \"a\"\ninstrument = \"BTC-USD\"\nrisk = [1]\n");
    assert_eq!(d.field, "strategies[0].risk");
    let e = load(None, env(&[("HFT_SIMULATOR__0", "1")])).unwrap_err();
    assert_eq!(e.diagnostic().unwrap().kind, ErrorKind::WrongType, "{e}");
}

proptest! {
    #[test]
    fn rendered_config_round_trips(
        vol in 1e-9f64..=1000.0,
        seed in 0u64..=i64::MAX as u64,
        notional_cents in 1i64..=i64::MAX / 1_000_000,
        bps in -9999i64..=9999,
    ) {
        let overlay = format!(
            "[simulator]\nseed = {seed}\n[risk]\nmax_gross_notional = \"{}\"\n",
            Money(notional_cents * 1_000_000).display(8)
        );
        let vars = env(&[
            ("HFT_INSTRUMENTS__0__SIM__VOLATILITY_BPS", &format!("{vol:?}")),
            ("HFT_INSTRUMENTS__1__TAKER_FEE_BPS", &format!("{}", Money(bps).display(2))),
        ]);
        let c = load_str("overlay.toml", &overlay, vars).unwrap();
        prop_assert_eq!(c.instruments[0].sim.volatility_bps, vol);
        prop_assert_eq!(c.instruments[1].spec.taker_fee_micros, bps);
        let back = load_str("shown.toml", &c.to_toml_string(), no_env()).unwrap();
        prop_assert_eq!(back, c);
    }
}

/// Three instruments at one qty scale (multi-leg strategies need that) and one
/// strategy of every kind.
const EVERY_KIND: &str = r#"
[[instruments]]
symbol = "BTC-USD"
tick_size = "0.50"
[[instruments]]
symbol = "ETH-USD"
tick_size = "0.05"
[[instruments]]
symbol = "ETH-BTC"
price_scale = 5
tick_size = "0.00001"

[[strategies]]
name = "touch"
instrument = "BTC-USD"
[strategies.touch]
order_qty = "0.0020"

[[strategies]]
name = "arb"
instrument = "BTC-USD"
[strategies.cross_arb]
other = "ETH-USD"
min_edge_bps = 3.5

[[strategies]]
name = "tri"
instrument = "BTC-USD"
[strategies.triangular]
second = "ETH-USD"
cross = "ETH-BTC"

[[strategies]]
name = "pairs"
instrument = "ETH-USD"
[strategies.pairs]
other = "BTC-USD"
hedge = "kalman"
window = 60

[[strategies]]
name = "ml"
instrument = "BTC-USD"
[strategies.ml]
threshold = 0.7
"#;

#[test]
fn every_strategy_kind_loads_and_shows_back_the_same() {
    let c = load_str("overlay.toml", EVERY_KIND, no_env()).unwrap();
    let kinds: Vec<&str> = c.strategies.iter().map(|s| s.kind.name()).collect();
    assert_eq!(kinds, ["touch", "cross_arb", "triangular", "pairs", "ml"]);
    let StrategyKind::CrossArb(a) = &c.strategies[1].kind else {
        panic!("{:?}", c.strategies[1].kind)
    };
    assert_eq!((a.other, a.min_edge_bps), (InstrumentId(1), 3.5));
    assert_eq!(
        c.strategies[2].kind.other_legs(),
        [InstrumentId(1), InstrumentId(2)]
    );
    let StrategyKind::Pairs(p) = &c.strategies[3].kind else {
        panic!("{:?}", c.strategies[3].kind)
    };
    assert_eq!(p.other, InstrumentId(0));
    assert_eq!(p.window, 60);
    assert!(matches!(
        p.hedge,
        hft_strategy::params::HedgeMethod::Kalman { .. }
    ));
    let text = c.to_toml_string();
    let back = load_str("shown.toml", &text, no_env()).unwrap();
    assert_eq!(back, c);
}

#[test]
fn bad_strategy_kinds_say_what_and_how_to_fix() {
    let with = |strategy: &str| {
        let base = EVERY_KIND
            .split("[[strategies]]")
            .next()
            .unwrap_or_default();
        overlay_err(&format!(
            "{base}[[strategies]]\nname = \"s\"\ninstrument = \"BTC-USD\"\n{strategy}"
        ))
    };
    let d = with("");
    assert!(
        d.message.contains("no kind") && d.hint.contains("pairs"),
        "{d}"
    );
    let d = with("[strategies.touch]\n[strategies.ml]\n");
    assert!(d.message.contains("more than one kind"), "{d}");
    let d = with("[strategies.pairs]\nother = \"DOGE\"\n");
    assert_eq!(d.field, "strategies[0].pairs.other");
    assert!(d.hint.contains("ETH-USD"), "{d}");
    let d = with("[strategies.pairs]\nother = \"BTC-USD\"\n");
    assert!(d.message.contains("own instrument"), "{d}");
    let d = with("[strategies.pairs]\nother = \"ETH-USD\"\nentry_z = 1.0\nexit_z = 1.5\n");
    assert_eq!(d.field, "strategies[0].pairs.exit_z");
    let d = with("[strategies.pairs]\nother = \"ETH-USD\"\nhedge = \"magic\"\n");
    assert!(d.hint.contains("kalman"), "{d}");
    let d = with("[strategies.ml]\nthreshold = 0.4\n");
    assert_eq!(d.field, "strategies[0].ml.threshold");
    let d = with("[strategies.ml]\nmodel = \"/nonexistent/model.json\"\n");
    assert!(
        d.message.contains("cannot read model file") && d.hint.contains("hft train"),
        "{d}"
    );
    let d = with("[strategies.cross_arb]\nother = \"ETH-BTC\"\n");
    assert!(d.message.contains("price_scale"), "{d}");
    // Legs at different quantity scales.
    let d = overlay_err(
        "[[instruments]]\nsymbol = \"A\"\n[[instruments]]\nsymbol = \"B\"\nqty_scale = 3\nlot_size = \"0.001\"\nmin_qty = \"0.001\"\n\
         [[strategies]]\nname = \"s\"\ninstrument = \"A\"\n[strategies.pairs]\nother = \"B\"\n",
    );
    assert!(d.hint.contains("same qty_scale"), "{d}");
}

#[test]
fn ab_variants_are_checked_and_both_arms_are_required() {
    let mm = |name: &str, inst: &str, variant: &str| {
        format!(
            "[[strategies]]\nname = \"{name}\"\ninstrument = \"{inst}\"\n{variant}[strategies.market_making]\norder_qty = \"0.010\"\n"
        )
    };
    let c = load_str(
        "overlay.toml",
        &(mm("a", "BTC-USD", "variant = \"A\"\n") + &mm("b", "ETH-USD", "variant = \"B\"\n")),
        no_env(),
    )
    .unwrap();
    let v: Vec<_> = c.strategies.iter().map(|s| s.variant).collect();
    assert_eq!(v, [Some(Variant::A), Some(Variant::B)]);
    // The variant survives the effective configuration.
    assert_eq!(
        load_str("shown.toml", &c.to_toml_string(), no_env()).unwrap(),
        c
    );

    let d = overlay_err(&(mm("a", "BTC-USD", "variant = \"C\"\n") + &mm("b", "ETH-USD", "")));
    assert_eq!(d.field, "strategies[0].variant");
    assert!(d.message.contains("\"C\""), "{}", d.message);
    assert!(d.hint.contains("variant = \"A\""), "{}", d.hint);

    // One arm alone is no test: refused before the run.
    let d = overlay_err(&(mm("a", "BTC-USD", "variant = \"A\"\n") + &mm("b", "ETH-USD", "")));
    assert_eq!(d.field, "strategies");
    assert!(d.message.contains("none runs variant B"), "{}", d.message);
    // A disabled strategy does not count as an arm.
    let d = overlay_err(
        &(mm("a", "BTC-USD", "variant = \"A\"\n")
            + &mm("b", "ETH-USD", "variant = \"B\"\nenabled = false\n")),
    );
    assert!(d.message.contains("none runs variant B"), "{}", d.message);
}

/// A strategy may be held to some nodes of a cluster; the list is kept sorted and
/// without repeats, survives the effective configuration, and node 0 is refused.
#[test]
fn a_strategy_may_be_held_to_some_nodes() {
    let mm = |nodes: &str| {
        format!(
            "[[strategies]]\nname = \"a\"\ninstrument = \"BTC-USD\"\n{nodes}[strategies.market_making]\norder_qty = \"0.010\"\n"
        )
    };
    let c = load_str("overlay.toml", &mm("nodes = [3, 1, 3]\n"), no_env()).unwrap();
    assert_eq!(c.strategies[0].nodes, vec![1, 3]);
    assert_eq!(
        load_str("shown.toml", &c.to_toml_string(), no_env()).unwrap(),
        c
    );
    let any = load_str("overlay.toml", &mm(""), no_env()).unwrap();
    assert!(any.strategies[0].nodes.is_empty());
    let d = overlay_err(&mm("nodes = [0]\n"));
    assert_eq!(d.field, "strategies[0].nodes");
    assert!(d.hint.contains("start at 1"), "{}", d.hint);
}

#[test]
fn every_example_config_loads() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../config/examples");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            load(Some(&p), no_env()).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            n += 1;
        }
    }
    assert!(n >= 5, "{n} examples in {}", dir.display());
}
