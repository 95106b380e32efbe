#!/usr/bin/env bash
# Fuzzes every decoder with cargo-fuzz (libFuzzer): ./scripts/fuzz.sh [SECONDS_PER_TARGET]
# cargo-fuzz needs unstable compiler flags; RUSTC_BOOTSTRAP enables them on stable.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${1:-60}
export CARGO_TARGET_DIR="${CARGO_FUZZ_TARGET_DIR:-/var/tmp/hft-fuzz-target}"
export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked cargo-fuzz
for t in $(cargo fuzz list); do
  echo "== $t (${secs}s)"
  cargo fuzz run -O "$t" -- -max_total_time="$secs"
done
