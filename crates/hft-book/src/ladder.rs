//! One side of the L2 book.
//!
//! Prices are handled as sort keys that ascend towards the best level: the price itself
//! for bids (best = highest) and its negation for asks (best = lowest). Prices are
//! validated positive, so the negation cannot overflow, and one ascending structure
//! serves both sides.
//!
//! A side keeps its levels in two places:
//! - a *window*: a tick-indexed array over a range of prices around the touch, with a
//!   bitmap of occupied slots. Setting a level is an index computation and a store,
//!   wherever in the window it lands, and the next best level after a delete is found
//!   by scanning the bitmap, 64 slots per word. This is where nearly all traffic goes:
//!   top-of-book updates and the deep-book churn of a venue's depth diffs alike.
//! - a *far* store: a sorted gap buffer for every level the window cannot index, i.e.
//!   beyond its range or off the tick grid. It is correct for any price and cheap for
//!   levels that change rarely, which levels far from the touch do.
//!
//! The window follows the market: when the best level leaves it, or sits near its
//! worse end, the window moves so that the best sits three quarters of the way
//! towards its better end, and levels cross between the two stores. Every query
//! merges both stores, so where a level lives never changes an answer.

use hft_core::{Price, Qty};

/// Sorted levels in a gap buffer: two parallel arrays (keys, quantities) with a
/// movable hole in them. An insert or delete happens at the hole, and moving the hole
/// costs the distance from the previous update.
///
/// The logical sequence is `keys[..gap_start]` followed by `keys[gap_end..]`, strictly
/// ascending; the slots in between are the gap.
#[derive(Clone, Debug)]
struct Sparse {
    /// Sort keys; `keys.len()` is the capacity, the gap holds stale values.
    keys: Vec<i64>,
    /// Quantity per slot, index-aligned with `keys`; > 0 outside the gap.
    qtys: Vec<i64>,
    gap_start: usize,
    gap_end: usize,
}

impl Sparse {
    fn with_capacity(levels: usize) -> Self {
        let cap = levels.max(1);
        Self {
            keys: vec![0; cap],
            qtys: vec![0; cap],
            gap_start: 0,
            gap_end: cap,
        }
    }

    #[inline]
    fn len(&self) -> usize {
        self.keys.len() - (self.gap_end - self.gap_start)
    }

    /// Physical slot of the best (logically last) level.
    #[inline]
    fn best_slot(&self) -> Option<usize> {
        if self.gap_end < self.keys.len() {
            Some(self.keys.len() - 1)
        } else {
            self.gap_start.checked_sub(1)
        }
    }

    #[inline]
    fn best(&self) -> Option<(i64, i64)> {
        self.best_slot().map(|s| (self.keys[s], self.qtys[s]))
    }

    /// Logical position of `key`: `Ok(i)` if present, `Err(i)` where it would go.
    fn search(&self, key: i64) -> Result<usize, usize> {
        let right = &self.keys[self.gap_end..];
        if right.first().is_some_and(|&first| key >= first) {
            match right.binary_search(&key) {
                Ok(i) => Ok(self.gap_start + i),
                Err(i) => Err(self.gap_start + i),
            }
        } else {
            self.keys[..self.gap_start].binary_search(&key)
        }
    }

    /// Physical slot of logical position `i` (`i < len`).
    #[inline]
    fn slot(&self, i: usize) -> usize {
        if i < self.gap_start {
            i
        } else {
            i + (self.gap_end - self.gap_start)
        }
    }

    /// Moves the gap so that it starts at logical position `i`.
    fn move_gap(&mut self, i: usize) {
        if i < self.gap_start {
            let n = self.gap_start - i;
            let to = self.gap_end - n;
            self.keys.copy_within(i..self.gap_start, to);
            self.qtys.copy_within(i..self.gap_start, to);
            self.gap_start = i;
            self.gap_end = to;
        } else if i > self.gap_start {
            let n = i - self.gap_start;
            let from = self.gap_end;
            self.keys.copy_within(from..from + n, self.gap_start);
            self.qtys.copy_within(from..from + n, self.gap_start);
            self.gap_start = i;
            self.gap_end = from + n;
        }
    }

    /// Doubles the buffer (only beyond the pre-sized capacity), keeping the gap.
    #[cold]
    fn grow(&mut self) {
        let old = self.keys.len();
        let extra = old.max(1);
        self.keys.resize(old + extra, 0);
        self.qtys.resize(old + extra, 0);
        self.keys
            .copy_within(self.gap_end..old, self.gap_end + extra);
        self.qtys
            .copy_within(self.gap_end..old, self.gap_end + extra);
        self.gap_end += extra;
    }

    /// Sets (`qty > 0`) or deletes (`qty == 0`) the level at `key`.
    fn set(&mut self, key: i64, qty: i64) {
        match (self.search(key), qty == 0) {
            (Ok(i), false) => {
                let s = self.slot(i);
                self.qtys[s] = qty;
            }
            (Ok(i), true) => {
                self.move_gap(i);
                self.gap_end += 1;
            }
            (Err(i), false) => {
                if self.gap_start == self.gap_end {
                    self.grow();
                }
                self.move_gap(i);
                self.keys[self.gap_start] = key;
                self.qtys[self.gap_start] = qty;
                self.gap_start += 1;
            }
            // Deleting a level that is not there: the venue and we already agree.
            (Err(_), true) => {}
        }
    }

    fn qty_at(&self, key: i64) -> i64 {
        match self.search(key) {
            Ok(i) => self.qtys[self.slot(i)],
            Err(_) => 0,
        }
    }

    fn clear(&mut self) {
        self.gap_start = 0;
        self.gap_end = self.keys.len();
    }

    /// Removes the levels with keys in `lo..=hi` and passes each to `f`.
    fn drain_range(&mut self, lo: i64, hi: i64, mut f: impl FnMut(i64, i64)) {
        let a = self.search(lo).unwrap_or_else(|i| i);
        let b = match self.search(hi) {
            Ok(i) => i + 1,
            Err(i) => i,
        };
        if a >= b {
            return;
        }
        self.move_gap(a);
        for s in self.gap_end..self.gap_end + (b - a) {
            f(self.keys[s], self.qtys[s]);
        }
        self.gap_end += b - a;
    }

    /// (key, qty) from the best level outward.
    fn best_first(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        (self.gap_end..self.keys.len())
            .rev()
            .chain((0..self.gap_start).rev())
            .map(|s| (self.keys[s], self.qtys[s]))
    }
}

/// Sentinel for "no level" in [`Window::best`].
const NONE: usize = usize::MAX;

/// A tick-indexed array of levels over keys `origin .. origin + len * tick`.
#[derive(Clone, Debug)]
struct Window {
    /// Quantity per tick slot, 0 for an empty slot.
    qtys: Vec<i64>,
    /// One bit per slot, set when the slot holds a level.
    bits: Vec<u64>,
    /// Key of slot 0; a multiple of `tick`.
    origin: i64,
    tick: i64,
    /// `slots * tick`: keys from `origin` up to this offset fall in the window.
    span: u64,
    /// `2^64 / tick` (for `tick >= 2`): the high half of `off * magic` is `off / tick`
    /// or one less, so a multiply and one correction replace a divide that would cost
    /// tens of cycles on the hot path.
    magic: u64,
    /// Occupied slots.
    count: usize,
    /// Highest occupied slot (the best level), or [`NONE`].
    best: usize,
}

impl Window {
    fn new(slots: usize, tick: i64) -> Self {
        let slots = slots.next_power_of_two().max(64);
        let span = (slots as u64).saturating_mul(tick as u64);
        let magic = if tick > 1 {
            ((1u128 << 64) / tick as u128) as u64
        } else {
            0
        };
        Self {
            qtys: vec![0; slots],
            bits: vec![0; slots / 64],
            origin: 0,
            tick,
            span,
            magic,
            count: 0,
            best: NONE,
        }
    }

    #[inline]
    fn slots(&self) -> usize {
        self.qtys.len()
    }

    /// The slot of `key`, if the window covers it and it is on the tick grid.
    #[inline]
    fn slot(&self, key: i64) -> Option<usize> {
        // A key below the origin wraps to a huge offset and fails the span test.
        let off = key.checked_sub(self.origin)? as u64;
        if off >= self.span {
            return None;
        }
        let tick = self.tick as u64;
        let i = if tick == 1 {
            off
        } else {
            let q = ((u128::from(off) * u128::from(self.magic)) >> 64) as u64;
            let r = off - q * tick;
            // Which way the estimate falls depends on the price: no branch for it.
            let short = u64::from(r >= tick);
            let (q, r) = (q + short, r - short * tick);
            if r != 0 {
                // Off the tick grid.
                return None;
            }
            q
        };
        // The slot test matters only when the span saturated, for absurd ticks.
        (i < self.slots() as u64).then_some(i as usize)
    }

    #[inline]
    fn key(&self, slot: usize) -> i64 {
        // Occupied slots hold real keys, so the true sum fits; the product alone may
        // not for absurd ticks, and wrapping arithmetic gets the sum right regardless.
        self.origin
            .wrapping_add((slot as i64).wrapping_mul(self.tick))
    }

    /// Sets or deletes the level in `slot`.
    ///
    /// Written without data-dependent branches for the common cases (a depth diff
    /// mixes inserts, updates and deletes unpredictably); only a new best or the loss
    /// of the best branches, and those are rare.
    #[inline(always)]
    fn set(&mut self, slot: usize, qty: i64) {
        let was = self.qtys[slot];
        self.qtys[slot] = qty;
        let (w, mask) = (slot / 64, 1u64 << (slot % 64));
        let present = qty != 0;
        self.bits[w] = if present {
            self.bits[w] | mask
        } else {
            self.bits[w] & !mask
        };
        self.count = self.count + usize::from(present) - usize::from(was != 0);
        // `NONE + 1` wraps to 0, so any slot beats an empty window.
        let new_best = present && slot.wrapping_add(1) > self.best.wrapping_add(1);
        let lost_best = !present && slot == self.best;
        if new_best | lost_best {
            self.best = if present {
                slot
            } else {
                self.at_or_below(slot).unwrap_or(NONE)
            };
        }
    }

    /// The highest occupied slot at or below `slot`.
    #[inline]
    fn at_or_below(&self, slot: usize) -> Option<usize> {
        let mut w = slot / 64;
        let mut word = self.bits[w] & (u64::MAX >> (63 - slot % 64));
        loop {
            if word != 0 {
                return Some(w * 64 + 63 - word.leading_zeros() as usize);
            }
            w = w.checked_sub(1)?;
            word = self.bits[w];
        }
    }

    #[inline]
    fn best(&self) -> Option<(i64, i64)> {
        (self.best != NONE).then(|| (self.key(self.best), self.qtys[self.best]))
    }

    /// Empties the window, passing each level (best first) to `f`.
    fn drain(&mut self, mut f: impl FnMut(i64, i64)) {
        for w in (0..self.bits.len()).rev() {
            let mut word = self.bits[w];
            while word != 0 {
                let slot = w * 64 + 63 - word.leading_zeros() as usize;
                word &= !(1 << (slot % 64));
                f(self.key(slot), self.qtys[slot]);
                self.qtys[slot] = 0;
            }
            self.bits[w] = 0;
        }
        self.count = 0;
        self.best = NONE;
    }

    /// (key, qty) from the best level outward.
    fn best_first(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        let mut next = (self.best != NONE).then_some(self.best);
        std::iter::from_fn(move || {
            let s = next?;
            next = s.checked_sub(1).and_then(|b| self.at_or_below(b));
            Some((self.key(s), self.qtys[s]))
        })
    }
}

/// One side of the book: the window plus the far store.
#[derive(Clone, Debug)]
pub(crate) struct Ladder {
    win: Window,
    far: Sparse,
    /// +1 for bids, -1 for asks: `key = price * sign` and `price = key * sign`.
    sign: i64,
    /// Levels in transit while the window moves; kept to avoid allocating each time.
    moving: Vec<(i64, i64)>,
}

impl Ladder {
    /// A side whose window spans `window` ticks of `tick` raw price units, and whose
    /// far store is pre-sized for `far_levels` levels.
    pub(crate) fn new(sign: i64, tick: i64, window: usize, far_levels: usize) -> Self {
        Self {
            win: Window::new(window, tick.max(1)),
            far: Sparse::with_capacity(far_levels),
            sign,
            moving: Vec::with_capacity(far_levels),
        }
    }

    #[inline]
    fn price(&self, key: i64) -> Price {
        Price(key * self.sign)
    }

    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.win.count + self.far.len()
    }

    /// Sets or deletes a level; `price` is positive and `qty` non-negative here.
    #[inline(always)]
    pub(crate) fn set(&mut self, price: Price, qty: Qty) {
        let key = price.raw() * self.sign;
        if let Some(slot) = self.win.slot(key) {
            self.win.set(slot, qty.raw());
            if self.win.count == 0 && self.far.len() > 0 {
                self.follow();
            }
        } else {
            self.far.set(key, qty.raw());
            if !qty.is_zero() {
                self.follow();
            }
        }
    }

    /// Moves the window when the best level is outside it or near its worse end.
    #[inline(never)]
    fn follow(&mut self) {
        let Some(best) = self.best_key() else {
            return;
        };
        if best % self.win.tick != 0 {
            // Off the grid: the window cannot hold it; the far store answers for it.
            return;
        }
        let in_window = self.win.slot(best).is_some();
        if in_window && self.win.best >= self.win.slots() / 4 {
            return;
        }
        let span = (self.win.slots() as i64 * 3 / 4).saturating_mul(self.win.tick);
        let origin = best.saturating_sub(span);
        self.recenter(origin);
    }

    /// Re-bases the window at `origin`, moving levels between window and far store.
    fn recenter(&mut self, origin: i64) {
        let mut moving = std::mem::take(&mut self.moving);
        moving.clear();
        self.win.drain(|k, q| moving.push((k, q)));
        self.win.origin = origin;
        // The last key the window covers, inclusive (exclusive would miss i64::MAX).
        let last = i128::from(origin) + (self.win.slots() as i128 - 1) * i128::from(self.win.tick);
        let hi = last.min(i128::from(i64::MAX)) as i64;
        self.far.drain_range(origin, hi, |k, q| moving.push((k, q)));
        for &(k, q) in &moving {
            match self.win.slot(k) {
                Some(s) => self.win.set(s, q),
                None => self.far.set(k, q),
            }
        }
        self.moving = moving;
    }

    #[inline]
    fn best_key(&self) -> Option<i64> {
        match (self.win.best(), self.far.best()) {
            (Some((w, _)), Some((f, _))) => Some(w.max(f)),
            (w, f) => w.or(f).map(|(k, _)| k),
        }
    }

    #[inline]
    pub(crate) fn best(&self) -> Option<(Price, Qty)> {
        let (k, q) = match (self.win.best(), self.far.best()) {
            (Some(w), Some(f)) => {
                if w.0 > f.0 {
                    w
                } else {
                    f
                }
            }
            (w, f) => w.or(f)?,
        };
        Some((self.price(k), Qty(q)))
    }

    pub(crate) fn qty_at(&self, price: Price) -> Qty {
        if price.raw() <= 0 {
            // Never stored, and negating i64::MIN would overflow for asks.
            return Qty::ZERO;
        }
        let key = price.raw() * self.sign;
        Qty(match self.win.slot(key) {
            Some(s) => self.win.qtys[s],
            None => self.far.qty_at(key),
        })
    }

    pub(crate) fn clear(&mut self) {
        self.win.drain(|_, _| {});
        self.far.clear();
    }

    /// Levels from the best outward: the two stores merged by key.
    pub(crate) fn best_first(&self) -> impl Iterator<Item = (Price, Qty)> + '_ {
        let mut w = self.win.best_first().peekable();
        let mut f = self.far.best_first().peekable();
        std::iter::from_fn(move || {
            let take_w = match (w.peek(), f.peek()) {
                (Some(a), Some(b)) => a.0 > b.0,
                (a, _) => a.is_some(),
            };
            let (k, q) = if take_w { w.next() } else { f.next() }?;
            Some((self.price(k), Qty(q)))
        })
    }

    /// Allocated capacities (window slots, far slots), to prove updates do not
    /// reallocate.
    #[cfg(test)]
    pub(crate) fn capacities(&self) -> (usize, usize) {
        (self.win.qtys.capacity(), self.far.keys.capacity())
    }
}
