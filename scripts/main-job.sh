#!/usr/bin/env bash
# The main job on the embedded default (SQLite, Phase 3): initialise, load synthetic leads when the
# store is empty and real data is off, then show what is stored.
set -euo pipefail
cd "$(dirname "$0")/.."
valhalla() { node bin/valhalla.js "$@"; }

valhalla init
total=$(valhalla status --json | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).leads.total))')
if [ "$total" = "0" ] && [ "${VALHALLA_REAL_DATA_INGEST:-0}" != "1" ]; then
  mkdir -p data
  valhalla leads generate --count 5000 --seed 1 --out data/synthetic-leads.csv
  valhalla ingest data/synthetic-leads.csv
fi
valhalla status
valhalla audit verify
