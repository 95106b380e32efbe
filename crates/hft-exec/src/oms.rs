//! Order management: the state machine of every order an engine sent, and the only
//! place that decides whether a venue report makes sense.

use hft_core::{
    ClientOrderId, InstrumentId, OpenOrder, OrderReport, OrderReportKind, OrderStatus, Qty, Side,
};
use thiserror::Error;

/// A report the OMS cannot accept; the order's state is left unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum OmsError {
    /// No open order with this id (late report for a finished order, or a stray).
    #[error("no open order {0}")]
    UnknownOrder(ClientOrderId),
    /// The report is not a legal next step from the order's state.
    #[error("order {id}: illegal transition from {from} on {event}")]
    IllegalTransition {
        /// Order.
        id: ClientOrderId,
        /// State before.
        from: OrderStatus,
        /// Report kind.
        event: &'static str,
    },
    /// A fill larger than the open quantity.
    #[error("order {0}: fill exceeds open quantity")]
    Overfill(ClientOrderId),
    /// Client order id reused.
    #[error("order {0}: duplicate client order id")]
    Duplicate(ClientOrderId),
}

/// Counters of what the OMS saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OmsStats {
    /// Orders sent.
    pub orders: u64,
    /// Cancels sent.
    pub cancels: u64,
    /// Acks received.
    pub acks: u64,
    /// Fill reports received.
    pub fills: u64,
    /// Venue rejections of orders.
    pub rejects: u64,
    /// Orders that ended cancelled.
    pub canceled: u64,
    /// Reports the state machine refused.
    pub errors: u64,
}

/// The open orders of one strategy.
#[derive(Clone, Debug)]
pub struct Oms {
    open: Vec<OpenOrder>,
    stats: OmsStats,
}

impl Oms {
    /// Room for `capacity` open orders without reallocating.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            open: Vec::with_capacity(capacity),
            stats: OmsStats::default(),
        }
    }

    /// Open orders (any order, not terminal).
    #[inline]
    pub fn open(&self) -> &[OpenOrder] {
        &self.open
    }

    /// Counters.
    pub fn stats(&self) -> &OmsStats {
        &self.stats
    }

    /// An open order by id.
    #[inline]
    pub fn get(&self, id: ClientOrderId) -> Option<&OpenOrder> {
        self.open.iter().find(|o| o.cl_ord_id == id)
    }

    /// Open quantity on one side of an instrument.
    #[inline]
    pub fn open_qty(&self, instrument: InstrumentId, side: Side) -> Qty {
        Qty(self
            .open
            .iter()
            .filter(|o| o.instrument == instrument && o.side == side)
            .map(|o| o.leaves().raw())
            .sum())
    }

    /// Records a new order as sent.
    pub fn insert(&mut self, order: OpenOrder) -> Result<(), OmsError> {
        if self.get(order.cl_ord_id).is_some() {
            return Err(OmsError::Duplicate(order.cl_ord_id));
        }
        self.open.push(order);
        self.stats.orders += 1;
        Ok(())
    }

    /// Records a cancel as sent; false if the order is unknown or already being cancelled.
    pub fn mark_cancel_pending(&mut self, id: ClientOrderId) -> bool {
        match self.open.iter_mut().find(|o| o.cl_ord_id == id) {
            Some(o) if !o.cancel_pending => {
                o.cancel_pending = true;
                self.stats.cancels += 1;
                true
            }
            _ => false,
        }
    }

    /// Undoes `mark_cancel_pending` when the cancel could not be sent.
    pub fn unmark_cancel_pending(&mut self, id: ClientOrderId) {
        if let Some(o) = self.open.iter_mut().find(|o| o.cl_ord_id == id) {
            o.cancel_pending = false;
            self.stats.cancels -= 1;
        }
    }

    /// Drops an order that never reached the venue (its send failed).
    pub fn forget(&mut self, id: ClientOrderId) {
        if let Some(i) = self.open.iter().position(|o| o.cl_ord_id == id) {
            self.open.swap_remove(i);
        }
    }

    /// Applies a venue report and returns the order as it is afterwards (terminal orders
    /// are removed from the open set but still returned once). `Ok(None)` for a
    /// cancel-reject of an order that already finished: the expected race.
    pub fn on_report(&mut self, r: &OrderReport) -> Result<Option<OpenOrder>, OmsError> {
        let res = self.transition(r);
        if res.is_err() {
            self.stats.errors += 1;
        }
        res
    }

    fn transition(&mut self, r: &OrderReport) -> Result<Option<OpenOrder>, OmsError> {
        let id = r.cl_ord_id;
        let Some(i) = self.open.iter().position(|o| o.cl_ord_id == id) else {
            return match r.kind {
                OrderReportKind::CancelRejected(_) => Ok(None),
                _ => Err(OmsError::UnknownOrder(id)),
            };
        };
        let o = &mut self.open[i];
        let illegal = |event| OmsError::IllegalTransition {
            id,
            from: o.status,
            event,
        };
        use OrderStatus::*;
        match r.kind {
            OrderReportKind::Accepted => {
                if o.status != PendingNew {
                    return Err(illegal("accepted"));
                }
                o.status = Acked;
                self.stats.acks += 1;
            }
            OrderReportKind::Rejected(_) => {
                if o.status != PendingNew {
                    return Err(illegal("rejected"));
                }
                o.status = Rejected;
                self.stats.rejects += 1;
            }
            OrderReportKind::Fill(f) => {
                if !matches!(o.status, PendingNew | Acked | PartiallyFilled) {
                    return Err(illegal("fill"));
                }
                if f.qty.raw() <= 0 || f.qty > o.leaves() {
                    return Err(OmsError::Overfill(id));
                }
                o.filled = Qty(o.filled.raw() + f.qty.raw());
                o.status = if o.leaves().raw() == 0 {
                    Filled
                } else {
                    PartiallyFilled
                };
                self.stats.fills += 1;
            }
            OrderReportKind::Canceled => {
                if !matches!(o.status, PendingNew | Acked | PartiallyFilled) {
                    return Err(illegal("canceled"));
                }
                o.status = Canceled;
                self.stats.canceled += 1;
            }
            OrderReportKind::CancelRejected(_) => {
                o.cancel_pending = false;
            }
        }
        let snapshot = *o;
        if snapshot.status.is_terminal() {
            self.open.swap_remove(i);
        }
        Ok(Some(snapshot))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hft_core::{ExecId, Fill, Liquidity, Money, Price, RejectReason, StrategyId};
    use proptest::prelude::*;

    fn order(n: u64, qty: i64) -> OpenOrder {
        OpenOrder {
            cl_ord_id: ClientOrderId::new(StrategyId(0), n),
            instrument: InstrumentId(0),
            side: Side::Buy,
            price: Price(100),
            qty: Qty(qty),
            filled: Qty(0),
            status: OrderStatus::PendingNew,
            cancel_pending: false,
            sent_ts: 0,
        }
    }

    fn rep(n: u64, kind: OrderReportKind) -> OrderReport {
        OrderReport {
            ts: 0,
            instrument: InstrumentId(0),
            cl_ord_id: ClientOrderId::new(StrategyId(0), n),
            kind,
        }
    }

    fn fill(qty: i64) -> OrderReportKind {
        OrderReportKind::Fill(Fill {
            exec_id: ExecId(1),
            side: Side::Buy,
            price: Price(100),
            qty: Qty(qty),
            leaves: Qty(0),
            liquidity: Liquidity::Maker,
            fee: Money(0),
        })
    }

    #[test]
    fn happy_path_and_terminal_removal() {
        let mut oms = Oms::with_capacity(4);
        oms.insert(order(1, 5)).unwrap();
        assert_eq!(
            oms.insert(order(1, 5)),
            Err(OmsError::Duplicate(ClientOrderId::new(StrategyId(0), 1)))
        );
        assert_eq!(
            oms.on_report(&rep(1, OrderReportKind::Accepted))
                .unwrap()
                .unwrap()
                .status,
            OrderStatus::Acked
        );
        assert_eq!(
            oms.on_report(&rep(1, fill(2))).unwrap().unwrap().status,
            OrderStatus::PartiallyFilled
        );
        assert_eq!(oms.open_qty(InstrumentId(0), Side::Buy), Qty(3));
        assert_eq!(
            oms.on_report(&rep(1, fill(3))).unwrap().unwrap().status,
            OrderStatus::Filled
        );
        assert!(oms.open().is_empty());
        assert_eq!(
            oms.on_report(&rep(1, OrderReportKind::Canceled)),
            Err(OmsError::UnknownOrder(ClientOrderId::new(StrategyId(0), 1)))
        );
    }

    #[test]
    fn illegal_transitions_are_errors() {
        let mut oms = Oms::with_capacity(4);
        oms.insert(order(1, 5)).unwrap();
        oms.on_report(&rep(1, OrderReportKind::Accepted)).unwrap();
        assert!(matches!(
            oms.on_report(&rep(1, OrderReportKind::Accepted)),
            Err(OmsError::IllegalTransition { .. })
        ));
        assert!(matches!(
            oms.on_report(&rep(
                1,
                OrderReportKind::Rejected(RejectReason::DuplicateId)
            )),
            Err(OmsError::IllegalTransition { .. })
        ));
        assert_eq!(
            oms.on_report(&rep(1, fill(6))),
            Err(OmsError::Overfill(ClientOrderId::new(StrategyId(0), 1)))
        );
        assert_eq!(
            oms.get(ClientOrderId::new(StrategyId(0), 1))
                .unwrap()
                .status,
            OrderStatus::Acked
        );
        assert_eq!(oms.stats().errors, 3);
    }

    proptest! {
        /// Whatever reports arrive, filled never exceeds qty and terminal orders leave.
        #[test]
        fn state_machine_invariants(kinds in proptest::collection::vec(0u8..5, 0..40)) {
            let mut oms = Oms::with_capacity(4);
            oms.insert(order(1, 10)).unwrap();
            for k in kinds {
                let kind = match k {
                    0 => OrderReportKind::Accepted,
                    1 => OrderReportKind::Rejected(RejectReason::DuplicateId),
                    2 => fill(3),
                    3 => OrderReportKind::Canceled,
                    _ => OrderReportKind::CancelRejected(RejectReason::UnknownOrder),
                };
                let _ = oms.on_report(&rep(1, kind));
                for o in oms.open() {
                    prop_assert!(o.filled <= o.qty);
                    prop_assert!(!o.status.is_terminal());
                }
            }
        }
    }
}
