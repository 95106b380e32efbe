//! What the admin API tests share.

use std::path::Path;

use hft_cluster::booking::SessionLedger;

/// A single-member ledger in `dir` that knows BTC-USD (prices 2, quantities 3
/// decimals), leading and ready.
pub fn btc_ledger(dir: &Path) -> SessionLedger {
    let specs = [hft_core::InstrumentSpec::new(
        hft_core::InstrumentId(0),
        "BTC-USD",
        2,
        3,
        hft_core::Price(1),
        hft_core::Qty(1),
    )];
    SessionLedger::start(Some(dir), &specs).unwrap()
}
