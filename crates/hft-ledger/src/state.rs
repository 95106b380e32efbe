//! The replicated state machine: fills applied once by (venue, exec_id), positions, cash,
//! fees and realized PnL per account / strategy / instrument, client-order-id high-water
//! marks and kill switches.
//!
//! Every replica applies the same commands in the same order, so every decision here
//! (duplicate, rejection) must depend only on the state and the command. Names are
//! interned in first-seen order, which is log order and therefore the same everywhere;
//! maps keyed by interned ids iterate identically on every member, which makes the
//! state hash and the snapshot bytes deterministic.

use std::collections::{BTreeMap, HashMap, HashSet};

use hft_core::{InstrumentId, InstrumentSpec, Money, Nanos, Position, Price, Qty, Side};
use sha2::{Digest, Sha256};

use crate::command::{Command, DecodeError, KillScope, LedgerFill};

/// What applying one command did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The command changed the state.
    Done,
    /// A fill already booked (same venue and exec id): ignored.
    Duplicate,
    /// Refused by a deterministic rule (every member refuses it alike).
    Rejected(Rejection),
}

/// Why the state machine refused a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// The instrument's scales differ from those of its first fill.
    ScaleMismatch,
    /// Quantity not positive or price negative.
    BadAmount,
    /// Proposed by an owner whose epoch the strategy's fence has passed.
    StaleEpoch,
    /// A kill switch change asked for before the one in force for its scope: a
    /// request held up (an election, a client's retry through another node) must not
    /// undo a later engage or release.
    StaleKill,
}

/// A booked position with the instrument rules its notional needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PositionRow {
    /// Account.
    pub account: String,
    /// Strategy instance.
    pub strategy: String,
    /// Instrument.
    pub instrument: String,
    /// Net quantity, cost, realized PnL, fees and volume.
    pub position: Position,
    /// Fills booked into it.
    pub fills: u64,
}

/// A kill switch as the ledger holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KillRow {
    /// What it covers.
    pub scope: KillScope,
    /// Engaged now.
    pub engaged: bool,
    /// When it last changed.
    pub ts: Nanos,
}

#[derive(Clone, Debug, Default)]
struct Interner {
    names: Vec<String>,
    ids: HashMap<String, u32>,
}

impl Interner {
    fn id(&mut self, s: &str) -> u32 {
        if let Some(&i) = self.ids.get(s) {
            return i;
        }
        let i = self.names.len() as u32;
        self.names.push(s.to_owned());
        self.ids.insert(s.to_owned(), i);
        i
    }

    fn name(&self, i: u32) -> &str {
        &self.names[i as usize]
    }
}

/// A fill as stored: names interned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct StoredFill {
    venue: u32,
    exec_id: u64,
    account: u32,
    strategy: u32,
    instrument: u32,
    side: Side,
    price: Price,
    qty: Qty,
    fee: Money,
    taker: bool,
    cl_ord_id: u64,
    ts: Nanos,
    epoch: u64,
}

#[derive(Clone, Debug)]
struct Book {
    position: Position,
    fills: u64,
}

/// The ledger's state.
#[derive(Clone, Debug, Default)]
pub struct LedgerState {
    names: Interner,
    seen: HashSet<(u32, u64)>,
    fills: Vec<StoredFill>,
    specs: BTreeMap<u32, InstrumentSpec>,
    books: BTreeMap<(u32, u32, u32), Book>,
    cash: BTreeMap<u32, Money>,
    hwm: BTreeMap<u32, u64>,
    kills: BTreeMap<KillScope, (bool, Nanos)>,
    fences: BTreeMap<u32, u64>,
    duplicates: u64,
    rejected: u64,
}

impl LedgerState {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one command.
    pub fn apply(&mut self, cmd: &Command) -> Applied {
        match cmd {
            Command::Fill(f) => self.apply_fill(f),
            Command::ReserveOrderIds { strategy, upto } => {
                let s = self.names.id(strategy);
                let h = self.hwm.entry(s).or_insert(0);
                *h = (*h).max(*upto);
                Applied::Done
            }
            Command::Kill { scope, engaged, ts } => {
                // Older than the change in force: stale. At the same time, two
                // different decisions: the engage wins (fail safe).
                if let Some(&(now, at)) = self.kills.get(scope)
                    && (*ts < at || (*ts == at && now && !*engaged))
                {
                    // Asking for what is already in force is no conflict.
                    return if now == *engaged {
                        Applied::Done
                    } else {
                        Applied::Rejected(Rejection::StaleKill)
                    };
                }
                self.kills.insert(scope.clone(), (*engaged, *ts));
                Applied::Done
            }
            Command::Fence { strategy, epoch } => {
                let s = self.names.id(strategy);
                let e = self.fences.entry(s).or_insert(0);
                *e = (*e).max(*epoch);
                Applied::Done
            }
        }
    }

    fn apply_fill(&mut self, f: &LedgerFill) -> Applied {
        let venue = self.names.id(&f.venue);
        if self.seen.contains(&(venue, f.exec_id)) {
            self.duplicates += 1;
            return Applied::Duplicate;
        }
        if !amounts_in_range(f) {
            self.rejected += 1;
            return Applied::Rejected(Rejection::BadAmount);
        }
        let fenced = self
            .names
            .ids
            .get(&f.strategy)
            .and_then(|s| self.fences.get(s))
            .is_some_and(|&min| f.epoch < min);
        if fenced {
            self.rejected += 1;
            return Applied::Rejected(Rejection::StaleEpoch);
        }
        let instrument = self.names.id(&f.instrument);
        let spec = self.specs.entry(instrument).or_insert_with(|| {
            InstrumentSpec::new(
                InstrumentId(instrument),
                f.instrument.clone(),
                f.price_scale,
                f.qty_scale,
                Price(1),
                Qty(1),
            )
        });
        if spec.price_scale != f.price_scale || spec.qty_scale != f.qty_scale {
            self.rejected += 1;
            return Applied::Rejected(Rejection::ScaleMismatch);
        }
        let account = self.names.id(&f.account);
        let strategy = self.names.id(&f.strategy);
        self.seen.insert((venue, f.exec_id));
        let fill = hft_core::Fill {
            exec_id: hft_core::ExecId(f.exec_id),
            side: f.side,
            price: f.price,
            qty: f.qty,
            leaves: Qty(0),
            liquidity: f.liquidity,
            fee: f.fee,
        };
        let book = self
            .books
            .entry((account, strategy, instrument))
            .or_insert(Book {
                position: Position::default(),
                fills: 0,
            });
        book.position.apply(spec, &fill);
        book.fills += 1;
        let notional = spec.notional(f.price, f.qty).raw();
        let cash = self.cash.entry(account).or_insert(Money::ZERO);
        *cash = Money(
            cash.raw()
                .saturating_sub(f.side.sign().saturating_mul(notional))
                .saturating_sub(f.fee.raw()),
        );
        // An id a venue executed is spent even if no reservation covered it.
        let seq = f.cl_ord_id & 0xFFFF_FFFF_FFFF;
        let h = self.hwm.entry(strategy).or_insert(0);
        *h = (*h).max(seq);
        self.fills.push(StoredFill {
            venue,
            exec_id: f.exec_id,
            account,
            strategy,
            instrument,
            side: f.side,
            price: f.price,
            qty: f.qty,
            fee: f.fee,
            taker: f.liquidity == hft_core::Liquidity::Taker,
            cl_ord_id: f.cl_ord_id,
            ts: f.ts,
            epoch: f.epoch,
        });
        Applied::Done
    }

    /// Whether (venue, exec_id) is booked; a proposer skips fills already here.
    pub fn contains(&self, venue: &str, exec_id: u64) -> bool {
        self.names
            .ids
            .get(venue)
            .is_some_and(|&v| self.seen.contains(&(v, exec_id)))
    }

    /// Fills booked.
    pub fn fill_count(&self) -> u64 {
        self.fills.len() as u64
    }

    /// Fills proposed again after they were booked.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// Commands refused by the state machine's rules.
    pub fn rejected(&self) -> u64 {
        self.rejected
    }

    /// Every position, in a stable order.
    pub fn positions(&self) -> Vec<PositionRow> {
        self.books
            .iter()
            .map(|(&(a, s, i), b)| PositionRow {
                account: self.names.name(a).to_owned(),
                strategy: self.names.name(s).to_owned(),
                instrument: self.names.name(i).to_owned(),
                position: b.position,
                fills: b.fills,
            })
            .collect()
    }

    /// Net quantity of one account / strategy / instrument (zero if never traded).
    pub fn net_qty(&self, account: &str, strategy: &str, instrument: &str) -> Qty {
        let id = |s: &str| self.names.ids.get(s).copied();
        match (id(account), id(strategy), id(instrument)) {
            (Some(a), Some(s), Some(i)) => self
                .books
                .get(&(a, s, i))
                .map_or(Qty(0), |b| b.position.qty),
            _ => Qty(0),
        }
    }

    /// Cash of every account: minus what was paid for buys, plus what sells received,
    /// minus fees.
    pub fn cash(&self) -> Vec<(String, Money)> {
        self.cash
            .iter()
            .map(|(&a, &m)| (self.names.name(a).to_owned(), m))
            .collect()
    }

    /// Highest reserved or used client-order sequence of `strategy`.
    pub fn order_id_hwm(&self, strategy: &str) -> u64 {
        self.names
            .ids
            .get(strategy)
            .and_then(|s| self.hwm.get(s))
            .copied()
            .unwrap_or(0)
    }

    /// Every kill switch ever set.
    pub fn kills(&self) -> Vec<KillRow> {
        self.kills
            .iter()
            .map(|(scope, &(engaged, ts))| KillRow {
                scope: scope.clone(),
                engaged,
                ts,
            })
            .collect()
    }

    /// Whether trading by `strategy` on `venue` is halted by any switch.
    pub fn is_killed(&self, strategy: &str, venue: &str) -> bool {
        self.kills.iter().any(|(scope, &(on, _))| {
            on && match scope {
                KillScope::Global => true,
                KillScope::Strategy(s) => s == strategy,
                KillScope::Venue(v) => v == venue,
            }
        })
    }

    /// Fills with `ts >= since`, oldest first, at most `limit`.
    pub fn fills_since(&self, since: Nanos, limit: usize) -> Vec<LedgerFill> {
        self.fills
            .iter()
            .filter(|f| f.ts >= since)
            .take(limit)
            .map(|f| self.expand(f))
            .collect()
    }

    fn expand(&self, f: &StoredFill) -> LedgerFill {
        let spec = &self.specs[&f.instrument];
        LedgerFill {
            venue: self.names.name(f.venue).to_owned(),
            exec_id: f.exec_id,
            account: self.names.name(f.account).to_owned(),
            strategy: self.names.name(f.strategy).to_owned(),
            instrument: self.names.name(f.instrument).to_owned(),
            price_scale: spec.price_scale,
            qty_scale: spec.qty_scale,
            side: f.side,
            price: f.price,
            qty: f.qty,
            fee: f.fee,
            liquidity: if f.taker {
                hft_core::Liquidity::Taker
            } else {
                hft_core::Liquidity::Maker
            },
            cl_ord_id: f.cl_ord_id,
            ts: f.ts,
            epoch: f.epoch,
        }
    }

    /// The epoch below which a strategy's fill proposals are refused (0: not fenced).
    pub fn fence(&self, strategy: &str) -> u64 {
        self.names
            .ids
            .get(strategy)
            .and_then(|s| self.fences.get(s))
            .copied()
            .unwrap_or(0)
    }

    /// SHA-256 of the whole state in its canonical encoding: equal on two members exactly
    /// when they booked the same fills and switches in the same order.
    pub fn hash(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        let mut buf = Vec::with_capacity(1 << 16);
        self.encode_into(&mut buf, |chunk| h.update(chunk));
        h.finalize().into()
    }

    /// The snapshot bytes of the state.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = Vec::with_capacity(1 << 16);
        self.encode_into(&mut buf, |chunk| out.extend_from_slice(chunk));
        out
    }

    /// Streams the canonical encoding through `sink` in chunks.
    fn encode_into(&self, buf: &mut Vec<u8>, mut sink: impl FnMut(&[u8])) {
        let flush = |buf: &mut Vec<u8>, sink: &mut dyn FnMut(&[u8]), force: bool| {
            if force || buf.len() >= 1 << 16 {
                sink(buf);
                buf.clear();
            }
        };
        buf.push(SNAPSHOT_VERSION);
        put_u64(buf, self.names.names.len() as u64);
        for n in &self.names.names {
            put_str(buf, n);
            flush(buf, &mut sink, false);
        }
        put_u64(buf, self.specs.len() as u64);
        for (&i, s) in &self.specs {
            put_u32(buf, i);
            buf.push(s.price_scale);
            buf.push(s.qty_scale);
        }
        put_u64(buf, self.fills.len() as u64);
        for f in &self.fills {
            put_u32(buf, f.venue);
            put_u64(buf, f.exec_id);
            put_u32(buf, f.account);
            put_u32(buf, f.strategy);
            put_u32(buf, f.instrument);
            buf.push(u8::from(f.side == Side::Sell) | (u8::from(f.taker) << 1));
            put_i64(buf, f.price.raw());
            put_i64(buf, f.qty.raw());
            put_i64(buf, f.fee.raw());
            put_u64(buf, f.cl_ord_id);
            put_u64(buf, f.ts);
            put_u64(buf, f.epoch);
            flush(buf, &mut sink, false);
        }
        put_u64(buf, self.books.len() as u64);
        for (&(a, s, i), b) in &self.books {
            put_u32(buf, a);
            put_u32(buf, s);
            put_u32(buf, i);
            let p = &b.position;
            for v in [
                p.qty.raw(),
                p.cost.raw(),
                p.realized.raw(),
                p.fees.raw(),
                p.volume.raw(),
                p.max_abs_qty.raw(),
            ] {
                put_i64(buf, v);
            }
            put_u64(buf, b.fills);
            flush(buf, &mut sink, false);
        }
        put_u64(buf, self.cash.len() as u64);
        for (&a, m) in &self.cash {
            put_u32(buf, a);
            put_i64(buf, m.raw());
        }
        put_u64(buf, self.hwm.len() as u64);
        for (&s, &v) in &self.hwm {
            put_u32(buf, s);
            put_u64(buf, v);
        }
        put_u64(buf, self.kills.len() as u64);
        for (scope, &(on, ts)) in &self.kills {
            match scope {
                KillScope::Global => buf.push(0),
                KillScope::Strategy(s) => {
                    buf.push(1);
                    put_str(buf, s);
                }
                KillScope::Venue(v) => {
                    buf.push(2);
                    put_str(buf, v);
                }
            }
            buf.push(u8::from(on));
            put_u64(buf, ts);
        }
        put_u64(buf, self.fences.len() as u64);
        for (&s, &e) in &self.fences {
            put_u32(buf, s);
            put_u64(buf, e);
        }
        put_u64(buf, self.duplicates);
        put_u64(buf, self.rejected);
        flush(buf, &mut sink, true);
    }

    /// Rebuilds a state from [`LedgerState::encode`] bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Cursor { buf: bytes, at: 0 };
        // Version 1 (before fencing) had no fill epochs and no fences.
        let version = r.u8()?;
        if version != 1 && version != SNAPSHOT_VERSION {
            return Err(DecodeError {
                what: "unsupported snapshot version",
                at: 0,
            });
        }
        let v2 = version >= 2;
        let mut st = LedgerState::new();
        let n = r.len(2)?;
        for _ in 0..n {
            let s = r.string()?;
            st.names.id(&s);
        }
        let names = st.names.names.len() as u32;
        for _ in 0..r.len(6)? {
            let i = r.name(names)?;
            let (ps, qs) = (r.u8()?, r.u8()?);
            let sym = st.names.name(i).to_owned();
            st.specs.insert(
                i,
                InstrumentSpec::new(InstrumentId(i), sym, ps, qs, Price(1), Qty(1)),
            );
        }
        let n = r.len(if v2 { 69 } else { 61 })?;
        st.fills.reserve(n);
        st.seen.reserve(n);
        for _ in 0..n {
            let venue = r.name(names)?;
            let exec_id = r.u64()?;
            let account = r.name(names)?;
            let strategy = r.name(names)?;
            let instrument = r.name(names)?;
            if !st.specs.contains_key(&instrument) {
                return Err(DecodeError {
                    what: "fill of an instrument without a spec",
                    at: r.at,
                });
            }
            let flags = r.u8()?;
            let f = StoredFill {
                venue,
                exec_id,
                account,
                strategy,
                instrument,
                side: if flags & 1 != 0 {
                    Side::Sell
                } else {
                    Side::Buy
                },
                taker: flags & 2 != 0,
                price: Price(r.i64()?),
                qty: Qty(r.i64()?),
                fee: Money(r.i64()?),
                cl_ord_id: r.u64()?,
                ts: r.u64()?,
                epoch: if v2 { r.u64()? } else { 0 },
            };
            st.seen.insert((venue, exec_id));
            st.fills.push(f);
        }
        for _ in 0..r.len(68)? {
            let key = (r.name(names)?, r.name(names)?, r.name(names)?);
            let position = Position {
                qty: Qty(r.i64()?),
                cost: Money(r.i64()?),
                realized: Money(r.i64()?),
                fees: Money(r.i64()?),
                volume: Qty(r.i64()?),
                max_abs_qty: Qty(r.i64()?),
            };
            let fills = r.u64()?;
            st.books.insert(key, Book { position, fills });
        }
        for _ in 0..r.len(12)? {
            let a = r.name(names)?;
            st.cash.insert(a, Money(r.i64()?));
        }
        for _ in 0..r.len(12)? {
            let s = r.name(names)?;
            st.hwm.insert(s, r.u64()?);
        }
        for _ in 0..r.len(10)? {
            let scope = match r.u8()? {
                0 => KillScope::Global,
                1 => KillScope::Strategy(r.string()?),
                2 => KillScope::Venue(r.string()?),
                _ => {
                    return Err(DecodeError {
                        what: "unknown kill scope",
                        at: r.at,
                    });
                }
            };
            let on = r.u8()? != 0;
            st.kills.insert(scope, (on, r.u64()?));
        }
        if v2 {
            for _ in 0..r.len(12)? {
                let s = r.name(names)?;
                st.fences.insert(s, r.u64()?);
            }
        }
        st.duplicates = r.u64()?;
        st.rejected = r.u64()?;
        if r.at != bytes.len() {
            return Err(DecodeError {
                what: "trailing bytes after the state",
                at: r.at,
            });
        }
        Ok(st)
    }
}

const SNAPSHOT_VERSION: u8 = 2;

/// Largest magnitude of a fill's price, quantity or fee the ledger books (1e15 raw
/// units): products and sums of such amounts stay far inside i64/i128, so applying a
/// fill can never overflow on any member.
pub const MAX_AMOUNT: i64 = 1_000_000_000_000_000;

/// Whether a fill's amounts and scales are ones the ledger can book: quantity positive,
/// price not negative, magnitudes within [`MAX_AMOUNT`], scales within the instrument
/// rules (each at most [`hft_core::MAX_SCALE`], together at most 16).
pub fn amounts_in_range(f: &LedgerFill) -> bool {
    let scale = u32::from(hft_core::MAX_SCALE);
    f.qty.raw() > 0
        && f.qty.raw() <= MAX_AMOUNT
        && (0..=MAX_AMOUNT).contains(&f.price.raw())
        && f.fee.raw().unsigned_abs() <= MAX_AMOUNT as u64
        && u32::from(f.price_scale) <= scale
        && u32::from(f.qty_scale) <= scale
        && u32::from(f.price_scale) + u32::from(f.qty_scale) <= 16
}

fn put_u32(b: &mut Vec<u8>, v: u32) {
    b.extend_from_slice(&v.to_le_bytes());
}
fn put_u64(b: &mut Vec<u8>, v: u64) {
    b.extend_from_slice(&v.to_le_bytes());
}
fn put_i64(b: &mut Vec<u8>, v: i64) {
    b.extend_from_slice(&v.to_le_bytes());
}
fn put_str(b: &mut Vec<u8>, s: &str) {
    put_u32(b, s.len() as u32);
    b.extend_from_slice(s.as_bytes());
}

struct Cursor<'a> {
    buf: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], DecodeError> {
        match self.at.checked_add(n).filter(|&e| e <= self.buf.len()) {
            Some(end) => {
                let s = &self.buf[self.at..end];
                self.at = end;
                Ok(s)
            }
            None => Err(DecodeError {
                what: "snapshot ends early",
                at: self.at,
            }),
        }
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(a))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }
    fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(self.u64()? as i64)
    }
    /// A count of items of at least `min_size` bytes each, bounded by what is left.
    fn len(&mut self, min_size: usize) -> Result<usize, DecodeError> {
        let n = self.u64()?;
        let left = (self.buf.len() - self.at) as u64;
        if n > left / min_size as u64 {
            return Err(DecodeError {
                what: "count larger than the snapshot",
                at: self.at - 8,
            });
        }
        Ok(n as usize)
    }
    /// An interned-name index, checked against the `names` read so far.
    fn name(&mut self, names: u32) -> Result<u32, DecodeError> {
        let i = self.u32()?;
        if i < names {
            Ok(i)
        } else {
            Err(DecodeError {
                what: "name index out of range",
                at: self.at - 4,
            })
        }
    }
    fn string(&mut self) -> Result<String, DecodeError> {
        let n = self.u32()? as usize;
        let at = self.at;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| DecodeError {
            what: "name is not UTF-8",
            at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::tests::fill;
    use hft_core::{ClientOrderId, StrategyId};
    use proptest::prelude::*;

    #[test]
    fn a_fill_counts_once_however_often_it_is_applied() {
        let mut st = LedgerState::new();
        let f = Command::Fill(fill("x", 1, Side::Buy, 10_000, 2_000));
        assert_eq!(st.apply(&f), Applied::Done);
        assert_eq!(st.apply(&f), Applied::Duplicate);
        assert_eq!(st.net_qty("main", "mm", "BTC-USD"), Qty(2_000));
        assert_eq!(st.fill_count(), 1);
        assert_eq!(st.duplicates(), 1);
        // Same exec id on another venue is another fill.
        st.apply(&Command::Fill(fill("y", 1, Side::Sell, 10_000, 500)));
        assert_eq!(st.net_qty("main", "mm", "BTC-USD"), Qty(1_500));
    }

    #[test]
    fn cash_pays_notional_and_fees() {
        let mut st = LedgerState::new();
        // 2.000 at 100.00 = 200.00 notional; fee 3 money units.
        st.apply(&Command::Fill(fill("x", 1, Side::Buy, 10_000, 2_000)));
        let spec = InstrumentSpec::new(InstrumentId(0), "BTC-USD", 2, 3, Price(1), Qty(1));
        let notional = spec.notional(Price(10_000), Qty(2_000)).raw();
        assert_eq!(st.cash(), vec![("main".to_owned(), Money(-notional - 3))]);
    }

    #[test]
    fn scale_changes_and_bad_amounts_are_refused_alike_everywhere() {
        let mut st = LedgerState::new();
        st.apply(&Command::Fill(fill("x", 1, Side::Buy, 10_000, 2_000)));
        let mut f = fill("x", 2, Side::Buy, 10_000, 2_000);
        f.price_scale = 4;
        assert_eq!(
            st.apply(&Command::Fill(f)),
            Applied::Rejected(Rejection::ScaleMismatch)
        );
        assert_eq!(
            st.apply(&Command::Fill(fill("x", 3, Side::Buy, 10_000, 0))),
            Applied::Rejected(Rejection::BadAmount)
        );
        assert_eq!(st.rejected(), 2);
        assert!(!st.contains("x", 2));
    }

    #[test]
    fn out_of_range_amounts_and_scales_are_refused_not_applied() {
        let mut st = LedgerState::new();
        let mut cases = Vec::new();
        let mut f = fill("x", 1, Side::Buy, 100, 1);
        f.price_scale = 120;
        f.qty_scale = 120;
        cases.push(f);
        let mut f = fill("x", 2, Side::Buy, 100, 1);
        f.qty = Qty(i64::MAX);
        cases.push(f);
        let mut f = fill("x", 3, Side::Buy, 100, 1);
        f.fee = Money(i64::MIN);
        cases.push(f);
        for f in cases {
            assert_eq!(
                st.apply(&Command::Fill(f)),
                Applied::Rejected(Rejection::BadAmount)
            );
        }
        assert_eq!(st.fill_count(), 0);
    }

    #[test]
    fn kill_switches_cover_their_scope() {
        let mut st = LedgerState::new();
        let ts = std::cell::Cell::new(5);
        let kill = |scope, engaged| {
            ts.set(ts.get() + 1);
            Command::Kill {
                scope,
                engaged,
                ts: ts.get(),
            }
        };
        st.apply(&kill(KillScope::Venue("x".into()), true));
        assert!(st.is_killed("mm", "x"));
        assert!(!st.is_killed("mm", "y"));
        st.apply(&kill(KillScope::Global, true));
        assert!(st.is_killed("mm", "y"));
        st.apply(&kill(KillScope::Global, false));
        st.apply(&kill(KillScope::Venue("x".into()), false));
        assert!(!st.is_killed("mm", "x"));
    }

    #[test]
    fn a_kill_switch_change_asked_for_earlier_does_not_undo_a_later_one() {
        let mut st = LedgerState::new();
        let kill = |engaged, ts| Command::Kill {
            scope: KillScope::Strategy("mm".into()),
            engaged,
            ts,
        };
        // Engaged at 10 through one node, released at 20; the first engage request,
        // also sent at 5 to a node that was electing, commits last.
        assert_eq!(st.apply(&kill(true, 10)), Applied::Done);
        assert_eq!(st.apply(&kill(false, 20)), Applied::Done);
        assert_eq!(
            st.apply(&kill(true, 5)),
            Applied::Rejected(Rejection::StaleKill)
        );
        assert!(!st.is_killed("mm", "x"), "the release stands");
        // And the other way round: a late release does not lift a later engage.
        assert_eq!(st.apply(&kill(true, 30)), Applied::Done);
        assert_eq!(
            st.apply(&kill(false, 25)),
            Applied::Rejected(Rejection::StaleKill)
        );
        assert!(st.is_killed("mm", "x"));
        // The order survives a snapshot.
        let mut back = LedgerState::decode(&st.encode()).unwrap();
        assert_eq!(
            back.apply(&kill(false, 29)),
            Applied::Rejected(Rejection::StaleKill)
        );
        // Two different decisions at one time: the engage wins, whichever commits first.
        assert_eq!(
            back.apply(&kill(false, 30)),
            Applied::Rejected(Rejection::StaleKill)
        );
        assert!(back.is_killed("mm", "x"));
        assert_eq!(back.apply(&kill(false, 31)), Applied::Done);
        assert_eq!(back.apply(&kill(true, 31)), Applied::Done);
        assert!(back.is_killed("mm", "x"));
        assert_eq!(back.apply(&kill(false, 32)), Applied::Done);
        assert!(!back.is_killed("mm", "x"));
        // A late request for the state already in force changes nothing and is no
        // conflict.
        assert_eq!(back.apply(&kill(false, 1)), Applied::Done);
        assert!(!back.is_killed("mm", "x"));
    }

    #[test]
    fn a_fence_refuses_proposals_of_earlier_owners() {
        let mut st = LedgerState::new();
        let at = |id: u64, epoch: u64| {
            let mut f = fill("x", id, Side::Buy, 10_000, 1_000);
            f.epoch = epoch;
            Command::Fill(f)
        };
        assert_eq!(st.apply(&at(1, 0)), Applied::Done, "unfenced: any epoch");
        st.apply(&Command::Fence {
            strategy: "mm".into(),
            epoch: 5,
        });
        st.apply(&Command::Fence {
            strategy: "mm".into(),
            epoch: 3,
        });
        assert_eq!(st.fence("mm"), 5, "fences only rise");
        assert_eq!(
            st.apply(&at(2, 4)),
            Applied::Rejected(Rejection::StaleEpoch)
        );
        assert_eq!(
            st.apply(&at(3, 0)),
            Applied::Rejected(Rejection::StaleEpoch)
        );
        assert_eq!(st.apply(&at(4, 5)), Applied::Done);
        assert_eq!(st.net_qty("main", "mm", "BTC-USD"), Qty(2_000));
        // The fence survives a snapshot.
        let back = LedgerState::decode(&st.encode()).unwrap();
        assert_eq!(back.fence("mm"), 5);
        assert_eq!(back.hash(), st.hash());
    }

    #[test]
    fn order_id_marks_only_rise() {
        let mut st = LedgerState::new();
        let r = |upto| Command::ReserveOrderIds {
            strategy: "mm".into(),
            upto,
        };
        st.apply(&r(100));
        st.apply(&r(50));
        assert_eq!(st.order_id_hwm("mm"), 100);
        assert_eq!(st.order_id_hwm("other"), 0);
        // A fill spends its order's id.
        let mut f = fill("x", 1, Side::Buy, 10_000, 2_000);
        f.cl_ord_id = ClientOrderId::new(StrategyId(3), 250).0;
        st.apply(&Command::Fill(f));
        assert_eq!(st.order_id_hwm("mm"), 250);
    }

    fn any_stream() -> impl Strategy<Value = Vec<Command>> {
        proptest::collection::vec(
            (0u64..40, any::<bool>(), 1i64..20_000, 1i64..5_000, 0u8..2),
            0..120,
        )
        .prop_map(|v| {
            v.into_iter()
                .map(|(id, buy, p, q, venue)| {
                    let side = if buy { Side::Buy } else { Side::Sell };
                    let venue = if venue == 0 { "x" } else { "y" };
                    Command::Fill(fill(venue, id, side, p, q))
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn position_is_the_sum_of_unique_fills(cmds in any_stream()) {
            let mut st = LedgerState::new();
            let mut unique = std::collections::BTreeMap::new();
            for c in &cmds {
                st.apply(c);
                if let Command::Fill(f) = c {
                    unique.entry((f.venue.clone(), f.exec_id)).or_insert(f.side.sign() * f.qty.raw());
                }
            }
            let want: i64 = unique.values().sum();
            prop_assert_eq!(st.net_qty("main", "mm", "BTC-USD").raw(), want);
            prop_assert_eq!(st.fill_count() as usize, unique.len());
            prop_assert_eq!(st.fill_count() + st.duplicates(), cmds.len() as u64);
        }

        #[test]
        fn snapshots_round_trip_to_the_same_hash(cmds in any_stream()) {
            let mut st = LedgerState::new();
            for c in &cmds {
                st.apply(c);
            }
            st.apply(&Command::Kill { scope: KillScope::Strategy("mm".into()), engaged: true, ts: 9 });
            st.apply(&Command::ReserveOrderIds { strategy: "mm".into(), upto: 77 });
            let back = LedgerState::decode(&st.encode()).unwrap();
            prop_assert_eq!(back.hash(), st.hash());
            prop_assert_eq!(back.positions(), st.positions());
            prop_assert_eq!(back.fills_since(0, usize::MAX), st.fills_since(0, usize::MAX));
            // The restored state keeps deduplicating.
            let mut back = back;
            for c in &cmds {
                prop_assert_ne!(back.apply(c), Applied::Done);
            }
        }

        #[test]
        fn corrupt_snapshots_are_errors_not_panics(
            cmds in any_stream(),
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4),
            cut in any::<usize>(),
        ) {
            let mut st = LedgerState::new();
            for c in &cmds {
                st.apply(c);
            }
            let mut bytes = st.encode();
            for (at, x) in flips {
                let n = bytes.len();
                bytes[at % n] ^= x;
            }
            let _ = LedgerState::decode(&bytes);
            let n = bytes.len();
            let _ = LedgerState::decode(&bytes[..cut % n]);
        }
    }

    #[test]
    fn the_hash_differs_when_order_or_content_differs() {
        let a = Command::Fill(fill("x", 1, Side::Buy, 10_000, 2_000));
        let b = Command::Fill(fill("x", 2, Side::Sell, 10_100, 1_000));
        let run = |cmds: &[&Command]| {
            let mut st = LedgerState::new();
            for c in cmds {
                st.apply(c);
            }
            st.hash()
        };
        assert_ne!(run(&[&a, &b]), run(&[&b, &a]));
        assert_ne!(run(&[&a]), run(&[&a, &b]));
    }
}
