#!/usr/bin/env bash
# Benchmarks (figures, not pass/fail): ferry run with a watch rule.
#   1,000 small files through a real Open WebUI 0.12.4 (started here, offline,
#   with the stand-in model): files/s, drop → linked latency, CPU, RSS;
#   a 100,000-file unchanged tree against the in-process fake: startup
#   reconcile time, RSS, idle CPU.
# usage: scripts/bench.sh [fake] [real]     (default: both)
#   FERRY_BENCH_FILES=1000 FERRY_BENCH_TREE=100000 to change the sizes.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/e2e/lib.sh
trap e2e_stop EXIT
parts=${*:-fake real}
cargo bench --no-run --quiet --bench watch
if [[ " $parts " == *" real "* ]]; then
  work=$(mktemp -d "${TMPDIR:-/tmp}/ferry-bench.XXXXXX")
  e2e_start "${FERRY_BENCH_VERSION:-0.12.4}" "$work"
fi
cargo bench --quiet --bench watch -- $parts
