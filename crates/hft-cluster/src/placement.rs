//! Placement: which node runs which strategy engine, and the epochs that fence the rest.
//!
//! One node at a time is the placement leader, elected through etcd's election API
//! under its registration lease. It watches every node over the control channel
//! ([`crate::control`]) and writes assignments `assign/engine/<strategy>` in
//! transactions that only succeed while it still holds the election key. An
//! assignment's epoch is the etcd revision that wrote it: strictly increasing, so a
//! newer owner always carries a higher epoch than any older one.
//!
//! Safety does not rest on etcd or on the leader being right: the venue refuses a
//! session (and its orders) once it has seen a higher epoch for the strategy, and the
//! ledger refuses fills proposed under an epoch below the strategy's fence. A node that
//! believes it still owns a strategy it lost can therefore neither trade nor book.
//!
//! Placement rules: an engine runs with its own feed and venue session on its node (the
//! hot path never crosses nodes); the leader runs engines only when no other node can
//! (its failure must not also stall placement); among eligible nodes the one with the
//! fewest engines wins, ties to the lowest id; a node that joins takes engines over until
//! the loads differ by at most one; a draining node (`drain/<id>`) gets none.

use crate::coord::{Coord, CoordError};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// One assignment, as stored in etcd.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// Strategy name (the key).
    pub strategy: String,
    /// Node that runs it.
    pub node: u64,
}

/// An assignment with its epoch (the revision that wrote it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assigned {
    /// Strategy name.
    pub strategy: String,
    /// Node that runs it.
    pub node: u64,
    /// Fencing epoch.
    pub epoch: u64,
}

/// Key of a strategy's engine assignment (under the cluster prefix).
pub fn assign_key(strategy: &str) -> String {
    format!("assign/engine/{strategy}")
}

/// The moves that take `current` (strategy -> node) to a placement of every strategy in
/// `strategies` on the `eligible` nodes: `(strategy, new node)` pairs, in strategy
/// order. A strategy named in `allowed` runs only on the nodes listed there: it is
/// never moved to another, and stays unplaced while none of them is eligible.
/// Strategies stay where they are while their node is eligible and allowed, except to
/// even out loads that differ by two or more.
pub fn plan(
    strategies: &[String],
    current: &BTreeMap<String, u64>,
    eligible: &BTreeSet<u64>,
    allowed: &BTreeMap<String, BTreeSet<u64>>,
) -> Vec<(String, u64)> {
    if eligible.is_empty() {
        return Vec::new();
    }
    let ok = |s: &str, n: u64| allowed.get(s).is_none_or(|a| a.contains(&n));
    let mut load: BTreeMap<u64, Vec<String>> = eligible.iter().map(|&n| (n, Vec::new())).collect();
    let mut homeless = Vec::new();
    for s in strategies {
        match current.get(s) {
            Some(n) if eligible.contains(n) && ok(s, *n) => {
                load.entry(*n).or_default().push(s.clone())
            }
            _ => homeless.push(s.clone()),
        }
    }
    // The least loaded node `s` may run on.
    let least = |load: &BTreeMap<u64, Vec<String>>, s: &str| {
        load.iter()
            .filter(|(n, _)| ok(s, **n))
            .min_by_key(|(n, v)| (v.len(), **n))
            .map(|(n, _)| *n)
    };
    let mut moves = BTreeMap::new();
    for s in homeless {
        if let Some(n) = least(&load, &s) {
            load.entry(n).or_default().push(s.clone());
            moves.insert(s, n);
        }
    }
    // Even out: from the busiest node, move the last strategy that may go to a node
    // with two or more fewer, while there is one.
    for _ in 0..strategies.len() {
        let Some(hi) = load
            .iter()
            .max_by_key(|(n, v)| (v.len(), std::cmp::Reverse(**n)))
            .map(|(n, _)| *n)
        else {
            break;
        };
        let from = load[&hi].len();
        let pick = load[&hi].iter().rev().find_map(|s| {
            least(&load, s)
                .filter(|lo| load[lo].len() + 2 <= from)
                .map(|lo| (s.clone(), lo))
        });
        let Some((s, lo)) = pick else { break };
        if let Some(v) = load.get_mut(&hi) {
            v.retain(|x| *x != s);
        }
        load.entry(lo).or_default().push(s.clone());
        moves.insert(s, lo);
    }
    strategies
        .iter()
        .filter_map(|s| moves.get(s).map(|&n| (s.clone(), n)))
        .filter(|(s, n)| current.get(s) != Some(n))
        .collect()
}

/// Nodes placement may use: the live, not draining ones, without the leader unless it
/// is the only one.
pub fn eligible(alive: &BTreeSet<u64>, draining: &BTreeSet<u64>, leader: u64) -> BTreeSet<u64> {
    let ok: BTreeSet<u64> = alive.difference(draining).copied().collect();
    let others: BTreeSet<u64> = ok.iter().copied().filter(|&n| n != leader).collect();
    if others.is_empty() { ok } else { others }
}

impl Coord {
    /// Every engine assignment with its epoch, and the revision read at (values that
    /// are not assignments are logged with their key and skipped).
    pub async fn assignments(&mut self) -> Result<(Vec<Assigned>, i64), CoordError> {
        let prefix = self.key("assign/engine/");
        let r = self
            .client
            .get(
                prefix.clone(),
                Some(etcd_client::GetOptions::new().with_prefix()),
            )
            .await?;
        let rev = r.header().map(|h| h.revision()).unwrap_or(0);
        let mut out = Vec::new();
        for kv in r.kvs() {
            // A value hft did not write is named and left out: one bad key must not
            // stop placement or the engines of every other strategy.
            match decode_assignment(kv) {
                Ok(a) => out.push(a),
                Err(e) => tracing::warn!(error = %e, "assignment ignored"),
            }
        }
        Ok((out, rev))
    }

    /// Nodes marked as draining.
    pub async fn draining(&mut self) -> Result<BTreeSet<u64>, CoordError> {
        let prefix = self.key("drain/");
        let r = self
            .client
            .get(
                prefix.clone(),
                Some(
                    etcd_client::GetOptions::new()
                        .with_prefix()
                        .with_keys_only(),
                ),
            )
            .await?;
        Ok(r.kvs()
            .iter()
            .filter_map(|kv| kv.key_str().ok()?.strip_prefix(&prefix)?.parse().ok())
            .collect())
    }

    /// Marks node `id` as draining (its engines move elsewhere), or clears the mark.
    pub async fn set_draining(&mut self, id: u64, on: bool) -> Result<(), CoordError> {
        let key = self.key(&format!("drain/{id}"));
        if on {
            self.client
                .put(key, crate::coord::now_ns().to_string(), None)
                .await?;
        } else {
            self.client.delete(key, None).await?;
        }
        Ok(())
    }

    /// Writes an assignment if `leader` (an election key and its creation revision)
    /// still leads; returns its epoch, or None when leadership is gone.
    pub async fn assign(
        &mut self,
        leader: &(Vec<u8>, i64),
        a: &Assignment,
    ) -> Result<Option<u64>, CoordError> {
        use etcd_client::TxnOp;
        let key = self.key(&assign_key(&a.strategy));
        let value = serde_json::to_vec(a).map_err(|e| CoordError::Malformed {
            key: key.clone(),
            why: e.to_string(),
        })?;
        let r = self.as_leader(leader, TxnOp::put(key, value, None)).await?;
        if !r.succeeded() {
            return Ok(None);
        }
        Ok(r.header().map(|h| h.revision() as u64))
    }
}

impl Coord {
    /// Removes a strategy's assignment if `leader` still leads; false when it does not.
    pub async fn unassign(
        &mut self,
        leader: &(Vec<u8>, i64),
        strategy: &str,
    ) -> Result<bool, CoordError> {
        let key = self.key(&assign_key(strategy));
        let r = self
            .as_leader(leader, etcd_client::TxnOp::delete(key, None))
            .await?;
        Ok(r.succeeded())
    }

    /// Runs `op` only while `leader` (an election key and its creation revision) still
    /// exists: the guard every placement write takes.
    async fn as_leader(
        &mut self,
        leader: &(Vec<u8>, i64),
        op: etcd_client::TxnOp,
    ) -> Result<etcd_client::TxnResponse, CoordError> {
        use etcd_client::{Compare, CompareOp, Txn};
        let txn = Txn::new()
            .when([Compare::create_revision(
                leader.0.clone(),
                CompareOp::Equal,
                leader.1,
            )])
            .and_then([op]);
        Ok(self.client.txn(txn).await?)
    }
}

/// Decodes an assignment key-value; a value not written by hft names the key.
pub fn decode_assignment(kv: &etcd_client::KeyValue) -> Result<Assigned, CoordError> {
    let key = kv.key_str().unwrap_or("?").to_owned();
    let a: Assignment = serde_json::from_slice(kv.value()).map_err(|e| CoordError::Malformed {
        key: key.clone(),
        why: format!("{e}; expected {{\"strategy\": NAME, \"node\": ID}}"),
    })?;
    if !key.ends_with(&format!("/{}", a.strategy)) {
        return Err(CoordError::Malformed {
            key,
            why: format!("names strategy {:?}, which is not its key", a.strategy),
        });
    }
    Ok(Assigned {
        strategy: a.strategy,
        node: a.node,
        epoch: kv.mod_revision() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("s{i}")).collect()
    }

    fn set(v: &[u64]) -> BTreeSet<u64> {
        v.iter().copied().collect()
    }

    fn apply(cur: &mut BTreeMap<String, u64>, moves: &[(String, u64)]) {
        for (s, n) in moves {
            cur.insert(s.clone(), *n);
        }
    }

    #[test]
    fn a_dead_nodes_engines_move_and_the_rest_stay() {
        let s = names(4);
        let mut cur = BTreeMap::new();
        let m = plan(&s, &cur, &set(&[2, 3]), &BTreeMap::new());
        apply(&mut cur, &m);
        assert_eq!(cur.values().filter(|&&n| n == 2).count(), 2);
        assert_eq!(cur.values().filter(|&&n| n == 3).count(), 2);
        let before = cur.clone();
        let moves = plan(&s, &cur, &set(&[3]), &BTreeMap::new());
        assert_eq!(moves.len(), 2);
        assert!(moves.iter().all(|(s, n)| *n == 3 && before[s] == 2));
        apply(&mut cur, &moves);
        // Node 2 comes back: it takes two over (loads 2/2), nothing else moves.
        let moves = plan(&s, &cur, &set(&[2, 3]), &BTreeMap::new());
        assert_eq!(moves.len(), 2);
        apply(&mut cur, &moves);
        assert!(plan(&s, &cur, &set(&[2, 3]), &BTreeMap::new()).is_empty());
    }

    #[test]
    fn the_leader_runs_engines_only_when_alone() {
        assert_eq!(eligible(&set(&[1, 2, 3]), &set(&[]), 1), set(&[2, 3]));
        assert_eq!(eligible(&set(&[1, 2, 3]), &set(&[2, 3]), 1), set(&[1]));
        assert_eq!(eligible(&set(&[1, 2]), &set(&[2]), 1), set(&[1]));
        assert!(plan(&names(2), &BTreeMap::new(), &set(&[]), &BTreeMap::new()).is_empty());
    }

    proptest::proptest! {
        #[test]
        fn every_strategy_lands_on_an_eligible_node_and_loads_stay_even(
            n in 1usize..12,
            nodes in proptest::collection::btree_set(1u64..8, 1..5),
            seed in proptest::collection::vec(1u64..8, 12),
        ) {
            let s = names(n);
            let mut cur: BTreeMap<String, u64> = s.iter().cloned().zip(seed).collect();
            let m = plan(&s, &cur, &nodes, &BTreeMap::new());
        apply(&mut cur, &m);
            let mut load: BTreeMap<u64, usize> = nodes.iter().map(|&n| (n, 0)).collect();
            for name in &s {
                let node = cur[name];
                proptest::prop_assert!(nodes.contains(&node));
                *load.get_mut(&node).unwrap() += 1;
            }
            let (lo, hi) = (load.values().min().unwrap(), load.values().max().unwrap());
            proptest::prop_assert!(hi - lo <= 1, "loads {load:?}");
            // A second plan of a settled placement moves nothing.
            proptest::prop_assert!(plan(&s, &cur, &nodes, &BTreeMap::new()).is_empty());
        }
    }

    proptest::proptest! {
        /// With some strategies held to some nodes: each lands only on an eligible
        /// node it may run on, whenever one is eligible; none is moved off such a node
        /// to one it may not run on; and a settled placement stays put.
        #[test]
        fn strategies_held_to_nodes_run_only_there(
            n in 1usize..10,
            nodes in proptest::collection::btree_set(1u64..7, 1..5),
            seed in proptest::collection::vec(1u64..7, 10),
            holds in proptest::collection::vec(proptest::option::of(proptest::collection::btree_set(1u64..7, 1..3)), 10),
        ) {
            let s = names(n);
            let allowed: BTreeMap<String, BTreeSet<u64>> = s
                .iter()
                .zip(&holds)
                .filter_map(|(name, h)| h.clone().map(|h| (name.clone(), h)))
                .collect();
            let mut cur: BTreeMap<String, u64> = s.iter().cloned().zip(seed).collect();
            let before = cur.clone();
            let m = plan(&s, &cur, &nodes, &allowed);
            for (name, node) in &m {
                proptest::prop_assert!(nodes.contains(node));
                proptest::prop_assert!(allowed.get(name).is_none_or(|a| a.contains(node)));
            }
            apply(&mut cur, &m);
            for name in &s {
                let may: BTreeSet<u64> = match allowed.get(name) {
                    Some(a) => a.intersection(&nodes).copied().collect(),
                    None => nodes.clone(),
                };
                if may.is_empty() {
                    // Nowhere to go: left where it was (no move made for it).
                    proptest::prop_assert_eq!(cur[name], before[name]);
                } else {
                    proptest::prop_assert!(may.contains(&cur[name]), "{name} on {}", cur[name]);
                }
            }
            let again = plan(&s, &cur, &nodes, &allowed);
            proptest::prop_assert!(again.is_empty(), "{again:?}");
        }
    }
}
