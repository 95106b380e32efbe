//! Binary encoding of order commands for the simulated venue's gateway: fixed layout,
//! little-endian, 48 bytes, written into a caller buffer so encoding never allocates.
//! The venue side decodes the same bytes and refuses anything malformed.

use hft_core::{
    ClientOrderId, InstrumentId, OrderCommand, OrderKind, Price, Qty, Side, TimeInForce,
};
use thiserror::Error;

/// Why a wire message was refused; `offset` is the byte at fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum WireError {
    /// Fewer bytes than one message.
    #[error("order message truncated: {got} of {ORDER_WIRE_LEN} bytes")]
    Truncated {
        /// Bytes received.
        got: usize,
    },
    /// A field holds a value outside its domain.
    #[error("order message byte {offset}: {what}")]
    Field {
        /// Byte offset of the field.
        offset: usize,
        /// What is wrong with it.
        what: &'static str,
    },
}

/// Encoded size of an order command.
pub const ORDER_WIRE_LEN: usize = 48;

/// Encodes `cmd` into `buf` and returns the bytes written.
#[inline]
pub fn encode_order(cmd: &OrderCommand, buf: &mut [u8; ORDER_WIRE_LEN]) -> usize {
    let (msg_type, side, price, qty, flags) = match cmd.kind {
        OrderKind::New {
            side,
            price,
            qty,
            tif,
            post_only,
        } => {
            let flags = u8::from(tif == TimeInForce::Ioc) | (u8::from(post_only) << 1);
            (b'D', side, price.raw(), qty.raw(), flags)
        }
        OrderKind::Cancel => (b'F', Side::Buy, 0, 0, 0),
    };
    buf[0] = msg_type;
    buf[1] = side as u8;
    buf[2] = flags;
    buf[3] = 0;
    buf[4..8].copy_from_slice(&cmd.instrument.0.to_le_bytes());
    buf[8..16].copy_from_slice(&cmd.cl_ord_id.0.to_le_bytes());
    buf[16..24].copy_from_slice(&price.to_le_bytes());
    buf[24..32].copy_from_slice(&qty.to_le_bytes());
    buf[32..40].copy_from_slice(&cmd.epoch.to_le_bytes());
    buf[40..48].copy_from_slice(&cmd.ts.to_le_bytes());
    ORDER_WIRE_LEN
}

fn read_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Decodes one order message (the first `ORDER_WIRE_LEN` bytes of `buf`). The local
/// `tick_ts` is not on the wire and decodes as 0.
pub fn decode_order(buf: &[u8]) -> Result<OrderCommand, WireError> {
    if buf.len() < ORDER_WIRE_LEN {
        return Err(WireError::Truncated { got: buf.len() });
    }
    let field = |offset, what| WireError::Field { offset, what };
    let side = match buf[1] {
        0 => Side::Buy,
        1 => Side::Sell,
        _ => return Err(field(1, "side must be 0 (buy) or 1 (sell)")),
    };
    if buf[2] & !0b11 != 0 {
        return Err(field(2, "unknown flag bits"));
    }
    if buf[3] != 0 {
        return Err(field(3, "reserved byte must be 0"));
    }
    let mut inst = [0u8; 4];
    inst.copy_from_slice(&buf[4..8]);
    let price = read_u64(buf, 16) as i64;
    let qty = read_u64(buf, 24) as i64;
    let kind = match buf[0] {
        b'D' => {
            if qty <= 0 {
                return Err(field(24, "quantity must be positive"));
            }
            OrderKind::New {
                side,
                price: Price(price),
                qty: Qty(qty),
                tif: if buf[2] & 1 != 0 {
                    TimeInForce::Ioc
                } else {
                    TimeInForce::Gtc
                },
                post_only: buf[2] & 2 != 0,
            }
        }
        b'F' => {
            if price != 0 || qty != 0 || buf[1] != 0 || buf[2] != 0 {
                return Err(field(
                    1,
                    "a cancel carries no side, flags, price or quantity",
                ));
            }
            OrderKind::Cancel
        }
        _ => return Err(field(0, "message type must be 'D' (new) or 'F' (cancel)")),
    };
    Ok(OrderCommand {
        ts: read_u64(buf, 40),
        tick_ts: 0,
        instrument: InstrumentId(u32::from_le_bytes(inst)),
        cl_ord_id: ClientOrderId(read_u64(buf, 8)),
        epoch: read_u64(buf, 32),
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hft_core::{ClientOrderId, InstrumentId, Price, Qty};

    #[test]
    fn layout_is_stable() {
        let cmd = OrderCommand {
            ts: 7,
            tick_ts: 1,
            instrument: InstrumentId(2),
            cl_ord_id: ClientOrderId(0x0102),
            epoch: 3,
            kind: OrderKind::New {
                side: Side::Sell,
                price: Price(100),
                qty: Qty(5),
                tif: TimeInForce::Gtc,
                post_only: true,
            },
        };
        let mut buf = [0u8; ORDER_WIRE_LEN];
        assert_eq!(encode_order(&cmd, &mut buf), 48);
        assert_eq!(&buf[..4], &[b'D', 1, 2, 0]);
        assert_eq!(u64::from_le_bytes(buf[8..16].try_into().unwrap()), 0x0102);
        assert_eq!(i64::from_le_bytes(buf[16..24].try_into().unwrap()), 100);
        assert_eq!(u64::from_le_bytes(buf[40..48].try_into().unwrap()), 7);
        assert_eq!(decode_order(&buf), Ok(OrderCommand { tick_ts: 0, ..cmd }));
    }

    #[test]
    fn malformed_messages_are_refused_with_the_offset() {
        assert_eq!(
            decode_order(&[0; 10]),
            Err(WireError::Truncated { got: 10 })
        );
        let mut buf = [0u8; ORDER_WIRE_LEN];
        assert!(matches!(
            decode_order(&buf),
            Err(WireError::Field { offset: 0, .. })
        ));
        buf[0] = b'D';
        assert!(matches!(
            decode_order(&buf),
            Err(WireError::Field { offset: 24, .. })
        ));
        buf[24] = 1;
        buf[1] = 7;
        assert!(matches!(
            decode_order(&buf),
            Err(WireError::Field { offset: 1, .. })
        ));
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics_and_round_trips(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80)) {
            if let Ok(cmd) = decode_order(&bytes) {
                let mut buf = [0u8; ORDER_WIRE_LEN];
                encode_order(&cmd, &mut buf);
                proptest::prop_assert_eq!(&buf[..], &bytes[..ORDER_WIRE_LEN]);
            }
        }
    }
}
