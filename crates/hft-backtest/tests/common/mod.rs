//! Helpers shared by the backtester's integration tests.

use std::path::PathBuf;

/// A raw Binance capture from the shared sample data (`DATA` overrides its root).
// Every test crate compiles this module; not every one reads a capture.
#[allow(dead_code)]
pub fn capture(name: &str) -> PathBuf {
    data(&format!("binance_ws_raw/{name}"))
}

/// A file of the shared sample data by its path under the data root.
pub fn data(rel: &str) -> PathBuf {
    let root = std::env::var_os("DATA").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"),
        PathBuf::from,
    );
    let p = root.join(rel);
    assert!(p.exists(), "test data {} missing (set DATA)", p.display());
    p
}
