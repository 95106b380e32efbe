//! The touch maker: one post-only order at the best bid and one at the best ask,
//! moved to the new touch on every change of the best prices, within a position limit.
//! The simplest market maker there is — the reference strategy of backtest speed
//! comparisons, because every engine can run it exactly.

use crate::{Context, Strategy};
use hft_core::{InstrumentId, MarketEvent, MarketEventKind, Price, Qty, Side, TimeInForce};

/// Parameters of the touch maker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TouchParams {
    /// Size of each order.
    pub order_qty: Qty,
    /// The bid rests only while the position is below this, the ask only while it is
    /// above its negative.
    pub max_position: Qty,
}

/// The touch maker on one instrument.
#[derive(Debug)]
pub struct TouchMaker {
    instrument: InstrumentId,
    params: TouchParams,
}

impl TouchMaker {
    /// A touch maker on `instrument`.
    pub fn new(instrument: InstrumentId, params: TouchParams) -> Self {
        Self { instrument, params }
    }

    fn side(&self, ctx: &mut Context<'_>, side: Side, best: Price) {
        let pos = ctx.position(self.instrument).qty.raw();
        let allowed = match side {
            Side::Buy => pos < self.params.max_position.raw(),
            Side::Sell => pos > -self.params.max_position.raw(),
        };
        // The working order: open and not being cancelled (a cancelled one is forgotten
        // as soon as its cancel is sent).
        let working = ctx
            .open_orders()
            .iter()
            .find(|o| {
                o.instrument == self.instrument
                    && o.side == side
                    && !o.status.is_terminal()
                    && !o.cancel_pending
            })
            .copied();
        if let Some(o) = working {
            // Its new-order request is in flight: wait for the answer.
            if o.status == hft_core::OrderStatus::PendingNew {
                return;
            }
            if allowed && o.price == best {
                return;
            }
            ctx.cancel(o.cl_ord_id);
        }
        if allowed {
            let _ = ctx.place(
                self.instrument,
                side,
                best,
                self.params.order_qty,
                TimeInForce::Gtc,
                true,
            );
        }
    }
}

impl Strategy for TouchMaker {
    fn on_market(&mut self, ctx: &mut Context<'_>, ev: &MarketEvent) {
        if ev.instrument != self.instrument {
            return;
        }
        // The venue's best bid/offer stream, else the book after a depth message.
        let (bid, ask) = match ev.kind {
            MarketEventKind::Quote { bid, ask, .. } => (Some(bid), Some(ask)),
            MarketEventKind::Level { .. }
            | MarketEventKind::Clear
            | MarketEventKind::Order { .. } => {
                let b = ctx.book(self.instrument);
                (b.best_bid().map(|l| l.0), b.best_ask().map(|l| l.0))
            }
            MarketEventKind::Trade { .. } => return,
        };
        if let Some(bid) = bid {
            self.side(ctx, Side::Buy, bid);
        }
        if let Some(ask) = ask {
            self.side(ctx, Side::Sell, ask);
        }
    }
}
