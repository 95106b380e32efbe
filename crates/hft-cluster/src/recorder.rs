//! The recorder: an actor that writes the market data a node receives into the Parquet
//! store, off the hot path. Feeds send it whole venue messages in batches; it appends
//! them to the store's partitions (bounded buffers, row groups flushed as they fill)
//! and closes every file when told to finish, so what was recorded replays exactly.

use hft_core::MarketEvent;
use hft_store::{Row, SeriesMeta, StoreWriter, WriteStats};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use std::path::PathBuf;

/// Messages to the recorder.
pub enum RecorderMsg {
    /// Events to record (instrument ids index the recorder's series).
    Events(Vec<MarketEvent>),
    /// Close every file and reply with what was written; the recorder then stops.
    Finish(RpcReplyPort<Result<WriteStats, String>>),
}

/// The recorder actor.
pub struct Recorder;

/// Where and what to record.
pub struct RecorderArgs {
    /// Store root.
    pub root: PathBuf,
    /// Series per instrument id (venue, symbol, scales).
    pub series: Vec<SeriesMeta>,
}

/// The recorder's state.
pub struct RecorderState {
    writer: Option<StoreWriter>,
    series: Vec<SeriesMeta>,
    unknown: u64,
}

impl Actor for Recorder {
    type Msg = RecorderMsg;
    type State = RecorderState;
    type Arguments = RecorderArgs;

    async fn pre_start(
        &self,
        _me: ActorRef<Self::Msg>,
        args: RecorderArgs,
    ) -> Result<RecorderState, ActorProcessingErr> {
        let writer = StoreWriter::create(&args.root)?;
        Ok(RecorderState {
            writer: Some(writer),
            series: args.series,
            unknown: 0,
        })
    }

    async fn handle(
        &self,
        me: ActorRef<Self::Msg>,
        msg: RecorderMsg,
        state: &mut RecorderState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            RecorderMsg::Events(events) => {
                let Some(writer) = state.writer.as_mut() else {
                    return Ok(());
                };
                for e in &events {
                    match state.series.get(e.instrument.index()) {
                        Some(s) => writer.append(s, &Row::from_event(e))?,
                        None => state.unknown += 1,
                    }
                }
            }
            RecorderMsg::Finish(reply) => {
                let result = match state.writer.take() {
                    Some(w) => w.finish().map_err(|e| e.to_string()),
                    None => Err("the recorder already finished".into()),
                };
                if state.unknown > 0 {
                    tracing::warn!(
                        events = state.unknown,
                        "events of unknown instruments were not recorded"
                    );
                }
                let _ = reply.send(result);
                me.stop(None);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hft_core::{FLAG_LAST, InstrumentId, MarketEventKind, Price, Qty, Side};
    use hft_store::{MergedReader, SeriesFilter};

    #[tokio::test]
    async fn recorded_events_replay_exactly() {
        let root = std::env::temp_dir().join(format!("hft-recorder-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let meta = |symbol: &str| SeriesMeta {
            venue: "binance-spot".into(),
            symbol: symbol.into(),
            price_scale: 2,
            qty_scale: 5,
        };
        let args = RecorderArgs {
            root: root.clone(),
            series: vec![meta("BTCUSDT"), meta("ETHUSDT")],
        };
        let (rec, handle) = Actor::spawn(None, Recorder, args).await.unwrap();
        let day = 1_723_161_600_000_000_000u64;
        let events: Vec<MarketEvent> = (0..5_000u64)
            .map(|k| MarketEvent {
                ts_exchange: day + k * 1_000_000,
                ts_recv: day + k * 1_000_000 + 7,
                seq: k,
                instrument: InstrumentId((k % 2) as u32),
                flags: FLAG_LAST,
                kind: MarketEventKind::Trade {
                    aggressor: if k % 3 == 0 { Side::Sell } else { Side::Buy },
                    price: Price(6_000_000 + k as i64),
                    qty: Qty(1 + k as i64),
                },
            })
            .collect();
        for chunk in events.chunks(64) {
            rec.cast(RecorderMsg::Events(chunk.to_vec())).unwrap();
        }
        let stats = ractor::call!(rec, RecorderMsg::Finish).unwrap().unwrap();
        handle.await.unwrap();
        assert_eq!(stats.rows, 5_000);
        let mut r = MergedReader::open(&root, &SeriesFilter::default(), 0, u64::MAX).unwrap();
        let symbols: Vec<String> = r.series().iter().map(|s| s.symbol.clone()).collect();
        let mut back = Vec::new();
        while let Some((i, row)) = r.next_row().unwrap() {
            let id = if symbols[i] == "BTCUSDT" { 0 } else { 1 };
            back.push(row.to_event(InstrumentId(id)).unwrap());
        }
        assert_eq!(back, events, "every event, in time order, exactly");
        let _ = std::fs::remove_dir_all(&root);
    }
}
