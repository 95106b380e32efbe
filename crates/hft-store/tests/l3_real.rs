//! The L3 book on real CME market-by-order data (Databento MBO, E-mini S&P ESH4, imported
//! into the store): every record applies, every fill of a resting order names one at its
//! limit or better (icebergs may fill beyond their displayed size), the book is never crossed at the end of an event once
//! the market is open, and the L2 view
//! derived update by update equals the L3 book's own levels throughout.

use hft_book::{L2Book, L3Book, MboAction};
use hft_core::{FLAG_LAST, InstrumentId, MarketEvent, MarketEventKind, Price, Qty, Side};
use hft_store::{MergedReader, RowKind, data_files, import, read_file};
use std::collections::HashMap;
use std::path::PathBuf;

/// The flags the importer maps Databento's `F_LAST` and `F_SNAPSHOT` to.
const F_LAST: u8 = hft_core::FLAG_LAST;
const F_SNAPSHOT: u8 = hft_core::FLAG_SNAPSHOT;

fn mbo_file() -> PathBuf {
    let dir = std::env::var_os("DATA").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"),
        PathBuf::from,
    );
    let p = dir.join("cme_databento/esh4-glbx-mdp3-20231225.mbo.dbn.zst");
    assert!(p.exists(), "test data {} missing (set DATA)", p.display());
    p
}

#[derive(Default)]
struct Check {
    records: u64,
    refused: u64,
    fills: u64,
    events: u64,
    crossed: u64,
    l2_mismatches: u64,
    queue_checks: u64,
    open: bool,
    undisplayed_fills: u64,
    aggressor: Option<u64>,
    aggressor_fills: u64,
    iceberg_fills: u64,
}

#[test]
fn l3_book_from_real_mbo_is_consistent_and_its_l2_view_matches() {
    let root = std::env::temp_dir().join(format!("hft-l3-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    import(&mbo_file(), &root, None, false).unwrap();
    let mut books: HashMap<String, (L3Book, L2Book)> = HashMap::new();
    let mut c = Check::default();
    for f in data_files(&root).unwrap() {
        read_file(&f, |meta, row| {
            if row.kind != RowKind::Order as u8 {
                return;
            }
            c.records += 1;
            let (l3, l2) = books.entry(meta.symbol.clone()).or_insert_with(|| {
                (
                    L3Book::with_capacity(InstrumentId(0), 16_384),
                    L2Book::with_capacity(InstrumentId(0), 1024),
                )
            });
            let side = match row.side {
                0 => Some(Side::Buy),
                1 => Some(Side::Sell),
                _ => None,
            };
            let Some(action) = MboAction::from_databento(row.action) else {
                c.refused += 1;
                return;
            };
            let (price, qty) = (Price(row.price), Qty(row.qty));
            if action == MboAction::Trade {
                c.aggressor = Some(row.order_id);
            }
            if action == MboAction::Fill && c.aggressor == Some(row.order_id) {
                // The aggressor's own fill: its order is booked only after the trade.
                c.fills += 1;
                c.aggressor_fills += 1;
            } else if action == MboAction::Fill {
                c.fills += 1;
                let o = l3.order(row.order_id).copied();
                // At its limit or better (the reopening auction fills at one price).
                let within_limit = |o: &hft_book::RestingOrder| match o.side {
                    Side::Buy => price <= o.price,
                    Side::Sell => price >= o.price,
                };
                // Auction fills (side N) may fill orders that were never displayed.
                if o.is_none() && side.is_none() {
                    c.undisplayed_fills += 1;
                    return;
                }
                // Iceberg orders fill more than they display, then replenish.
                if o.is_some_and(|o| o.qty.raw() < qty.raw()) {
                    c.iceberg_fills += 1;
                }
                assert!(
                    o.is_some_and(|o| within_limit(&o)),
                    "fill of order {} at {} x {} does not match the book's {o:?}",
                    row.order_id,
                    row.price,
                    row.qty
                );
                // Its place in the queue is known: nothing ahead of a filled order at
                // a level can be larger than the level.
                let q = l3.queue_position(row.order_id).unwrap();
                assert!(q.qty_ahead.raw() < q.level_qty.raw());
                c.queue_checks += 1;
            }
            // The levels an update can touch: the order's old place and its new one.
            let before = l3.order(row.order_id).map(|o| (o.side, o.price));
            match l3.apply(action, row.order_id, side, price, qty, false) {
                Ok(()) => {}
                Err(_) => c.refused += 1,
            }
            if action == MboAction::Clear {
                let _ = l2.apply(&ev(MarketEventKind::Clear));
            }
            let after = l3.order(row.order_id).map(|o| (o.side, o.price));
            for (s, p) in [before, after].into_iter().flatten() {
                let _ = l2.apply(&ev(MarketEventKind::Level {
                    side: s,
                    price: p,
                    qty: l3.level_qty(s, p),
                }));
            }
            if action == MboAction::Fill && row.flags & F_LAST != 0 {
                c.open = true;
            }
            if row.flags & F_LAST != 0 {
                c.events += 1;
                // Before the reopening auction uncrosses, a pre-open book may cross.
                if c.open && row.flags & F_SNAPSHOT == 0 && l3.is_crossed() {
                    c.crossed += 1;
                }
                for s in [Side::Buy, Side::Sell] {
                    let from_l3: Vec<(Price, Qty)> = l3.levels(s).map(|(p, q, _)| (p, q)).collect();
                    let from_l2: Vec<(Price, Qty)> = l2.levels(s).collect();
                    if from_l3 != from_l2 {
                        c.l2_mismatches += 1;
                    }
                }
            }
        })
        .unwrap();
    }
    let _ = std::fs::remove_dir_all(&root);
    assert_eq!(c.records, 68_792, "every MBO record of the file");
    assert_eq!(c.refused, 0, "every record applies to the book");
    assert!(c.fills > 6_000 && c.queue_checks + c.undisplayed_fills + c.aggressor_fills == c.fills);
    assert!(
        c.queue_checks > 2_000,
        "resting-order fills checked: {}",
        c.queue_checks
    );
    assert!(
        c.undisplayed_fills < 20,
        "{} auction fills of undisplayed orders",
        c.undisplayed_fills
    );
    assert!(c.events > 10_000);
    assert_eq!(c.crossed, 0, "never crossed at the end of an event");
    assert_eq!(c.l2_mismatches, 0);
    let (l3, _) = books.values().max_by_key(|(b, _)| b.order_count()).unwrap();
    assert!(l3.order_count() > 1000, "the front month keeps a deep book");
}

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

#[test]
fn the_reader_turns_mbo_records_into_levels_that_match_the_order_book() {
    let root = std::env::temp_dir().join(format!("hft-l3-reader-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    import(&mbo_file(), &root, None, false).unwrap();
    let mut r = MergedReader::open(&root, &Default::default(), 0, u64::MAX).unwrap();
    let n = r.series().len();
    // An order book fed only the order events, and an L2 book fed only the rest.
    let mut l3: Vec<L3Book> = (0..n)
        .map(|i| L3Book::with_capacity(InstrumentId(i as u32), 16_384))
        .collect();
    let mut l2: Vec<L2Book> = (0..n)
        .map(|i| L2Book::with_capacity(InstrumentId(i as u32), 4096))
        .collect();
    let (mut orders, mut trades, mut checked, mut mismatches) = (0u64, 0u64, 0u64, 0u64);
    let mut events = Vec::new();
    while r.next_events(&mut events, 4096).unwrap() > 0 {
        for e in events.drain(..) {
            let i = e.instrument.index();
            match e.kind {
                MarketEventKind::Order {
                    action,
                    side,
                    order_id,
                    price,
                    qty,
                } => {
                    orders += 1;
                    let _ = l3[i].apply(action, order_id, side, price, qty, false);
                }
                MarketEventKind::Trade { .. } => trades += 1,
                _ => {
                    let _ = l2[i].apply(&e);
                }
            }
            if e.is_last() {
                checked += 1;
                for s in [Side::Buy, Side::Sell] {
                    let a: Vec<(Price, Qty)> = l3[i].levels(s).map(|(p, q, _)| (p, q)).collect();
                    let b: Vec<(Price, Qty)> = l2[i].levels(s).collect();
                    mismatches += u64::from(a != b);
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&root);
    assert!(orders > 60_000, "{orders} order events");
    assert!(trades > 1_000, "{trades} trade prints");
    assert!(checked > 10_000, "{checked} message ends");
    assert_eq!(
        mismatches, 0,
        "the L2 view equals the order book at every message end"
    );
}
