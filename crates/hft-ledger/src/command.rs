//! Ledger commands and their binary form: what a Raft entry carries.
//!
//! An entry holds a batch of commands so that one fsync and one round of replication
//! commit many fills under load. The encoding is little-endian with length-prefixed
//! strings and a leading format version, so a member can refuse an entry written by a
//! newer release instead of misreading it.

use hft_core::{Liquidity, Money, Nanos, Price, Qty, Side};
use thiserror::Error;

/// Version byte at the start of every encoded batch.
pub const FORMAT_VERSION: u8 = 1;

/// One execution as the ledger records it: everything needed to rebuild positions,
/// cash and fees without the node's instrument table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LedgerFill {
    /// Venue name; with `exec_id` the idempotency key.
    pub venue: String,
    /// Venue execution id.
    pub exec_id: u64,
    /// Trading account the fill books to.
    pub account: String,
    /// Strategy instance that owned the order.
    pub strategy: String,
    /// Instrument name as configured (`SYMBOL` or `venue:SYMBOL`).
    pub instrument: String,
    /// Decimals of the raw price; fixes how notional is computed.
    pub price_scale: u8,
    /// Decimals of the raw quantity.
    pub qty_scale: u8,
    /// Side of our order.
    pub side: Side,
    /// Execution price, raw units.
    pub price: Price,
    /// Executed quantity, raw units.
    pub qty: Qty,
    /// Fee charged (negative = rebate).
    pub fee: Money,
    /// Maker or taker.
    pub liquidity: Liquidity,
    /// Client order id of our order.
    pub cl_ord_id: u64,
    /// Venue time of the execution.
    pub ts: Nanos,
    /// Fencing epoch of the proposer's assignment (0: unassigned, a single-node run);
    /// refused once the strategy is fenced at a higher epoch.
    pub epoch: u64,
}

/// What a kill switch covers.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KillScope {
    /// Every strategy on every venue.
    Global,
    /// One strategy instance.
    Strategy(String),
    /// One venue.
    Venue(String),
}

impl std::fmt::Display for KillScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KillScope::Global => f.write_str("global"),
            KillScope::Strategy(s) => write!(f, "strategy:{s}"),
            KillScope::Venue(v) => write!(f, "venue:{v}"),
        }
    }
}

/// A state change the ledger replicates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Book an execution (once, however often it is proposed).
    Fill(LedgerFill),
    /// Raise a strategy's client-order-id high-water mark: ids up to `upto` are spent, so
    /// an engine restarted anywhere continues above it.
    ReserveOrderIds {
        /// Strategy instance.
        strategy: String,
        /// Highest sequence number now reserved.
        upto: u64,
    },
    /// Raise a strategy's fencing epoch: from now on proposals of its fills from an
    /// owner with a lower epoch (a node that lost the assignment) are refused.
    Fence {
        /// Strategy instance.
        strategy: String,
        /// The new owner's epoch.
        epoch: u64,
    },
    /// Engage or release a kill switch.
    Kill {
        /// What it covers.
        scope: KillScope,
        /// Engaged (true) or released.
        engaged: bool,
        /// When it was requested.
        ts: Nanos,
    },
}

/// An entry's bytes could not be decoded.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
#[error("ledger entry: {what} at byte {at}")]
pub struct DecodeError {
    /// What was wrong.
    pub what: &'static str,
    /// Byte offset in the entry.
    pub at: usize,
}

const TAG_FILL: u8 = 1;
const TAG_RESERVE: u8 = 2;
const TAG_KILL: u8 = 3;
const TAG_FENCE: u8 = 4;
/// A fill with a non-zero epoch (an epoch-0 fill keeps tag 1, so every batch has
/// exactly one encoding).
const TAG_FILL_EPOCH: u8 = 5;

/// Appends the encoding of `cmds` (one batch) to `out`.
pub fn encode_batch(cmds: &[Command], out: &mut Vec<u8>) {
    out.push(FORMAT_VERSION);
    out.extend_from_slice(&(cmds.len() as u32).to_le_bytes());
    for c in cmds {
        encode_command(c, out);
    }
}

/// Appends one command (without the batch header); batches built incrementally use it.
pub fn encode_command(c: &Command, out: &mut Vec<u8>) {
    match c {
        Command::Fill(f) => {
            out.push(if f.epoch == 0 {
                TAG_FILL
            } else {
                TAG_FILL_EPOCH
            });
            put_str(out, &f.venue);
            out.extend_from_slice(&f.exec_id.to_le_bytes());
            put_str(out, &f.account);
            put_str(out, &f.strategy);
            put_str(out, &f.instrument);
            out.push(f.price_scale);
            out.push(f.qty_scale);
            out.push(match f.side {
                Side::Buy => 0,
                Side::Sell => 1,
            });
            out.extend_from_slice(&f.price.raw().to_le_bytes());
            out.extend_from_slice(&f.qty.raw().to_le_bytes());
            out.extend_from_slice(&f.fee.raw().to_le_bytes());
            out.push(match f.liquidity {
                Liquidity::Maker => 0,
                Liquidity::Taker => 1,
            });
            out.extend_from_slice(&f.cl_ord_id.to_le_bytes());
            out.extend_from_slice(&f.ts.to_le_bytes());
            if f.epoch != 0 {
                out.extend_from_slice(&f.epoch.to_le_bytes());
            }
        }
        Command::Fence { strategy, epoch } => {
            out.push(TAG_FENCE);
            put_str(out, strategy);
            out.extend_from_slice(&epoch.to_le_bytes());
        }
        Command::ReserveOrderIds { strategy, upto } => {
            out.push(TAG_RESERVE);
            put_str(out, strategy);
            out.extend_from_slice(&upto.to_le_bytes());
        }
        Command::Kill { scope, engaged, ts } => {
            out.push(TAG_KILL);
            match scope {
                KillScope::Global => out.push(0),
                KillScope::Strategy(s) => {
                    out.push(1);
                    put_str(out, s);
                }
                KillScope::Venue(v) => {
                    out.push(2);
                    put_str(out, v);
                }
            }
            out.push(u8::from(*engaged));
            out.extend_from_slice(&ts.to_le_bytes());
        }
    }
}

/// Header of a batch whose commands are appended one by one with [`encode_command`];
/// [`set_batch_len`] writes the final count.
pub fn begin_batch(out: &mut Vec<u8>) {
    out.push(FORMAT_VERSION);
    out.extend_from_slice(&0u32.to_le_bytes());
}

/// Writes the command count of a batch started with [`begin_batch`] at `start`.
pub fn set_batch_len(out: &mut [u8], start: usize, n: u32) {
    out[start + 1..start + 5].copy_from_slice(&n.to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    // Names are short identifiers; anything longer is cut at a char boundary rather than
    // making the encoding fallible (validation rejects such names before proposing).
    let mut end = s.len().min(u16::MAX as usize);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    out.extend_from_slice(&(end as u16).to_le_bytes());
    out.extend_from_slice(&s.as_bytes()[..end]);
}

/// Decodes a batch.
pub fn decode_batch(buf: &[u8]) -> Result<Vec<Command>, DecodeError> {
    let mut r = Reader { buf, at: 0 };
    let v = r.u8("version")?;
    if v != FORMAT_VERSION {
        return Err(DecodeError {
            what: "unsupported format version (written by a newer release?)",
            at: 0,
        });
    }
    let n = r.u32("command count")? as usize;
    // Every command takes at least two bytes: bound the allocation by the input.
    if n > buf.len() / 2 {
        return Err(DecodeError {
            what: "command count larger than the entry",
            at: 1,
        });
    }
    let mut cmds = Vec::with_capacity(n);
    for _ in 0..n {
        cmds.push(r.command()?);
    }
    if r.at != buf.len() {
        return Err(DecodeError {
            what: "trailing bytes after the last command",
            at: r.at,
        });
    }
    Ok(cmds)
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&[u8], DecodeError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.buf.len());
        match end {
            Some(end) => {
                let s = &self.buf[self.at..end];
                self.at = end;
                Ok(s)
            }
            None => Err(DecodeError { what, at: self.at }),
        }
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, what)?[0])
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn i64(&mut self, what: &'static str) -> Result<i64, DecodeError> {
        Ok(self.u64(what)? as i64)
    }

    fn string(&mut self, what: &'static str) -> Result<String, DecodeError> {
        let b = self.take(2, what)?;
        let n = u16::from_le_bytes([b[0], b[1]]) as usize;
        let at = self.at;
        let s = self.take(n, what)?;
        String::from_utf8(s.to_vec()).map_err(|_| DecodeError {
            what: "name is not UTF-8",
            at,
        })
    }

    fn command(&mut self) -> Result<Command, DecodeError> {
        let at = self.at;
        match self.u8("command tag")? {
            tag @ (TAG_FILL | TAG_FILL_EPOCH) => {
                let venue = self.string("fill venue")?;
                let exec_id = self.u64("fill exec id")?;
                let account = self.string("fill account")?;
                let strategy = self.string("fill strategy")?;
                let instrument = self.string("fill instrument")?;
                let price_scale = self.u8("fill price scale")?;
                let qty_scale = self.u8("fill qty scale")?;
                let side_at = self.at;
                let side = match self.u8("fill side")? {
                    0 => Side::Buy,
                    1 => Side::Sell,
                    _ => {
                        return Err(DecodeError {
                            what: "fill side is neither buy (0) nor sell (1)",
                            at: side_at,
                        });
                    }
                };
                let price = Price(self.i64("fill price")?);
                let qty = Qty(self.i64("fill qty")?);
                let fee = Money(self.i64("fill fee")?);
                let liq_at = self.at;
                let liquidity = match self.u8("fill liquidity")? {
                    0 => Liquidity::Maker,
                    1 => Liquidity::Taker,
                    _ => {
                        return Err(DecodeError {
                            what: "fill liquidity is neither maker (0) nor taker (1)",
                            at: liq_at,
                        });
                    }
                };
                let cl_ord_id = self.u64("fill client order id")?;
                let ts = self.u64("fill timestamp")?;
                let epoch = if tag == TAG_FILL_EPOCH {
                    let at = self.at;
                    match self.u64("fill epoch")? {
                        0 => {
                            return Err(DecodeError {
                                what: "fill epoch 0 belongs in the plain fill record",
                                at,
                            });
                        }
                        e => e,
                    }
                } else {
                    0
                };
                Ok(Command::Fill(LedgerFill {
                    venue,
                    exec_id,
                    account,
                    strategy,
                    instrument,
                    price_scale,
                    qty_scale,
                    side,
                    price,
                    qty,
                    fee,
                    liquidity,
                    cl_ord_id,
                    ts,
                    epoch,
                }))
            }
            TAG_FENCE => {
                let strategy = self.string("fence strategy")?;
                let epoch = self.u64("fence epoch")?;
                Ok(Command::Fence { strategy, epoch })
            }
            TAG_RESERVE => {
                let strategy = self.string("reserve strategy")?;
                let upto = self.u64("reserve upto")?;
                Ok(Command::ReserveOrderIds { strategy, upto })
            }
            TAG_KILL => {
                let scope_at = self.at;
                let scope = match self.u8("kill scope")? {
                    0 => KillScope::Global,
                    1 => KillScope::Strategy(self.string("kill strategy")?),
                    2 => KillScope::Venue(self.string("kill venue")?),
                    _ => {
                        return Err(DecodeError {
                            what: "unknown kill scope",
                            at: scope_at,
                        });
                    }
                };
                let at = self.at;
                let engaged = match self.u8("kill engaged")? {
                    0 => false,
                    1 => true,
                    _ => {
                        return Err(DecodeError {
                            what: "kill flag is neither released (0) nor engaged (1)",
                            at,
                        });
                    }
                };
                let ts = self.u64("kill timestamp")?;
                Ok(Command::Kill { scope, engaged, ts })
            }
            _ => Err(DecodeError {
                what: "unknown command tag",
                at,
            }),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn fill(venue: &str, exec_id: u64, side: Side, price: i64, qty: i64) -> LedgerFill {
        LedgerFill {
            venue: venue.into(),
            exec_id,
            account: "main".into(),
            strategy: "mm".into(),
            instrument: "BTC-USD".into(),
            price_scale: 2,
            qty_scale: 3,
            side,
            price: Price(price),
            qty: Qty(qty),
            fee: Money(3),
            liquidity: Liquidity::Maker,
            cl_ord_id: exec_id.wrapping_add(7),
            ts: 1_700_000_000_000_000_000u64.wrapping_add(exec_id),
            epoch: 0,
        }
    }

    fn any_command() -> impl Strategy<Value = Command> {
        prop_oneof![
            (
                any::<u64>(),
                any::<bool>(),
                any::<i64>(),
                any::<i64>(),
                "[a-zé]{0,12}"
            )
                .prop_map(|(id, buy, p, q, v)| {
                    let side = if buy { Side::Buy } else { Side::Sell };
                    Command::Fill(fill(&v, id, side, p, q))
                }),
            ("[a-z]{0,8}", any::<u64>())
                .prop_map(|(strategy, upto)| Command::ReserveOrderIds { strategy, upto }),
            ("[a-z]{0,8}", any::<u64>())
                .prop_map(|(strategy, epoch)| Command::Fence { strategy, epoch }),
            (any::<u64>(), any::<u64>()).prop_map(|(id, epoch)| {
                let mut f = fill("v", id, Side::Buy, 1, 1);
                f.epoch = epoch;
                Command::Fill(f)
            }),
            (0u8..3, "[a-z]{0,8}", any::<bool>(), any::<u64>()).prop_map(|(k, s, engaged, ts)| {
                let scope = match k {
                    0 => KillScope::Global,
                    1 => KillScope::Strategy(s),
                    _ => KillScope::Venue(s),
                };
                Command::Kill { scope, engaged, ts }
            }),
        ]
    }

    proptest! {
        #[test]
        fn batches_round_trip(cmds in proptest::collection::vec(any_command(), 0..20)) {
            let mut buf = Vec::new();
            encode_batch(&cmds, &mut buf);
            prop_assert_eq!(decode_batch(&buf).unwrap(), cmds);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_batch(&bytes);
        }

        #[test]
        fn every_truncation_is_an_error(cmds in proptest::collection::vec(any_command(), 1..5)) {
            let mut buf = Vec::new();
            encode_batch(&cmds, &mut buf);
            for cut in 0..buf.len() {
                prop_assert!(decode_batch(&buf[..cut]).is_err());
            }
        }
    }

    #[test]
    fn incremental_batches_match_whole_ones() {
        let cmds = vec![
            Command::Fill(fill("x", 1, Side::Buy, 100, 5)),
            Command::ReserveOrderIds {
                strategy: "mm".into(),
                upto: 9,
            },
        ];
        let mut whole = Vec::new();
        encode_batch(&cmds, &mut whole);
        let mut inc = vec![0xAA];
        begin_batch(&mut inc);
        for c in &cmds {
            encode_command(c, &mut inc);
        }
        set_batch_len(&mut inc, 1, 2);
        assert_eq!(&inc[1..], &whole[..]);
    }

    #[test]
    fn a_kill_flag_other_than_0_or_1_is_refused() {
        // Found by the ledger_entry fuzz target: decoding must be canonical, or two
        // encodings of one batch would exist.
        let bytes = [1, 1, 0, 0, 0, 3, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0];
        assert!(decode_batch(&bytes).is_err());
    }

    #[test]
    fn newer_format_is_refused_with_the_reason() {
        let mut buf = Vec::new();
        encode_batch(&[], &mut buf);
        buf[0] = FORMAT_VERSION + 1;
        let e = decode_batch(&buf).unwrap_err();
        assert!(e.to_string().contains("newer release"), "{e}");
    }
}
