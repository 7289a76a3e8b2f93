#!/usr/bin/env bash
# Runs each property-test target of tests/it/fuzz.rs for a while with fresh
# random seeds (CI runs each once with 256 cases). A failure stops with
# proptest's minimal failing input.
#
# usage: scripts/fuzz.sh [MINUTES_PER_TARGET] [TARGET...]   (default 10, all)
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-10}
shift || true
targets=${*:-config_decoder cron_expressions signature_headers hook_bodies file_names}
cargo test --release --no-run --quiet --test it
for target in $targets; do
  end=$((SECONDS + minutes * 60))
  runs=0
  while ((SECONDS < end)); do
    PROPTEST_CASES=${FUZZ_CASES:-20000} cargo test --release --quiet --test it -- "fuzz::$target" >/tmp/ferry-fuzz.log 2>&1 || {
      cat /tmp/ferry-fuzz.log >&2
      echo "fuzz: $target failed after $runs clean runs" >&2
      exit 1
    }
    runs=$((runs + 1))
  done
  echo "fuzz: $target: $runs runs of ${FUZZ_CASES:-20000} cases, no failure"
done
