//! Arbitrage: the same asset on two venues (cross-venue), and three pairs that close a
//! triangle. Both take liquidity on every leg at once with immediate-or-cancel orders,
//! only when the edge is left after every leg's taker fee plus a margin for latency,
//! and both repair a leg that did not fill before trading again.

use crate::legs::{Touch, common_lot, round_lot, taker_bps, trade_toward, working};
use crate::params::{CrossArbParams, TriangularParams};
use crate::{Context, Strategy};
use hft_core::{InstrumentId, MarketEvent, Nanos, Qty, Side, TimeInForce};

/// Cross-venue arbitrage (see [`CrossArbParams`]).
#[derive(Debug)]
pub struct CrossVenueArb {
    a: InstrumentId,
    p: CrossArbParams,
    /// No new round before this time (fills of the last one are on their way).
    quiet_until: Nanos,
    /// Rounds fired.
    rounds: u64,
}

impl CrossVenueArb {
    /// Arbitrage between `a` and `params.other`.
    pub fn new(a: InstrumentId, params: CrossArbParams) -> Self {
        Self {
            a,
            p: params,
            quiet_until: 0,
            rounds: 0,
        }
    }

    /// Rounds fired so far.
    pub fn rounds(&self) -> u64 {
        self.rounds
    }

    /// Net edge in basis points of buying at `ask` and selling at `bid`, after both
    /// legs' taker fees.
    fn edge_bps(ask: i64, bid: i64, fees_bps: f64) -> f64 {
        (bid - ask) as f64 / ask as f64 * 1e4 - fees_bps
    }

    fn step(&mut self, ctx: &mut Context<'_>) {
        let (a, b) = (self.a, self.p.other);
        if working(ctx, a) || working(ctx, b) || ctx.now() < self.quiet_until {
            return;
        }
        // A leg that filled alone leaves a net position: close it first.
        let net = ctx.position(a).qty.raw() + ctx.position(b).qty.raw();
        if net != 0 {
            let target = ctx.position(b).qty.raw() - net;
            trade_toward(ctx, b, target);
            return;
        }
        let (Some(ta), Some(tb)) = (Touch::of(ctx, a), Touch::of(ctx, b)) else {
            return;
        };
        let fees = taker_bps(ctx, a) + taker_bps(ctx, b);
        let lot = common_lot(ctx.spec(a).lot_size, ctx.spec(b).lot_size);
        let pos = ctx.position(a).qty.raw();
        let max = self.p.max_position.raw();
        // Buy a, sell b; or buy b, sell a.
        let rounds = [
            (ta.ask, ta.ask_qty, tb.bid, tb.bid_qty, Side::Buy, max - pos),
            (
                tb.ask,
                tb.ask_qty,
                ta.bid,
                ta.bid_qty,
                Side::Sell,
                max + pos,
            ),
        ];
        for (ask, ask_qty, bid, bid_qty, a_side, room) in rounds {
            if Self::edge_bps(ask.raw(), bid.raw(), fees) < self.p.min_edge_bps {
                continue;
            }
            let qty = round_lot(
                self.p
                    .order_qty
                    .raw()
                    .min(ask_qty.raw())
                    .min(bid_qty.raw())
                    .min(room),
                lot,
            );
            if qty <= 0 {
                continue;
            }
            let (pa, pb) = match a_side {
                Side::Buy => (ask, bid),
                Side::Sell => (bid, ask),
            };
            let _ = ctx.place(a, a_side, pa, Qty(qty), TimeInForce::Ioc, false);
            let _ = ctx.place(b, a_side.opposite(), pb, Qty(qty), TimeInForce::Ioc, false);
            self.rounds += 1;
            self.quiet_until = ctx.now() + self.p.cooldown_ms * 1_000_000;
            return;
        }
    }
}

impl Strategy for CrossVenueArb {
    fn on_market(&mut self, ctx: &mut Context<'_>, ev: &MarketEvent) {
        if ev.instrument == self.a || ev.instrument == self.p.other {
            self.step(ctx);
        }
    }

    fn on_timer(&mut self, ctx: &mut Context<'_>) {
        self.step(ctx);
    }
}

/// Triangular arbitrage (see [`TriangularParams`]).
#[derive(Debug)]
pub struct TriangularArb {
    /// `X/Q`, `Y/Q`, `Y/X`.
    legs: [InstrumentId; 3],
    p: TriangularParams,
    quiet_until: Nanos,
    rounds: u64,
    /// Position of each leg before the last round: what a repair brings the legs
    /// back to.
    home: Option<[i64; 3]>,
    /// Positions the last round leads to if every leg fills.
    expected: Option<[i64; 3]>,
}

impl TriangularArb {
    /// The triangle of `xq`, `params.second` (`Y/Q`) and `params.cross` (`Y/X`).
    pub fn new(xq: InstrumentId, params: TriangularParams) -> Self {
        Self {
            legs: [xq, params.second, params.cross],
            p: params,
            quiet_until: 0,
            rounds: 0,
            home: None,
            expected: None,
        }
    }

    /// Rounds fired so far.
    pub fn rounds(&self) -> u64 {
        self.rounds
    }

    /// Gross returns of the two ways round, as multipliers of the starting `Q`:
    /// (buy Y with Q, sell Y for X, sell X for Q) and (buy X, buy Y with X, sell Y).
    pub fn cycle_returns(xq: (f64, f64), yq: (f64, f64), yx: (f64, f64)) -> (f64, f64) {
        // Each pair is (bid, ask) in its own quote currency.
        let via_y = yx.0 * xq.0 / yq.1;
        let via_x = yq.0 / (xq.1 * yx.1);
        (via_y, via_x)
    }

    fn step(&mut self, ctx: &mut Context<'_>) {
        if self.legs.iter().any(|&l| working(ctx, l)) || ctx.now() < self.quiet_until {
            return;
        }
        let pos = self.legs.map(|l| ctx.position(l).qty.raw());
        let home = *self.home.get_or_insert(pos);
        match self.expected {
            // The whole round filled: that is the new starting point.
            Some(done) if pos == done => {
                self.home = Some(pos);
                self.expected = None;
            }
            // Back where the round started after a repair.
            Some(_) if pos == home => self.expected = None,
            // Legs that did not fill: trade each back to where the round started.
            Some(_) => {
                for (k, &l) in self.legs.iter().enumerate() {
                    if pos[k] != home[k] {
                        trade_toward(ctx, l, home[k]);
                    }
                }
                // A leg that failed once may fail again: pace the repairs.
                self.quiet_until = ctx.now() + self.p.cooldown_ms * 1_000_000;
                return;
            }
            // Moved by something else (a manual trade): start from there.
            None => self.home = Some(pos),
        }
        let touches = self.legs.map(|l| Touch::of(ctx, l));
        let [Some(xq), Some(yq), Some(yx)] = touches else {
            return;
        };
        let f = |id: InstrumentId, t: &Touch| {
            let s = 10f64.powi(i32::from(ctx.spec(id).price_scale));
            (t.bid.raw() as f64 / s, t.ask.raw() as f64 / s)
        };
        let [lx, ly, lc] = self.legs;
        let (via_y, via_x) = Self::cycle_returns(f(lx, &xq), f(ly, &yq), f(lc, &yx));
        let fees: f64 = self.legs.iter().map(|&l| taker_bps(ctx, l)).sum();
        let net = |r: f64| (r - 1.0) * 1e4 - fees;
        let y_lot = common_lot(ctx.spec(ly).lot_size, ctx.spec(lc).lot_size);
        let y_qty = round_lot(self.p.order_qty.raw(), y_lot);
        // Quantity of X that matches y_qty of Y at the cross price.
        let cross_px =
            |p: hft_core::Price| p.raw() as f64 / 10f64.powi(i32::from(ctx.spec(lc).price_scale));
        let (sides, prices, x_px) = if net(via_y) >= self.p.min_edge_bps && net(via_y) >= net(via_x)
        {
            // Buy Y/Q, sell Y/X, sell X/Q.
            (
                [Side::Sell, Side::Buy, Side::Sell],
                [xq.bid, yq.ask, yx.bid],
                cross_px(yx.bid),
            )
        } else if net(via_x) >= self.p.min_edge_bps {
            // Buy X/Q, buy Y/X, sell Y/Q.
            (
                [Side::Buy, Side::Sell, Side::Buy],
                [xq.ask, yq.bid, yx.ask],
                cross_px(yx.ask),
            )
        } else {
            return;
        };
        let x_qty = round_lot((y_qty as f64 * x_px).round() as i64, ctx.spec(lx).lot_size);
        let qtys = [x_qty, y_qty, y_qty];
        let avail = [
            if sides[0] == Side::Buy {
                xq.ask_qty
            } else {
                xq.bid_qty
            },
            if sides[1] == Side::Buy {
                yq.ask_qty
            } else {
                yq.bid_qty
            },
            if sides[2] == Side::Buy {
                yx.ask_qty
            } else {
                yx.bid_qty
            },
        ];
        if qtys.iter().zip(avail).any(|(&q, a)| q <= 0 || q > a.raw()) {
            // The touch cannot fill a whole round: a partial triangle is a position.
            return;
        }
        let max = self.p.max_position.raw();
        let refused = (0..3).any(|k| {
            let signed = if sides[k] == Side::Buy {
                qtys[k]
            } else {
                -qtys[k]
            };
            (pos[k] + signed).abs() > max
                || ctx
                    .spec(self.legs[k])
                    .check_order(prices[k], Qty(qtys[k]))
                    .is_err()
        });
        if refused {
            // A leg that risk or the venue would refuse would leave the others alone.
            return;
        }
        let signed = |k: usize| match sides[k] {
            Side::Buy => qtys[k],
            Side::Sell => -qtys[k],
        };
        self.expected = Some([pos[0] + signed(0), pos[1] + signed(1), pos[2] + signed(2)]);
        for k in 0..3 {
            let _ = ctx.place(
                self.legs[k],
                sides[k],
                prices[k],
                Qty(qtys[k]),
                TimeInForce::Ioc,
                false,
            );
        }
        self.rounds += 1;
        self.quiet_until = ctx.now() + self.p.cooldown_ms * 1_000_000;
    }
}

impl Strategy for TriangularArb {
    fn on_market(&mut self, ctx: &mut Context<'_>, ev: &MarketEvent) {
        if self.legs.contains(&ev.instrument) {
            self.step(ctx);
        }
    }

    fn on_timer(&mut self, ctx: &mut Context<'_>) {
        self.step(ctx);
    }
}
