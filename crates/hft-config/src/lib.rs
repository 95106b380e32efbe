//! One typed configuration schema for an hft node, loaded in layers:
//!
//! 1. the embedded default ([`DEFAULT_TOML`], `config/default.toml`), which documents every
//!    key and always loads;
//! 2. an optional overlay file (`--config FILE`) holding only the keys it changes;
//! 3. `HFT_*` environment variables, e.g. `HFT_SIMULATOR__SEED=5` for `simulator.seed`.
//!
//! Tables merge key by key, lists (`instruments`, `strategies`) are replaced as a whole.
//! Unknown keys, wrong types and out-of-range values are refused with a [`ConfigError`]
//! that says what is wrong, where (file:line:column or variable, and the dotted field
//! path) and how to fix it, so a node never starts on a configuration nobody meant.

mod error;
mod layers;
mod model;
mod path;
mod raw;
mod validate;

use std::path::Path;

pub use error::{ConfigError, Diagnostic, ErrorKind, Origin, Position};
pub use model::{
    Config, EngineConfig, InstrumentConfig, LedgerConfig, LogFormat, NodeConfig, SimulatorConfig,
    StrategyConfig, StrategyKind, TelemetryConfig, Variant,
};
pub use validate::is_venue_name;

/// The embedded default configuration: the bottom layer of every load, compiled in so a
/// node needs no file to start and the documented defaults cannot go missing.
pub const DEFAULT_TOML: &str = include_str!("../../../config/default.toml");

/// Loads the effective configuration: embedded default <- `overlay` file <- `env`.
///
/// `env` is every environment variable as `(name, value)`; those starting with `HFT_` are
/// overrides (all of them: an unknown one is an error, not silently ignored). A node passes
/// `std::env::vars_os()` converted lossily to strings; tests pass a fixed list so they do
/// not depend on the process environment. Within `env`, variables apply in name order.
pub fn load(
    overlay: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    match overlay {
        None => layers::load(None, env),
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            layers::load(Some((&path.display().to_string(), &text)), env)
        }
    }
}

/// Like [`load`] with the overlay given as text; `overlay_name` names it in error messages.
/// For tests and for callers that obtained the overlay elsewhere.
pub fn load_str(
    overlay_name: &str,
    overlay_text: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    layers::load(Some((overlay_name, overlay_text)), env)
}

/// Validates an overlay file on its own terms (no environment), for `hft config check`:
/// the same result the node would get from `--config path` in a clean environment.
pub fn check_file(path: &Path) -> Result<Config, ConfigError> {
    load(Some(path), std::iter::empty())
}
