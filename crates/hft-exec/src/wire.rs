//! Binary encoding of order commands for the simulated venue's gateway: fixed layout,
//! little-endian, 48 bytes, written into a caller buffer so encoding never allocates.

use hft_core::{OrderCommand, OrderKind, Side, TimeInForce};

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
    }
}
