//! A whole trading session on a simulated clock in one thread: the simulated venue, every
//! engine, and the latencies between them as scheduled deliveries. The same seed gives
//! the same fills, which makes strategy behaviour reproducible and testable.

use crate::engine::OrderSink;
use crate::sim_venue::{SimVenue, VenueOutput};
use crate::slot::StrategySlot;
use hft_core::{MarketEvent, Nanos, OrderCommand, OrderReport};
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::time::Instant;

#[derive(Clone, Copy, Debug)]
enum Msg {
    Market(MarketEvent),
    Report(OrderReport),
    Order(OrderCommand),
    Restart(usize),
}

#[derive(Clone, Copy, Debug)]
struct Scheduled {
    at: Nanos,
    seq: u64,
    msg: Msg,
}

impl PartialEq for Scheduled {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Scheduled {
    // Reversed: BinaryHeap is a max-heap, we want the earliest (then first-scheduled).
    fn cmp(&self, o: &Self) -> Ordering {
        (o.at, o.seq).cmp(&(self.at, self.seq))
    }
}

#[derive(Default)]
struct Queue {
    heap: BinaryHeap<Scheduled>,
    seq: u64,
}

impl Queue {
    fn push(&mut self, at: Nanos, msg: Msg) {
        self.seq += 1;
        self.heap.push(Scheduled {
            at,
            seq: self.seq,
            msg,
        });
    }
}

/// Venue output scheduled for delivery to the engines after the market-data latency.
struct ToEngines<'a> {
    q: &'a mut Queue,
    at: Nanos,
}

impl VenueOutput for ToEngines<'_> {
    fn market(&mut self, e: &MarketEvent) {
        self.q.push(self.at, Msg::Market(*e));
    }
    fn report(&mut self, r: &OrderReport) {
        self.q.push(self.at, Msg::Report(*r));
    }
}

/// Engine output scheduled for arrival at the venue after the order latency.
struct ToVenue<'a> {
    q: &'a mut Queue,
    at: Nanos,
    sent: u32,
}

impl<'a> ToVenue<'a> {
    fn new(q: &'a mut Queue, at: Nanos) -> Self {
        Self { q, at, sent: 0 }
    }
}

impl OrderSink for ToVenue<'_> {
    fn send(&mut self, cmd: &OrderCommand) -> bool {
        self.q.push(self.at, Msg::Order(*cmd));
        self.sent += 1;
        true
    }
}

/// What a session needs of its venue: the simulated exchange with its own order flow,
/// or the paper venue over recorded or live market data.
pub trait SessionVenue {
    /// Market data every engine starts from (a full snapshot, or nothing when the data
    /// source brings its own).
    fn start(&mut self, now: Nanos, out: &mut impl VenueOutput);
    /// Time of the next market event the venue produces on its own (`Nanos::MAX`: none).
    fn next_flow_ts(&self) -> Nanos;
    /// Produces that event.
    fn step_flow(&mut self, out: &mut impl VenueOutput);
    /// An order command arrives.
    fn submit(&mut self, cmd: &OrderCommand, now: Nanos, out: &mut impl VenueOutput);
    /// True when the venue's own flow has ended for good (a finished recording): the
    /// session then ends once everything in flight is delivered.
    fn exhausted(&self) -> bool {
        false
    }
}

impl SessionVenue for SimVenue {
    fn start(&mut self, now: Nanos, out: &mut impl VenueOutput) {
        self.snapshot(now, out);
    }
    fn next_flow_ts(&self) -> Nanos {
        SimVenue::next_flow_ts(self)
    }
    fn step_flow(&mut self, out: &mut impl VenueOutput) {
        let _ = SimVenue::step_flow(self, out);
    }
    fn submit(&mut self, cmd: &OrderCommand, now: Nanos, out: &mut impl VenueOutput) {
        SimVenue::submit(self, cmd, now, out);
    }
}

/// Latencies and timers of a simulated session.
#[derive(Clone, Copy, Debug)]
pub struct SimTiming {
    /// Venue → engine one-way latency.
    pub md_latency: Nanos,
    /// Engine → venue one-way latency.
    pub order_latency: Nanos,
    /// Strategy timer period.
    pub timer_interval: Nanos,
}

/// A deterministic single-threaded session.
pub struct SimSession<V: SessionVenue = SimVenue> {
    venue: V,
    slots: Vec<StrategySlot>,
    queue: Queue,
    timing: SimTiming,
    now: Nanos,
    next_timer: Nanos,
    started: bool,
}

impl<V: SessionVenue> SimSession<V> {
    /// A session over `venue` with the given strategy slots (indexed by strategy id).
    pub fn new(venue: V, slots: Vec<StrategySlot>, timing: SimTiming, start: Nanos) -> Self {
        Self {
            venue,
            slots,
            queue: Queue::default(),
            timing,
            now: start,
            next_timer: start,
            started: false,
        }
    }

    /// Simulated time now.
    pub fn now(&self) -> Nanos {
        self.now
    }

    /// The strategy slots.
    pub fn slots(&self) -> &[StrategySlot] {
        &self.slots
    }

    /// The venue.
    pub fn venue(&self) -> &V {
        &self.venue
    }

    /// `run_until(until)` in steps of `every` simulated nanoseconds, calling `sample`
    /// after each step (also after the last, short one, or when the data runs out).
    pub fn run_sampled(&mut self, until: Nanos, every: Nanos, mut sample: impl FnMut(&Self)) {
        let mut next = self.now;
        loop {
            next = next.saturating_add(every.max(1)).min(until);
            self.run_until(next, |_| false);
            sample(self);
            if self.now < next || next >= until {
                break;
            }
        }
    }

    /// Runs until simulated time `until` (or forever with `Nanos::MAX` until `stop`
    /// returns true, checked every 4096 steps).
    pub fn run_until(&mut self, until: Nanos, mut stop: impl FnMut(&SimSession<V>) -> bool) {
        if !self.started {
            self.started = true;
            let at = self.now + self.timing.md_latency;
            let mut out = ToEngines {
                q: &mut self.queue,
                at,
            };
            self.venue.start(self.now, &mut out);
            for i in 0..self.slots.len() {
                let mut sink = ToVenue::new(&mut self.queue, self.now + self.timing.order_latency);
                if let Err(p) = self.slots[i].start(self.now, &mut sink) {
                    self.crashed(i, &p);
                }
            }
        }
        let mut steps = 0u64;
        loop {
            steps += 1;
            if steps % 4096 == 0 && stop(self) {
                break;
            }
            let t_queue = self.queue.heap.peek().map_or(Nanos::MAX, |s| s.at);
            let t_flow = self.venue.next_flow_ts();
            if t_queue == Nanos::MAX && t_flow == Nanos::MAX && self.venue.exhausted() {
                break;
            }
            let t = t_queue.min(t_flow).min(self.next_timer);
            if t > until {
                self.now = self.now.max(until.min(Nanos::MAX - 1));
                break;
            }
            // External data may step back a little in time; the session clock never does.
            self.now = self.now.max(t);
            if t_queue == t {
                let Some(s) = self.queue.heap.pop() else {
                    continue;
                };
                self.deliver(s.msg);
            } else if self.next_timer == t {
                self.next_timer = t + self.timing.timer_interval;
                for i in 0..self.slots.len() {
                    let mut sink =
                        ToVenue::new(&mut self.queue, self.now + self.timing.order_latency);
                    if let Err(p) = self.slots[i].engine.on_timer(self.now, &mut sink) {
                        self.crashed(i, &p);
                    }
                }
            } else {
                let at = self.now + self.timing.md_latency;
                let mut out = ToEngines {
                    q: &mut self.queue,
                    at,
                };
                self.venue.step_flow(&mut out);
            }
        }
    }

    fn deliver(&mut self, msg: Msg) {
        match msg {
            Msg::Market(ev) => {
                for i in 0..self.slots.len() {
                    let t0 = Instant::now();
                    let mut sink =
                        ToVenue::new(&mut self.queue, self.now + self.timing.order_latency);
                    let r = self.slots[i].engine.on_market(&ev, self.now, &mut sink);
                    if sink.sent > 0 {
                        // Wall-clock processing time: the simulated clock has no cost model.
                        let _ = self.slots[i]
                            .latency
                            .record(t0.elapsed().as_nanos().max(1) as u64);
                    }
                    if let Err(p) = r {
                        self.crashed(i, &p);
                    }
                }
            }
            Msg::Report(rep) => {
                let i = rep.cl_ord_id.strategy().index();
                if i < self.slots.len() {
                    let mut sink =
                        ToVenue::new(&mut self.queue, self.now + self.timing.order_latency);
                    let r = self.slots[i].engine.on_report(&rep, self.now, &mut sink);
                    if let Err(p) = r {
                        self.crashed(i, &p);
                    }
                }
            }
            Msg::Order(cmd) => {
                let at = self.now + self.timing.md_latency;
                let mut out = ToEngines {
                    q: &mut self.queue,
                    at,
                };
                self.venue.submit(&cmd, self.now, &mut out);
            }
            Msg::Restart(i) => {
                let mut sink = ToVenue::new(&mut self.queue, self.now + self.timing.order_latency);
                if let Err(p) = self.slots[i].restart(self.now, &mut sink) {
                    self.crashed(i, &p);
                }
            }
        }
    }

    fn crashed(&mut self, i: usize, p: &crate::engine::StrategyPanic) {
        if let Some(delay) = self.slots[i].on_crash(p, self.now) {
            self.queue.push(self.now + delay, Msg::Restart(i));
        }
    }

    /// Stops every strategy, cancels their orders and lets the venue answer.
    pub fn shutdown(&mut self) {
        for i in 0..self.slots.len() {
            let mut sink = ToVenue::new(&mut self.queue, self.now + self.timing.order_latency);
            let _ = self.slots[i].engine.stop(self.now, &mut sink);
        }
        // Drain in-flight messages without new simulated flow.
        while let Some(s) = self.queue.heap.pop() {
            self.now = self.now.max(s.at);
            match s.msg {
                Msg::Restart(_) => {}
                other => self.deliver(other),
            }
        }
    }

    /// Takes the slots out (for the report).
    pub fn into_slots(self) -> Vec<StrategySlot> {
        self.slots
    }
}
