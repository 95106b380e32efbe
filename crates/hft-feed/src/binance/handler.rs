//! The live feed's state machine for one Binance connection, free of I/O so that every
//! fault (gap, duplicate, reordering, malformed frame, stale or refused snapshot) can be
//! driven by a test: frames and REST snapshots go in, normalised events come out, and
//! the handler says which books need a snapshot.
//!
//! A book that loses continuity is invalidated at once: the handler emits a `Clear`
//! without `FLAG_SNAPSHOT` (consumers drop the book and treat it as stale), buffers the
//! diffs that follow, and asks for a snapshot; the snapshot (`Clear` + levels, all with
//! `FLAG_SNAPSHOT`) and the buffered diffs that continue it then rebuild the book.

use super::sync::{BufferedDiff, DepthSync, DiffIds, SyncAction};
use super::{BinanceDecoder, BinanceMsg, BinanceNormalizer, DecodeError, NormalizeError};
use crate::InstrumentRegistry;
use hft_core::{FLAG_LAST, MarketEvent, MarketEventKind, Nanos};
use thiserror::Error;

/// Diffs held per book while its snapshot is fetched. Past this the venue is far ahead
/// of the snapshot: the buffer is dropped and a new snapshot requested.
pub const MAX_BUFFERED_DIFFS: usize = 10_000;

/// Where a book stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BookState {
    /// Needs a snapshot that has not been requested yet.
    NeedSnapshot,
    /// A snapshot request is in flight; diffs are buffered.
    Fetching,
    /// Snapshot applied and diffs continue it.
    Synced,
}

/// Counters of one handler (they survive reconnects).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HandlerStats {
    /// Frames received.
    pub frames: u64,
    /// Events emitted.
    pub events: u64,
    /// Frames that could not be decoded or normalised.
    pub bad_frames: u64,
    /// Depth continuity breaks (each invalidates a book).
    pub gaps: u64,
    /// Snapshots applied.
    pub snapshots: u64,
    /// Snapshots refused because the stream was already past them.
    pub stale_snapshots: u64,
    /// Diffs dropped because the book already held them (duplicates, replays).
    pub stale_diffs: u64,
    /// Frames for symbols this connection did not subscribe to.
    pub unknown_symbol: u64,
}

/// Why a frame or snapshot was refused. The book it concerns, if any, is invalidated.
#[derive(Debug, Error)]
pub enum FrameError {
    /// Not a message of the venue's format.
    #[error("undecodable frame: {0}")]
    Decode(#[from] DecodeError),
    /// Decoded, but its values do not fit the instrument.
    #[error("unusable values: {0}")]
    Normalize(#[from] NormalizeError),
    /// A REST body that is not a depth snapshot.
    #[error("the snapshot response is not a depth snapshot")]
    NotASnapshot,
    /// The snapshot is older than the buffered diffs; a newer one is needed.
    #[error(transparent)]
    TooOld(#[from] super::SnapshotTooOld),
}

#[derive(Debug)]
struct Book {
    /// Venue symbol, upper case, as in the `s` field.
    symbol: String,
    sync: DepthSync,
    state: BookState,
}

/// State machine of one connection's books.
#[derive(Debug)]
pub struct FeedHandler {
    decoder: BinanceDecoder,
    normalizer: BinanceNormalizer,
    books: Vec<Book>,
    stats: HandlerStats,
}

impl FeedHandler {
    /// A handler for `symbols` (venue symbols, any case), resolving instruments through
    /// `registry`. Every book starts out needing a snapshot.
    pub fn new(symbols: &[String], registry: InstrumentRegistry) -> Self {
        Self {
            decoder: BinanceDecoder::with_capacity(1024),
            normalizer: BinanceNormalizer::new(registry),
            books: symbols
                .iter()
                .map(|s| Book {
                    symbol: s.to_ascii_uppercase(),
                    sync: DepthSync::new(),
                    state: BookState::NeedSnapshot,
                })
                .collect(),
            stats: HandlerStats::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> HandlerStats {
        self.stats
    }

    /// Venue symbol of book `i`.
    pub fn symbol(&self, i: usize) -> &str {
        &self.books[i].symbol
    }

    /// State of book `i`.
    pub fn state(&self, i: usize) -> BookState {
        self.books[i].state
    }

    /// Number of books.
    pub fn len(&self) -> usize {
        self.books.len()
    }

    /// True when the handler follows no symbol.
    pub fn is_empty(&self) -> bool {
        self.books.is_empty()
    }

    /// Books that need a snapshot; they are marked as fetching.
    pub fn take_snapshot_requests(&mut self) -> Vec<usize> {
        let mut out = Vec::new();
        for (i, b) in self.books.iter_mut().enumerate() {
            if b.state == BookState::NeedSnapshot {
                b.state = BookState::Fetching;
                out.push(i);
            }
        }
        out
    }

    /// The snapshot request for book `i` failed: ask again.
    pub fn snapshot_failed(&mut self, i: usize) {
        if let Some(b) = self.books.get_mut(i) {
            if b.state == BookState::Fetching {
                b.state = BookState::NeedSnapshot;
            }
        }
    }

    /// The connection was lost: every book is invalidated (a `Clear` each) and will be
    /// rebuilt from a snapshot once the stream is back.
    pub fn reset(&mut self, ts_recv: Nanos, out: &mut impl FnMut(MarketEvent)) {
        for i in 0..self.books.len() {
            self.invalidate(i, ts_recv, out);
        }
    }

    fn invalidate(&mut self, i: usize, ts_recv: Nanos, out: &mut impl FnMut(MarketEvent)) {
        let book = &mut self.books[i];
        let was_synced = book.state == BookState::Synced;
        book.sync.reset();
        if book.state != BookState::Fetching {
            book.state = BookState::NeedSnapshot;
        }
        if was_synced {
            if let Some(instrument) = self.normalizer.instrument_of(&book.symbol) {
                self.stats.events += 1;
                out(MarketEvent {
                    ts_exchange: ts_recv,
                    ts_recv,
                    seq: 0,
                    instrument,
                    flags: FLAG_LAST,
                    kind: MarketEventKind::Clear,
                });
            }
        }
    }

    fn book_of(&self, symbol: &str) -> Option<usize> {
        self.books
            .iter()
            .position(|b| b.symbol.eq_ignore_ascii_case(symbol))
    }

    /// Handles one text frame received at `ts_recv`. On error nothing of the frame was
    /// emitted, and the book it belongs to (all books when that cannot be told, or
    /// none for a trade or ticker) is invalidated and will be resynchronised.
    pub fn on_frame(
        &mut self,
        text: &str,
        ts_recv: Nanos,
        out: &mut impl FnMut(MarketEvent),
    ) -> Result<(), FrameError> {
        self.stats.frames += 1;
        let msg = match self.decoder.decode(text) {
            Ok(m) => m,
            Err(e) => {
                self.stats.bad_frames += 1;
                self.invalidate_for(text, ts_recv, out);
                return Err(e.into());
            }
        };
        let Some(symbol) = msg.symbol() else {
            self.stats.bad_frames += 1;
            return Err(FrameError::Decode(DecodeError::Missing("stream symbol")));
        };
        let Some(i) = self.book_of(symbol) else {
            self.stats.unknown_symbol += 1;
            return Ok(());
        };
        let result = match msg.diff_ids() {
            Some((ids, event_ms)) => match self.books[i].sync.on_diff(ids) {
                SyncAction::Apply => self.emit(&msg, ts_recv, None, out),
                SyncAction::Drop => {
                    self.stats.stale_diffs += 1;
                    Ok(())
                }
                SyncAction::Buffer => {
                    self.hold(i, ids, event_ms, ts_recv);
                    Ok(())
                }
                SyncAction::Gap => {
                    self.stats.gaps += 1;
                    self.invalidate(i, ts_recv, out);
                    self.hold(i, ids, event_ms, ts_recv);
                    Ok(())
                }
            },
            None if matches!(msg, BinanceMsg::Snapshot { .. }) => Err(FrameError::NotASnapshot),
            None => self.emit(&msg, ts_recv, None, out),
        };
        if let Err(e) = result {
            self.stats.bad_frames += 1;
            if matches!(msg, BinanceMsg::Depth { .. }) {
                self.invalidate(i, ts_recv, out);
            }
            return Err(e);
        }
        Ok(())
    }

    /// A frame that could not be decoded: invalidate the book its stream names if it is
    /// a depth stream, every book if no stream can be read; trades and tickers carry no
    /// book state.
    fn invalidate_for(&mut self, text: &str, ts_recv: Nanos, out: &mut impl FnMut(MarketEvent)) {
        match stream_name(text) {
            Some((_, kind)) if !kind.starts_with("depth") => {}
            Some((sym, _)) => {
                if let Some(i) = self.book_of(sym) {
                    self.invalidate(i, ts_recv, out);
                }
            }
            None => {
                for i in 0..self.books.len() {
                    self.invalidate(i, ts_recv, out);
                }
            }
        }
    }

    fn hold(&mut self, i: usize, ids: DiffIds, event_ms: u64, ts_recv: Nanos) {
        let sync = &mut self.books[i].sync;
        if sync.buffered() >= MAX_BUFFERED_DIFFS {
            sync.reset();
        }
        sync.buffer(BufferedDiff {
            ids,
            event_ms,
            local_ts: ts_recv,
            bids: self.decoder.bids().to_vec(),
            asks: self.decoder.asks().to_vec(),
        });
    }

    fn emit(
        &mut self,
        msg: &BinanceMsg<'_>,
        ts_recv: Nanos,
        snapshot_of: Option<&str>,
        out: &mut impl FnMut(MarketEvent),
    ) -> Result<(), FrameError> {
        let (b, a) = self.decoder.levels_mut();
        let stats = &mut self.stats;
        self.normalizer
            .normalize(msg, b, a, ts_recv, snapshot_of, &mut |e| {
                stats.events += 1;
                out(e);
            })?;
        Ok(())
    }

    /// Applies the REST depth snapshot `body` for book `i`, then the buffered diffs that
    /// continue it. A snapshot the stream is already past is refused (`TooOld`) and the
    /// book asks for a newer one.
    pub fn on_snapshot(
        &mut self,
        i: usize,
        body: &str,
        ts_recv: Nanos,
        out: &mut impl FnMut(MarketEvent),
    ) -> Result<(), FrameError> {
        let msg = match self.decoder.decode(body) {
            Ok(m @ BinanceMsg::Snapshot { .. }) => m,
            Ok(_) => {
                self.books[i].state = BookState::NeedSnapshot;
                return Err(FrameError::NotASnapshot);
            }
            Err(e) => {
                self.books[i].state = BookState::NeedSnapshot;
                return Err(e.into());
            }
        };
        let BinanceMsg::Snapshot { last_update_id } = msg else {
            return Err(FrameError::NotASnapshot);
        };
        let after = match self.books[i].sync.on_snapshot(last_update_id) {
            Ok(after) => after,
            Err(e) => {
                self.stats.stale_snapshots += 1;
                self.books[i].state = BookState::NeedSnapshot;
                return Err(e.into());
            }
        };
        let symbol = std::mem::take(&mut self.books[i].symbol);
        let mut result = self.emit(&msg, ts_recv, Some(&symbol), out);
        for mut d in after {
            if result.is_err() {
                break;
            }
            let m = d.message(&symbol);
            let stats = &mut self.stats;
            result = self
                .normalizer
                .normalize(&m, &mut d.bids, &mut d.asks, d.local_ts, None, &mut |e| {
                    stats.events += 1;
                    out(e);
                })
                .map(|_| ())
                .map_err(FrameError::from);
        }
        self.books[i].symbol = symbol;
        match result {
            Ok(()) => {
                self.stats.snapshots += 1;
                self.books[i].state = BookState::Synced;
                Ok(())
            }
            Err(e) => {
                self.invalidate(i, ts_recv, out);
                self.books[i].state = BookState::NeedSnapshot;
                Err(e)
            }
        }
    }
}

/// `(symbol, stream kind)` of a combined-stream frame, read without decoding it, e.g.
/// `("btcusdt", "depth@100ms")`.
fn stream_name(text: &str) -> Option<(&str, &str)> {
    let start = text.find("\"stream\"")? + "\"stream\"".len();
    let rest = text[start..].trim_start().strip_prefix(':')?.trim_start();
    let rest = rest.strip_prefix('"')?;
    let name = &rest[..rest.find('"')?];
    name.split_once('@')
}

#[cfg(test)]
mod tests {
    use super::*;
    use hft_core::{FLAG_SNAPSHOT, InstrumentId, InstrumentSpec, Price, Qty};

    fn handler() -> FeedHandler {
        let btc = InstrumentSpec::new(InstrumentId(0), "BTCUSDT", 2, 5, Price(1), Qty(1));
        FeedHandler::new(&["btcusdt".into()], InstrumentRegistry::new(vec![btc]))
    }

    fn depth(first: u64, last: u64, px: &str) -> String {
        format!(
            r#"{{"stream":"btcusdt@depth@100ms","data":{{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":{first},"u":{last},"b":[["{px}","1"]],"a":[]}}}}"#
        )
    }

    const SNAP: &str = r#"{"lastUpdateId":10,"bids":[["100.00","2"]],"asks":[["101.00","3"]]}"#;

    fn feed(h: &mut FeedHandler, frames: &[String]) -> Vec<MarketEvent> {
        let mut out = Vec::new();
        for f in frames {
            let _ = h.on_frame(f, 7, &mut |e| out.push(e));
        }
        out
    }

    #[test]
    fn buffers_until_the_snapshot_then_applies_what_continues_it() {
        let mut h = handler();
        assert_eq!(h.take_snapshot_requests(), vec![0]);
        assert!(feed(&mut h, &[depth(5, 9, "1.00"), depth(10, 12, "99.00")]).is_empty());
        let mut out = Vec::new();
        h.on_snapshot(0, SNAP, 8, &mut |e| out.push(e)).unwrap();
        assert_eq!(out[0].kind, MarketEventKind::Clear);
        assert!(out[..3].iter().all(|e| e.flags & FLAG_SNAPSHOT != 0));
        assert_eq!(
            out.len(),
            4,
            "clear, 2 snapshot levels, the straddling diff"
        );
        assert_eq!(out[3].seq, 12);
        assert_eq!(h.state(0), BookState::Synced);
        // A duplicate is dropped, a gap invalidates the book and asks for a snapshot.
        let out = feed(&mut h, &[depth(10, 12, "99.00"), depth(20, 21, "98.00")]);
        assert_eq!(out.len(), 1);
        assert_eq!(
            (out[0].kind, out[0].flags & FLAG_SNAPSHOT),
            (MarketEventKind::Clear, 0)
        );
        let s = h.stats();
        assert_eq!((s.stale_diffs, s.gaps), (1, 1));
        assert_eq!(h.take_snapshot_requests(), vec![0]);
    }

    #[test]
    fn a_stale_snapshot_is_refused_and_requested_again() {
        let mut h = handler();
        h.take_snapshot_requests();
        feed(&mut h, &[depth(30, 31, "1.00")]);
        let err = h.on_snapshot(0, SNAP, 8, &mut |_| panic!("nothing emitted"));
        assert!(matches!(err, Err(FrameError::TooOld(_))));
        assert_eq!(h.take_snapshot_requests(), vec![0]);
        let newer = r#"{"lastUpdateId":30,"bids":[],"asks":[]}"#;
        let mut n = 0;
        h.on_snapshot(0, newer, 9, &mut |_| n += 1).unwrap();
        assert_eq!(n, 2, "clear and the buffered diff that straddles 30");
    }

    #[test]
    fn malformed_depth_frames_invalidate_their_book_and_trades_do_not() {
        let mut h = handler();
        h.take_snapshot_requests();
        h.on_snapshot(0, SNAP, 8, &mut |_| {}).unwrap();
        let bad_trade = r#"{"stream":"btcusdt@trade","data":{"s":"BTCUSDT","p":NaN}}"#;
        assert!(h.on_frame(bad_trade, 9, &mut |_| {}).is_err());
        assert_eq!(h.state(0), BookState::Synced);
        let bad_depth = r#"{"stream":"btcusdt@depth@100ms","data":{"s":"BTCUSDT","U":-1"#;
        let mut out = Vec::new();
        assert!(h.on_frame(bad_depth, 9, &mut |e| out.push(e)).is_err());
        assert_eq!(out.len(), 1);
        assert_eq!(h.state(0), BookState::NeedSnapshot);
        assert!(h.on_frame("\u{0}garbage", 9, &mut |_| {}).is_err());
        assert_eq!(h.stats().bad_frames, 3);
    }

    #[test]
    fn stream_names_are_read_without_decoding() {
        assert_eq!(
            stream_name(r#"{"stream" : "ethusdt@depth@0ms","data":{"#),
            Some(("ethusdt", "depth@0ms"))
        );
        assert_eq!(stream_name(r#"{"data":1}"#), None);
    }
}
