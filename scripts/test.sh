#!/usr/bin/env bash
# Runs the whole test suite. Installs what the tests need when it is missing, keeps the
# build cache outside the clone so repeated runs only rebuild what changed.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/hft-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
need_apt=()
command -v valgrind >/dev/null 2>&1 || need_apt+=(valgrind)
if [ ${#need_apt[@]} -gt 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing: ${need_apt[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
if ! command -v cargo-nextest >/dev/null 2>&1; then
  cargo install --locked cargo-nextest
fi
cargo build --workspace --all-targets --locked
cargo nextest run --workspace --locked --no-fail-fast
cargo test --workspace --doc --locked
