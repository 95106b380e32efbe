//! The chaos suite's history and its checker.
//!
//! A run records what happened from the side of the source of truth: the venue
//! process's history, one JSON line per logon, refused logon, accepted order and fill
//! (`hft venue --history`), plus the kill switches the operator engaged. After the run,
//! every ledger member's state is read back. The checker then proves the promises that
//! faults must not break, and names each violation with the events that show it:
//!
//! - every venue fill is booked exactly once in every ledger member (none lost, none
//!   counted twice, none booked that the venue never executed);
//! - each strategy's booked position equals the sum of its venue fills;
//! - no order was accepted under an epoch older than the strategy's newest logon (a
//!   fenced owner trading);
//! - no order was accepted while a kill switch covering it was engaged (after a grace
//!   for the switch to reach the engines);
//! - the running position at the venue never passed a strategy's limit;
//! - every ledger member ends at the same state hash.

use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// The fault kinds of `hft chaos run`, as its report names them.
pub const FAULT_KINDS: [&str; 11] = [
    "kill",
    "pause",
    "partition",
    "kill-switch",
    "etcd-member",
    "etcd-quorum",
    "leader-partition",
    "disk-full",
    "crash-point",
    "slow-disk",
    "lease-stall",
];

/// The kinds that need fail points (a build with the `failpoints` feature).
pub const FAILPOINT_KINDS: [&str; 3] = ["crash-point", "slow-disk", "lease-stall"];

/// The kinds that need network and mount namespaces (a tmpfs WAL directory).
pub const NAMESPACE_KINDS: [&str; 1] = ["disk-full"];

/// One line of the venue's history.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum VenueEvent {
    /// A session logged on for a strategy under an epoch.
    Logon {
        /// Wall-clock ns.
        ts: u64,
        /// Strategy id.
        strategy: u16,
        /// Assignment epoch.
        epoch: u64,
        /// Node.
        node: u64,
    },
    /// A logon was refused (a stale epoch, or another strategy's id).
    LogonReject {
        /// Wall-clock ns.
        ts: u64,
        /// Strategy id.
        strategy: u16,
        /// The refused epoch.
        epoch: u64,
    },
    /// An order was accepted.
    Accept {
        /// Wall-clock ns.
        ts: u64,
        /// Strategy id.
        strategy: u16,
        /// The epoch it was sent under.
        epoch: u64,
        /// Client order id.
        order: u64,
        /// Limit price, raw units (0 in histories from before it was recorded).
        #[serde(default)]
        price: i64,
        /// Quantity, raw units (0 likewise).
        #[serde(default)]
        qty: i64,
    },
    /// A fill was executed.
    Fill {
        /// Wall-clock ns.
        ts: u64,
        /// Strategy id.
        strategy: u16,
        /// Venue execution id.
        exec: u64,
        /// Client order id.
        order: u64,
        /// 0 buy, 1 sell.
        side: u8,
        /// Price, raw units.
        price: i64,
        /// Quantity, raw units.
        qty: i64,
    },
}

/// A line of the history that does not parse: the line number and why.
#[derive(Debug, thiserror::Error)]
#[error("venue history line {line}: {why}")]
pub struct HistoryError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub why: String,
}

/// Parses a whole venue history. A torn last line (the venue was killed mid-write) is
/// ignored; any other bad line is an error naming it.
pub fn parse_history(text: &str) -> Result<Vec<VenueEvent>, HistoryError> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::with_capacity(lines.len());
    for (i, l) in lines.iter().enumerate() {
        if l.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(l) {
            Ok(e) => out.push(e),
            Err(_) if i + 1 == lines.len() && !text.ends_with('\n') => break,
            Err(e) => {
                return Err(HistoryError {
                    line: i + 1,
                    why: e.to_string(),
                });
            }
        }
    }
    Ok(out)
}

/// A kill switch as the operator (or the suite) engaged and released it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KillWindow {
    /// The strategy it covers (None: every strategy).
    pub strategy: Option<u16>,
    /// Engaged at, wall-clock ns.
    pub from: u64,
    /// Released at (None: still engaged at the end).
    pub to: Option<u64>,
}

/// One fill as a ledger member booked it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Booked {
    /// Venue execution id.
    pub exec: u64,
    /// Strategy id.
    pub strategy: u16,
    /// Signed quantity (buys positive), raw units.
    pub qty: i64,
}

/// What one ledger member holds at the end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Member id.
    pub id: u64,
    /// Its fills of the venue under check.
    pub fills: Vec<Booked>,
    /// Its state hash.
    pub hash: [u8; 32],
}

/// How a strategy's prices and quantities make money: notional (money raw units) is
/// `price × qty / 10^shift`, rounded to the nearest unit, as the risk checks round it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Notional {
    /// Price scale + quantity scale − money scale of the strategy's instrument.
    pub shift: i32,
    /// Largest notional of one order, money raw units.
    pub max_order: i64,
}

impl Notional {
    /// The notional of `qty` at `price`, money raw units (saturating; i128 inside).
    pub fn of(&self, price: i64, qty: i64) -> i128 {
        let p = i128::from(price) * i128::from(qty);
        let p = p.abs();
        if self.shift <= 0 {
            p.saturating_mul(10i128.saturating_pow(self.shift.unsigned_abs()))
        } else {
            let d = 10i128.saturating_pow(self.shift as u32);
            (p + d / 2) / d
        }
    }
}

/// What the checker is told about the run besides the events.
#[derive(Clone, Debug, Default)]
pub struct Rules {
    /// Largest |position| per strategy, raw units (absent: unchecked).
    pub max_position: BTreeMap<u16, i64>,
    /// Notional rules per strategy (absent: unchecked).
    pub notional: BTreeMap<u16, Notional>,
    /// Largest gross notional of one node, money raw units: the sum of |position| at
    /// the last fill price over the strategies the node runs (their newest logon's
    /// node). Checked at fills that grow a position (a price move alone is no breach
    /// of a pre-trade limit).
    pub max_gross_notional: Option<i64>,
    /// Kill switches and when they held.
    pub kills: Vec<KillWindow>,
    /// How long a kill switch may take to reach the engines, ns.
    pub kill_grace_ns: u64,
}

/// A broken promise, with the events that show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    /// A venue fill missing from a ledger member.
    Lost {
        /// Member.
        member: u64,
        /// The fill.
        fill: VenueEvent,
    },
    /// A fill booked more than once by a member.
    Duplicated {
        /// Member.
        member: u64,
        /// Venue execution id.
        exec: u64,
        /// Times booked.
        times: usize,
    },
    /// A fill booked that the venue never executed.
    Phantom {
        /// Member.
        member: u64,
        /// What was booked.
        booked: Booked,
    },
    /// A strategy's booked position differs from the sum of its venue fills.
    Position {
        /// Member.
        member: u64,
        /// Strategy.
        strategy: u16,
        /// Sum of the venue's fills.
        venue: i64,
        /// The member's.
        ledger: i64,
    },
    /// An order accepted from a fenced owner.
    StaleEpoch {
        /// The newest logon before it.
        logon: VenueEvent,
        /// The accept.
        accept: VenueEvent,
    },
    /// An order accepted while a kill switch held.
    WhileKilled {
        /// The switch.
        kill: KillWindow,
        /// The accept.
        accept: VenueEvent,
    },
    /// A fill took a position past its limit.
    Limit {
        /// Strategy.
        strategy: u16,
        /// The limit.
        limit: i64,
        /// The position after the fill.
        position: i64,
        /// The fill.
        fill: VenueEvent,
    },
    /// An order accepted past its strategy's order notional limit.
    OrderNotional {
        /// The limit, money raw units.
        limit: i64,
        /// The order's notional.
        notional: i128,
        /// The accept.
        accept: VenueEvent,
    },
    /// A fill took the gross notional of its node's strategies past the limit.
    GrossNotional {
        /// The limit, money raw units.
        limit: i64,
        /// Gross notional after the fill.
        gross: i128,
        /// The fill.
        fill: VenueEvent,
    },
    /// Ledger members ended at different states.
    Diverged {
        /// Member id and hash (hex) of each.
        hashes: Vec<(u64, String)>,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::Lost { member, fill } => {
                write!(f, "lost fill: member {member} lacks {fill:?}")
            }
            Violation::Duplicated {
                member,
                exec,
                times,
            } => write!(
                f,
                "duplicated fill: member {member} booked exec {exec} {times} times"
            ),
            Violation::Phantom { member, booked } => {
                write!(
                    f,
                    "phantom fill: member {member} booked {booked:?}, which the venue never executed"
                )
            }
            Violation::Position {
                member,
                strategy,
                venue,
                ledger,
            } => write!(
                f,
                "position: member {member} holds {ledger} for strategy {strategy}, the venue's fills sum to {venue}"
            ),
            Violation::StaleEpoch { logon, accept } => {
                write!(f, "stale epoch accepted: {accept:?} after {logon:?}")
            }
            Violation::WhileKilled { kill, accept } => {
                write!(f, "accepted while killed: {accept:?} under {kill:?}")
            }
            Violation::Limit {
                strategy,
                limit,
                position,
                fill,
            } => write!(
                f,
                "limit breached: strategy {strategy} at {position} (limit {limit}) after {fill:?}"
            ),
            Violation::OrderNotional {
                limit,
                notional,
                accept,
            } => write!(
                f,
                "order notional {notional} past its limit {limit}: {accept:?}"
            ),
            Violation::GrossNotional { limit, gross, fill } => write!(
                f,
                "gross notional {gross} past its limit {limit} after {fill:?}"
            ),
            Violation::Diverged { hashes } => write!(f, "ledger members diverged: {hashes:?}"),
        }
    }
}

fn hex(h: &[u8; 32]) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

/// The node of a strategy's newest logon (None before any).
fn owner(newest: &BTreeMap<u16, &VenueEvent>, strategy: u16) -> Option<u64> {
    match newest.get(&strategy) {
        Some(VenueEvent::Logon { node, .. }) => Some(*node),
        _ => None,
    }
}

/// Checks a run: the venue's events in the order the venue processed them, every
/// ledger member's end state, and the rules. Returns every violation found.
pub fn check(events: &[VenueEvent], members: &[Member], rules: &Rules) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut newest: BTreeMap<u16, &VenueEvent> = BTreeMap::new();
    let mut position: BTreeMap<u16, i64> = BTreeMap::new();
    let mut venue_fills: BTreeMap<u64, &VenueEvent> = BTreeMap::new();
    let mut venue_pos: BTreeMap<u16, i64> = BTreeMap::new();
    let mut last_price: BTreeMap<u16, i64> = BTreeMap::new();
    for e in events {
        match e {
            VenueEvent::Logon {
                strategy, epoch, ..
            } => {
                let keep = match newest.get(strategy) {
                    Some(VenueEvent::Logon { epoch: n, .. }) => epoch >= n,
                    _ => true,
                };
                if keep {
                    newest.insert(*strategy, e);
                }
            }
            VenueEvent::Accept {
                ts,
                strategy,
                epoch,
                price,
                qty,
                ..
            } => {
                if let Some(n) = rules.notional.get(strategy) {
                    let notional = n.of(*price, *qty);
                    if notional > i128::from(n.max_order) {
                        out.push(Violation::OrderNotional {
                            limit: n.max_order,
                            notional,
                            accept: e.clone(),
                        });
                    }
                }
                if let Some(l @ VenueEvent::Logon { epoch: n, .. }) = newest.get(strategy)
                    && epoch < n
                {
                    out.push(Violation::StaleEpoch {
                        logon: (*l).clone(),
                        accept: e.clone(),
                    });
                }
                for k in &rules.kills {
                    let covers = k.strategy.is_none_or(|s| s == *strategy);
                    let after = *ts >= k.from.saturating_add(rules.kill_grace_ns);
                    let before = k.to.is_none_or(|t| *ts < t);
                    if covers && after && before {
                        out.push(Violation::WhileKilled {
                            kill: k.clone(),
                            accept: e.clone(),
                        });
                    }
                }
            }
            VenueEvent::Fill {
                strategy,
                exec,
                side,
                price,
                qty,
                ..
            } => {
                let signed = if *side == 0 { *qty } else { -*qty };
                venue_fills.insert(*exec, e);
                *venue_pos.entry(*strategy).or_default() += signed;
                let p = position.entry(*strategy).or_default();
                let grew = (*p + signed).abs() > p.abs();
                *p += signed;
                last_price.insert(*strategy, *price);
                if let Some(limit) = rules.max_gross_notional
                    && grew
                {
                    // The limit is each node's: over the strategies its owner runs.
                    let node = owner(&newest, *strategy);
                    let gross: i128 = position
                        .iter()
                        .filter(|(s, _)| owner(&newest, **s) == node)
                        .filter_map(|(s, &q)| {
                            let n = rules.notional.get(s)?;
                            Some(n.of(last_price.get(s).copied().unwrap_or(0), q))
                        })
                        .sum();
                    if gross > i128::from(limit) {
                        out.push(Violation::GrossNotional {
                            limit,
                            gross,
                            fill: e.clone(),
                        });
                    }
                }
                let p = position.entry(*strategy).or_default();
                if let Some(&limit) = rules.max_position.get(strategy)
                    && p.abs() > limit
                {
                    out.push(Violation::Limit {
                        strategy: *strategy,
                        limit,
                        position: *p,
                        fill: e.clone(),
                    });
                }
            }
            VenueEvent::LogonReject { .. } => {}
        }
    }
    for m in members {
        let mut times: BTreeMap<u64, usize> = BTreeMap::new();
        let mut held: BTreeMap<u16, i64> = BTreeMap::new();
        for b in &m.fills {
            *times.entry(b.exec).or_default() += 1;
            *held.entry(b.strategy).or_default() += b.qty;
            if !venue_fills.contains_key(&b.exec) {
                out.push(Violation::Phantom {
                    member: m.id,
                    booked: b.clone(),
                });
            }
        }
        for (&exec, &n) in times.iter().filter(|(_, n)| **n > 1) {
            out.push(Violation::Duplicated {
                member: m.id,
                exec,
                times: n,
            });
        }
        for (exec, fill) in &venue_fills {
            if !times.contains_key(exec) {
                out.push(Violation::Lost {
                    member: m.id,
                    fill: (*fill).clone(),
                });
            }
        }
        let strategies: BTreeSet<u16> = venue_pos.keys().chain(held.keys()).copied().collect();
        for s in strategies {
            let (v, l) = (
                venue_pos.get(&s).copied().unwrap_or(0),
                held.get(&s).copied().unwrap_or(0),
            );
            if v != l {
                out.push(Violation::Position {
                    member: m.id,
                    strategy: s,
                    venue: v,
                    ledger: l,
                });
            }
        }
    }
    let hashes: BTreeSet<[u8; 32]> = members.iter().map(|m| m.hash).collect();
    if hashes.len() > 1 {
        out.push(Violation::Diverged {
            hashes: members.iter().map(|m| (m.id, hex(&m.hash))).collect(),
        });
    }
    out
}

#[cfg(test)]
mod tests;
