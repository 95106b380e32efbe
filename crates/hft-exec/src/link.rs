//! The venue link: the framing between a venue session on a node and a venue process
//! (`hft venue`), which serves market data and order entry over one TCP connection.
//!
//! A frame is `len: u16 LE` (of what follows), `type: u8`, payload. Market events and
//! reports have fixed layouts written into caller buffers, so the hot path encodes and
//! decodes without allocating. Every decoder refuses malformed input with the byte
//! offset at fault; a session that sends one is disconnected, never trusted.

use crate::wire::{ORDER_WIRE_LEN, WireError};
use hft_core::{
    ClientOrderId, ExecId, Fill, InstrumentId, Liquidity, MarketEvent, MarketEventKind, MboAction,
    Money, OrderReport, OrderReportKind, Price, Qty, RejectReason, Side, SpecViolation,
};

/// Frame types.
pub mod kind {
    /// Client: log on for one strategy with an assignment epoch.
    pub const LOGON: u8 = b'L';
    /// Client: an order command ([`crate::wire`] layout).
    pub const ORDER: u8 = b'O';
    /// Client: cancel everything of the session's strategy and end the session.
    pub const LOGOUT: u8 = b'X';
    /// Client: send a full book snapshot (after lost market data).
    pub const SNAPSHOT: u8 = b'S';
    /// Venue: logon accepted; replayed fills follow, then `REPLAY_END`.
    pub const LOGON_ACK: u8 = b'A';
    /// Venue: the logon or the session is refused (a stale epoch, a malformed frame);
    /// the reason follows as text; the venue closes the session.
    pub const LOGON_REJECT: u8 = b'J';
    /// Venue: a market data event.
    pub const MARKET: u8 = b'M';
    /// Venue: a report for one of the session's orders.
    pub const REPORT: u8 = b'R';
    /// Venue: a fill executed for the strategy before this logon (for reconciliation).
    pub const REPLAY: u8 = b'P';
    /// Venue: the end of the replayed fills.
    pub const REPLAY_END: u8 = b'E';
    /// Venue: the session's strategy was taken over by a higher epoch; the venue closes.
    pub const FENCED: u8 = b'F';
    /// Venue: logout done; nothing of the strategy rests at the venue any more.
    pub const LOGOUT_ACK: u8 = b'Y';
}

/// Encoded size of a market event payload.
pub const MARKET_LEN: usize = 56;
/// Encoded size of a report payload.
pub const REPORT_LEN: usize = 64;
/// Encoded size of a logon payload.
pub const LOGON_LEN: usize = 28;
/// Largest frame (header included) either side sends.
pub const MAX_FRAME: usize = 3 + 1024;

/// A logon: who trades which strategy under which assignment epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Logon {
    /// Strategy index (the high bits of its client order ids).
    pub strategy: u16,
    /// Assignment epoch; the venue refuses anything older than the newest it saw.
    pub epoch: u64,
    /// Node id of the sender (for the venue's history).
    pub node: u64,
    /// [`strategy_tag`] of the strategy's name: strategy ids are positions in the
    /// cluster configuration, and a node started from a different configuration must
    /// not trade another strategy under the same id.
    pub tag: u64,
}

/// A stable 64-bit tag of a strategy name (FNV-1a).
pub fn strategy_tag(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn put(buf: &mut [u8], at: usize, v: u64) {
    buf[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

fn get(buf: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&buf[at..at + 8]);
    u64::from_le_bytes(a)
}

fn field(offset: usize, what: &'static str) -> WireError {
    WireError::Field { offset, what }
}

fn need(buf: &[u8], n: usize) -> Result<(), WireError> {
    if buf.len() < n {
        return Err(WireError::Truncated { got: buf.len() });
    }
    Ok(())
}

fn side(b: u8, at: usize) -> Result<Side, WireError> {
    match b {
        0 => Ok(Side::Buy),
        1 => Ok(Side::Sell),
        _ => Err(field(at, "side must be 0 (buy) or 1 (sell)")),
    }
}

/// Writes the 3-byte header of a frame with `payload` bytes into `out[..3]`.
#[inline]
pub fn header(out: &mut [u8], kind: u8, payload: usize) {
    let len = (payload + 1) as u16;
    out[..2].copy_from_slice(&len.to_le_bytes());
    out[2] = kind;
}

/// One frame found in a buffer: its type, its payload, and its whole length.
pub type Frame<'a> = (u8, &'a [u8], usize);

/// Splits the first complete frame off `buf`, or `None` when more bytes are needed. A
/// frame too short or too long is an error.
pub fn split(buf: &[u8]) -> Result<Option<Frame<'_>>, WireError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let len = u16::from_le_bytes([buf[0], buf[1]]) as usize;
    if len == 0 {
        return Err(field(0, "frame length must count its type byte"));
    }
    if len + 2 > MAX_FRAME {
        return Err(field(0, "frame longer than the link allows"));
    }
    if buf.len() < 2 + len {
        return Ok(None);
    }
    Ok(Some((buf[2], &buf[3..2 + len], 2 + len)))
}

/// Encodes a logon payload.
pub fn encode_logon(l: &Logon, out: &mut [u8; LOGON_LEN]) {
    out[..2].copy_from_slice(&l.strategy.to_le_bytes());
    out[2..4].fill(0);
    put(out, 4, l.epoch);
    put(out, 12, l.node);
    put(out, 20, l.tag);
}

/// Decodes a logon payload.
pub fn decode_logon(b: &[u8]) -> Result<Logon, WireError> {
    need(b, LOGON_LEN)?;
    if b[2] != 0 || b[3] != 0 {
        return Err(field(2, "reserved bytes must be 0"));
    }
    let epoch = get(b, 4);
    if epoch == 0 {
        return Err(field(
            4,
            "epoch must be positive (an assignment's etcd revision)",
        ));
    }
    Ok(Logon {
        strategy: u16::from_le_bytes([b[0], b[1]]),
        epoch,
        node: get(b, 12),
        tag: get(b, 20),
    })
}

/// Encodes a market event payload (`ts_recv` is the receiver's and not sent).
#[inline]
pub fn encode_market(e: &MarketEvent, out: &mut [u8; MARKET_LEN]) {
    out.fill(0);
    put(out, 0, e.ts_exchange);
    put(out, 8, e.seq);
    out[16..20].copy_from_slice(&e.instrument.0.to_le_bytes());
    out[20] = e.flags;
    let (tag, s, a, b, c, d) = match e.kind {
        MarketEventKind::Clear => (0, 0, 0, 0, 0, 0),
        MarketEventKind::Order {
            action,
            side,
            order_id,
            price,
            qty,
        } => {
            out[23] = action.as_databento();
            let s = side.map_or(2, |s| s as u8);
            (4, s, price.raw(), qty.raw(), order_id as i64, 0)
        }
        MarketEventKind::Level { side, price, qty } => {
            (1, side as u8, price.raw(), qty.raw(), 0, 0)
        }
        MarketEventKind::Quote {
            bid,
            bid_qty,
            ask,
            ask_qty,
        } => (2, 0, bid.raw(), bid_qty.raw(), ask.raw(), ask_qty.raw()),
        MarketEventKind::Trade {
            aggressor,
            price,
            qty,
        } => (3, aggressor as u8, price.raw(), qty.raw(), 0, 0),
    };
    out[21] = tag;
    out[22] = s;
    for (k, v) in [a, b, c, d].into_iter().enumerate() {
        put(out, 24 + 8 * k, v as u64);
    }
}

/// A whole market-event frame (header and payload), built on the stack.
#[inline]
pub fn market_frame(e: &MarketEvent) -> [u8; 3 + MARKET_LEN] {
    let mut frame = [0u8; 3 + MARKET_LEN];
    header(&mut frame, kind::MARKET, MARKET_LEN);
    let mut body = [0u8; MARKET_LEN];
    encode_market(e, &mut body);
    frame[3..].copy_from_slice(&body);
    frame
}

/// Decodes a market event payload; `ts_recv` is 0.
pub fn decode_market(b: &[u8]) -> Result<MarketEvent, WireError> {
    need(b, MARKET_LEN)?;
    let v = |k: usize| get(b, 24 + 8 * k) as i64;
    let kind = match b[21] {
        0 => MarketEventKind::Clear,
        1 => MarketEventKind::Level {
            side: side(b[22], 22)?,
            price: Price(v(0)),
            qty: Qty(v(1)),
        },
        2 => MarketEventKind::Quote {
            bid: Price(v(0)),
            bid_qty: Qty(v(1)),
            ask: Price(v(2)),
            ask_qty: Qty(v(3)),
        },
        3 => MarketEventKind::Trade {
            aggressor: side(b[22], 22)?,
            price: Price(v(0)),
            qty: Qty(v(1)),
        },
        4 => MarketEventKind::Order {
            action: MboAction::from_databento(b[23])
                .ok_or_else(|| field(23, "order action must be one of A C M F T R"))?,
            side: match b[22] {
                2 => None,
                s => Some(side(s, 22)?),
            },
            order_id: get(b, 40),
            price: Price(v(0)),
            qty: Qty(v(1)),
        },
        _ => return Err(field(21, "event kind must be 0 to 4")),
    };
    let mut inst = [0u8; 4];
    inst.copy_from_slice(&b[16..20]);
    Ok(MarketEvent {
        ts_exchange: get(b, 0),
        ts_recv: 0,
        seq: get(b, 8),
        instrument: InstrumentId(u32::from_le_bytes(inst)),
        flags: b[20],
        kind,
    })
}

fn reason_code(r: RejectReason) -> (u8, u8) {
    match r {
        RejectReason::Spec(v) => (1, v as u8),
        RejectReason::PostOnlyWouldCross => (2, 0),
        RejectReason::DuplicateId => (3, 0),
        RejectReason::UnknownOrder => (4, 0),
        RejectReason::Fenced => (5, 0),
        RejectReason::Malformed => (6, 0),
        RejectReason::SelfTrade => (7, 0),
        RejectReason::Risk => (8, 0),
    }
}

fn reason(code: u8, detail: u8) -> Result<RejectReason, WireError> {
    Ok(match code {
        1 => RejectReason::Spec(match detail {
            0 => SpecViolation::Tick,
            1 => SpecViolation::Lot,
            2 => SpecViolation::MinQty,
            3 => SpecViolation::MinNotional,
            _ => return Err(field(22, "spec violation must be 0 to 3")),
        }),
        2 => RejectReason::PostOnlyWouldCross,
        3 => RejectReason::DuplicateId,
        4 => RejectReason::UnknownOrder,
        5 => RejectReason::Fenced,
        6 => RejectReason::Malformed,
        7 => RejectReason::SelfTrade,
        8 => RejectReason::Risk,
        _ => return Err(field(21, "reject reason must be 1 to 8")),
    })
}

/// Encodes a report payload.
#[inline]
pub fn encode_report(r: &OrderReport, out: &mut [u8; REPORT_LEN]) {
    out.fill(0);
    put(out, 0, r.ts);
    put(out, 8, r.cl_ord_id.0);
    out[16..20].copy_from_slice(&r.instrument.0.to_le_bytes());
    let (tag, (code, detail)) = match r.kind {
        OrderReportKind::Accepted => (0, (0, 0)),
        OrderReportKind::Rejected(why) => (1, reason_code(why)),
        OrderReportKind::Canceled => (2, (0, 0)),
        OrderReportKind::CancelRejected(why) => (3, reason_code(why)),
        OrderReportKind::Fill(f) => {
            out[23] = f.side as u8 | (u8::from(f.liquidity == Liquidity::Taker) << 1);
            put(out, 24, f.exec_id.0);
            put(out, 32, f.price.raw() as u64);
            put(out, 40, f.qty.raw() as u64);
            put(out, 48, f.leaves.raw() as u64);
            put(out, 56, f.fee.raw() as u64);
            (4, (0, 0))
        }
    };
    out[20] = tag;
    out[21] = code;
    out[22] = detail;
}

/// Decodes a report payload.
pub fn decode_report(b: &[u8]) -> Result<OrderReport, WireError> {
    need(b, REPORT_LEN)?;
    let kind = match b[20] {
        0 => OrderReportKind::Accepted,
        1 => OrderReportKind::Rejected(reason(b[21], b[22])?),
        2 => OrderReportKind::Canceled,
        3 => OrderReportKind::CancelRejected(reason(b[21], b[22])?),
        4 => {
            if b[23] & !0b11 != 0 {
                return Err(field(23, "unknown fill flag bits"));
            }
            let qty = get(b, 40) as i64;
            if qty <= 0 {
                return Err(field(40, "fill quantity must be positive"));
            }
            OrderReportKind::Fill(Fill {
                exec_id: ExecId(get(b, 24)),
                side: side(b[23] & 1, 23)?,
                price: Price(get(b, 32) as i64),
                qty: Qty(qty),
                leaves: Qty(get(b, 48) as i64),
                liquidity: if b[23] & 2 != 0 {
                    Liquidity::Taker
                } else {
                    Liquidity::Maker
                },
                fee: Money(get(b, 56) as i64),
            })
        }
        _ => return Err(field(20, "report kind must be 0 to 4")),
    };
    let mut inst = [0u8; 4];
    inst.copy_from_slice(&b[16..20]);
    Ok(OrderReport {
        ts: get(b, 0),
        instrument: InstrumentId(u32::from_le_bytes(inst)),
        cl_ord_id: ClientOrderId(get(b, 8)),
        kind,
    })
}

/// Appends one frame to `out` (used off the hot path: logons, replays, control).
pub fn push_frame(out: &mut Vec<u8>, kind: u8, payload: &[u8]) {
    let mut h = [0u8; 3];
    header(&mut h, kind, payload.len());
    out.extend_from_slice(&h);
    out.extend_from_slice(payload);
}

/// A whole order frame (header + the order wire layout).
pub const ORDER_FRAME_LEN: usize = 3 + ORDER_WIRE_LEN;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn frames_split_at_their_length() {
        let mut v = Vec::new();
        push_frame(&mut v, kind::LOGOUT, &[]);
        push_frame(&mut v, kind::REPLAY_END, &[1, 2]);
        let (k, p, n) = split(&v).unwrap().unwrap();
        assert_eq!((k, p, n), (kind::LOGOUT, &[][..], 3));
        let (k, p, n2) = split(&v[n..]).unwrap().unwrap();
        assert_eq!((k, p, n2), (kind::REPLAY_END, &[1, 2][..], 5));
        assert_eq!(split(&v[..4]).unwrap().map(|f| f.0), Some(kind::LOGOUT));
        assert_eq!(split(&v[n..n + 3]).unwrap(), None);
        assert!(split(&[0, 0, 0]).is_err());
        assert!(split(&[0xFF, 0xFF]).is_err());
    }

    #[test]
    fn a_fill_report_round_trips() {
        let r = OrderReport {
            ts: 9,
            instrument: InstrumentId(1),
            cl_ord_id: ClientOrderId::new(hft_core::StrategyId(3), 77),
            kind: OrderReportKind::Fill(Fill {
                exec_id: ExecId(41),
                side: Side::Sell,
                price: Price(-5),
                qty: Qty(3),
                leaves: Qty(0),
                liquidity: Liquidity::Taker,
                fee: Money(-2),
            }),
        };
        let mut b = [0u8; REPORT_LEN];
        encode_report(&r, &mut b);
        assert_eq!(decode_report(&b), Ok(r));
        let rej = OrderReport {
            kind: OrderReportKind::Rejected(RejectReason::Spec(SpecViolation::MinNotional)),
            ..r
        };
        encode_report(&rej, &mut b);
        assert_eq!(decode_report(&b), Ok(rej));
    }

    #[test]
    fn order_by_order_events_round_trip() {
        for (action, side) in [
            (MboAction::Add, Some(Side::Sell)),
            (MboAction::Fill, None),
            (MboAction::Clear, Some(Side::Buy)),
        ] {
            let e = MarketEvent {
                ts_exchange: 5,
                ts_recv: 0,
                seq: 6,
                instrument: InstrumentId(2),
                flags: 1,
                kind: MarketEventKind::Order {
                    action,
                    side,
                    order_id: u64::MAX - 3,
                    price: Price(-7),
                    qty: Qty(9),
                },
            };
            let mut b = [0u8; MARKET_LEN];
            encode_market(&e, &mut b);
            assert_eq!(decode_market(&b), Ok(e));
        }
        let mut b = [0u8; MARKET_LEN];
        b[21] = 4;
        b[23] = b'X';
        assert!(decode_market(&b).is_err(), "an unknown action is refused");
    }

    #[test]
    fn a_logon_needs_a_positive_epoch() {
        let l = Logon {
            strategy: 2,
            epoch: 17,
            node: 3,
            tag: strategy_tag("mm-btc"),
        };
        assert_ne!(l.tag, strategy_tag("mm-eth"));
        let mut b = [0u8; LOGON_LEN];
        encode_logon(&l, &mut b);
        assert_eq!(decode_logon(&b), Ok(l));
        b[4..12].fill(0);
        assert_eq!(
            decode_logon(&b),
            Err(WireError::Field {
                offset: 4,
                what: "epoch must be positive (an assignment's etcd revision)"
            })
        );
    }

    proptest! {
        #[test]
        fn decoders_never_panic_and_round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Ok(e) = decode_market(&bytes) {
                let mut b = [0u8; MARKET_LEN];
                encode_market(&e, &mut b);
                prop_assert_eq!(decode_market(&b), Ok(e));
            }
            if let Ok(r) = decode_report(&bytes) {
                let mut b = [0u8; REPORT_LEN];
                encode_report(&r, &mut b);
                prop_assert_eq!(decode_report(&b), Ok(r));
            }
            let _ = decode_logon(&bytes);
            let _ = split(&bytes);
        }
    }
}
