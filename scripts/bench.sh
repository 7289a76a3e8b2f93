#!/usr/bin/env bash
# Benchmarks (figures, not pass/fail).
#   real      1,000 small files through a real Open WebUI 0.12.4 (started
#             here, offline, with the stand-in model): files/s, drop → linked
#             latency, CPU, RSS;
#   ingest    real's run against the in-process fake, which answers at
#             once: ferry's own CPU per file, without the server's speed;
#   settle    the watcher settling a 100,000-file copy (10,000 files/s),
#             in memory: time per event;
#   fake      a 100,000-file unchanged tree against the in-process fake:
#             startup reconcile time, RSS, idle CPU;
#   triggers  hooks (202 latency at 200 concurrent senders), schedule firing
#             delay, deliveries/s and job → first attempt latency;
#   ui        the status pages with 100,000 documents and 100,000 jobs:
#             server time per page, page weight.
# usage: scripts/bench.sh [fake] [real] [ingest] [settle] [triggers] [ui]   (default: all)
#   FERRY_BENCH_FILES=1000 FERRY_BENCH_TREE=100000 to change the sizes.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/e2e/lib.sh
trap e2e_stop EXIT
parts=${*:-fake real ingest settle triggers ui}
watch_parts=""
for p in $parts; do
  case $p in
    fake | real | ingest | settle | ui) watch_parts="$watch_parts $p" ;;
    triggers) ;;
    *) echo "unknown part: $p" >&2; exit 2 ;;
  esac
done
if [[ -n "$watch_parts" ]]; then
  cargo bench --no-run --quiet --bench watch
  if [[ " $parts " == *" real "* ]]; then
    work=$(mktemp -d "${TMPDIR:-/tmp}/ferry-bench.XXXXXX")
    e2e_start "${FERRY_BENCH_VERSION:-0.12.4}" "$work"
  fi
  cargo bench --quiet --bench watch -- $watch_parts
fi
if [[ " $parts " == *" triggers "* ]]; then
  cargo bench --quiet --bench triggers
fi
