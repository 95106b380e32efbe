//! Turns decoded Binance messages into normalised `MarketEvent`s: the symbol resolved to
//! an instrument, prices and quantities rescaled exactly to the instrument's scales,
//! exchange and local timestamps, the venue's update id as sequence number.

use super::decode::{BinanceMsg, WIRE_SCALE, WireLevel};
use crate::registry::InstrumentRegistry;
use hft_core::{
    FLAG_LAST, FLAG_SNAPSHOT, InstrumentId, MarketEvent, MarketEventKind, Nanos, Price, Qty, Side,
};
use thiserror::Error;

/// Why a decoded message could not be normalised.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum NormalizeError {
    /// The symbol is not in the instrument registry.
    #[error("unknown symbol '{0}': add it to the instrument registry")]
    UnknownSymbol(String),
    /// A value finer than the instrument's scale (the registry's scale is wrong).
    #[error("{what} {raw}e-8 is finer than the instrument's {scale} decimals")]
    TooFine {
        /// Price or quantity.
        what: &'static str,
        /// The value in 1e-8 units.
        raw: i64,
        /// The instrument's scale.
        scale: u8,
    },
}

/// Per-instrument divisors from wire units (1e-8) to instrument units.
#[derive(Clone, Copy, Debug)]
struct Scales {
    price_div: i64,
    qty_div: i64,
    price_scale: u8,
    qty_scale: u8,
}

impl Scales {
    fn price(&self, raw: i64) -> Result<Price, NormalizeError> {
        if self.price_div == 1 {
            return Ok(Price(raw));
        }
        if (raw / self.price_div) * self.price_div != raw {
            return Err(NormalizeError::TooFine {
                what: "price",
                raw,
                scale: self.price_scale,
            });
        }
        Ok(Price(raw / self.price_div))
    }

    fn qty(&self, raw: i64) -> Result<Qty, NormalizeError> {
        if self.qty_div == 1 {
            return Ok(Qty(raw));
        }
        if (raw / self.qty_div) * self.qty_div != raw {
            return Err(NormalizeError::TooFine {
                what: "quantity",
                raw,
                scale: self.qty_scale,
            });
        }
        Ok(Qty(raw / self.qty_div))
    }
}

/// Normaliser for one Binance connection.
#[derive(Debug)]
pub struct BinanceNormalizer {
    registry: InstrumentRegistry,
}

impl BinanceNormalizer {
    /// A normaliser resolving symbols through `registry`.
    pub fn new(registry: InstrumentRegistry) -> Self {
        Self { registry }
    }

    /// The registry (grows when it auto-registers symbols).
    pub fn registry(&self) -> &InstrumentRegistry {
        &self.registry
    }

    /// The instrument a venue symbol resolves to.
    pub fn instrument_of(&mut self, symbol: &str) -> Option<InstrumentId> {
        self.registry.resolve(symbol).map(|s| s.id)
    }

    fn resolve(&mut self, symbol: &str) -> Result<(InstrumentId, Scales), NormalizeError> {
        let spec = self
            .registry
            .resolve(symbol)
            .ok_or_else(|| NormalizeError::UnknownSymbol(symbol.chars().take(32).collect()))?;
        let div = |scale: u8| 10i64.pow(u32::from(WIRE_SCALE.saturating_sub(scale)));
        Ok((
            spec.id,
            Scales {
                price_div: div(spec.price_scale),
                qty_div: div(spec.qty_scale),
                price_scale: spec.price_scale,
                qty_scale: spec.qty_scale,
            },
        ))
    }

    /// Emits the events of one message (depth levels from `bids`/`asks`, which are
    /// rescaled in place). A REST
    /// snapshot names no symbol, so its instrument is given by the caller in `snapshot_of`.
    /// Returns the number of events emitted; on error nothing was emitted.
    #[allow(clippy::too_many_arguments)]
    pub fn normalize(
        &mut self,
        msg: &BinanceMsg<'_>,
        bids: &mut [WireLevel],
        asks: &mut [WireLevel],
        local_ts: Nanos,
        snapshot_of: Option<&str>,
        out: &mut impl FnMut(MarketEvent),
    ) -> Result<usize, NormalizeError> {
        let ms = |v: u64| v.saturating_mul(1_000_000);
        match *msg {
            BinanceMsg::Depth {
                symbol,
                event_ms,
                final_id,
                ..
            } => {
                let (id, sc) = self.resolve(symbol)?;
                self.levels(
                    id,
                    sc,
                    bids,
                    asks,
                    ms(event_ms),
                    local_ts,
                    final_id,
                    0,
                    None,
                    out,
                )
            }
            BinanceMsg::Snapshot { last_update_id } => {
                let symbol = snapshot_of.ok_or_else(|| {
                    NormalizeError::UnknownSymbol("(snapshot without symbol)".into())
                })?;
                let (id, sc) = self.resolve(symbol)?;
                let clear = MarketEvent {
                    ts_exchange: local_ts,
                    ts_recv: local_ts,
                    seq: last_update_id,
                    instrument: id,
                    flags: FLAG_SNAPSHOT,
                    kind: MarketEventKind::Clear,
                };
                self.levels(
                    id,
                    sc,
                    bids,
                    asks,
                    local_ts,
                    local_ts,
                    last_update_id,
                    FLAG_SNAPSHOT,
                    Some(clear),
                    out,
                )
            }
            BinanceMsg::BookTicker {
                symbol,
                update_id,
                event_ms,
                bid,
                bid_qty,
                ask,
                ask_qty,
            } => {
                let (id, sc) = self.resolve(symbol)?;
                let kind = MarketEventKind::Quote {
                    bid: sc.price(bid)?,
                    bid_qty: sc.qty(bid_qty)?,
                    ask: sc.price(ask)?,
                    ask_qty: sc.qty(ask_qty)?,
                };
                out(MarketEvent {
                    ts_exchange: event_ms.map_or(local_ts, ms),
                    ts_recv: local_ts,
                    seq: update_id,
                    instrument: id,
                    flags: FLAG_LAST,
                    kind,
                });
                Ok(1)
            }
            BinanceMsg::Trade {
                symbol,
                trade_ms,
                trade_id,
                price,
                qty,
                buyer_is_maker,
            } => {
                let (id, sc) = self.resolve(symbol)?;
                let aggressor = if buyer_is_maker {
                    Side::Sell
                } else {
                    Side::Buy
                };
                let kind = MarketEventKind::Trade {
                    aggressor,
                    price: sc.price(price)?,
                    qty: sc.qty(qty)?,
                };
                out(MarketEvent {
                    ts_exchange: ms(trade_ms),
                    ts_recv: local_ts,
                    seq: trade_id,
                    instrument: id,
                    flags: FLAG_LAST,
                    kind,
                });
                Ok(1)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn levels(
        &self,
        id: InstrumentId,
        sc: Scales,
        bids: &mut [WireLevel],
        asks: &mut [WireLevel],
        ts_exchange: Nanos,
        ts_recv: Nanos,
        seq: u64,
        flags: u8,
        first: Option<MarketEvent>,
        out: &mut impl FnMut(MarketEvent),
    ) -> Result<usize, NormalizeError> {
        // Rescale in place first, so a bad level emits nothing (no half-applied message)
        // and each number is divided once.
        for l in bids.iter_mut().chain(asks.iter_mut()) {
            *l = (sc.price(l.0)?.raw(), sc.qty(l.1)?.raw());
        }
        let total = bids.len() + asks.len() + usize::from(first.is_some());
        let mut n = 0;
        let mut push = |kind| {
            n += 1;
            let last = if n == total { FLAG_LAST } else { 0 };
            out(MarketEvent {
                ts_exchange,
                ts_recv,
                seq,
                instrument: id,
                flags: flags | last,
                kind,
            });
        };
        if let Some(f) = first {
            push(f.kind);
        }
        for (side, levels) in [(Side::Buy, &*bids), (Side::Sell, &*asks)] {
            for &(p, q) in levels {
                push(MarketEventKind::Level {
                    side,
                    price: Price(p),
                    qty: Qty(q),
                });
            }
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binance::BinanceDecoder;
    use hft_core::InstrumentSpec;

    fn normalizer() -> BinanceNormalizer {
        let btc = InstrumentSpec::new(InstrumentId(3), "BTCUSDT", 2, 5, Price(1), Qty(1));
        BinanceNormalizer::new(InstrumentRegistry::new(vec![btc]))
    }

    fn run(
        n: &mut BinanceNormalizer,
        json: &str,
        snapshot_of: Option<&str>,
    ) -> Result<Vec<MarketEvent>, NormalizeError> {
        let mut d = BinanceDecoder::default();
        let msg = d.decode(json).unwrap();
        let mut out = Vec::new();
        let (bids, asks) = d.levels_mut();
        n.normalize(&msg, bids, asks, 42, snapshot_of, &mut |e| out.push(e))?;
        Ok(out)
    }

    #[test]
    fn depth_becomes_levels_at_the_instrument_scale() {
        let mut n = normalizer();
        let ev = run(&mut n, r#"{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":5,"s":"BTCUSDT","U":10,"u":12,"b":[["61737.63","0.5"]],"a":[["61837.64","0"]]}}"#, None).unwrap();
        assert_eq!(ev.len(), 2);
        assert_eq!(
            ev[0].kind,
            MarketEventKind::Level {
                side: Side::Buy,
                price: Price(6_173_763),
                qty: Qty(50_000)
            }
        );
        assert_eq!(
            ev[1].kind,
            MarketEventKind::Level {
                side: Side::Sell,
                price: Price(6_183_764),
                qty: Qty(0)
            }
        );
        assert_eq!(
            (
                ev[0].seq,
                ev[0].ts_exchange,
                ev[0].ts_recv,
                ev[0].instrument
            ),
            (12, 5_000_000, 42, InstrumentId(3))
        );
        assert!(!ev[0].is_last() && ev[1].is_last());
    }

    #[test]
    fn snapshot_starts_with_clear_and_trade_aggressor_follows_the_maker_flag() {
        let mut n = normalizer();
        let ev = run(
            &mut n,
            r#"{"lastUpdateId":7,"bids":[["1.00","1"]],"asks":[]}"#,
            Some("BTCUSDT"),
        )
        .unwrap();
        assert_eq!(ev[0].kind, MarketEventKind::Clear);
        assert!(
            ev.iter()
                .all(|e| e.flags & FLAG_SNAPSHOT != 0 && e.seq == 7)
        );
        let t = run(&mut n, r#"{"stream":"btcusdt@trade","data":{"s":"BTCUSDT","T":9,"t":1,"p":"2.50","q":"0.1","m":true}}"#, None).unwrap();
        assert!(matches!(
            t[0].kind,
            MarketEventKind::Trade {
                aggressor: Side::Sell,
                ..
            }
        ));
    }

    #[test]
    fn unknown_symbols_and_too_fine_values_emit_nothing() {
        let mut n = normalizer();
        let unknown = run(
            &mut n,
            r#"{"stream":"ethusdt@trade","data":{"s":"ETHUSDT","T":9,"t":1,"p":"2.50","q":"0.1","m":true}}"#,
            None,
        );
        assert!(matches!(unknown, Err(NormalizeError::UnknownSymbol(_))));
        let fine = run(
            &mut n,
            r#"{"stream":"btcusdt@depth","data":{"s":"BTCUSDT","E":1,"U":1,"u":2,"b":[["1.00","1"],["1.001","1"]],"a":[]}}"#,
            None,
        );
        assert!(matches!(
            fine,
            Err(NormalizeError::TooFine { what: "price", .. })
        ));
    }
}
