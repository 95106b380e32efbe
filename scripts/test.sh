#!/usr/bin/env bash
# Runs the whole test suite. Installs what the tests need when it is missing (today only
# cargo-nextest; later capabilities add their services here), and keeps the build cache
# outside the clone so repeated runs only rebuild what changed.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/hft-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
if ! command -v cargo-nextest >/dev/null 2>&1; then
  cargo install --locked cargo-nextest
fi
cargo build --workspace --all-targets --locked
cargo test --workspace --doc --locked
# Last, so the run closes on the test runner's summary of the whole suite.
cargo nextest run --workspace --locked --no-fail-fast
