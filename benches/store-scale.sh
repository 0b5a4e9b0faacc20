#!/usr/bin/env bash
# How the store's cost grows with its size (issue 14, target 4):
#   benches/store-scale.sh [N ...]        (default: 10000 100000 1000000)
# Runs benches/store-figures.sh for every N (a fresh gateway and store each), collects one
# CSV row per N in benches/store-scale.csv (lookup hit/miss, RSS after restart and during
# the import, size on disk, restart time, sweep time, import and export rates, p99 of a
# paced load without / during the sweep) and renders benches/store-scale.svg from it.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
csv="$here/benches/store-scale.csv"
svg="$here/benches/store-scale.svg"
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(10000 100000 1000000)
rm -f "$csv"
for n in "${sizes[@]}"; do
  echo "== N = $n"
  "$here/benches/store-figures.sh" "$n" "$csv"
done
(cd "$here" && cargo bench --bench store_probe -- chart "$csv" "$svg")
echo "wrote $csv and $svg"
cat "$csv"
