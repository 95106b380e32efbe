//! The store end to end: partitioned writes read back exactly, real captures and DBN
//! files import into books that are never crossed, and bad input is an error with its
//! location (or skipped and counted), never a panic.

use hft_store::{Row, RowKind, SeriesMeta, StoreWriter, data_files, import, inspect, read_file};
use std::path::PathBuf;

fn data_dir() -> PathBuf {
    let dir = std::env::var_os("DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"));
    assert!(
        dir.is_dir(),
        "shared market data not found at {} (set DATA)",
        dir.display()
    );
    dir
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hft-store-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn partitioned_rows_read_back_exactly() {
    let root = tmp("roundtrip");
    let series = SeriesMeta {
        venue: "v".into(),
        symbol: "S".into(),
        price_scale: 2,
        qty_scale: 3,
    };
    let day = 86_400_000_000_000u64;
    let rows: Vec<Row> = (0..10_000u64)
        .map(|i| Row {
            ts_exchange: 10 * day + i * 20_000_000_000, // spans three days
            ts_recv: i,
            seq: i,
            flags: 1,
            kind: RowKind::Level as u8,
            side: (i % 2) as u8,
            price: 1_000 + i as i64,
            qty: i as i64,
            ..Row::default()
        })
        .collect();
    let mut w = StoreWriter::create(&root)
        .unwrap()
        .with_row_group_rows(1_000);
    for r in &rows {
        w.append(&series, r).unwrap();
    }
    let stats = w.finish().unwrap();
    assert_eq!(stats.rows, 10_000);
    assert_eq!(stats.files.len(), 3, "one file per date");
    let mut back = Vec::new();
    for f in data_files(&root).unwrap() {
        let meta = read_file(&f, |_, r| back.push(*r)).unwrap();
        assert_eq!(
            (
                meta.venue.as_str(),
                meta.symbol.as_str(),
                meta.price_scale,
                meta.qty_scale
            ),
            ("v", "S", 2, 3)
        );
    }
    assert_eq!(back, rows);
}

/// Rows of every kind, in segments that hold some columns at one value (so that whole
/// row groups have constant columns, which the reader fills in from the statistics
/// instead of decoding) next to segments where they vary, read back row by row and as
/// events, with and without order-by-order rows in the file.
#[test]
fn row_groups_with_constant_columns_read_back_exactly() {
    for with_orders in [false, true] {
        let root = tmp(&format!("constant-columns-{with_orders}"));
        let series = SeriesMeta {
            venue: "v".into(),
            symbol: "K".into(),
            price_scale: 2,
            qty_scale: 3,
        };
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let kinds: &[RowKind] = if with_orders {
            &[
                RowKind::Level,
                RowKind::Trade,
                RowKind::Quote,
                RowKind::Clear,
                RowKind::Order,
            ]
        } else {
            &[
                RowKind::Level,
                RowKind::Trade,
                RowKind::Quote,
                RowKind::Clear,
            ]
        };
        let mut rows = Vec::new();
        for segment in 0..24u64 {
            // Bit k of the segment number holds column group k still for 300 rows.
            let hold = |k: u64| segment >> k & 1 == 1;
            for i in 0..300u64 {
                let r = next();
                let n = segment * 300 + i;
                let kind = if hold(0) {
                    RowKind::Level
                } else {
                    kinds[(r % kinds.len() as u64) as usize]
                };
                let (price2, qty2) = if kind == RowKind::Quote {
                    (5_000 + (r >> 8 & 7) as i64, 1 + (r >> 11 & 7) as i64)
                } else {
                    (0, 0)
                };
                rows.push(Row {
                    ts_exchange: 1_000_000 + n * 10,
                    ts_recv: 1_000_500 + n * 10 + (r >> 20 & 3),
                    seq: if hold(1) { 77 } else { n },
                    flags: if hold(2) { 1 } else { (r >> 24 & 1) as u8 },
                    kind: kind as u8,
                    side: if kind == RowKind::Order && r >> 40 & 3 == 2 {
                        2
                    } else {
                        (r >> 30 & 1) as u8
                    },
                    price: if hold(3) {
                        4_000
                    } else {
                        4_000 + (r >> 32 & 63) as i64
                    },
                    qty: if hold(3) {
                        9
                    } else {
                        1 + (r >> 44 & 63) as i64
                    },
                    price2,
                    qty2,
                    order_id: if kind == RowKind::Order {
                        1 + (r >> 50 & 31)
                    } else {
                        0
                    },
                    action: if kind == RowKind::Order {
                        b"ACMFT"[(r >> 56) as usize % 5]
                    } else {
                        0
                    },
                });
            }
        }
        let mut w = StoreWriter::create(&root).unwrap().with_row_group_rows(100);
        for r in &rows {
            w.append(&series, r).unwrap();
        }
        w.finish().unwrap();
        let mut back = Vec::new();
        for f in data_files(&root).unwrap() {
            read_file(&f, |_, r| back.push(*r)).unwrap();
        }
        assert_eq!(back, rows, "orders: {with_orders}");
        let id = hft_core::InstrumentId(0);
        let want: Vec<_> = rows.iter().filter_map(|r| r.to_event(id)).collect();
        for max in [1, 7, 4096] {
            let mut r = hft_store::MergedReader::open(
                &root,
                &hft_store::SeriesFilter::default(),
                0,
                u64::MAX,
            )
            .unwrap();
            let mut got = Vec::new();
            while r.next_events(&mut got, max).unwrap() > 0 {}
            // Order rows become the L2 events they amount to (levels, trades); the
            // events of the other rows come through as they are.
            let order_ts: std::collections::HashSet<u64> = rows
                .iter()
                .filter(|r| r.kind == RowKind::Order as u8)
                .map(|r| r.ts_exchange)
                .collect();
            let others = |v: &[hft_core::MarketEvent]| {
                v.iter()
                    .filter(|e| !order_ts.contains(&e.ts_exchange))
                    .copied()
                    .collect::<Vec<_>>()
            };
            assert_eq!(others(&got), others(&want), "batches of {max}");
            assert_eq!(with_orders, got.len() != want.len() || got != want);
        }
        let _ = std::fs::remove_dir_all(&root);
    }
}

/// After each venue message of a replay from `from`: its sequence number and the L2
/// book of every series, best levels first.
type Books = Vec<(u64, Vec<(i64, i64)>, Vec<(i64, i64)>)>;

fn books_after_each_message(
    root: &std::path::Path,
    from: u64,
) -> (Books, Vec<hft_core::MarketEvent>) {
    use hft_core::Side;
    let mut r =
        hft_store::MergedReader::open(root, &hft_store::SeriesFilter::default(), from, u64::MAX)
            .unwrap();
    let mut events = Vec::new();
    while r.next_events(&mut events, 1000).unwrap() > 0 {}
    let mut book = hft_book::L2Book::with_capacity(hft_core::InstrumentId(0), 1024);
    let mut out = Vec::new();
    for e in &events {
        let _ = book.apply(e);
        if e.is_last() {
            let side = |s| {
                book.levels(s)
                    .map(|(p, q)| (p.raw(), q.raw()))
                    .collect::<Vec<_>>()
            };
            out.push((e.seq, side(Side::Buy), side(Side::Sell)));
        }
    }
    (out, events)
}

/// A replay that starts in the middle of the data starts from the book as it stood
/// there, as a snapshot, not from the partial book the later deltas would build: from
/// then on its book equals that of a replay from the beginning, message by message.
#[test]
fn a_replay_from_the_middle_starts_from_the_book_as_it_stood() {
    let root = tmp("warm-up");
    let series = SeriesMeta {
        venue: "v".into(),
        symbol: "W".into(),
        price_scale: 0,
        qty_scale: 0,
    };
    let day = 86_400_000_000_000u64;
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut w = StoreWriter::create(&root).unwrap().with_row_group_rows(500);
    // Four days of messages, one a minute; a snapshot opens days one and three.
    for m in 0..4 * 1_440u64 {
        let ts = 10 * day + m * 60_000_000_000;
        let seq = m + 1;
        let row = |kind: RowKind, side: u8, price: i64, qty: i64, flags: u8| Row {
            ts_exchange: ts,
            ts_recv: ts + 1,
            seq,
            flags,
            kind: kind as u8,
            side,
            price,
            qty,
            ..Row::default()
        };
        let mut rows = Vec::new();
        if m % 2_880 == 0 {
            rows.push(row(RowKind::Clear, 2, 0, 0, hft_core::FLAG_SNAPSHOT));
            for k in 0..5 {
                rows.push(row(RowKind::Level, 0, 995 - k, 10, hft_core::FLAG_SNAPSHOT));
                rows.push(row(
                    RowKind::Level,
                    1,
                    1_005 + k,
                    10,
                    hft_core::FLAG_SNAPSHOT,
                ));
            }
        } else {
            for _ in 0..1 + next() % 3 {
                let r = next();
                let side = (r & 1) as u8;
                let price = if side == 0 {
                    990 + (r >> 8) % 10
                } else {
                    1_001 + (r >> 8) % 10
                } as i64;
                rows.push(row(
                    RowKind::Level,
                    side,
                    price,
                    ((r >> 16) % 4 * 5) as i64,
                    0,
                ));
            }
            if next() % 4 == 0 {
                rows.push(row(RowKind::Trade, 0, 1_001, 1, 0));
            }
        }
        if let Some(r) = rows.last_mut() {
            r.flags |= hft_core::FLAG_LAST;
        }
        for r in &rows {
            w.append(&series, r).unwrap();
        }
    }
    w.finish().unwrap();
    let (full, _) = books_after_each_message(&root, 0);
    // From the middle of day two (after one snapshot) and of day four (after the second,
    // where the files before day three are skipped).
    for from in [11 * day + day / 2 + 7, 13 * day + day / 3] {
        let (part, events) = books_after_each_message(&root, from);
        assert_eq!(events[0].kind, hft_core::MarketEventKind::Clear);
        assert!(events[0].flags & hft_core::FLAG_SNAPSHOT != 0);
        assert!(events[0].ts_exchange >= from);
        // The snapshot is a message of its own (numbered as the last one before the
        // start), then the replay's messages follow in step with the full replay.
        let first = part[1].0;
        assert_eq!(part[0].0, first - 1);
        let k = full.iter().position(|m| m.0 == first).unwrap();
        assert_eq!(&full[k - 1].1, &part[0].1, "the snapshot's bids");
        assert_eq!(&full[k - 1].2, &part[0].2, "the snapshot's asks");
        assert_eq!(&full[k..], &part[1..], "from {from}");
    }
    let _ = std::fs::remove_dir_all(&root);
}

/// The same on the CME order-by-order sample: a replay from its middle starts with the
/// resting orders as a snapshot, and the L2 books match a replay from the beginning.
#[test]
fn a_replay_of_order_by_order_data_from_the_middle_starts_from_the_resting_orders() {
    let root = tmp("warm-up-mbo");
    import(
        &data_dir().join("cme_databento/esh4-glbx-mdp3-20231225.mbo.dbn.zst"),
        &root,
        None,
        false,
    )
    .unwrap();
    let (full, all) = books_after_each_message(&root, 0);
    let from = all[all.len() / 2].ts_exchange;
    let (part, events) = books_after_each_message(&root, from);
    // The snapshot's adds replace the book: a clear, then each order with its level.
    assert_eq!(events[0].kind, hft_core::MarketEventKind::Clear);
    assert!(matches!(
        events[1].kind,
        hft_core::MarketEventKind::Order {
            action: hft_core::MboAction::Add,
            ..
        }
    ));
    assert!(events[1].flags & hft_core::FLAG_SNAPSHOT != 0);
    let first = part[1].0;
    let k = full.iter().position(|m| m.0 == first).unwrap();
    assert_eq!((&full[k - 1].1, &full[k - 1].2), (&part[0].1, &part[0].2));
    assert_eq!(&full[k..], &part[1..]);
    let _ = std::fs::remove_dir_all(&root);
}

/// Sequence numbers of one series' events as a replay of the store gives them.
fn replayed_seqs(root: &std::path::Path) -> Vec<(String, u64)> {
    let mut r =
        hft_store::MergedReader::open(root, &hft_store::SeriesFilter::default(), 0, u64::MAX)
            .unwrap();
    let names: Vec<String> = r.series().iter().map(|s| s.symbol.clone()).collect();
    let mut out = Vec::new();
    let mut events = Vec::new();
    while r.next_events(&mut events, 4096).unwrap() > 0 {}
    for e in events {
        out.push((names[e.instrument.index()].clone(), e.seq));
    }
    out
}

/// Every series' events number their messages 1, 2, 3... with no gap and no going back.
fn assert_gap_free(seqs: &[(String, u64)], symbols: &[&str], messages: usize) {
    for s in symbols {
        let mine: Vec<u64> = seqs
            .iter()
            .filter(|(x, _)| x == s)
            .map(|(_, q)| *q)
            .collect();
        assert_eq!(mine, (1..=messages as u64).collect::<Vec<_>>(), "{s}");
    }
}

/// A DBN trades file for `ids` (one trade each per time step, every trade its own
/// message), with symbology mapping both ids of `ESZ4` over two days and `NQZ4` to 30.
fn write_dbn_trades(path: &std::path::Path, ids: &[u32], t0: u64, steps: u64) {
    use dbn::encode::{DbnEncoder, EncodeRecord};
    use time::{Date, Month};
    let day = |d| Date::from_calendar_date(2024, Month::August, d).unwrap();
    let interval = |d0, d1, id: &str| dbn::MappingInterval {
        start_date: day(d0),
        end_date: day(d1),
        symbol: id.to_owned(),
    };
    let meta = dbn::Metadata::builder()
        .dataset("GLBX.MDP3")
        .schema(Some(dbn::Schema::Trades))
        .start(t0)
        .stype_in(Some(dbn::SType::RawSymbol))
        .stype_out(dbn::SType::InstrumentId)
        .mappings(vec![
            dbn::SymbolMapping {
                raw_symbol: "ESZ4".into(),
                intervals: vec![interval(1, 2, "11"), interval(2, 4, "12")],
            },
            dbn::SymbolMapping {
                raw_symbol: "NQZ4".into(),
                intervals: vec![interval(1, 4, "30")],
            },
        ])
        .build();
    let file = std::fs::File::create(path).unwrap();
    let mut enc = DbnEncoder::new(std::io::BufWriter::new(file), &meta).unwrap();
    for k in 0..steps {
        for (j, &id) in ids.iter().enumerate() {
            let ts = t0 + k * 1_000_000 + j as u64;
            let t = dbn::TradeMsg {
                hd: dbn::RecordHeader::new::<dbn::TradeMsg>(dbn::rtype::MBP_0, 1, id, ts),
                price: 5_000_000_000_000 + k as i64 * 250_000_000,
                size: 1 + k as u32 % 5,
                action: b'T' as std::ffi::c_char,
                side: b'A' as std::ffi::c_char,
                flags: dbn::FlagSet::new(dbn::flags::LAST),
                ts_recv: ts + 500,
                // The venue's channel numbering: skips between one instrument's trades.
                sequence: (k * 7 + j as u64 * 3) as u32,
                ..Default::default()
            };
            enc.encode_record(&t).unwrap();
        }
    }
}

/// Databento numbers a whole channel; the import numbers each series' messages, per
/// symbol (two instrument ids of one contract share a numbering) and on from what the
/// store holds, so a second day imported after the first replays without a gap.
#[test]
fn dbn_imports_number_each_symbols_messages_across_ids_and_files() {
    let root = tmp("dbn-seq");
    let dir = tmp("dbn-seq-files");
    std::fs::create_dir_all(&dir).unwrap();
    let day1 = dir.join("day1.trades.dbn");
    let day2 = dir.join("day2.trades.dbn");
    let t0 = 1_722_470_400_000_000_000; // 2024-08-01
    // Day one: ESZ4 trades under id 11, then under id 12, interleaved with NQZ4 (30).
    write_dbn_trades(&day1, &[11, 30, 12], t0, 50);
    write_dbn_trades(&day2, &[12, 30], t0 + 86_400_000_000_000, 40);
    import(&day1, &root, None, false).unwrap();
    import(&day2, &root, None, false).unwrap();
    let seqs = replayed_seqs(&root);
    // ESZ4: 100 messages on day one (ids 11 and 12), 40 on day two.
    let es: Vec<u64> = seqs
        .iter()
        .filter(|(s, _)| s == "ESZ4")
        .map(|(_, q)| *q)
        .collect();
    assert_eq!(es, (1..=140).collect::<Vec<_>>());
    assert_gap_free(&seqs, &["NQZ4"], 90);
    let _ = std::fs::remove_dir_all(&root);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The CME sample as DBN and as Databento's CSV: both imports number each symbol's
/// messages 1, 2, 3... (the channel's own numbers skip), identically.
#[test]
fn databento_mbo_csv_and_dbn_number_messages_alike() {
    let cme = data_dir().join("cme_databento");
    let mut by_format = Vec::new();
    for file in [
        "esh4-glbx-mdp3-20231225.mbo.dbn.zst",
        "esh4-glbx-mdp3-20231225.mbo.csv.gz",
    ] {
        let root = tmp(&format!("mbo-seq-{file}"));
        import(&cme.join(file), &root, None, false).unwrap();
        let mut r =
            hft_store::MergedReader::open(&root, &hft_store::SeriesFilter::default(), 0, u64::MAX)
                .unwrap();
        let names: Vec<String> = r.series().iter().map(|s| s.symbol.clone()).collect();
        let mut seqs: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
        while let Some((i, row)) = r.next_row().unwrap() {
            seqs.entry(names[i].clone()).or_default().push(row.seq);
        }
        for (sym, v) in &seqs {
            assert_eq!(v.first(), Some(&1), "{file} {sym}");
            assert!(
                v.windows(2).all(|w| w[1] == w[0] || w[1] == w[0] + 1),
                "{file} {sym}: a number skips or goes back"
            );
        }
        by_format.push(seqs);
        let _ = std::fs::remove_dir_all(&root);
    }
    assert!(!by_format[0].is_empty());
    assert_eq!(by_format[0], by_format[1]);
}

/// A Tardis file interleaving two symbols numbers each one's messages on its own, and a
/// second file continues where the first stopped.
#[test]
fn tardis_imports_number_each_symbols_messages_across_files() {
    let root = tmp("tardis-seq");
    let dir = tmp("tardis-seq-files");
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, t0: u64, n: u64| {
        let mut text = format!("{}\n", hft_feed::tardis::L2_HEADER);
        for k in 0..n {
            for sym in ["BTCUSDT", "ETHUSDT"] {
                let ts = t0 + k * 1_000;
                // Two levels per message: same local time, same snapshot state.
                text.push_str(&format!(
                    "binance,{sym},{ts},{},false,bid,{}.5,1.25\n",
                    ts + 7,
                    100 + k
                ));
                text.push_str(&format!(
                    "binance,{sym},{ts},{},false,ask,{}.5,2\n",
                    ts + 7,
                    101 + k
                ));
            }
        }
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let first = write("a.csv", 1_700_000_000_000_000, 30);
    let second = write("b.csv", 1_700_000_100_000_000, 20);
    import(&first, &root, None, false).unwrap();
    import(&second, &root, None, false).unwrap();
    let seqs = replayed_seqs(&root);
    // Each message is two rows with one number.
    for sym in ["BTCUSDT", "ETHUSDT"] {
        let mine: Vec<u64> = seqs
            .iter()
            .filter(|(s, _)| s == sym)
            .map(|(_, q)| *q)
            .collect();
        let want: Vec<u64> = (1..=50).flat_map(|m| [m, m]).collect();
        assert_eq!(mine, want, "{sym}");
    }
    let _ = std::fs::remove_dir_all(&root);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn real_captures_and_dbn_import_into_uncrossed_books() {
    let data = data_dir();
    let root = tmp("real");
    let spot = [
        data.join("binance_ws_raw/spot_btcusdt_20240808.gz"),
        data.join("binance_ws_raw/spot_btcusdt_20240809.gz"),
    ];
    for f in &spot {
        let s = import(f, &root, None, false).unwrap();
        assert!(s.rows > s.messages, "{s:?}");
        assert_eq!(s.gaps, 0);
    }
    let dbn = import(
        &data.join("cme_databento/esh4-glbx-mdp3-20231225.mbo.dbn.zst"),
        &root,
        None,
        false,
    )
    .unwrap();
    assert_eq!(dbn.messages, 68_792);
    let series = inspect(&root).unwrap();
    let btc = series.iter().find(|s| s.symbol == "BTCUSDT").unwrap();
    assert_eq!(btc.venue, "binance-spot");
    assert_eq!(
        btc.crossed_moments, 0,
        "the snapshot sync must leave no stale levels"
    );
    assert_eq!(btc.by_kind[2], 9_757 + 10_147, "every trade of both halves");
    let es = series.iter().find(|s| s.symbol == "ESH4").unwrap();
    assert_eq!(es.by_kind[4], 68_792);
}

#[test]
fn bad_input_is_located_or_skipped() {
    let root = tmp("bad");
    std::fs::create_dir_all(&root).unwrap();
    let capture = root.join("c.txt");
    std::fs::write(
        &capture,
        "1 {\"stream\":\"x@trade\",\"data\":{\"s\":\"X\",\"T\":1,\"t\":1,\"p\":\"1\",\"q\":\"1\",\"m\":true}}\n2 {not json\n3 {\"stream\":\"x@trade\",\"data\":{\"s\":\"X\",\"T\":2,\"t\":2,\"p\":\"NaN\",\"q\":\"1\",\"m\":true}}\n",
    )
    .unwrap();
    let err = import(&capture, &root.join("out"), None, false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("c.txt") && err.contains("line 2"), "{err}");
    let s = import(&capture, &root.join("out2"), None, true).unwrap();
    assert_eq!((s.messages, s.skipped, s.rows), (3, 2, 1));
    let corrupt = root.join("corrupt.parquet");
    std::fs::write(&corrupt, b"PAR1 this is not parquet").unwrap();
    assert!(inspect(&corrupt).is_err());
    let unknown = root.join("u.bin");
    std::fs::write(&unknown, b"\x00\x01\x02").unwrap();
    assert!(
        import(&unknown, &root.join("out3"), None, false)
            .unwrap_err()
            .to_string()
            .contains("unknown format")
    );
}

#[test]
fn tardis_csv_imports_with_snapshot_clear_and_message_boundaries() {
    let data = data_dir();
    let root = tmp("tardis");
    let book = import(
        &data.join("misc_small/deribit_incremental_book_L2_BTC-PERPETUAL.csv"),
        &root,
        None,
        false,
    )
    .unwrap();
    assert_eq!(
        (book.messages, book.rows),
        (15, 16),
        "15 levels plus the snapshot's clear"
    );
    let trades = import(
        &data.join("misc_small/bitmex_trades_XBTUSD.csv"),
        &root,
        None,
        false,
    )
    .unwrap();
    assert_eq!(trades.rows, 10);
    let series = inspect(&root).unwrap();
    let deribit = series.iter().find(|s| s.venue == "tardis-deribit").unwrap();
    assert_eq!(
        (
            deribit.by_kind[0],
            deribit.by_kind[1],
            deribit.crossed_moments
        ),
        (1, 15, 0)
    );
    let mut last_flags = Vec::new();
    for f in data_files(&root.join("venue=tardis-bitmex")).unwrap() {
        read_file(&f, |_, r| {
            last_flags.push(r.flags & hft_core::FLAG_LAST != 0)
        })
        .unwrap();
    }
    assert!(
        last_flags.iter().all(|l| *l),
        "every trade is its own message"
    );
}

#[test]
fn merged_reader_interleaves_series_in_time_order_within_a_range() {
    use hft_store::{MergedReader, SeriesFilter};
    let root = tmp("merge");
    let mut w = StoreWriter::create(&root).unwrap().with_row_group_rows(100);
    for (k, sym) in ["A", "B", "C"].iter().enumerate() {
        let series = SeriesMeta {
            venue: "v".into(),
            symbol: (*sym).into(),
            price_scale: 0,
            qty_scale: 0,
        };
        for i in 0..1_000u64 {
            // Interleaved timestamps: A at 0,3,6.. B at 1,4,7.. C at 2,5,8..
            let row = Row {
                ts_exchange: 1_000_000 + 3 * i + k as u64,
                seq: i,
                kind: RowKind::Trade as u8,
                ..Row::default()
            };
            w.append(&series, &row).unwrap();
        }
    }
    w.finish().unwrap();
    let filter = SeriesFilter {
        venue: None,
        symbols: vec!["A".into(), "C".into()],
    };
    let mut r = MergedReader::open(&root, &filter, 1_000_300, 1_000_599).unwrap();
    assert_eq!(
        r.series()
            .iter()
            .map(|s| s.symbol.as_str())
            .collect::<Vec<_>>(),
        vec!["A", "C"]
    );
    let mut got = Vec::new();
    while let Some((i, row)) = r.next_row().unwrap() {
        got.push((row.ts_exchange, r.series()[i].symbol.clone()));
    }
    assert_eq!(got.len(), 200, "100 of A and 100 of C in the range");
    assert!(
        got.windows(2).all(|w| w[0].0 < w[1].0),
        "strictly increasing time"
    );
    assert!(got.iter().all(|(t, _)| (1_000_300..=1_000_599).contains(t)));
    assert!(
        got.iter()
            .all(|(t, s)| (s == "A" && t % 3 == 1) || (s == "C" && t % 3 == 0))
    );
    // The batch replay gives the same events in the same order, runs of one series
    // (here: A alone after C's range ends) included, whatever the batch size.
    for (from, to) in [
        (1_000_300, 1_000_599),
        (0, u64::MAX),
        (1_002_000, 1_002_990),
    ] {
        let mut by_row = Vec::new();
        let mut r = MergedReader::open(&root, &SeriesFilter::default(), from, to).unwrap();
        while let Some((i, row)) = r.next_row().unwrap() {
            by_row.push(row.to_event(hft_core::InstrumentId(i as u32)).unwrap());
        }
        for max in [1, 7, 4096] {
            let mut r = MergedReader::open(&root, &SeriesFilter::default(), from, to).unwrap();
            let mut by_batch = Vec::new();
            while r.next_events(&mut by_batch, max).unwrap() > 0 {}
            assert_eq!(by_batch, by_row, "range {from}..={to}, batches of {max}");
        }
    }
    let one = Row {
        kind: RowKind::Trade as u8,
        ..Row::default()
    };
    let series = SeriesMeta {
        venue: "v".into(),
        symbol: "LONE".into(),
        price_scale: 0,
        qty_scale: 0,
    };
    let lone = tmp("merge-lone");
    let mut w = StoreWriter::create(&lone).unwrap().with_row_group_rows(64);
    for i in 0..1_000u64 {
        w.append(
            &series,
            &Row {
                ts_exchange: 5 + i / 3,
                seq: i,
                ..one
            },
        )
        .unwrap();
    }
    w.finish().unwrap();
    let mut r = MergedReader::open(&lone, &SeriesFilter::default(), 0, u64::MAX).unwrap();
    let mut all = Vec::new();
    while r.next_events(&mut all, 100).unwrap() > 0 {}
    assert_eq!(
        all.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (0..1_000).collect::<Vec<_>>()
    );
}

/// A day's book and its trades imported apart become two files of one series that
/// overlap in time: the replay merges them in time order, as one series, the book
/// state of a replay from the middle included; a later day's file follows on.
#[test]
fn overlapping_files_of_one_series_are_merged_in_time_order() {
    use hft_store::{MergedReader, SeriesFilter};
    let root = tmp("overlap");
    let series = SeriesMeta {
        venue: "v".into(),
        symbol: "S".into(),
        price_scale: 0,
        qty_scale: 0,
    };
    const DAY: u64 = 86_400_000_000_000;
    let book = |i: u64| Row {
        ts_exchange: DAY + 10 * i,
        seq: i,
        kind: RowKind::Level as u8,
        side: (i % 2) as u8,
        price: if i % 2 == 0 {
            100 - (i % 5) as i64
        } else {
            110 + (i % 5) as i64
        },
        qty: 1 + (i % 3) as i64,
        flags: hft_core::FLAG_LAST,
        ..Row::default()
    };
    let trade = |i: u64| Row {
        ts_exchange: DAY + 10 * i + 5,
        seq: 10_000 + i,
        kind: RowKind::Trade as u8,
        price: 105,
        qty: 1,
        ..Row::default()
    };
    // Three imports: the book of day 1, its trades, then day 2's book.
    for rows in [
        (0..500).map(book).collect::<Vec<_>>(),
        (0..500).map(trade).collect(),
        (0..100)
            .map(|i| Row {
                ts_exchange: 2 * DAY + i,
                ..book(i)
            })
            .collect(),
    ] {
        let mut w = StoreWriter::create(&root).unwrap().with_row_group_rows(64);
        for r in &rows {
            w.append(&series, r).unwrap();
        }
        w.finish().unwrap();
    }
    assert_eq!(data_files(&root).unwrap().len(), 3);
    for from in [0, DAY + 2_000] {
        let mut r = MergedReader::open(&root, &SeriesFilter::default(), from, u64::MAX).unwrap();
        assert_eq!(r.series().len(), 1);
        let mut got = Vec::new();
        while let Some((i, row)) = r.next_row().unwrap() {
            assert_eq!(i, 0, "one series");
            got.push(row);
        }
        assert!(
            got.windows(2).all(|w| w[0].ts_exchange <= w[1].ts_exchange),
            "time order from {from}"
        );
        let trades = got
            .iter()
            .filter(|r| r.kind == RowKind::Trade as u8)
            .count();
        let want = (0..500).filter(|&i| trade(i).ts_exchange >= from).count();
        assert_eq!(trades, want, "every trade from {from}");
        assert_eq!(got.last().unwrap().ts_exchange, 2 * DAY + 99);
        // The batch replay agrees, whatever the batch size.
        for max in [1, 7, 4096] {
            let mut r =
                MergedReader::open(&root, &SeriesFilter::default(), from, u64::MAX).unwrap();
            let mut events = Vec::new();
            while r.next_events(&mut events, max).unwrap() > 0 {}
            let by_row: Vec<_> = got
                .iter()
                .filter_map(|r| r.to_event(hft_core::InstrumentId(0)))
                .collect();
            assert_eq!(events, by_row, "from {from}, batches of {max}");
        }
    }
    let _ = std::fs::remove_dir_all(&root);
}

/// Truncated and bit-flipped real files (Parquet written here, DBN and gzip captures
/// from the shared data) come back as errors or as what is readable, never as a panic.
#[test]
fn truncated_and_corrupt_files_never_panic() {
    let data = data_dir();
    let root = tmp("corrupt-real");
    std::fs::create_dir_all(&root).unwrap();
    let capture = data.join("binance_ws_raw/spot_ethusdt_20240808.gz");
    import(&capture, &root.join("store"), None, false).unwrap();
    let file = data_files(&root.join("store")).unwrap().remove(0);
    let good = std::fs::read(&file).unwrap();
    let bad = root.join("bad.parquet");
    // Flip bytes across the whole file, page data and footer alike.
    for k in 0..64usize {
        let mut b = good.clone();
        let at = (k * 7919 * 31) % b.len();
        b[at] ^= 0x5a;
        if k % 4 == 0 {
            b.truncate(b.len() - 1 - (k * 13) % 64);
        }
        std::fs::write(&bad, &b).unwrap();
        let _ = inspect(&bad);
        let _ = read_file(&bad, |_, _| {});
        if let Ok(mut r) = hft_store::MergedReader::open(&bad, &Default::default(), 0, u64::MAX) {
            while let Ok(Some(_)) = r.next_row() {}
        }
    }
    for (name, cut) in [
        ("cme_databento/esh4-glbx-mdp3-20231225.mbo.dbn.zst", 2),
        ("binance_ws_raw/spot_btcusdt_20240809.gz", 3),
    ] {
        let bytes = std::fs::read(data.join(name)).unwrap();
        let short = root.join(name.rsplit('/').next().unwrap());
        std::fs::write(&short, &bytes[..bytes.len() / cut]).unwrap();
        let r = import(&short, &root.join(format!("out-{cut}")), None, false);
        assert!(r.is_err(), "{name} cut short must be an error");
        let msg = r.unwrap_err().to_string();
        assert!(
            msg.contains(short.file_name().unwrap().to_str().unwrap()),
            "{msg}"
        );
    }
    let _ = std::fs::remove_dir_all(&root);
}

/// Every market data file of the shared data set — raw captures, their CSV flattening,
/// DBN and its CSV, Binance T_DEPTH, Tardis incremental/trades/snapshot files, a zipped
/// Bybit capture — imports, and the books rebuilt from the store are never crossed.
#[test]
fn every_shared_market_data_file_imports_into_uncrossed_books() {
    let data = data_dir();
    let root = tmp("every-file");
    let mut files = Vec::new();
    for dir in [
        "binance_ws_raw",
        "binance_csv",
        "cme_databento",
        "misc_small",
    ] {
        for e in std::fs::read_dir(data.join(dir)).unwrap() {
            files.push(e.unwrap().path());
        }
    }
    files.sort();
    assert!(files.len() >= 44, "{} files", files.len());
    for (k, f) in files.iter().enumerate() {
        let out = root.join(k.to_string());
        let s = import(f, &out, None, false).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        assert!(s.rows > 0, "{}: no rows", f.display());
        for series in inspect(&out).unwrap() {
            assert_eq!(
                series.crossed_moments,
                0,
                "{}: {} crossed",
                f.display(),
                series.symbol
            );
        }
    }
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn a_failed_import_leaves_the_store_as_it_was() {
    let root = tmp("failed-import");
    let raw = data_dir().join("binance_ws_raw");
    import(&raw.join("spot_ethusdt_20240808.gz"), &root, None, false).unwrap();
    let before = data_files(&root).unwrap();
    // Spot BTC sizes have 8 decimals; 5 cannot hold them and the import stops.
    let spec = hft_core::InstrumentSpec::new(
        hft_core::InstrumentId(0),
        "BTCUSDT",
        2,
        5,
        hft_core::Price(1),
        hft_core::Qty(1),
    );
    let opts = hft_store::ImportOptions {
        instruments: vec![spec],
        ..Default::default()
    };
    let err = hft_store::import_with(&raw.join("spot_btcusdt_20240808.gz"), &root, &opts)
        .expect_err("too coarse a scale must fail");
    assert!(err.to_string().contains("finer than"), "{err}");
    assert_eq!(
        data_files(&root).unwrap(),
        before,
        "the failed import left files behind"
    );
    assert!(inspect(&root).is_ok(), "the store no longer reads");
    let _ = std::fs::remove_dir_all(&root);
}

/// A replay from the middle skips the files before the last clear only when they end
/// before the start: trades imported apart from the book (an earlier file of the same
/// day) still come through, none lost.
#[test]
fn a_replay_from_the_middle_keeps_earlier_files_that_reach_past_the_start() {
    let root = tmp("warm-up-files");
    let series = SeriesMeta {
        venue: "v".into(),
        symbol: "T".into(),
        price_scale: 0,
        qty_scale: 0,
    };
    let hour = 3_600_000_000_000u64;
    let day = 24 * hour;
    let row = |ts: u64, kind: RowKind, flags: u8, side: u8, price: i64| Row {
        ts_exchange: ts,
        ts_recv: ts,
        seq: ts / hour,
        flags: flags | hft_core::FLAG_LAST,
        kind: kind as u8,
        side,
        price,
        qty: 1,
        ..Row::default()
    };
    // First import: the day's trades, one an hour.
    let mut w = StoreWriter::create(&root).unwrap();
    for h in 0..24 {
        w.append(
            &series,
            &row(10 * day + h * hour + 1, RowKind::Trade, 0, 0, 100),
        )
        .unwrap();
    }
    w.finish().unwrap();
    // Second: the book, a snapshot at 01:00 then a level each hour, in row groups of
    // five rows (the first, with the clear, ends before the start).
    let mut w = StoreWriter::create(&root).unwrap().with_row_group_rows(5);
    let snap = hft_core::FLAG_SNAPSHOT;
    w.append(
        &series,
        &Row {
            flags: snap,
            ..row(10 * day + hour, RowKind::Clear, 0, 2, 0)
        },
    )
    .unwrap();
    for h in 2..24 {
        w.append(
            &series,
            &row(10 * day + h * hour, RowKind::Level, 0, 0, 90 + h as i64),
        )
        .unwrap();
    }
    w.finish().unwrap();
    assert_eq!(data_files(&root).unwrap().len(), 2);
    let from = 10 * day + 12 * hour;
    let mut r =
        hft_store::MergedReader::open(&root, &hft_store::SeriesFilter::default(), from, u64::MAX)
            .unwrap();
    let mut events = Vec::new();
    while r.next_events(&mut events, 100).unwrap() > 0 {}
    let trades = events
        .iter()
        .filter(|e| matches!(e.kind, hft_core::MarketEventKind::Trade { .. }))
        .count();
    // None is lost. (The two files overlap in time, and one series' files are read one
    // after the other, not merged with each other: import a day's trades and book in
    // one go to have them interleaved.)
    assert_eq!(trades, 12, "the afternoon's trades");
    let _ = std::fs::remove_dir_all(&root);
}

/// A Parquet file the fuzzer found (`store_file`): a page whose varint runs past ten
/// bytes, on which the parquet crate asserts. Read row by row or replayed, it is an
/// error naming the file, not a panic.
#[test]
fn a_footer_the_parquet_decoder_would_loop_on_is_refused() {
    // Found by fuzzing: a footer with a map of billions of booleans, which the parquet
    // crate's Thrift skipper walks without reading a byte (minutes per file).
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/corrupt-footer-bools.parquet");
    let dir = tmp("corrupt-footer");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(&path, dir.join("part-0000.parquet")).unwrap();
    let e = read_file(&dir.join("part-0000.parquet"), |_, _| {}).expect_err("corrupt");
    assert!(
        e.to_string().contains("footer: a corrupt footer (a map)"),
        "{e}"
    );
    let open =
        hft_store::MergedReader::open(&dir, &hft_store::SeriesFilter::default(), 0, u64::MAX);
    assert!(open.is_err(), "the replay refuses it too");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_page_the_parquet_decoder_panics_on_is_an_error() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/corrupt-vlq.parquet");
    let dir = tmp("corrupt-vlq");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(&path, dir.join("part-0000.parquet")).unwrap();
    let e = read_file(&dir.join("part-0000.parquet"), |_, _| {}).expect_err("corrupt");
    assert!(e.to_string().contains("part-0000.parquet"), "{e}");
    assert!(e.to_string().contains("corrupt"), "{e}");
    // The replay fails at its start (it reads each series' first rows) or on its way.
    let failed =
        match hft_store::MergedReader::open(&dir, &hft_store::SeriesFilter::default(), 0, u64::MAX)
        {
            Err(e) => e.to_string().contains("corrupt"),
            Ok(mut r) => {
                let mut events = Vec::new();
                loop {
                    match r.next_events(&mut events, 512) {
                        Ok(0) => break false,
                        Ok(_) => events.clear(),
                        Err(e) => break e.to_string().contains("corrupt"),
                    }
                }
            }
        };
    assert!(failed, "the replay reports the corrupt page");
    let _ = std::fs::remove_dir_all(&dir);
}
