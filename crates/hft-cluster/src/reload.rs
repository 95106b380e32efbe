//! Hot reload: a running node follows the cluster configuration in etcd.
//!
//! Every change to `/hft/<cluster>/config` is validated with the same schema as the
//! files. A valid change of strategy parameters or risk limits is sent to the running
//! engines (new limits at once; a strategy whose parameters changed cancels its orders
//! and restarts with the new ones). A change the running node cannot apply in place
//! (instruments, the set of strategies, node-wide risk) and an invalid value are
//! refused: the old configuration stays live and the refusal is kept for `hft status`.

use std::sync::{Arc, Mutex};

use hft_config::Config;
use hft_exec::StrategyFactory;
use hft_risk::RiskLimits;

use crate::coord::Coord;
use crate::node::strategy_factory;

/// What one engine takes from a new configuration.
#[derive(Clone)]
pub struct EngineReload {
    /// Its pre-trade limits.
    pub risk: RiskLimits,
    /// A factory with the new parameters, when they changed.
    pub factory: Option<StrategyFactory>,
}

/// A configuration revision to apply, one entry per engine (in slot order).
#[derive(Clone)]
pub struct Reload {
    /// etcd revision of the configuration.
    pub revision: u64,
    /// Per engine.
    pub engines: Vec<EngineReload>,
}

/// The reload state `hft status` shows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReloadStatus {
    /// Revision whose configuration the engines run (0: the one the node started with).
    pub live_revision: u64,
    /// The last refused revision and why.
    pub rejected: Option<(u64, String)>,
}

/// What changes between `current` and `next` for the enabled strategies, or why the
/// change cannot be applied to a running node.
pub fn plan(current: &Config, next: &Config) -> Result<Vec<EngineReload>, String> {
    let fixed = [
        ("node", current.node == next.node),
        ("telemetry", current.telemetry == next.telemetry),
        ("engine", current.engine == next.engine),
        ("simulator", current.simulator == next.simulator),
        ("ledger", current.ledger == next.ledger),
    ];
    if let Some((section, _)) = fixed.iter().find(|(_, same)| !same) {
        return Err(format!(
            "[{section}] changed: only strategy parameters and risk limits reload in a \
             running node; restart it to apply"
        ));
    }
    if current.instruments != next.instruments {
        return Err("instruments changed: restart the node to apply".into());
    }
    if current.risk != next.risk {
        return Err("node-wide risk limits changed: restart the node to apply".into());
    }
    let running: Vec<_> = current.strategies.iter().filter(|s| s.enabled).collect();
    let wanted: Vec<_> = next.strategies.iter().filter(|s| s.enabled).collect();
    let shape = |v: &[&hft_config::StrategyConfig]| -> Vec<(String, u32, &'static str)> {
        v.iter()
            .map(|s| (s.name.clone(), s.instrument.0, s.kind.name()))
            .collect()
    };
    if shape(&running) != shape(&wanted) {
        return Err(
            "the enabled strategies (names, instruments or kinds) changed: restart the node \
             to apply"
                .into(),
        );
    }
    // Placement reads the nodes a strategy is held to when it starts leading, and an
    // engine session logs on to its venue link when it starts.
    if running
        .iter()
        .zip(&wanted)
        .any(|(a, b)| a.nodes != b.nodes || a.venue != b.venue)
    {
        return Err(
            "the nodes a strategy is held to or the venue link it trades through changed: \
             restart the nodes to apply (placement and venue sessions read them when they \
             start)"
                .into(),
        );
    }
    Ok(running
        .iter()
        .zip(&wanted)
        .map(|(old, new)| EngineReload {
            risk: new.risk.clone(),
            factory: (old.kind != new.kind).then(|| strategy_factory(&new.kind, new.instrument)),
        })
        .collect())
}

/// Follows the configuration key from `after` (the revision the node started with) and
/// sends each applicable change to `tx` until the receiver is gone, watching again
/// whenever etcd ends or fails a watch. `env` is the node's `HFT_*` environment,
/// layered on top as at start.
pub async fn follow(
    coord: Coord,
    after: i64,
    mut current: Config,
    env: Vec<(String, String)>,
    tx: std::sync::mpsc::Sender<Reload>,
    status: Arc<Mutex<ReloadStatus>>,
) {
    let key = coord.key("config");
    let mut seen = after;
    loop {
        // A watch can end (etcd restarted, history compacted): watch again from the
        // next revision not seen, so no change is missed.
        let mut changes = match coord.watch_config(seen + 1).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch the configuration; retrying");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
        };
        loop {
            let (revision, text) = match changes.next().await {
                Ok(Some(change)) => change,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "configuration watch failed");
                    break;
                }
            };
            seen = seen.max(revision);
            let outcome = hft_config::load_str(&key, &text, env.clone())
                .map_err(|e| format!("etcd key {key}: {e}"))
                .and_then(|next| plan(&current, &next).map(|p| (next, p)));
            let rev = revision.max(0) as u64;
            match outcome {
                Ok((next, engines)) => {
                    current = next;
                    if let Ok(mut s) = status.lock() {
                        s.live_revision = rev;
                        s.rejected = None;
                    }
                    if tx
                        .send(Reload {
                            revision: rev,
                            engines,
                        })
                        .is_err()
                    {
                        return;
                    }
                }
                Err(why) => {
                    tracing::warn!(revision, %why, "configuration change refused; the old one stays live");
                    if let Ok(mut s) = status.lock() {
                        s.rejected = Some((rev, why));
                    }
                }
            }
        }
        tracing::warn!(after = seen, "configuration watch ended; watching again");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Config {
        hft_config::load(None, std::iter::empty()).unwrap()
    }

    #[test]
    fn risk_and_parameters_reload_structure_does_not() {
        let cur = base();
        let mut next = cur.clone();
        next.strategies[0].risk.max_order_qty = hft_core::Qty(7);
        let p = plan(&cur, &next).unwrap();
        assert_eq!(p.len(), cur.strategies.iter().filter(|s| s.enabled).count());
        assert_eq!(p[0].risk.max_order_qty, hft_core::Qty(7));
        assert!(
            p.iter().all(|e| e.factory.is_none()),
            "parameters unchanged"
        );

        let mut renamed = cur.clone();
        renamed.strategies[0].name = "other".into();
        let refused = |next: &Config| plan(&cur, next).err().unwrap_or_default();
        assert!(refused(&renamed).contains("restart"));
        let mut engine = cur.clone();
        engine.engine.timer_interval_ms += 1;
        assert!(refused(&engine).contains("[engine]"));
        let mut node = cur.clone();
        node.risk.kill_switch = !node.risk.kill_switch;
        assert!(refused(&node).contains("node-wide"));
        let mut held = cur.clone();
        held.strategies[0].nodes = vec![2];
        assert!(refused(&held).contains("held to"), "{}", refused(&held));
    }
}

/// Sets parameters of strategy `name` in the configuration `text` (an overlay on the
/// embedded default): returns the whole effective configuration with the change (to
/// store instead of the overlay), and the parameters' values before and after. Each
/// key must be a parameter the strategy already has, and keeps its type (decimal
/// quantities are strings, or numbers that are turned into their decimal text).
pub fn edit_params(
    text: &str,
    name: &str,
    params: &serde_json::Map<String, serde_json::Value>,
) -> Result<(String, serde_json::Value, serde_json::Value), String> {
    let current = hft_config::load_str("the stored configuration", text, std::iter::empty())
        .map_err(|e| e.to_string())?;
    let mut doc: toml::Table = current
        .to_toml_string()
        .parse()
        .map_err(|e| format!("the stored configuration does not re-read: {e}"))?;
    let strategy = doc
        .get_mut("strategies")
        .and_then(|v| v.as_array_mut())
        .and_then(|a| {
            a.iter_mut()
                .find(|s| s.get("name").and_then(|n| n.as_str()) == Some(name))
        })
        .and_then(|s| s.as_table_mut())
        .ok_or_else(|| format!("name: no strategy {name:?} in the configuration"))?;
    let (kind, table) = strategy
        .iter_mut()
        .find(|(k, v)| v.is_table() && k.as_str() != "risk")
        .map(|(k, v)| (k.clone(), v))
        .ok_or_else(|| format!("{name} has no parameter table"))?;
    let table = table
        .as_table_mut()
        .ok_or_else(|| format!("{name}.{kind} is not a table"))?;
    if params.is_empty() {
        return Err("params: name at least one parameter".into());
    }
    let mut before = serde_json::Map::new();
    for (k, v) in params {
        let old = table.get(k).ok_or_else(|| {
            let known: Vec<&String> = table.keys().collect();
            format!("params.{k}: {name} ({kind}) has no parameter {k:?}; it has {known:?}")
        })?;
        let new = match (old, v) {
            (toml::Value::String(_), serde_json::Value::String(x)) => {
                toml::Value::String(x.clone())
            }
            (toml::Value::String(_), serde_json::Value::Number(x)) => {
                toml::Value::String(x.to_string())
            }
            (toml::Value::Integer(_), serde_json::Value::Number(x)) if x.is_i64() => {
                toml::Value::Integer(x.as_i64().unwrap_or_default())
            }
            (toml::Value::Float(_), serde_json::Value::Number(x)) => {
                toml::Value::Float(x.as_f64().unwrap_or(f64::NAN))
            }
            (toml::Value::Boolean(_), serde_json::Value::Bool(x)) => toml::Value::Boolean(*x),
            (old, _) => {
                return Err(format!(
                    "params.{k}: expected a value like {old} (a {}), got {v}",
                    old.type_str()
                ));
            }
        };
        before.insert(k.clone(), serde_json::Value::String(old.to_string()));
        table.insert(k.clone(), new);
    }
    let out = toml::to_string(&doc).map_err(|e| e.to_string())?;
    // The whole result is validated like any stored configuration.
    hft_config::load_str("the changed configuration", &out, std::iter::empty())
        .map_err(|e| e.to_string())?;
    Ok((
        out,
        serde_json::Value::Object(before),
        serde_json::Value::Object(params.clone()),
    ))
}

/// Hands each configuration reload to the engine sessions of a cluster node: each
/// session runs one strategy (by strategy id) and gets that strategy's part; a session
/// that starts later gets the latest reload first, so it never runs an older
/// configuration than the node has accepted.
#[derive(Clone, Default)]
pub struct ReloadHub(Arc<Mutex<HubState>>);

#[derive(Default)]
struct HubState {
    latest: Option<Reload>,
    subscribers: Vec<(usize, std::sync::mpsc::Sender<Reload>)>,
}

fn part(r: &Reload, strategy: usize) -> Reload {
    Reload {
        revision: r.revision,
        engines: r.engines.get(strategy).cloned().into_iter().collect(),
    }
}

impl ReloadHub {
    /// Sends `r` to every session (its strategy's part) and keeps it for later ones.
    /// What is kept is cumulative: a strategy whose parameters changed in an earlier
    /// revision keeps that factory, so a session started later (a failover) runs the
    /// parameters the node has accepted, not the ones it started with.
    pub fn publish(&self, mut r: Reload) {
        let mut st = self.0.lock().unwrap_or_else(|p| p.into_inner());
        st.subscribers
            .retain(|(strategy, tx)| tx.send(part(&r, *strategy)).is_ok());
        if let Some(old) = st.latest.take() {
            for (new, old) in r.engines.iter_mut().zip(old.engines) {
                if new.factory.is_none() {
                    new.factory = old.factory;
                }
            }
        }
        st.latest = Some(r);
    }

    /// The reload channel of a session running strategy id `strategy`.
    pub fn subscribe(&self, strategy: usize) -> std::sync::mpsc::Receiver<Reload> {
        let (tx, rx) = std::sync::mpsc::channel();
        let mut st = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = &st.latest {
            let _ = tx.send(part(r, strategy));
        }
        st.subscribers.push((strategy, tx));
        rx
    }

    /// Publishes every reload of `rx` until it closes (run on a thread of its own).
    pub fn forward(self, rx: std::sync::mpsc::Receiver<Reload>) {
        while let Ok(r) = rx.recv() {
            self.publish(r);
        }
    }
}

#[cfg(test)]
mod hub_tests {
    use super::*;

    #[test]
    fn parameters_are_edited_in_place_keeping_their_types_and_validated() {
        let base = Config::default_embedded().to_toml_string();
        let p = |v: serde_json::Value| v.as_object().unwrap().clone();
        let (text, before, _) = edit_params(
            &base,
            "mm-btc",
            &p(serde_json::json!({"requote_ticks": 3, "order_qty": "0.0200"})),
        )
        .unwrap();
        assert_eq!(before["requote_ticks"], "2");
        let c = hft_config::load_str("t", &text, std::iter::empty()).unwrap();
        assert_eq!(c.to_toml_string(), {
            let again =
                edit_params(&text, "mm-btc", &p(serde_json::json!({"requote_ticks": 3}))).unwrap();
            hft_config::load_str("t", &again.0, std::iter::empty())
                .unwrap()
                .to_toml_string()
        });
        assert!(text.contains("requote_ticks = 3"));
        for (body, says) in [
            (serde_json::json!({"no_such": 1}), "no parameter"),
            (
                serde_json::json!({"requote_ticks": "x"}),
                "expected a value like",
            ),
            (serde_json::json!({"order_qty": "-1"}), "order_qty"),
            (serde_json::json!({}), "at least one"),
        ] {
            let e = edit_params(&base, "mm-btc", &p(body.clone())).unwrap_err();
            assert!(e.contains(says), "{body}: {e}");
        }
        assert!(
            edit_params(&base, "nope", &p(serde_json::json!({"a": 1})))
                .unwrap_err()
                .contains("no strategy")
        );
    }

    fn reload(revision: u64, n: usize) -> Reload {
        Reload {
            revision,
            engines: (0..n)
                .map(|i| EngineReload {
                    risk: RiskLimits {
                        max_open_orders: i as u32 + 1,
                        ..Config::default_embedded().strategies[0].risk.clone()
                    },
                    factory: None,
                })
                .collect(),
        }
    }

    #[test]
    fn each_session_gets_its_strategys_part_and_late_ones_the_latest() {
        let hub = ReloadHub::default();
        let early = hub.subscribe(1);
        hub.publish(reload(7, 2));
        let r = early.try_recv().unwrap();
        assert_eq!((r.revision, r.engines.len()), (7, 1));
        assert_eq!(r.engines[0].risk.max_open_orders, 2);
        let late = hub.subscribe(0);
        let r = late.try_recv().unwrap();
        assert_eq!((r.revision, r.engines[0].risk.max_open_orders), (7, 1));
        drop(early);
        hub.publish(reload(8, 2));
        assert_eq!(late.try_recv().unwrap().revision, 8);
        assert_eq!(hub.0.lock().unwrap().subscribers.len(), 1);
        // New parameters at r9, only limits at r10: a session started after r10 still
        // gets r9's strategy.
        let mut r9 = reload(9, 2);
        r9.engines[1].factory = Some(crate::node::strategy_factory(
            &Config::default_embedded().strategies[1].kind,
            hft_core::InstrumentId(1),
        ));
        hub.publish(r9);
        hub.publish(reload(10, 2));
        let r = hub.subscribe(1).try_recv().unwrap();
        assert_eq!(r.revision, 10);
        assert!(r.engines[0].factory.is_some(), "r9's parameters were lost");
        assert!(
            hub.subscribe(0).try_recv().unwrap().engines[0]
                .factory
                .is_none()
        );
    }
}
