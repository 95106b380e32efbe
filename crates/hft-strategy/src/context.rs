//! What a strategy sees and can do during a callback.

use hft_book::{BookView, HotCache, L2Book, TradeTick};
use hft_core::{
    ClientOrderId, InstrumentId, InstrumentSpec, Money, Nanos, OpenOrder, Position, Price, Qty,
    Side, StrategyId, TimeInForce, TradingState,
};

/// A new limit order as a strategy asked for it, with the id the context assigned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewOrder {
    /// Id of the new order.
    pub cl_ord_id: ClientOrderId,
    /// Instrument.
    pub instrument: InstrumentId,
    /// Side.
    pub side: Side,
    /// Limit price.
    pub price: Price,
    /// Quantity.
    pub qty: Qty,
    /// Time in force.
    pub tif: TimeInForce,
    /// Refuse rather than cross.
    pub post_only: bool,
}

/// An order instruction queued by a strategy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// A new limit order.
    Place(NewOrder),
    /// Cancel an open order.
    Cancel {
        /// The order.
        cl_ord_id: ClientOrderId,
    },
}

/// Fixed-capacity queue of actions; allocated once per engine so callbacks never allocate.
#[derive(Debug)]
pub struct ActionBuffer {
    actions: Vec<Action>,
    dropped: u64,
}

impl ActionBuffer {
    /// Room for `capacity` actions per callback.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            actions: Vec::with_capacity(capacity),
            dropped: 0,
        }
    }

    fn push(&mut self, a: Action) -> bool {
        if self.actions.len() == self.actions.capacity() {
            self.dropped += 1;
            return false;
        }
        self.actions.push(a);
        true
    }

    /// Takes the queued actions out in order (the engine drains after each callback).
    pub fn drain(&mut self) -> std::vec::Drain<'_, Action> {
        self.actions.drain(..)
    }

    /// The `i`-th queued action.
    pub fn get(&self, i: usize) -> Action {
        self.actions[i]
    }

    /// Forgets the queued actions.
    pub fn clear(&mut self) {
        self.actions.clear();
    }

    /// Queued actions.
    pub fn len(&self) -> usize {
        self.actions.len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    /// Actions refused because the buffer was full (a strategy bug worth alerting on).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

/// The borrowed engine state a [`Context`] is built from.
pub struct ContextParts<'a> {
    /// Engine clock.
    pub now: Nanos,
    /// This strategy.
    pub strategy: StrategyId,
    /// Instrument specs, indexed by `InstrumentId`.
    pub specs: &'a [InstrumentSpec],
    /// Books, indexed by `InstrumentId`.
    pub books: &'a [L2Book],
    /// Recent trades and book snapshots.
    pub cache: &'a HotCache,
    /// Positions, indexed by `InstrumentId`.
    pub positions: &'a [Position],
    /// This strategy's open orders.
    pub open_orders: &'a [OpenOrder],
    /// Risk trading state.
    pub state: TradingState,
    /// Order sequence counter of the strategy (ids stay unique across restarts).
    pub next_seq: &'a mut u64,
    /// Where queued actions go.
    pub actions: &'a mut ActionBuffer,
}

/// The strategy's window on the engine during one callback.
pub struct Context<'a> {
    p: ContextParts<'a>,
}

impl<'a> Context<'a> {
    /// Wraps the engine's state.
    pub fn new(parts: ContextParts<'a>) -> Self {
        Self { p: parts }
    }

    /// Engine time of the event being handled.
    #[inline]
    pub fn now(&self) -> Nanos {
        self.p.now
    }

    /// This strategy's id.
    #[inline]
    pub fn strategy_id(&self) -> StrategyId {
        self.p.strategy
    }

    /// Spec of an instrument.
    #[inline]
    pub fn spec(&self, id: InstrumentId) -> &InstrumentSpec {
        &self.p.specs[id.index()]
    }

    /// Book of an instrument.
    #[inline]
    pub fn book(&self, id: InstrumentId) -> &L2Book {
        &self.p.books[id.index()]
    }

    /// Recent trades of an instrument, newest first (as many as the cache keeps).
    pub fn recent_trades(&self, id: InstrumentId) -> impl Iterator<Item = &TradeTick> + '_ {
        self.p.cache.trades(id.index())
    }

    /// Recent top-of-book snapshots of an instrument, newest first: one per venue
    /// message that changed the best bid or ask (price or size).
    pub fn recent_books(&self, id: InstrumentId) -> impl Iterator<Item = BookView<'_>> + '_ {
        self.p.cache.books(id.index())
    }

    /// Position in an instrument.
    #[inline]
    pub fn position(&self, id: InstrumentId) -> &Position {
        &self.p.positions[id.index()]
    }

    /// PnL after fees in one instrument, marked at mid (or the cost basis without a mid).
    pub fn pnl(&self, id: InstrumentId) -> Money {
        let pos = self.position(id);
        match self.book(id).mid_x2() {
            Some(m2) => pos.total_pnl(self.spec(id), Price(m2 / 2)),
            None => pos.realized_net(),
        }
    }

    /// Open orders of this strategy.
    #[inline]
    pub fn open_orders(&self) -> &[OpenOrder] {
        self.p.open_orders
    }

    /// What risk currently allows.
    #[inline]
    pub fn trading_state(&self) -> TradingState {
        self.p.state
    }

    /// Queues a new limit order and returns its id, or `None` when the action buffer
    /// is full. Risk may still refuse it; the refusal arrives as an order update.
    #[allow(clippy::too_many_arguments)]
    pub fn place(
        &mut self,
        instrument: InstrumentId,
        side: Side,
        price: Price,
        qty: Qty,
        tif: TimeInForce,
        post_only: bool,
    ) -> Option<ClientOrderId> {
        *self.p.next_seq += 1;
        let cl_ord_id = ClientOrderId::new(self.p.strategy, *self.p.next_seq);
        self.p
            .actions
            .push(Action::Place(NewOrder {
                cl_ord_id,
                instrument,
                side,
                price,
                qty,
                tif,
                post_only,
            }))
            .then_some(cl_ord_id)
    }

    /// Queues a cancel.
    pub fn cancel(&mut self, cl_ord_id: ClientOrderId) -> bool {
        self.p.actions.push(Action::Cancel { cl_ord_id })
    }

    /// Cancel-and-replace: the venue loses the old order's queue place either way, so
    /// this is the honest form of an amend. Returns the new order's id.
    pub fn replace(
        &mut self,
        old: ClientOrderId,
        price: Price,
        qty: Qty,
        post_only: bool,
    ) -> Option<ClientOrderId> {
        let o = *self.p.open_orders.iter().find(|o| o.cl_ord_id == old)?;
        if !self.cancel(old) {
            return None;
        }
        self.place(
            o.instrument,
            o.side,
            price,
            qty,
            TimeInForce::Gtc,
            post_only,
        )
    }
}
