#!/usr/bin/env bash
# The whole suite under an artificial load: LOAD busy loops (default 2 per core) in other processes,
# RUNS runs in a row (default 3), stopping at the first failure. Each run's log and its closing lines
# go to test-artifacts/load/. The busy loops end with the script, whatever happens.
#   scripts/suite-under-load.sh            # 2 x cores loops, 3 runs
#   LOAD=6 RUNS=1 scripts/suite-under-load.sh
set -uo pipefail
cd "$(dirname "$0")/.."
load=${LOAD:-$((2 * $(nproc)))}
runs=${RUNS:-3}
out=test-artifacts/load
mkdir -p "$out"
loops=()
cleanup() { for pid in "${loops[@]}"; do kill "$pid" 2>/dev/null; done; }
trap cleanup EXIT
for _ in $(seq 1 "$load"); do
  node -e 'for (;;) {}' &
  loops+=($!)
done
echo "load: $load busy loops on $(nproc) cores"
npm run build --silent && npm run typecheck --silent && npm run lint --silent || exit 1
for run in $(seq 1 "$runs"); do
  started=$(date +%s)
  CI=true npx vitest run > "$out/run-$run.log" 2>&1
  code=$?
  echo "run $run: exit $code in $(( $(date +%s) - started )) s, load average $(cut -d' ' -f1-3 /proc/loadavg)"
  grep -E 'Test Files|Tests ' "$out/run-$run.log" | sed 's/\x1b\[[0-9;]*m//g'
  [ "$code" -eq 0 ] || exit "$code"
done
