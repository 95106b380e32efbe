//! Helpers shared by the backtester's integration tests.

use std::path::PathBuf;

/// A raw Binance capture from the shared sample data (`DATA` overrides its root).
pub fn capture(name: &str) -> PathBuf {
    let root = std::env::var_os("DATA").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"),
        PathBuf::from,
    );
    let p = root.join("binance_ws_raw").join(name);
    assert!(p.exists(), "test data {} missing (set DATA)", p.display());
    p
}
