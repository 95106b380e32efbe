//! From custom resources to the cluster's configuration: the TOML overlay the nodes
//! read from etcd (`hft config set` writes the same key), checked by the same code as
//! `hft config check` before anything is written.

use std::collections::BTreeMap;

use crate::crd::{RiskPolicySpec, StrategyRisk, StrategySpec};

/// A strategy the operator cannot turn into configuration, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

/// One Strategy resource: its name and spec, and whether it is being deleted (then it
/// is configured disabled, so that its engine stops while the finalizer waits).
#[derive(Debug, Clone)]
pub struct StrategyRes {
    /// Resource name: the instance name (variants add `-<variant>`).
    pub name: String,
    /// Its spec.
    pub spec: StrategySpec,
    /// Deletion requested.
    pub deleting: bool,
}

fn toml_of(v: &serde_json::Value, at: &str) -> Result<toml::Value, Invalid> {
    toml::Value::try_from(v).map_err(|e| {
        Invalid(format!(
            "{at}: {e} (parameters are numbers, strings, booleans, lists or tables; null has \
             no TOML form)"
        ))
    })
}

/// `limit` × `weight` / 100 on a decimal string, truncated at its own scale (a
/// variant's share is never above its weight).
fn weighted(limit: &str, weight: i32, at: &str) -> Result<String, Invalid> {
    let bad = || Invalid(format!("{at}: {limit:?} is not a decimal number"));
    let (int, frac) = limit.split_once('.').unwrap_or((limit, ""));
    if int.is_empty() && frac.is_empty()
        || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let digits: u128 = format!("{int}{frac}").parse().map_err(|_| bad())?;
    let scaled = digits * weight.clamp(0, 100) as u128 / 100;
    let s = format!("{scaled:0>width$}", width = frac.len() + 1);
    let (i, f) = s.split_at(s.len() - frac.len());
    Ok(if frac.is_empty() {
        i.to_owned()
    } else {
        format!("{i}.{f}")
    })
}

/// The strategy risk table: the policy's defaults, then the strategy's own, then the
/// variant's weight on the position and loss limits.
fn risk_table(
    defaults: &StrategyRisk,
    own: &StrategyRisk,
    weight: Option<i32>,
    at: &str,
) -> Result<toml::Table, Invalid> {
    let pick = |a: &Option<String>, b: &Option<String>| a.clone().or_else(|| b.clone());
    let pick_n = |a: Option<i64>, b: Option<i64>| a.or(b);
    let mut t = toml::Table::new();
    let mut put_s = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            t.insert(k.into(), toml::Value::String(v));
        }
    };
    put_s(
        "max_order_qty",
        pick(&own.max_order_qty, &defaults.max_order_qty),
    );
    put_s(
        "max_order_notional",
        pick(&own.max_order_notional, &defaults.max_order_notional),
    );
    let mut position = pick(&own.max_position, &defaults.max_position);
    let mut loss = pick(&own.max_daily_loss, &defaults.max_daily_loss);
    if let Some(w) = weight {
        let need = |v: &Option<String>, k: &str| {
            v.as_ref()
                .map(|v| weighted(v, w, &format!("{at}.risk.{k}")))
                .transpose()?
                .ok_or_else(|| {
                    Invalid(format!(
                        "{at}: a variant's weight is a share of the base {k}; set risk.{k} on \
                     the Strategy or strategyDefaults.{k} on the RiskPolicy"
                    ))
                })
        };
        position = Some(need(&position, "maxPosition")?);
        loss = Some(need(&loss, "maxDailyLoss")?);
    }
    put_s("max_position", position);
    put_s("max_daily_loss", loss);
    let mut put_n = |k: &str, v: Option<i64>| {
        if let Some(v) = v {
            t.insert(k.into(), toml::Value::Integer(v));
        }
    };
    put_n(
        "price_band_bps",
        pick_n(own.price_band_bps, defaults.price_band_bps),
    );
    put_n(
        "max_orders_per_sec",
        pick_n(own.max_orders_per_sec, defaults.max_orders_per_sec),
    );
    put_n(
        "max_open_orders",
        pick_n(own.max_open_orders, defaults.max_open_orders),
    );
    Ok(t)
}

/// The `[[strategies]]` tables of one Strategy resource (one, or one per variant), for a
/// cluster with the venue links `venues`.
fn strategy_tables(
    s: &StrategyRes,
    defaults: &StrategyRisk,
    venues: &[String],
) -> Result<Vec<toml::Value>, Invalid> {
    let at = format!("Strategy {}", s.name);
    if let Some(v) = &s.spec.venue
        && !venues.contains(v)
    {
        return Err(Invalid(format!(
            "{at}: venue {v:?} is not one of its cluster's venues ({}); name one of them, or leave venue out for the first",
            venues.join(", ")
        )));
    }
    let instances: Vec<(String, BTreeMap<String, serde_json::Value>, Option<i32>)> =
        if s.spec.variants.is_empty() {
            vec![(s.name.clone(), s.spec.params.clone(), None)]
        } else {
            s.spec
                .variants
                .iter()
                .map(|v| {
                    let mut p = s.spec.params.clone();
                    p.extend(v.params.clone());
                    // Weight 0 runs nothing: its instance is configured disabled.
                    (format!("{}-{}", s.name, v.name), p, Some(v.weight))
                })
                .collect()
        };
    instances
        .into_iter()
        .map(|(name, params, weight)| {
            let mut kind = toml::Table::new();
            for (k, v) in &params {
                kind.insert(k.clone(), toml_of(v, &format!("{at}.params.{k}"))?);
            }
            let mut t = toml::Table::new();
            t.insert("name".into(), toml::Value::String(name));
            t.insert(
                "instrument".into(),
                toml::Value::String(s.spec.instrument.clone()),
            );
            let enabled = s.spec.enabled && !s.deleting && weight != Some(0);
            t.insert("enabled".into(), toml::Value::Boolean(enabled));
            if !s.spec.placement.nodes.is_empty() {
                let nodes = s.spec.placement.nodes.iter();
                t.insert(
                    "nodes".into(),
                    toml::Value::Array(nodes.map(|&n| toml::Value::Integer(n.into())).collect()),
                );
            }
            if let Some(v) = &s.spec.venue {
                t.insert("venue".into(), toml::Value::String(v.clone()));
            }
            t.insert(s.spec.kind.clone(), toml::Value::Table(kind));
            let share = weight.filter(|&w| w > 0);
            t.insert(
                "risk".into(),
                toml::Value::Table(risk_table(defaults, &s.spec.risk, share, &at)?),
            );
            Ok(toml::Value::Table(t))
        })
        .collect()
}

/// The overlay of a cluster: its own `configOverlay`, the policy's `[risk]`, and the
/// strategies (replacing the default configuration's list).
fn overlay(
    base: Option<&str>,
    policy: Option<&RiskPolicySpec>,
    strategies: &[toml::Value],
) -> Result<String, Invalid> {
    let mut root: toml::Table = match base {
        Some(text) => text
            .parse()
            .map_err(|e| Invalid(format!("TradingCluster configOverlay: {e}")))?,
        None => toml::Table::new(),
    };
    if let Some(p) = policy {
        let risk = root
            .entry("risk")
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if let toml::Value::Table(r) = risk {
            if let Some(g) = &p.max_gross_notional {
                r.insert("max_gross_notional".into(), toml::Value::String(g.clone()));
            }
            r.insert("kill_switch".into(), toml::Value::Boolean(p.kill_switch));
        }
    }
    root.insert("strategies".into(), toml::Value::Array(strategies.to_vec()));
    toml::to_string(&root).map_err(|e| Invalid(format!("cannot write the overlay: {e}")))
}

/// Checks an overlay as a node would load it (embedded defaults, then the overlay; no
/// environment).
fn check(text: &str) -> Result<(), Invalid> {
    hft_config::load_str("the operator's configuration", text, std::iter::empty())
        .map(|_| ())
        .map_err(|e| Invalid(e.to_string()))
}

/// What a cluster's configuration comes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The overlay with every valid strategy; None when the policy or the cluster's
    /// own overlay is invalid, or the whole does not load: then nothing may be written,
    /// and the nodes keep the last good configuration.
    pub text: Option<String>,
    /// Strategies left out, by resource name, and why.
    pub invalid: BTreeMap<String, Invalid>,
    /// Why the policy or the cluster overlay is invalid, if it is.
    pub cluster_invalid: Option<Invalid>,
}

/// Renders and checks the configuration of a cluster. Each strategy is checked on its
/// own (with the cluster's overlay and policy), so that one bad resource is reported on
/// itself and leaves the others running; the whole is checked again.
pub fn render(
    base: Option<&str>,
    policy: Option<&RiskPolicySpec>,
    venues: &[String],
    strategies: &[StrategyRes],
) -> Rendered {
    let defaults = policy
        .map(|p| p.strategy_defaults.clone())
        .unwrap_or_default();
    let cluster_invalid = overlay(base, policy, &[]).and_then(|t| check(&t)).err();
    let mut invalid = BTreeMap::new();
    let mut good: Vec<(String, Vec<toml::Value>)> = Vec::new();
    if cluster_invalid.is_none() {
        for s in strategies {
            match strategy_tables(s, &defaults, venues).and_then(|t| {
                overlay(base, policy, &t)
                    .and_then(|o| check(&o))
                    .map(|()| t)
            }) {
                Ok(t) => good.push((s.name.clone(), t)),
                Err(e) => {
                    invalid.insert(s.name.clone(), e);
                }
            }
        }
    }
    // Two resources may make one instance name (Strategy `ab` with variant `x`, and a
    // Strategy `ab-x`): both are left out, and both say why.
    let mut owners: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (res, tables) in &good {
        for t in tables {
            if let Some(n) = t.get("name").and_then(toml::Value::as_str) {
                owners.entry(n.to_owned()).or_default().push(res.clone());
            }
        }
    }
    for (instance, res) in owners.into_iter().filter(|(_, r)| r.len() > 1) {
        for r in &res {
            invalid.insert(
                r.clone(),
                Invalid(format!(
                    "strategy instance {instance} is made by Strategies {}: rename one",
                    res.join(" and ")
                )),
            );
        }
    }
    good.retain(|(r, _)| !invalid.contains_key(r));
    let all: Vec<toml::Value> = good.into_iter().flat_map(|(_, t)| t).collect();
    // Nothing to write when the cluster's part is invalid or the whole does not load:
    // the nodes keep their last good configuration.
    let text = if cluster_invalid.is_some() {
        None
    } else {
        overlay(base, policy, &all)
            .ok()
            .filter(|t| check(t).is_ok())
    };
    Rendered {
        text,
        invalid,
        cluster_invalid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mm(name: &str) -> StrategyRes {
        StrategyRes {
            name: name.into(),
            spec: serde_json::from_value(serde_json::json!({
                "cluster": "prod",
                "kind": "market_making",
                "instrument": "BTC-USD",
                "params": { "risk_aversion": 0.2, "order_qty": "0.0100" },
                "risk": { "maxPosition": "0.1000" }
            }))
            .unwrap(),
            deleting: false,
        }
    }

    #[test]
    fn strategies_render_to_a_configuration_the_nodes_accept() {
        let r = render(None, None, &sim(), &[mm("a"), mm("b")]);
        assert!(r.invalid.is_empty() && r.cluster_invalid.is_none(), "{r:?}");
        let c = hft_config::load_str("t", r.text.as_deref().unwrap(), std::iter::empty()).unwrap();
        let names: Vec<&str> = c.strategies.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert!(c.strategies.iter().all(|s| s.enabled));
    }

    #[test]
    fn placement_hints_reach_the_nodes_configuration() {
        let mut held = mm("held");
        held.spec.placement.nodes = vec![3, 1];
        let r = render(None, None, &sim(), &[held, mm("free")]);
        let c = hft_config::load_str("t", r.text.as_deref().unwrap(), std::iter::empty()).unwrap();
        let nodes: Vec<&[u64]> = c.strategies.iter().map(|s| s.nodes.as_slice()).collect();
        assert_eq!(nodes, [&[1u64, 3][..], &[][..]]);
    }

    /// The venue names of a cluster with one unnamed link.
    fn sim() -> Vec<String> {
        vec!["sim".into()]
    }

    #[test]
    fn a_strategys_venue_reaches_the_nodes_only_if_the_cluster_has_it() {
        let venues = vec!["binance".to_owned(), "kraken".to_owned()];
        let mut on_kraken = mm("k");
        on_kraken.spec.venue = Some("kraken".into());
        let mut elsewhere = mm("x");
        elsewhere.spec.venue = Some("coinbase".into());
        let r = render(None, None, &venues, &[on_kraken, mm("first"), elsewhere]);
        let c = hft_config::load_str("t", r.text.as_deref().unwrap(), std::iter::empty()).unwrap();
        let got: Vec<(&str, Option<&str>)> = c
            .strategies
            .iter()
            .map(|s| (s.name.as_str(), s.venue.as_deref()))
            .collect();
        assert_eq!(got, [("k", Some("kraken")), ("first", None)]);
        let why = &r.invalid["x"].0;
        assert!(
            why.contains("\"coinbase\" is not one of its cluster's venues (binance, kraken)"),
            "{why}"
        );
    }

    #[test]
    fn a_bad_strategy_is_reported_and_the_others_stay() {
        let mut bad = mm("bad");
        bad.spec.kind = "martingale".into();
        let mut negative = mm("negative");
        negative.spec.risk.max_position = Some("-1".into());
        let r = render(None, None, &sim(), &[mm("good"), bad, negative]);
        assert_eq!(r.invalid.len(), 2, "{r:?}");
        assert!(r.invalid["bad"].0.contains("martingale"), "{:?}", r.invalid);
        assert!(
            r.invalid["negative"].0.contains("max_position"),
            "{:?}",
            r.invalid
        );
        let c = hft_config::load_str("t", r.text.as_deref().unwrap(), std::iter::empty()).unwrap();
        assert_eq!(c.strategies.len(), 1);
    }

    #[test]
    fn variants_are_instances_with_a_weighted_share_of_the_limits() {
        let mut s = mm("ab");
        s.spec.risk.max_daily_loss = Some("2000".into());
        s.spec.variants = serde_json::from_value(serde_json::json!([
            { "name": "a", "weight": 50 },
            { "name": "b", "weight": 25, "params": { "risk_aversion": 0.4 } },
            { "name": "off", "weight": 0 }
        ]))
        .unwrap();
        let r = render(None, None, &sim(), &[s]);
        assert!(r.invalid.is_empty(), "{r:?}");
        let c = hft_config::load_str("t", r.text.as_deref().unwrap(), std::iter::empty()).unwrap();
        let by: BTreeMap<&str, _> = c.strategies.iter().map(|s| (s.name.as_str(), s)).collect();
        assert_eq!(by["ab-a"].risk.max_position.raw(), 500);
        assert_eq!(by["ab-b"].risk.max_position.raw(), 250);
        assert!(!by["ab-off"].enabled);
        assert!(r.text.unwrap().contains("risk_aversion = 0.4"));
    }

    #[test]
    fn a_deleted_strategy_is_configured_disabled() {
        let mut s = mm("gone");
        s.deleting = true;
        let c = hft_config::load_str(
            "t",
            render(None, None, &sim(), &[s]).text.as_deref().unwrap(),
            std::iter::empty(),
        )
        .unwrap();
        assert!(!c.strategies[0].enabled);
    }

    #[test]
    fn the_policy_sets_risk_and_strategy_defaults() {
        let p: RiskPolicySpec = serde_json::from_value(serde_json::json!({
            "cluster": "prod", "maxGrossNotional": "500000", "killSwitch": true,
            "strategyDefaults": { "maxOrderNotional": "1000" }
        }))
        .unwrap();
        let r = render(None, Some(&p), &sim(), &[mm("a")]);
        let c = hft_config::load_str("t", r.text.as_deref().unwrap(), std::iter::empty()).unwrap();
        assert!(c.risk.kill_switch);
        assert_eq!(
            c.strategies[0].risk.max_order_notional.raw(),
            1000 * 100_000_000
        );
        let mut bad = p.clone();
        bad.max_gross_notional = Some("lots".into());
        let r = render(None, Some(&bad), &sim(), &[mm("a")]);
        assert!(r.cluster_invalid.is_some());
        // Nothing to write: the nodes keep their last good configuration.
        assert_eq!(r.text, None);
    }

    #[test]
    fn two_resources_making_one_instance_are_both_invalid() {
        let mut ab = mm("ab");
        ab.spec.risk.max_daily_loss = Some("2000".into());
        ab.spec.variants =
            serde_json::from_value(serde_json::json!([{ "name": "x", "weight": 50 }])).unwrap();
        let r = render(None, None, &sim(), &[ab, mm("ab-x"), mm("c")]);
        assert_eq!(r.invalid.len(), 2, "{r:?}");
        assert!(
            r.invalid["ab-x"].0.contains("ab and ab-x"),
            "{:?}",
            r.invalid
        );
        let text = r.text.unwrap();
        let c = hft_config::load_str("t", &text, std::iter::empty()).unwrap();
        assert_eq!(c.strategies.len(), 1);
    }

    #[test]
    fn weights_truncate_at_the_limit_scale() {
        assert_eq!(weighted("0.1000", 50, "x").unwrap(), "0.0500");
        assert_eq!(weighted("2000", 33, "x").unwrap(), "660");
        assert_eq!(weighted("0.0003", 50, "x").unwrap(), "0.0001");
        assert_eq!(weighted("5", 100, "x").unwrap(), "5");
        assert!(weighted("-1", 50, "x").is_err());
        assert!(weighted("1e3", 50, "x").is_err());
        assert!(weighted(".", 50, "x").is_err());
    }
}
