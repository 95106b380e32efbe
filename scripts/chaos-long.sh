#!/usr/bin/env bash
# The chaos suite's long randomized run: `hft chaos run --schedule long` for seeds
# FIRST..LAST, JOBS at a time (each run has its own network and mount namespaces, so
# runs do not see each other), on a release build with fail points. Writes one JSON
# report per seed and a summary to OUT (default /var/tmp/hft-chaos-long), and exits
# non-zero if any seed found a violation or could not finish.
#
#   scripts/chaos-long.sh 1 100 2
#   BIN=/var/tmp/hft-chaos-long/hft scripts/chaos-long.sh 101 150 2   # same binary
set -euo pipefail
cd "$(dirname "$0")/.."
first=${1:-1} last=${2:-100} jobs=${3:-2}
out=${OUT:-/var/tmp/hft-chaos-long}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/hft-target}"
mkdir -p "$out"
if [ -n "${BIN:-}" ]; then
  # More seeds on a binary an earlier run built (one build, one set of results).
  bin=$BIN
else
  cargo build --release --locked --features failpoints --bin hft
  # A copy: another build in the same target directory must not swap the binary mid-run.
  bin="$out/hft"
  cp "$CARGO_TARGET_DIR/release/hft" "$bin"
fi
run_seed() {
  local s=$1 t0
  t0=$(date +%s)
  if timeout 1800 "$bin" chaos run --seed "$s" --schedule long --nodes "${NODES:-3}" --json \
      >"$out/seed-$s.json" 2>"$out/seed-$s.err"; then
    echo "seed $s: no violation ($(( $(date +%s) - t0 )) s)"
  else
    echo "seed $s: FAILED ($(( $(date +%s) - t0 )) s): $(tail -1 "$out/seed-$s.err")"
  fi
}
export -f run_seed
export bin out
seq "$first" "$last" | xargs -P "$jobs" -I{} bash -c 'run_seed {}' | tee -a "$out/runs.log"
python3 - "$out" "$first" "$last" <<'PY'
import glob, json, sys
out, first, last = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
runs, bad, kinds, p99, fills, faults = 0, [], {}, [], 0, 0
for s in range(first, last + 1):
    try:
        v = json.load(open(f"{out}/seed-{s}.json"))
    except (OSError, ValueError):
        bad.append((s, "no report")); continue
    runs += 1
    if v["violations"]:
        bad.append((s, v["violations"][:3]))
    for f in v["faults"]:
        kinds[f["fault"]] = kinds.get(f["fault"], 0) + 1
    faults += len(v["faults"]); fills += v["venue_fills"]; p99.append(v["resume_p99_ms"])
p99.sort()
print(f"seeds {first}-{last}: {runs} reports, {len(bad)} failed; {faults} faults, {fills} venue fills")
print("faults by kind:", ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())))
if p99:
    print(f"resume after heal, p99 per run: median {p99[len(p99)//2]} ms, max {p99[-1]} ms")
for s, why in bad:
    print(f"seed {s}: {why}")
sys.exit(1 if bad else 0)
PY
