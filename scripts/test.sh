#!/usr/bin/env bash
# Runs the whole test suite. Installs what the build and the tests need when it is
# missing (protoc and its well-known types for the etcd client's generated code, etcd
# itself for the tests and benchmarks that start a real one, Python's venv, Helm and the schema validators for
# the chart tests, cargo-nextest), and keeps the build cache outside the clone so
# repeated runs only rebuild what changed.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/hft-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
missing=()
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
# protoc's well-known types (google/protobuf/*.proto), which the etcd client's protos
# import: only recommended by protobuf-compiler, so not installed with it here.
[ -f /usr/include/google/protobuf/descriptor.proto ] || missing+=(libprotobuf-dev)
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
# Python with venv for the chart and CRD schema validators (scripts/chart-tools.sh).
command -v python3 >/dev/null 2>&1 || missing+=(python3)
python3 -c 'import ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
if ! command -v cargo-nextest >/dev/null 2>&1; then
  cargo install --locked cargo-nextest
fi
# Helm, kubernetes-validate and hadolint for the operator's chart tests (kept in
# /var/tmp/hft-tools between runs).
./scripts/chart-tools.sh >/dev/null
# The suite's build has the fail points the chaos tests inject faults at (a production
# build has none).
features=(--features hft/failpoints)
cargo build --workspace --all-targets --locked "${features[@]}"
cargo test --workspace --doc --locked "${features[@]}"
# Last, so the run closes on the test runner's summary of the whole suite.
cargo nextest run --workspace --locked --no-fail-fast "${features[@]}"
