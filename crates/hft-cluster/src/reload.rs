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
    }
}
