//! The backtest loop: two clocks over the recorded events (the venue's and the
//! strategy's), order and response latencies between them, and the live engine.
//!
//! Strategies cannot see the future: an event reaches an engine only when the
//! simulated local clock reaches its local (receive) time, orders reach the venue an
//! entry latency after the engine sent them, and reports come back a response latency
//! later. At equal times the venue moves first, then orders arrive, then the engines
//! hear of it.

use crate::exchange::{Exchange, FillOrReport};
use crate::model::{FeedLatency, Latency, QueueModel};
use hft_core::{
    FLAG_SNAPSHOT, InstrumentSpec, MarketEvent, MarketEventKind, Nanos, OrderCommand, OrderKind,
    OrderReport, OrderReportKind,
};
use hft_exec::{Engine, OrderSink};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// How to run a backtest.
pub struct BacktestSetup {
    /// Order entry latency (engine to venue).
    pub entry: Latency,
    /// Response latency (venue to engine).
    pub response: Latency,
    /// When the venue saw each recorded event.
    pub feed: FeedLatency,
    /// Queue position model of resting orders.
    pub queue: QueueModel,
    /// Strategy timer period.
    pub timer_interval: Nanos,
    /// Equity samples are taken this often (simulated time).
    pub sample_interval: Nanos,
    /// Called with (events delivered, events in all or 0 when a stream does not
    /// know) about every 1% of the run: a progress bar for a terminal. `None` costs
    /// nothing.
    pub progress: Option<Box<dyn FnMut(u64, u64)>>,
}

/// An order as sent, for the orders report.
#[derive(Clone, Copy, Debug)]
pub struct SentOrder {
    /// When the engine sent it.
    pub sent: Nanos,
    /// The command.
    pub cmd: OrderCommand,
    /// Its last report kind, if any.
    pub last: Option<OrderReportKind>,
    /// Twice the mid the engine saw when it sent the order: the decision price.
    pub mid_x2: Option<i64>,
}

/// A fill as the report lists it.
#[derive(Clone, Copy, Debug)]
pub struct FillRow {
    /// When the engine heard of it.
    pub local_ts: Nanos,
    /// The venue report.
    pub report: OrderReport,
    /// From arrival at the venue to the fill.
    pub queue_wait: Nanos,
    /// The strategy's realized PnL after it (money raw units).
    pub realized_after: i64,
    /// Twice the engine's mid when the order was sent (the decision), if known.
    pub decision_mid_x2: Option<i64>,
    /// Twice the venue's mid when it filled, if known.
    pub fill_mid_x2: Option<i64>,
}

/// One equity sample.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    /// Simulated time.
    pub ts: Nanos,
    /// PnL after fees over all strategies, money raw units.
    pub pnl: i64,
    /// Net position per strategy's instrument, summed (raw units).
    pub position: i64,
}

/// What a backtest produced.
pub struct Outcome {
    /// Engines at the end, with their strategies stopped.
    pub engines: Vec<Engine>,
    /// Every order sent.
    pub orders: Vec<SentOrder>,
    /// Every fill.
    pub fills: Vec<FillRow>,
    /// Equity over time.
    pub samples: Vec<Sample>,
    /// Recorded events processed.
    pub events: u64,
    /// Simulated span, ns.
    pub span: Nanos,
    /// Per instrument, venue messages after which the recorded book was crossed.
    pub crossed: Vec<u64>,
}

/// A venue answer on its way to an engine: the report, the fill's queue wait and
/// twice the venue's mid at the fill.
type Answer = (OrderReport, Nanos, Option<i64>);

/// A time after every event: simulated time never reaches it.
const NEVER: Nanos = Nanos::MAX;

/// A message scheduled at a time; ties keep the order of scheduling.
struct Sched<T> {
    at: Nanos,
    seq: u64,
    item: T,
}

impl<T> PartialEq for Sched<T> {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl<T> Eq for Sched<T> {}
impl<T> PartialOrd for Sched<T> {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl<T> Ord for Sched<T> {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

/// Orders an engine sends during one call, stamped later with their arrival time.
struct Outbox<'a> {
    buf: &'a mut Vec<OrderCommand>,
}

impl OrderSink for Outbox<'_> {
    #[inline]
    fn send(&mut self, cmd: &OrderCommand) -> bool {
        self.buf.push(*cmd);
        true
    }
}

/// Where the run loop's events come from: all in memory, or a window over a stream
/// that moves on as the run consumes it, so memory follows the working set and not
/// the length of the data.
pub trait Source {
    /// The events held, from the oldest the run may still need.
    fn events(&self) -> &[MarketEvent];
    /// Drops the events before index `keep` and loads more behind the rest; returns
    /// how many were dropped (every held index shifts down by that much).
    fn refill(&mut self, keep: usize) -> usize;
    /// True once the stream has nothing more to load.
    fn exhausted(&self) -> bool;
    /// The stream's length for progress, if known: events, or any unit the stream
    /// counts its input in ([`Source::done`] uses the same).
    fn total(&self) -> Option<u64>;
    /// How far the run is, in the unit of [`Source::total`], once it has taken
    /// `events` events.
    fn done(&self, events: u64) -> u64 {
        events
    }
}

impl<S: Source + ?Sized> Source for &mut S {
    fn events(&self) -> &[MarketEvent] {
        (**self).events()
    }
    fn refill(&mut self, keep: usize) -> usize {
        (**self).refill(keep)
    }
    fn exhausted(&self) -> bool {
        (**self).exhausted()
    }
    fn total(&self) -> Option<u64> {
        (**self).total()
    }
    fn done(&self, events: u64) -> u64 {
        (**self).done(events)
    }
}

impl Source for &[MarketEvent] {
    fn events(&self) -> &[MarketEvent] {
        self
    }
    fn refill(&mut self, _keep: usize) -> usize {
        0
    }
    fn exhausted(&self) -> bool {
        true
    }
    fn total(&self) -> Option<u64> {
        Some(self.len() as u64)
    }
}

/// Events the venue's cursor keeps loaded ahead of it: a message longer than this is
/// handed over in parts, which the engines take as one.
pub const LOOKAHEAD: usize = 4096;

/// Runs `engines` (strategies installed) over `events` (in local receive order).
pub fn run(
    setup: BacktestSetup,
    specs: Vec<InstrumentSpec>,
    engines: Vec<Engine>,
    events: &[MarketEvent],
) -> Outcome {
    run_source(setup, specs, engines, events)
}

/// [`run`] over any [`Source`]. With a stream, `FeedLatency::FromData` takes the clock
/// offset from the first window (an offset that changes later in the data shows as
/// feed latency).
pub fn run_source(
    mut setup: BacktestSetup,
    specs: Vec<InstrumentSpec>,
    mut engines: Vec<Engine>,
    mut src: impl Source,
) -> Outcome {
    let n = specs.len();
    let mut venue = Exchange::new(specs, setup.queue);
    // With no feed latency the venue and the engines take each recorded event in one
    // step (below), so their books are equal at every moment either reads one: the
    // venue reads the first engine's instead of keeping a copy.
    if setup.feed == FeedLatency::Zero && engines.first().is_some_and(|e| e.books().len() == n) {
        venue.share();
    }
    // Re-borrowed from `src` after every refill; indices are into this window, and
    // `dropped` events lie before it.
    let mut events: &[MarketEvent] = src.events();
    let mut dropped = 0u64;
    let offset = match setup.feed {
        FeedLatency::FromData => events
            .iter()
            .map(|e| e.ts_recv as i128 - e.ts_exchange as i128)
            .min()
            .unwrap_or(0),
        _ => 0,
    };
    let venue_time = |e: &MarketEvent| -> Nanos {
        match setup.feed {
            FeedLatency::Zero => e.ts_recv,
            FeedLatency::Constant(l) => e.ts_recv.saturating_sub(l),
            FeedLatency::FromData => (e.ts_exchange as i128 + offset).max(0) as Nanos,
        }
    };
    let start = events.first().map_or(0, |e| e.ts_recv);
    // (time, order of scheduling) keeps simultaneous messages in the order sent.
    let mut to_venue: BinaryHeap<Reverse<Sched<OrderCommand>>> = BinaryHeap::new();
    let mut to_engine: BinaryHeap<Reverse<Sched<Answer>>> = BinaryHeap::new();
    let mut seq = 0u64;
    let mut outbox: Vec<OrderCommand> = Vec::with_capacity(16);
    let mut orders: Vec<SentOrder> = Vec::new();
    let mut order_index: std::collections::HashMap<u64, usize> = std::collections::HashMap::new();
    let mut fills: Vec<FillRow> = Vec::new();
    let mut samples: Vec<Sample> = Vec::new();
    let (mut xi, mut li) = (0usize, 0usize);
    let (mut xt_last, mut lt_last) = (start, start);
    let mut now = start;
    let mut next_timer = start + setup.timer_interval;
    let mut next_sample = start;
    // Engines see one sequence number per venue message, renumbered per instrument.
    let mut msg_seq = vec![0u64; n];
    let mut at_start = vec![true; n];

    // The books the venue reads while it shares the first engine's.
    macro_rules! ext {
        () => {
            if venue.is_shared() {
                engines[0].books()
            } else {
                &[]
            }
        };
    }

    macro_rules! dispatch {
        ($engine:expr, $t:expr) => {{
            for cmd in outbox.drain(..) {
                seq += 1;
                let arrive = $t + setup.entry.at($t);
                if let OrderKind::New { .. } = cmd.kind {
                    order_index.insert(cmd.cl_ord_id.0, orders.len());
                    orders.push(SentOrder {
                        sent: $t,
                        cmd,
                        last: None,
                        mid_x2: $engine.mid_x2(cmd.instrument),
                    });
                }
                to_venue.push(Reverse(Sched {
                    at: arrive,
                    seq,
                    item: cmd,
                }));
            }
        }};
    }
    // What the venue produced goes back after the response latency.
    macro_rules! drain_venue {
        ($t:expr) => {{
            for out in venue.out.drain(..) {
                let (rep, wait, mid) = match out {
                    FillOrReport::Fill(f) => (f.report, f.queue_wait, f.mid_x2),
                    FillOrReport::Report(r) => (r, 0, None),
                };
                seq += 1;
                let arrive = $t + setup.response.at($t);
                to_engine.push(Reverse(Sched {
                    at: arrive,
                    seq,
                    item: (rep, wait, mid),
                }));
            }
        }};
    }
    // The next recorded event reaches the engines at local time `t`.
    macro_rules! deliver {
        ($t:expr) => {
            'ev: {
                let e = &events[li];
                li += 1;
                lt_last = $t;
                let i = e.instrument.index();
                if i >= n {
                    break 'ev;
                }
                if at_start[i] {
                    msg_seq[i] += 1;
                }
                at_start[i] = e.is_last();
                let mut ev = *e;
                ev.seq = msg_seq[i];
                if ev.kind == MarketEventKind::Clear && ev.flags & FLAG_SNAPSHOT == 0 {
                    msg_seq[i] += 1;
                    break 'ev;
                }
                for eng in engines.iter_mut() {
                    let _ = eng.on_market(&ev, $t, &mut Outbox { buf: &mut outbox });
                    dispatch!(eng, $t);
                }
            }
        };
    }
    // The venue has just taken `events[li]` at `t`; it takes the rest of that
    // message, then the engines take the whole message in one call, then the venue
    // settles the message (on the engines' book when it shares it).
    macro_rules! deliver_message {
        ($t:expr) => {{
            let first = &events[li];
            let i = first.instrument.index();
            if i >= n || (first.kind == MarketEventKind::Clear && first.flags & FLAG_SNAPSHOT == 0)
            {
                drain_venue!($t);
                deliver!($t);
            } else {
                let mut end = xi;
                while !events[end - 1].is_last() {
                    let Some(e) = events.get(end) else { break };
                    if e.instrument != first.instrument
                        || e.kind == MarketEventKind::Clear
                        || venue_time(e).max(xt_last) != $t
                        || e.ts_recv.max(lt_last) != $t
                    {
                        break;
                    }
                    venue.on_market(e, $t, ext!());
                    end += 1;
                }
                xi = end;
                if at_start[i] {
                    msg_seq[i] += 1;
                }
                at_start[i] = events[end - 1].is_last();
                let run = &events[li..end];
                li = end;
                lt_last = $t;
                for eng in engines.iter_mut() {
                    let _ =
                        eng.on_market_msg(run, msg_seq[i], $t, &mut Outbox { buf: &mut outbox });
                    dispatch!(eng, $t);
                }
                venue.settle($t, ext!());
                drain_venue!($t);
            }
        }};
    }
    for e in engines.iter_mut() {
        let _ = e.on_timer(now, &mut Outbox { buf: &mut outbox });
        dispatch!(e, now);
    }
    // About every 1% when the length is known, else every 65,536 events.
    let total = src.total().unwrap_or(0);
    let step = if total > 0 {
        (total / 100).max(1)
    } else {
        1 << 16
    };
    let mut progress = setup.progress.take();
    let mut next_progress = if progress.is_some() { step } else { u64::MAX };
    loop {
        if !src.exhausted() && xi + LOOKAHEAD >= events.len() {
            let shift = src.refill(li.min(xi));
            dropped += shift as u64;
            xi -= shift;
            li -= shift;
            events = src.events();
        }
        if dropped + li as u64 >= next_progress {
            next_progress = dropped + li as u64 + step;
            if let Some(p) = progress.as_mut() {
                p(src.done(dropped + li as u64), total);
            }
        }
        // `NEVER` stands for "nothing due" so the earliest is a plain minimum.
        let tx = events.get(xi).map_or(NEVER, |e| venue_time(e).max(xt_last));
        let tv = to_venue.peek().map_or(NEVER, |r| r.0.at);
        let tl = events.get(li).map_or(NEVER, |e| e.ts_recv.max(lt_last));
        let tr = to_engine.peek().map_or(NEVER, |r| r.0.at);
        let t = tx.min(tv).min(tl.min(tr));
        if t == NEVER {
            break;
        }
        if next_timer <= t {
            now = next_timer;
            next_timer += setup.timer_interval;
            for e in engines.iter_mut() {
                let _ = e.on_timer(now, &mut Outbox { buf: &mut outbox });
                dispatch!(e, now);
            }
            continue;
        }
        now = t;
        if now >= next_sample {
            next_sample = now + setup.sample_interval;
            samples.push(sample(now, &engines));
        }
        // With no feed latency the venue and the engines see an event at the same time,
        // and both take it in one step.
        //
        // Taking it together changes nothing an engine or the venue sees, even when an
        // order or a report falls due at the same time: the venue still takes every
        // message of that time before the order arrives, and an engine still hears of
        // each message, in order, before the report; an order the engine sends in
        // reply arrives after any order it sent before.
        if tx == t {
            let e = &events[xi];
            let local_too = setup.feed == FeedLatency::Zero && li == xi && tl == t;
            if !local_too {
                // The engines fall behind the venue: it needs its own book from here.
                venue.unshare(ext!());
            }
            xi += 1;
            xt_last = t;
            venue.on_market(e, t, ext!());
            if !local_too {
                drain_venue!(t);
                continue;
            }
            // Both take the rest of this venue message now, the venue first: its
            // events share the time, and latencies put any order or report the message
            // causes later (a zero latency puts it after the message, where the
            // order of the clocks puts it anyway).
            deliver_message!(t);
            // The messages that follow at the same time go the same way while nothing
            // else falls due.
            while let Some(e) = events.get(xi) {
                if venue_time(e).max(xt_last) != t
                    || e.ts_recv.max(lt_last) != t
                    || next_timer <= t
                    || to_venue.peek().is_some_and(|r| r.0.at <= t)
                    || to_engine.peek().is_some_and(|r| r.0.at <= t)
                {
                    break;
                }
                xi += 1;
                venue.on_market(e, t, ext!());
                deliver_message!(t);
            }
            continue;
        } else if tv == t {
            let Some(Reverse(s)) = to_venue.pop() else {
                continue;
            };
            venue.submit(&s.item, t, ext!());
            drain_venue!(t);
            continue;
        }
        if tl == t {
            deliver!(t);
        } else if tr == t {
            let Some(Reverse(s)) = to_engine.pop() else {
                continue;
            };
            let (rep, wait, fill_mid_x2) = s.item;
            let k = rep.cl_ord_id.strategy().index();
            let mut decision_mid_x2 = None;
            if let Some(o) = order_index
                .get(&rep.cl_ord_id.0)
                .and_then(|&j| orders.get_mut(j))
            {
                o.last = Some(rep.kind);
                decision_mid_x2 = o.mid_x2;
            }
            if let Some(eng) = engines.get_mut(k) {
                let _ = eng.on_report(&rep, t, &mut Outbox { buf: &mut outbox });
                if let OrderReportKind::Fill(_) = rep.kind {
                    fills.push(FillRow {
                        local_ts: t,
                        report: rep,
                        queue_wait: wait,
                        realized_after: eng.position(rep.instrument).realized_net().raw(),
                        decision_mid_x2,
                        fill_mid_x2,
                    });
                }
                dispatch!(eng, t);
            }
        }
    }
    for e in engines.iter_mut() {
        let _ = e.stop(now, &mut Outbox { buf: &mut outbox });
        outbox.clear();
    }
    samples.push(sample(now, &engines));
    Outcome {
        engines,
        orders,
        fills,
        samples,
        events: dropped + li as u64,
        span: now.saturating_sub(start),
        crossed: venue.crossed().to_vec(),
    }
}

fn sample(ts: Nanos, engines: &[Engine]) -> Sample {
    Sample {
        ts,
        pnl: engines.iter().map(|e| e.pnl().raw()).sum(),
        position: engines
            .iter()
            .map(|e| e.position(e.instrument()).qty.raw())
            .sum(),
    }
}
