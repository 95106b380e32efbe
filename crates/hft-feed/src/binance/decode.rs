//! Decoding of Binance public market-data messages (combined-stream envelopes and the
//! REST depth snapshot) with a single-pass scanner made for them: no JSON tree, no
//! allocation, fields read straight into typed values and price levels into buffers the
//! decoder reuses. It still accepts any key order, whitespace and unknown fields (which
//! it skips), and refuses what it cannot read exactly (escaped strings, floats where
//! decimals are expected, NaN, negative numbers) with the byte offset.
//!
//! Prices and quantities are read as fixed-point integers with 8 decimals (the most
//! Binance uses); normalisation rescales them to the instrument's scale.

use thiserror::Error;

/// Decimals of the decoder's fixed-point numbers.
pub const WIRE_SCALE: u8 = 8;

/// A price level `(price, qty)` in units of 1e-8.
pub type WireLevel = (i64, i64);

/// Deepest nesting skipped in unknown fields.
const MAX_DEPTH: u32 = 32;

/// Why a message could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// Not the JSON this stream promises, at byte `offset`.
    #[error("malformed message at byte {offset}: {what}")]
    Json {
        /// Byte offset in the message.
        offset: usize,
        /// What was expected or wrong.
        what: &'static str,
    },
    /// A stream this decoder does not know.
    #[error("unknown stream '{0}'")]
    UnknownStream(String),
    /// A required field is absent.
    #[error("missing field '{0}'")]
    Missing(&'static str),
}

/// Parses a non-negative decimal string into units of 1e-8 (exact; no floats).
#[inline]
pub fn parse_wire(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let mut int: i64 = 0;
    let mut i = 0;
    while i < b.len() && b[i] != b'.' {
        let d = b[i].wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        int = int.checked_mul(10)?.checked_add(i64::from(d))?;
        i += 1;
    }
    if i == 0 && b.len() <= 1 {
        return None;
    }
    let mut frac: i64 = 0;
    let mut digits = 0u32;
    if i < b.len() {
        i += 1;
        while i < b.len() {
            let d = b[i].wrapping_sub(b'0');
            if d > 9 {
                return None;
            }
            if digits == u32::from(WIRE_SCALE) {
                // Beyond 8 decimals only zeros are exact.
                if d != 0 {
                    return None;
                }
            } else {
                frac = frac * 10 + i64::from(d);
                digits += 1;
            }
            i += 1;
        }
    }
    let scale = 10i64.pow(u32::from(WIRE_SCALE) - digits);
    int.checked_mul(100_000_000)?.checked_add(frac * scale)
}

/// A decoded message; price levels of depth messages are in the decoder's buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinanceMsg<'a> {
    /// Incremental depth update (`depthUpdate`): levels in `bids()`/`asks()`.
    Depth {
        /// Symbol, e.g. `BTCUSDT`.
        symbol: &'a str,
        /// Event time, ms.
        event_ms: u64,
        /// First update id in the event (`U`).
        first_id: u64,
        /// Final update id in the event (`u`).
        final_id: u64,
        /// Final update id of the previous event (`pu`, futures only).
        prev_final_id: Option<u64>,
    },
    /// Best bid/offer (`bookTicker`).
    BookTicker {
        /// Symbol.
        symbol: &'a str,
        /// Order book update id.
        update_id: u64,
        /// Event time, ms (futures only).
        event_ms: Option<u64>,
        /// Best bid price (1e-8).
        bid: i64,
        /// Best bid quantity.
        bid_qty: i64,
        /// Best ask price.
        ask: i64,
        /// Best ask quantity.
        ask_qty: i64,
    },
    /// A trade (`trade` or `aggTrade`).
    Trade {
        /// Symbol.
        symbol: &'a str,
        /// Trade time, ms.
        trade_ms: u64,
        /// Trade id (aggregate id for `aggTrade`).
        trade_id: u64,
        /// Price (1e-8).
        price: i64,
        /// Quantity (1e-8).
        qty: i64,
        /// True when the buyer was the maker, i.e. the aggressor sold.
        buyer_is_maker: bool,
    },
    /// REST depth snapshot: levels in `bids()`/`asks()`.
    Snapshot {
        /// `lastUpdateId`.
        last_update_id: u64,
    },
}

impl<'a> BinanceMsg<'a> {
    /// For a depth diff: its ids and event time (ms), what book synchronisation needs.
    pub fn diff_ids(&self) -> Option<(super::DiffIds, u64)> {
        match *self {
            BinanceMsg::Depth {
                event_ms,
                first_id,
                final_id,
                prev_final_id,
                ..
            } => Some((
                super::DiffIds {
                    first: first_id,
                    last: final_id,
                    prev: prev_final_id,
                },
                event_ms,
            )),
            _ => None,
        }
    }

    /// The symbol the message names (a REST snapshot names none).
    pub fn symbol(&self) -> Option<&'a str> {
        match *self {
            BinanceMsg::Depth { symbol, .. }
            | BinanceMsg::BookTicker { symbol, .. }
            | BinanceMsg::Trade { symbol, .. } => Some(symbol),
            BinanceMsg::Snapshot { .. } => None,
        }
    }
}

/// Stream kind from the stream name's suffix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Depth,
    BookTicker,
    Trade,
    AggTrade,
}

fn kind_of(stream: &str) -> Option<Kind> {
    let suffix = stream.split_once('@')?.1;
    if suffix.starts_with("depth") {
        Some(Kind::Depth)
    } else if suffix == "bookTicker" {
        Some(Kind::BookTicker)
    } else if suffix == "trade" {
        Some(Kind::Trade)
    } else if suffix == "aggTrade" {
        Some(Kind::AggTrade)
    } else {
        None
    }
}

/// A cursor over the message bytes.
struct Scanner<'a> {
    text: &'a str,
    i: usize,
}

impl<'a> Scanner<'a> {
    fn err<T>(&self, what: &'static str) -> Result<T, DecodeError> {
        Err(DecodeError::Json {
            offset: self.i,
            what,
        })
    }

    #[inline]
    fn ws(&mut self) {
        let b = self.text.as_bytes();
        while self.i < b.len() && matches!(b[self.i], b' ' | b'\n' | b'\r' | b'\t') {
            self.i += 1;
        }
    }

    #[inline]
    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.text.as_bytes().get(self.i).copied()
    }

    #[inline]
    fn eat(&mut self, c: u8, what: &'static str) -> Result<(), DecodeError> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            self.err(what)
        }
    }

    /// A string without escapes (Binance never escapes the fields it sends).
    #[inline]
    fn string(&mut self) -> Result<&'a str, DecodeError> {
        self.eat(b'"', "expected a string")?;
        let b = self.text.as_bytes();
        let start = self.i;
        while self.i < b.len() {
            match b[self.i] {
                b'"' => {
                    let s = &self.text[start..self.i];
                    self.i += 1;
                    return Ok(s);
                }
                b'\\' => return self.err("escaped strings are not expected here"),
                _ => self.i += 1,
            }
        }
        self.err("unterminated string")
    }

    #[inline]
    fn u64(&mut self) -> Result<u64, DecodeError> {
        self.ws();
        let b = self.text.as_bytes();
        let start = self.i;
        let mut v: u64 = 0;
        while self.i < b.len() && b[self.i].is_ascii_digit() {
            v = match v
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(b[self.i] - b'0')))
            {
                Some(v) => v,
                None => return self.err("integer out of range"),
            };
            self.i += 1;
        }
        if self.i == start || matches!(b.get(self.i), Some(b'.' | b'e' | b'E')) {
            return self.err("expected a non-negative integer");
        }
        Ok(v)
    }

    fn boolean(&mut self) -> Result<bool, DecodeError> {
        self.ws();
        let rest = &self.text[self.i..];
        if rest.starts_with("true") {
            self.i += 4;
            Ok(true)
        } else if rest.starts_with("false") {
            self.i += 5;
            Ok(false)
        } else {
            self.err("expected true or false")
        }
    }

    /// A decimal string as 1e-8 units.
    #[inline]
    fn wire(&mut self) -> Result<i64, DecodeError> {
        let at = self.i;
        let s = self.string()?;
        parse_wire(s).ok_or(DecodeError::Json {
            offset: at,
            what: "expected a non-negative decimal string with at most 8 decimals",
        })
    }

    /// Skips any JSON value (for fields this decoder does not use).
    fn skip(&mut self, depth: u32) -> Result<(), DecodeError> {
        if depth > MAX_DEPTH {
            return self.err("nesting too deep");
        }
        match self.peek() {
            Some(b'"') => self.string().map(drop),
            Some(b'{') => {
                self.i += 1;
                if self.peek() == Some(b'}') {
                    self.i += 1;
                    return Ok(());
                }
                loop {
                    self.string()?;
                    self.eat(b':', "expected ':'")?;
                    self.skip(depth + 1)?;
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(());
                        }
                        _ => return self.err("expected ',' or '}'"),
                    }
                }
            }
            Some(b'[') => {
                self.i += 1;
                if self.peek() == Some(b']') {
                    self.i += 1;
                    return Ok(());
                }
                loop {
                    self.skip(depth + 1)?;
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(());
                        }
                        _ => return self.err("expected ',' or ']'"),
                    }
                }
            }
            Some(b't' | b'f') => self.boolean().map(drop),
            Some(b'n') if self.text[self.i..].starts_with("null") => {
                self.i += 4;
                Ok(())
            }
            Some(b'-' | b'0'..=b'9') => {
                let b = self.text.as_bytes();
                self.i += 1;
                while self.i < b.len()
                    && matches!(b[self.i], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
                {
                    self.i += 1;
                }
                Ok(())
            }
            _ => self.err("expected a JSON value"),
        }
    }

    /// Iterates the keys of an object: call with `first` = true right after `{`.
    #[inline]
    fn next_key(&mut self, first: &mut bool) -> Result<Option<&'a str>, DecodeError> {
        match self.peek() {
            Some(b'}') => {
                self.i += 1;
                return Ok(None);
            }
            Some(b',') if !*first => self.i += 1,
            Some(_) if *first => {}
            _ => return self.err("expected ',' or '}'"),
        }
        *first = false;
        let k = self.string()?;
        self.eat(b':', "expected ':'")?;
        Ok(Some(k))
    }

    /// `[["price","qty"], ...]` into `out`.
    fn levels(&mut self, out: &mut Vec<WireLevel>) -> Result<(), DecodeError> {
        self.eat(b'[', "expected a list of levels")?;
        if self.peek() == Some(b']') {
            self.i += 1;
            return Ok(());
        }
        loop {
            self.eat(b'[', "expected a [price, quantity] pair")?;
            let p = self.wire()?;
            self.eat(b',', "expected ',' between price and quantity")?;
            let q = self.wire()?;
            self.eat(b']', "expected ']' after a level")?;
            out.push((p, q));
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return self.err("expected ',' or ']' in levels"),
            }
        }
    }

    fn end(&mut self) -> Result<(), DecodeError> {
        if self.peek().is_some() {
            self.err("trailing characters")
        } else {
            Ok(())
        }
    }
}

/// Reusable decoder state.
#[derive(Debug, Default)]
pub struct BinanceDecoder {
    bids: Vec<WireLevel>,
    asks: Vec<WireLevel>,
}

impl BinanceDecoder {
    /// A decoder with room for `levels` levels per side before growing.
    pub fn with_capacity(levels: usize) -> Self {
        Self {
            bids: Vec::with_capacity(levels),
            asks: Vec::with_capacity(levels),
        }
    }

    /// Bid levels of the last depth message or snapshot.
    pub fn bids(&self) -> &[WireLevel] {
        &self.bids
    }

    /// Ask levels of the last depth message or snapshot.
    pub fn asks(&self) -> &[WireLevel] {
        &self.asks
    }

    /// Both sides' levels, for normalisation in place.
    pub fn levels_mut(&mut self) -> (&mut [WireLevel], &mut [WireLevel]) {
        (&mut self.bids, &mut self.asks)
    }

    /// Decodes one message: a combined-stream envelope `{"stream":..,"data":..}` or a
    /// REST depth snapshot `{"lastUpdateId":..,"bids":..,"asks":..}`.
    pub fn decode<'a>(&mut self, json: &'a str) -> Result<BinanceMsg<'a>, DecodeError> {
        self.bids.clear();
        self.asks.clear();
        let mut sc = Scanner { text: json, i: 0 };
        sc.eat(b'{', "expected an object")?;
        let mut first = true;
        let mut stream: Option<&'a str> = None;
        let mut msg = None;
        let mut last_update_id = None;
        let mut deferred: Option<usize> = None;
        while let Some(key) = sc.next_key(&mut first)? {
            match key {
                "stream" => stream = Some(sc.string()?),
                "data" => match stream.and_then(kind_of) {
                    Some(kind) => msg = Some(self.data(&mut sc, kind)?),
                    None if stream.is_some() => {
                        return Err(DecodeError::UnknownStream(
                            stream.unwrap_or_default().chars().take(64).collect(),
                        ));
                    }
                    None => {
                        // `data` before `stream`: remember where it is and come back.
                        deferred = Some(sc.i);
                        sc.skip(0)?;
                    }
                },
                "lastUpdateId" => last_update_id = Some(sc.u64()?),
                "bids" => sc.levels(&mut self.bids)?,
                "asks" => sc.levels(&mut self.asks)?,
                _ => sc.skip(0)?,
            }
        }
        sc.end()?;
        if let Some(m) = msg {
            return Ok(m);
        }
        if let (Some(at), Some(s)) = (deferred, stream) {
            let kind = kind_of(s)
                .ok_or_else(|| DecodeError::UnknownStream(s.chars().take(64).collect()))?;
            let mut again = Scanner { text: json, i: at };
            return self.data(&mut again, kind);
        }
        match (stream, last_update_id) {
            (None, Some(last_update_id)) => Ok(BinanceMsg::Snapshot { last_update_id }),
            (Some(_), _) => Err(DecodeError::Missing("data")),
            (None, None) => Err(DecodeError::Missing("stream")),
        }
    }

    fn data<'a>(
        &mut self,
        sc: &mut Scanner<'a>,
        kind: Kind,
    ) -> Result<BinanceMsg<'a>, DecodeError> {
        sc.eat(b'{', "expected the data object")?;
        let mut first = true;
        let mut symbol: Option<&'a str> = None;
        let (mut e_ms, mut t_ms, mut first_id, mut fin, mut pu, mut id) =
            (None, None, None, None, None, None);
        let (mut b, mut bq, mut a, mut aq, mut p, mut q) = (None, None, None, None, None, None);
        let mut m = None;
        while let Some(key) = sc.next_key(&mut first)? {
            match (key, kind) {
                ("s", _) => symbol = Some(sc.string()?),
                ("E", _) => e_ms = Some(sc.u64()?),
                ("T", _) => t_ms = Some(sc.u64()?),
                ("U", Kind::Depth) => first_id = Some(sc.u64()?),
                ("u", Kind::Depth | Kind::BookTicker) => fin = Some(sc.u64()?),
                ("pu", Kind::Depth) => pu = Some(sc.u64()?),
                ("b", Kind::Depth) => sc.levels(&mut self.bids)?,
                ("a", Kind::Depth) => sc.levels(&mut self.asks)?,
                ("b", Kind::BookTicker) => b = Some(sc.wire()?),
                ("B", Kind::BookTicker) => bq = Some(sc.wire()?),
                ("a", Kind::BookTicker) => a = Some(sc.wire()?),
                ("A", Kind::BookTicker) => aq = Some(sc.wire()?),
                ("t", Kind::Trade) | ("a", Kind::AggTrade) => id = Some(sc.u64()?),
                ("p", Kind::Trade | Kind::AggTrade) => p = Some(sc.wire()?),
                ("q", Kind::Trade | Kind::AggTrade) => q = Some(sc.wire()?),
                ("m", Kind::Trade | Kind::AggTrade) => m = Some(sc.boolean()?),
                _ => sc.skip(1)?,
            }
        }
        let symbol = symbol.ok_or(DecodeError::Missing("s"))?;
        let need = |v: Option<u64>, f: &'static str| v.ok_or(DecodeError::Missing(f));
        let need_i = |v: Option<i64>, f: &'static str| v.ok_or(DecodeError::Missing(f));
        Ok(match kind {
            Kind::Depth => BinanceMsg::Depth {
                symbol,
                event_ms: need(e_ms, "E")?,
                first_id: need(first_id, "U")?,
                final_id: need(fin, "u")?,
                prev_final_id: pu,
            },
            Kind::BookTicker => BinanceMsg::BookTicker {
                symbol,
                update_id: need(fin, "u")?,
                event_ms: e_ms,
                bid: need_i(b, "b")?,
                bid_qty: need_i(bq, "B")?,
                ask: need_i(a, "a")?,
                ask_qty: need_i(aq, "A")?,
            },
            Kind::Trade | Kind::AggTrade => BinanceMsg::Trade {
                symbol,
                trade_ms: need(t_ms, "T")?,
                trade_id: need(id, "t")?,
                price: need_i(p, "p")?,
                qty: need_i(q, "q")?,
                buyer_is_maker: m.ok_or(DecodeError::Missing("m"))?,
            },
        })
    }
}

#[cfg(test)]
mod tests;
