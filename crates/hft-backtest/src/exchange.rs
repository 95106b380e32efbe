//! The simulated venue of a backtest: each recorded book (its own copy, or the
//! engines' when they see the market at the venue's time), our resting orders with
//! their place in the queue, and fills by the queue model.

use crate::model::QueueModel;
use hft_book::{L2Book, L3Book};
use hft_core::{
    ExecId, FLAG_SNAPSHOT, InstrumentSpec, Liquidity, MarketEvent, MarketEventKind, MboAction,
    Nanos, OrderCommand, OrderKind, OrderReport, OrderReportKind, Price, Qty, RejectReason, Side,
    TimeInForce,
};

/// Levels per side the backtest's books (the venue's and the engines') are sized for.
/// Recorded depth streams update levels far from the touch (Binance's reach half and
/// twice the price), and a book sized this deep indexes nearly all of them directly
/// (a window of 16 ticks per level); memory is committed only where levels land.
pub const BOOK_LEVELS: usize = 4_096;

/// One of our orders resting at the venue.
#[derive(Clone, Copy, Debug)]
struct Resting {
    cmd: OrderCommand,
    side: Side,
    price: Price,
    leaves: i64,
    /// Quantity ahead of it at its price.
    ahead: i64,
    /// When it reached the venue.
    arrived: Nanos,
    /// On order-by-order data, its place in the recorded queue: recorded orders with a
    /// lower priority are ahead of it, the others behind. `RESET` after the book was
    /// cleared, until the snapshot that rebuilds it is over.
    priority: u64,
}

/// A resting order's priority while the recorded book is being rebuilt.
const RESET: u64 = u64::MAX;

/// A fill with what the report needs beyond the venue report.
#[derive(Clone, Copy, Debug)]
pub struct FillRecord {
    /// The report sent to the engine.
    pub report: OrderReport,
    /// Time from the order's arrival at the venue to this fill.
    pub queue_wait: Nanos,
    /// Twice the venue's mid when it filled, for attribution.
    pub mid_x2: Option<i64>,
}

/// The backtest venue for all instruments.
pub struct Exchange {
    specs: Vec<InstrumentSpec>,
    /// The venue's own copy of each recorded book; empty while it reads the engines'
    /// copy instead (see [`Exchange::share`]).
    books: Vec<L2Book>,
    /// True while the venue reads the books it is handed (`ext`) instead of its own.
    shared: bool,
    /// Shared books: level changes of the message in hand at prices where our orders
    /// rest, (instrument, side, price, qty). The engines apply the message after the
    /// venue has taken it, so the book handed over does not show these yet.
    pending: Vec<(usize, Side, Price, i64)>,
    /// Shared books: the message in hand began with a clear.
    pending_clear: bool,
    /// Shared books: the instrument whose message ended and waits for [`Exchange::settle`].
    unsettled: Option<usize>,
    /// Own books: per instrument, the next event starts a venue message.
    at_start: Vec<bool>,
    /// Own books: per instrument, twice the mid before the message in hand, the
    /// reference for fills the message causes (the book half-way through a message
    /// never existed). Shared books still show that state until the message settles.
    msg_mid: Vec<Option<i64>>,
    orders: Vec<Resting>,
    model: QueueModel,
    exec_seq: u64,
    /// Venue messages after which an instrument's recorded book was crossed.
    crossed: Vec<u64>,
    /// Per instrument, the recorded order-by-order book, once its data carries one:
    /// our orders then stand in its queues exactly (FIFO) and the queue model is not
    /// used.
    l3: Vec<Option<L3Book>>,
    /// Per instrument, the recorded order-by-order book was cleared and the snapshot
    /// that rebuilds it is not over: an order arriving now has no place yet either.
    rebuilding: Vec<bool>,
    /// Recorded orders ahead of ours that executed in the current venue message, with
    /// the quantity already taken off our queue position: the book change the venue
    /// sends after the execution must not take it off again.
    executed_ahead: Vec<(usize, u64, i64)>,
    /// Reports produced by the last call, in order.
    pub out: Vec<FillOrReport>,
}

/// What the venue produced.
#[derive(Clone, Copy, Debug)]
pub enum FillOrReport {
    /// A fill.
    Fill(FillRecord),
    /// Any other report.
    Report(OrderReport),
}

impl Exchange {
    /// A venue for `specs` with queue model `model`.
    pub fn new(specs: Vec<InstrumentSpec>, model: QueueModel) -> Self {
        let n = specs.len();
        Self {
            books: specs
                .iter()
                .map(|s| L2Book::for_spec(s, BOOK_LEVELS))
                .collect(),
            specs,
            shared: false,
            pending: Vec::with_capacity(16),
            pending_clear: false,
            unsettled: None,
            at_start: vec![true; n],
            msg_mid: vec![None; n],
            orders: Vec::with_capacity(64),
            model,
            exec_seq: 0,
            crossed: vec![0; n],
            l3: vec![None; n],
            rebuilding: vec![false; n],
            executed_ahead: Vec::new(),
            out: Vec::with_capacity(64),
        }
    }

    /// Venue messages after which each instrument's recorded book was crossed: bad
    /// data the report must show (fills against a crossed book mean little).
    pub fn crossed(&self) -> &[u64] {
        &self.crossed
    }

    /// From now on the venue reads the books handed to each call (`ext`: an engine's,
    /// which takes every recorded event right after the venue, at the same time)
    /// instead of keeping its own copy: one book update per event instead of two.
    ///
    /// The engine applies a message after the venue has taken it and before
    /// [`Exchange::settle`]; the venue keeps what it needs of the message meanwhile
    /// (the old size of levels where our orders rest). A clear that the engines do not
    /// take, or a caller that stops handing the venue events with the engines, calls
    /// [`Exchange::unshare`] first.
    pub fn share(&mut self) {
        self.books = Vec::new();
        self.shared = true;
    }

    /// True while the venue reads the books handed to it.
    pub fn is_shared(&self) -> bool {
        self.shared
    }

    /// Takes a copy of the shared books (`ext`, up to date) and keeps its own from now
    /// on.
    pub fn unshare(&mut self, ext: &[L2Book]) {
        if self.shared {
            self.books = ext.to_vec();
            self.shared = false;
            self.at_start.fill(true);
        }
    }

    /// The book of instrument `i` as the venue sees it.
    #[inline(always)]
    fn book<'a>(&'a self, i: usize, ext: &'a [L2Book]) -> &'a L2Book {
        if self.shared { &ext[i] } else { &self.books[i] }
    }

    /// Applies a recorded event at venue time `t`. `ext` is the shared books (see
    /// [`Exchange::share`]), ignored while the venue keeps its own.
    ///
    /// The book is the venue's only at the end of a message: between the levels of
    /// one depth diff it can be crossed for a moment that never existed at the venue.
    /// So resting orders the book trades through fill when a message ends (with shared
    /// books, in [`Exchange::settle`]).
    #[inline(always)]
    pub fn on_market(&mut self, ev: &MarketEvent, t: Nanos, ext: &[L2Book]) {
        let i = ev.instrument.index();
        if i >= self.specs.len() {
            return;
        }
        if self.shared && ev.kind == MarketEventKind::Clear && ev.flags & FLAG_SNAPSHOT == 0 {
            // A clear no snapshot follows (a stress scenario's): the engines do not
            // take it, so the venue's book parts from theirs here.
            self.unshare(ext);
        }
        if !self.shared {
            if self.at_start[i] {
                self.msg_mid[i] = self.books[i].mid_x2();
            }
            self.at_start[i] = ev.is_last();
        }
        self.apply_market(ev, i, t, ext);
        if self.shared {
            if ev.is_last() {
                self.unsettled = Some(i);
            }
        } else if ev.is_last() {
            self.end_message(i, t, ext);
        }
    }

    /// With shared books: the engines have now applied every event handed to
    /// [`Exchange::on_market`] since the last call; if the last of them closed a
    /// message, resting orders the book now trades through fill.
    #[inline(always)]
    pub fn settle(&mut self, t: Nanos, ext: &[L2Book]) {
        if !self.shared {
            return;
        }
        self.pending.clear();
        self.pending_clear = false;
        if let Some(i) = self.unsettled.take() {
            self.end_message(i, t, ext);
        }
    }

    /// The end of a message on instrument `i`, the book now up to date.
    #[inline(always)]
    fn end_message(&mut self, i: usize, t: Nanos, ext: &[L2Book]) {
        let book = self.book(i, ext);
        let (bid, ask) = (book.best_bid(), book.best_ask());
        let mid = book.mid_x2();
        if let (Some((b, _)), Some((a, _))) = (bid, ask) {
            self.crossed[i] += u64::from(b >= a);
        }
        if !self.orders.is_empty() {
            self.fill_crossed(i, bid, ask, mid, t);
        }
        self.executed_ahead.retain(|e| e.0 != i);
    }

    /// Our orders on instrument `i` lose their places when its recorded book is
    /// cleared, and orders arriving later have none either, until the snapshot that
    /// rebuilds it is over.
    fn reset_queue(&mut self, i: usize) {
        for o in self
            .orders
            .iter_mut()
            .filter(|o| o.cmd.instrument.index() == i)
        {
            o.priority = RESET;
        }
        self.rebuilding[i] = true;
    }

    /// Twice the mid before the message in hand, for the fills it causes.
    fn pre_message_mid(&self, i: usize, ext: &[L2Book]) -> Option<i64> {
        if self.shared {
            ext[i].mid_x2()
        } else {
            self.msg_mid[i]
        }
    }

    /// The size of a level before the event in hand changes it.
    fn level_before(&self, i: usize, side: Side, price: Price, ext: &[L2Book]) -> i64 {
        if !self.shared {
            return self.books[i].qty_at(side, price).raw();
        }
        match self
            .pending
            .iter()
            .rev()
            .find(|p| (p.0, p.1, p.2) == (i, side, price))
        {
            Some(p) => p.3,
            None if self.pending_clear => 0,
            None => ext[i].qty_at(side, price).raw(),
        }
    }

    fn apply_market(&mut self, ev: &MarketEvent, i: usize, t: Nanos, ext: &[L2Book]) {
        let exact = self.l3[i].is_some();
        match ev.kind {
            MarketEventKind::Level { side, price, qty } if self.orders.is_empty() || exact => {
                if !self.shared {
                    let _ = self.books[i].apply_level(side, price, qty);
                }
            }
            MarketEventKind::Level { side, price, qty } => {
                // The level's old size matters only to our orders resting there.
                let ours = self
                    .orders
                    .iter()
                    .any(|o| o.cmd.instrument.index() == i && o.side == side && o.price == price);
                let before = if ours {
                    self.level_before(i, side, price, ext)
                } else {
                    0
                };
                if self.shared {
                    if ours {
                        self.pending.push((i, side, price, qty.raw()));
                    }
                } else {
                    let _ = self.books[i].apply(ev);
                }
                let after = qty.raw();
                if ours && after < before {
                    for o in self.orders.iter_mut() {
                        if o.cmd.instrument.index() == i && o.side == side && o.price == price {
                            o.ahead = self.model.on_cancel(o.ahead, o.leaves, before, after);
                        }
                    }
                }
            }
            MarketEventKind::Trade {
                aggressor,
                price,
                qty,
            } => {
                let qty = qty.raw();
                // Our orders at the trade's price, before this one in the queue: their
                // quantity stands between the recorded queue and the orders behind, and
                // what they took of the trade the recorded queue did not give.
                let (mut ours_ahead, mut absorbed) = (0, 0);
                let mut k = 0;
                while k < self.orders.len() {
                    let o = self.orders[k];
                    // Only orders on the passive side of the trade.
                    if o.cmd.instrument.index() != i || o.side == aggressor {
                        k += 1;
                        continue;
                    }
                    let through = match o.side {
                        Side::Buy => price < o.price,
                        Side::Sell => price > o.price,
                    };
                    let take = if through {
                        o.leaves
                    } else if exact {
                        // Order-by-order data says who traded at the price: the fills
                        // come with the order events.
                        0
                    } else if price == o.price {
                        // The trade eats the recorded queue ahead and our earlier
                        // orders first (`orders` is in arrival order: time priority).
                        let take = (qty - o.ahead - ours_ahead).clamp(0, o.leaves);
                        self.orders[k].ahead = (o.ahead - (qty - absorbed)).max(0);
                        ours_ahead += o.leaves;
                        absorbed += take;
                        take
                    } else {
                        0
                    };
                    if take > 0 {
                        let mid = self.pre_message_mid(i, ext);
                        if self.fill_resting(k, take, t, mid) {
                            continue;
                        }
                    }
                    k += 1;
                }
            }
            MarketEventKind::Clear => {
                if self.shared {
                    self.pending.clear();
                    self.pending_clear = true;
                } else {
                    let _ = self.books[i].apply(ev);
                }
                // A clear that no order event announced (a stress scenario's, or a
                // snapshot's start): the recorded queues go with it.
                if let Some(l3) = self.l3[i].as_mut() {
                    l3.clear();
                    self.reset_queue(i);
                }
            }
            // An L2 book takes nothing from a quote (see `L2Book::apply`).
            MarketEventKind::Quote { .. } => {}
            MarketEventKind::Order {
                action,
                side,
                order_id,
                price,
                qty,
            } => {
                let snapshot = ev.flags & FLAG_SNAPSHOT != 0;
                self.on_order(i, action, (order_id, side, price, qty), snapshot, t, ext);
            }
        }
    }

    /// A recorded order-by-order change: our orders' exact places in their queues move
    /// with it, and an execution of a recorded order behind one of ours fills ours
    /// first (price-time priority), once nothing is left ahead of it.
    fn on_order(
        &mut self,
        i: usize,
        action: MboAction,
        (id, side, price, qty): (u64, Option<Side>, Price, Qty),
        snapshot: bool,
        t: Nanos,
        ext: &[L2Book],
    ) {
        // Out of `self` while our orders fill.
        let mut book = self.l3[i]
            .take()
            .unwrap_or_else(|| L3Book::with_capacity(hft_core::InstrumentId(i as u32), 4096));
        if !snapshot {
            self.rebuilding[i] = false;
            // The book is whole again: an order caught by a reset goes behind the
            // level as rebuilt.
            for o in &mut self.orders {
                if o.priority == RESET && o.cmd.instrument.index() == i {
                    o.priority = book.next_priority();
                    o.ahead = book.level_qty(o.side, o.price).raw();
                }
            }
        }
        let recorded = book.order(id).copied();
        // A change the recorded book refuses (a cancel of more than the order holds,
        // an order it does not know) moves nobody's place.
        if book.apply(action, id, side, price, qty, false).is_err() {
            self.l3[i] = Some(book);
            return;
        }
        let at = |o: &Resting, r: &hft_book::RestingOrder| {
            o.cmd.instrument.index() == i && o.side == r.side && o.price == r.price
        };
        match (action, recorded) {
            (MboAction::Cancel | MboAction::Modify, Some(r)) => {
                // The part of the recorded order that leaves the queue ahead of ours:
                // all of it when it loses its place, else what it gives up.
                let gone = match action {
                    MboAction::Modify if price != r.price || qty > r.qty => r.qty.raw(),
                    MboAction::Modify => r.qty.raw() - qty.raw(),
                    _ => qty.raw().min(r.qty.raw()),
                };
                let gone = match self
                    .executed_ahead
                    .iter_mut()
                    .find(|e| (e.0, e.1) == (i, id))
                {
                    Some(e) => {
                        let already = e.2.min(gone);
                        e.2 -= already;
                        gone - already
                    }
                    None => gone,
                };
                for o in &mut self.orders {
                    if at(o, &r) && r.priority() < o.priority {
                        o.ahead = (o.ahead - gone).max(0);
                    }
                }
            }
            (MboAction::Fill, Some(r)) => {
                let executed = qty.raw().min(r.qty.raw());
                let mut ahead_of_some = false;
                let mut left = qty.raw();
                let mut k = 0;
                while k < self.orders.len() {
                    let o = self.orders[k];
                    if !at(&o, &r) {
                        k += 1;
                        continue;
                    }
                    if r.priority() < o.priority {
                        ahead_of_some = true;
                        self.orders[k].ahead = (o.ahead - executed).max(0);
                    } else if o.ahead == 0 && left > 0 && o.priority != RESET {
                        // The venue reached an order behind ours: ours went first.
                        let take = left.min(o.leaves);
                        left -= take;
                        let mid = self.pre_message_mid(i, ext);
                        if self.fill_resting(k, take, t, mid) {
                            continue;
                        }
                    }
                    k += 1;
                }
                if ahead_of_some {
                    self.executed_ahead.push((i, id, executed));
                }
            }
            (MboAction::Clear, _) => self.reset_queue(i),
            _ => {}
        }
        self.l3[i] = Some(book);
    }

    /// Our resting orders that the public book now trades through fill at their price.
    fn fill_crossed(
        &mut self,
        i: usize,
        bid: Option<(Price, Qty)>,
        ask: Option<(Price, Qty)>,
        mid_x2: Option<i64>,
        t: Nanos,
    ) {
        let mut k = 0;
        while k < self.orders.len() {
            let o = self.orders[k];
            let crossed = o.cmd.instrument.index() == i
                && match o.side {
                    Side::Buy => ask.is_some_and(|(p, _)| p < o.price),
                    Side::Sell => bid.is_some_and(|(p, _)| p > o.price),
                };
            if crossed && self.fill_resting(k, o.leaves, t, mid_x2) {
                continue;
            }
            k += 1;
        }
    }

    /// Fills `qty` of resting order `k` (twice the mid then: `mid_x2`); true when it
    /// left the book.
    fn fill_resting(&mut self, k: usize, qty: i64, t: Nanos, mid_x2: Option<i64>) -> bool {
        let o = self.orders[k];
        let leaves = o.leaves - qty;
        self.fill(
            &o.cmd,
            o.side,
            o.price,
            Qty(qty),
            Qty(leaves),
            Liquidity::Maker,
            t,
            t.saturating_sub(o.arrived),
            mid_x2,
        );
        if leaves == 0 {
            // `remove`, not `swap_remove`: the vector's order is our orders' time
            // priority (a handful of orders; the shift is cheap).
            self.orders.remove(k);
            true
        } else {
            self.orders[k].leaves = leaves;
            false
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn fill(
        &mut self,
        cmd: &OrderCommand,
        side: Side,
        price: Price,
        qty: Qty,
        leaves: Qty,
        liquidity: Liquidity,
        t: Nanos,
        queue_wait: Nanos,
        mid_x2: Option<i64>,
    ) {
        self.exec_seq += 1;
        let spec = &self.specs[cmd.instrument.index()];
        let report = hft_exec::Execution {
            exec_id: ExecId(self.exec_seq),
            side,
            price,
            qty,
            leaves,
            liquidity,
        }
        .report(spec, cmd, t);
        self.out.push(FillOrReport::Fill(FillRecord {
            report,
            queue_wait,
            mid_x2,
        }));
    }

    fn report(&mut self, cmd: &OrderCommand, t: Nanos, kind: OrderReportKind) {
        self.out.push(FillOrReport::Report(OrderReport {
            ts: t,
            instrument: cmd.instrument,
            cl_ord_id: cmd.cl_ord_id,
            kind,
        }));
    }

    /// An order command reaches the venue at `t`; `ext` as for [`Exchange::on_market`].
    pub fn submit(&mut self, cmd: &OrderCommand, t: Nanos, ext: &[L2Book]) {
        let i = cmd.instrument.index();
        let Some(spec) = self.specs.get(i) else {
            self.report(cmd, t, OrderReportKind::Rejected(RejectReason::Malformed));
            return;
        };
        match cmd.kind {
            OrderKind::Cancel => match self
                .orders
                .iter()
                .position(|o| o.cmd.cl_ord_id == cmd.cl_ord_id)
            {
                Some(k) => {
                    self.orders.remove(k);
                    self.report(cmd, t, OrderReportKind::Canceled);
                }
                None => self.report(
                    cmd,
                    t,
                    OrderReportKind::CancelRejected(RejectReason::UnknownOrder),
                ),
            },
            OrderKind::New {
                side,
                price,
                qty,
                tif,
                post_only,
            } => {
                if let Err(v) = spec.check_order(price, qty) {
                    self.report(cmd, t, OrderReportKind::Rejected(RejectReason::Spec(v)));
                    return;
                }
                let book = self.book(i, ext);
                let (levels, n) = hft_exec::takeable(book, side, price);
                let (mid_x2, ahead) = (book.mid_x2(), book.qty_at(side, price).raw());
                let crosses = |p: Price| match side {
                    Side::Buy => p <= price,
                    Side::Sell => p >= price,
                };
                // Self-trade prevention: never cross our own resting order.
                let self_cross = self.orders.iter().any(|o| {
                    o.cmd.instrument == cmd.instrument && o.side != side && crosses(o.price)
                });
                if post_only && n > 0 {
                    self.report(
                        cmd,
                        t,
                        OrderReportKind::Rejected(RejectReason::PostOnlyWouldCross),
                    );
                    return;
                }
                if self_cross {
                    self.report(cmd, t, OrderReportKind::Rejected(RejectReason::SelfTrade));
                    return;
                }
                self.report(cmd, t, OrderReportKind::Accepted);
                let mut leaves = qty.raw();
                for &(p, avail) in &levels[..n] {
                    if leaves == 0 {
                        break;
                    }
                    let take = leaves.min(avail.raw());
                    leaves -= take;
                    self.fill(
                        cmd,
                        side,
                        p,
                        Qty(take),
                        Qty(leaves),
                        Liquidity::Taker,
                        t,
                        0,
                        mid_x2,
                    );
                }
                if leaves == 0 {
                    return;
                }
                if tif == TimeInForce::Ioc {
                    self.report(cmd, t, OrderReportKind::Canceled);
                    return;
                }
                // Behind every recorded order resting now, ahead of every later one.
                // While the recorded book is rebuilt, behind all of it once it is whole.
                let priority = match &self.l3[i] {
                    Some(_) if self.rebuilding[i] => RESET,
                    Some(l3) => l3.next_priority(),
                    None => 0,
                };
                self.orders.push(Resting {
                    cmd: *cmd,
                    side,
                    price,
                    leaves,
                    ahead,
                    arrived: t,
                    priority,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hft_core::{ClientOrderId, FLAG_LAST, InstrumentId, StrategyId};

    fn ev(kind: MarketEventKind) -> MarketEvent {
        MarketEvent {
            ts_exchange: 0,
            ts_recv: 0,
            seq: 0,
            instrument: InstrumentId(0),
            flags: FLAG_LAST,
            kind,
        }
    }

    fn buy(seq: u64, price: i64, qty: i64, post_only: bool) -> OrderCommand {
        OrderCommand {
            ts: 0,
            tick_ts: 0,
            instrument: InstrumentId(0),
            cl_ord_id: ClientOrderId::new(StrategyId(0), seq),
            epoch: 0,
            kind: OrderKind::New {
                side: Side::Buy,
                price: Price(price),
                qty: Qty(qty),
                tif: TimeInForce::Gtc,
                post_only,
            },
        }
    }

    fn fills(x: &mut Exchange) -> Vec<(i64, i64, Liquidity, Nanos)> {
        x.out
            .drain(..)
            .filter_map(|o| match o {
                FillOrReport::Fill(f) => match f.report.kind {
                    OrderReportKind::Fill(fl) => {
                        Some((fl.price.raw(), fl.qty.raw(), fl.liquidity, f.queue_wait))
                    }
                    _ => None,
                },
                FillOrReport::Report(_) => None,
            })
            .collect()
    }

    /// Feeds one order-by-order record as the store's reader does: the order event,
    /// then the levels it amounts to.
    fn mbo(
        x: &mut Exchange,
        l2: &mut hft_book::MboToL2,
        (action, id, side, price, qty): (MboAction, u64, Side, i64, i64),
        last: bool,
        t: Nanos,
    ) {
        let e = MarketEvent {
            flags: if last { FLAG_LAST } else { 0 },
            ..ev(MarketEventKind::Order {
                action,
                side: Some(side),
                order_id: id,
                price: Price(price),
                qty: Qty(qty),
            })
        };
        l2.push(&e, &mut |e| x.on_market(&e, t, &[]));
    }

    #[test]
    fn order_by_order_data_gives_exact_fifo_fills() {
        use MboAction::{Add, Cancel, Fill, Modify};
        let spec = InstrumentSpec::new(InstrumentId(0), "X", 0, 0, Price(1), Qty(1));
        let mut x = Exchange::new(vec![spec], QueueModel::RiskAverse);
        let mut l2 = hft_book::MboToL2::new(InstrumentId(0));
        let (b, s) = (Side::Buy, Side::Sell);
        for (id, side, p) in [(1, b, 99), (2, b, 99), (3, s, 101)] {
            mbo(&mut x, &mut l2, (Add, id, side, p, 5), true, 0);
        }
        x.submit(&buy(1, 99, 3, true), 10, &[]);
        assert!(
            fills(&mut x).is_empty(),
            "rests behind orders 1 and 2 (10 lots)"
        );
        mbo(&mut x, &mut l2, (Add, 4, b, 99, 5), true, 20);
        // Behind us: its cancel changes nothing, and neither does a trade print at
        // the price (order-by-order data names who traded; the L2 model is off).
        mbo(&mut x, &mut l2, (Cancel, 4, b, 99, 1), true, 21);
        x.on_market(
            &ev(MarketEventKind::Trade {
                aggressor: s,
                price: Price(99),
                qty: Qty(50),
            }),
            22,
            &[],
        );
        assert!(fills(&mut x).is_empty());
        // Order 1 executes 2 and the venue then books the change as a cancel of 2:
        // counted once, so 8 stay ahead.
        mbo(&mut x, &mut l2, (Fill, 1, b, 99, 2), false, 30);
        mbo(&mut x, &mut l2, (Cancel, 1, b, 99, 2), true, 30);
        assert_eq!(x.orders[0].ahead, 8);
        // Order 2 grows: it goes to the back, behind us.
        mbo(&mut x, &mut l2, (Modify, 2, b, 99, 6), true, 40);
        assert_eq!(x.orders[0].ahead, 3);
        // An execution behind us while order 1 is still ahead: an iceberg or a
        // pro-rata fill the data shows but FIFO cannot explain; we do not fill.
        mbo(&mut x, &mut l2, (Fill, 4, b, 99, 2), false, 50);
        mbo(&mut x, &mut l2, (Cancel, 4, b, 99, 2), true, 50);
        assert!(fills(&mut x).is_empty());
        mbo(&mut x, &mut l2, (Cancel, 1, b, 99, 3), true, 60);
        assert_eq!(x.orders[0].ahead, 0);
        // Now an execution of order 2 (behind us) would have reached us first.
        mbo(&mut x, &mut l2, (Fill, 2, b, 99, 2), false, 70);
        mbo(&mut x, &mut l2, (Cancel, 2, b, 99, 2), true, 70);
        assert_eq!(fills(&mut x), vec![(99, 2, Liquidity::Maker, 60)]);
        mbo(&mut x, &mut l2, (Fill, 4, b, 99, 2), false, 80);
        assert_eq!(fills(&mut x), vec![(99, 1, Liquidity::Maker, 70)]);
        assert!(x.orders.is_empty());
    }

    /// Recorded buy order `id` of 4 at 99, as a snapshot sends it.
    fn snap(id: u64) -> MarketEvent {
        MarketEvent {
            flags: FLAG_SNAPSHOT,
            ..ev(MarketEventKind::Order {
                action: MboAction::Add,
                side: Some(Side::Buy),
                order_id: id,
                price: Price(99),
                qty: Qty(4),
            })
        }
    }

    #[test]
    fn a_book_reset_puts_a_resting_order_behind_the_rebuilt_level() {
        use MboAction::{Add, Clear, Fill};
        let spec = InstrumentSpec::new(InstrumentId(0), "X", 0, 0, Price(1), Qty(1));
        let mut x = Exchange::new(vec![spec], QueueModel::RiskAverse);
        let mut l2 = hft_book::MboToL2::new(InstrumentId(0));
        mbo(&mut x, &mut l2, (Add, 1, Side::Buy, 99, 5), true, 0);
        x.submit(&buy(1, 99, 1, true), 10, &[]);
        mbo(&mut x, &mut l2, (Clear, 0, Side::Buy, 0, 0), false, 20);
        // The snapshot rebuilds the level; where we stood in it is lost.
        for id in [7, 8] {
            l2.push(&snap(id), &mut |e| x.on_market(&e, 20, &[]));
        }
        // After it, both rebuilt orders (8 lots) are ahead of ours: the first
        // execution takes one of them off, and a later order is behind.
        mbo(&mut x, &mut l2, (Fill, 8, Side::Buy, 99, 1), false, 21);
        assert!(fills(&mut x).is_empty());
        mbo(&mut x, &mut l2, (Add, 9, Side::Buy, 99, 4), true, 30);
        assert_eq!(x.orders[0].ahead, 7);
        mbo(&mut x, &mut l2, (Fill, 9, Side::Buy, 99, 4), true, 40);
        assert!(fills(&mut x).is_empty(), "7 lots are still ahead");
    }

    #[test]
    fn an_order_arriving_while_the_book_is_rebuilt_goes_behind_the_rebuilt_level() {
        use MboAction::{Add, Clear, Fill};
        let spec = InstrumentSpec::new(InstrumentId(0), "X", 0, 0, Price(1), Qty(1));
        let mut x = Exchange::new(vec![spec], QueueModel::RiskAverse);
        let mut l2 = hft_book::MboToL2::new(InstrumentId(0));
        mbo(&mut x, &mut l2, (Add, 1, Side::Buy, 99, 5), true, 0);
        mbo(&mut x, &mut l2, (Clear, 0, Side::Buy, 0, 0), false, 20);
        l2.push(&snap(7), &mut |e| x.on_market(&e, 20, &[]));
        // Half-way through the snapshot: the venue's queue is not known yet.
        x.submit(&buy(1, 99, 1, true), 21, &[]);
        l2.push(&snap(8), &mut |e| x.on_market(&e, 22, &[]));
        // Both rebuilt orders are ahead of ours, not just the one sent before it.
        mbo(&mut x, &mut l2, (Fill, 8, Side::Buy, 99, 1), true, 30);
        assert_eq!(x.orders[0].ahead, 7);
        mbo(&mut x, &mut l2, (Fill, 8, Side::Buy, 99, 3), true, 31);
        let f = fills(&mut x);
        assert!(f.is_empty(), "order 7 is still ahead: {f:?}");
    }

    #[test]
    fn a_change_the_recorded_book_refuses_moves_nobodys_place() {
        use MboAction::{Add, Cancel};
        let spec = InstrumentSpec::new(InstrumentId(0), "X", 0, 0, Price(1), Qty(1));
        let mut x = Exchange::new(vec![spec], QueueModel::RiskAverse);
        let mut l2 = hft_book::MboToL2::new(InstrumentId(0));
        mbo(&mut x, &mut l2, (Add, 1, Side::Buy, 99, 5), true, 0);
        x.submit(&buy(1, 99, 1, true), 10, &[]);
        assert_eq!(x.orders[0].ahead, 5);
        // More than order 1 holds, and an order nobody added: both refused.
        mbo(&mut x, &mut l2, (Cancel, 1, Side::Buy, 99, 9), true, 20);
        mbo(&mut x, &mut l2, (Cancel, 42, Side::Buy, 99, 1), true, 21);
        assert_eq!(x.orders[0].ahead, 5);
        mbo(&mut x, &mut l2, (Cancel, 1, Side::Buy, 99, 2), true, 22);
        assert_eq!(x.orders[0].ahead, 3);
    }

    #[test]
    fn our_orders_at_one_price_fill_in_time_priority() {
        let spec = InstrumentSpec::new(InstrumentId(0), "X", 0, 0, Price(1), Qty(1));
        let mut x = Exchange::new(vec![spec], QueueModel::RiskAverse);
        let lvl = |q| MarketEventKind::Level {
            side: Side::Buy,
            price: Price(99),
            qty: Qty(q),
        };
        let sell = |q| MarketEventKind::Trade {
            aggressor: Side::Sell,
            price: Price(99),
            qty: Qty(q),
        };
        // The queue at 99: 10 recorded, our 1, (our 2, cancelled), our 3, 5 recorded
        // that joined later, our 4.
        x.on_market(&ev(lvl(10)), 0, &[]);
        x.submit(&buy(1, 99, 5, true), 10, &[]);
        x.submit(&buy(2, 99, 5, true), 11, &[]);
        x.submit(&buy(3, 99, 5, true), 12, &[]);
        let cancel = OrderCommand {
            kind: OrderKind::Cancel,
            ..buy(2, 99, 5, true)
        };
        x.submit(&cancel, 13, &[]);
        x.on_market(&ev(lvl(15)), 14, &[]);
        x.submit(&buy(4, 99, 5, true), 15, &[]);
        fills(&mut x);
        // 20 traded: the 10 recorded ahead, then our 1 and our 3, in that order.
        x.on_market(&ev(sell(20)), 20, &[]);
        assert_eq!(
            fills(&mut x),
            vec![(99, 5, Liquidity::Maker, 10), (99, 5, Liquidity::Maker, 8)]
        );
        // Of the 20, our orders took 10: 10 of the 15 recorded ahead of our 4 traded,
        // 5 are still ahead of it.
        assert_eq!(x.orders[0].ahead, 5);
        x.on_market(&ev(sell(7)), 30, &[]);
        assert_eq!(fills(&mut x), vec![(99, 2, Liquidity::Maker, 15)]);
        assert_eq!(x.orders[0].leaves, 3);
    }

    #[test]
    fn risk_averse_queue_fills_only_after_the_volume_ahead_traded() {
        let spec = InstrumentSpec::new(InstrumentId(0), "X", 0, 0, Price(1), Qty(1));
        let mut x = Exchange::new(vec![spec], QueueModel::RiskAverse);
        let lvl = |side, p, q| MarketEventKind::Level {
            side,
            price: Price(p),
            qty: Qty(q),
        };
        x.on_market(&ev(lvl(Side::Buy, 99, 5)), 0, &[]);
        x.on_market(&ev(lvl(Side::Sell, 101, 5)), 0, &[]);
        assert_eq!(x.crossed(), &[0]);
        x.submit(&buy(1, 99, 3, true), 10, &[]);
        assert!(fills(&mut x).is_empty(), "rests behind 5");
        let sell = |q| MarketEventKind::Trade {
            aggressor: Side::Sell,
            price: Price(99),
            qty: Qty(q),
        };
        x.on_market(&ev(sell(4)), 20, &[]);
        assert!(fills(&mut x).is_empty(), "1 still ahead");
        // Cancels at the level do not move a risk-averse queue...
        x.on_market(&ev(lvl(Side::Buy, 99, 4)), 25, &[]);
        x.on_market(&ev(sell(3)), 30, &[]);
        // ... so of this trade 1 goes to the order ahead and 2 to ours.
        assert_eq!(fills(&mut x), vec![(99, 2, Liquidity::Maker, 20)]);
        // A trade through the price fills the rest.
        x.on_market(
            &ev(MarketEventKind::Trade {
                aggressor: Side::Sell,
                price: Price(98),
                qty: Qty(1),
            }),
            40,
            &[],
        );
        assert_eq!(fills(&mut x), vec![(99, 1, Liquidity::Maker, 30)]);
        // Post-only that would cross is refused; a taker walks the book.
        x.submit(&buy(2, 101, 1, true), 50, &[]);
        assert!(matches!(
            x.out.pop(),
            Some(FillOrReport::Report(OrderReport {
                kind: OrderReportKind::Rejected(RejectReason::PostOnlyWouldCross),
                ..
            }))
        ));
        x.submit(&buy(3, 101, 7, false), 60, &[]);
        assert_eq!(fills(&mut x), vec![(101, 5, Liquidity::Taker, 0)]);
        // Its remainder rests at 101; a sell that would meet it is a self-trade.
        let sell_cmd = OrderCommand {
            cl_ord_id: ClientOrderId::new(StrategyId(0), 4),
            kind: OrderKind::New {
                side: Side::Sell,
                price: Price(100),
                qty: Qty(1),
                tif: TimeInForce::Gtc,
                post_only: false,
            },
            ..buy(4, 0, 1, false)
        };
        x.submit(&sell_cmd, 70, &[]);
        // Bad data is counted: a bid above the ask after a message.
        x.on_market(&ev(lvl(Side::Buy, 150, 1)), 80, &[]);
        assert_eq!(x.crossed(), &[1]);
        assert!(matches!(
            x.out.pop(),
            Some(FillOrReport::Report(OrderReport {
                kind: OrderReportKind::Rejected(RejectReason::SelfTrade),
                ..
            }))
        ));
    }
}
