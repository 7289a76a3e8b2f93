#!/usr/bin/env bash
# End-to-end tests against real Open WebUI servers (default: 0.12.4 and
# 0.6.40), each started offline on 127.0.0.1 with a fresh data directory and
# the stand-in model. Installs each version once into
# ${FERRY_E2E_CACHE:-~/.cache/ferry-e2e}. Extra arguments go to the test
# binary (a test name filter, say).
#
# usage: scripts/e2e.sh [TEST_FILTER...]     FERRY_E2E_VERSIONS="0.12.4" to pick
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/e2e/lib.sh
trap e2e_stop EXIT

versions=${FERRY_E2E_VERSIONS:-0.12.4 0.6.40}
# The status pages are tested in headless Chromium.
scripts/e2e/install-browser.sh
cargo build --quiet --tests --bins
# The e2e tests are the ignored ones of the one test binary, in groups (by
# module) that want different parallelism (the last: the status pages in a
# browser); `--skip` picks the group, so a filter given here still narrows
# within it.
group() { cargo test --quiet --test it -- --ignored "$@"; }
for version in $versions; do
  work=$(mktemp -d "${TMPDIR:-/tmp}/ferry-e2e-$version.XXXXXX")
  e2e_start "$version" "$work"
  echo "e2e: running tests against Open WebUI $version" >&2
  group --skip e2e_chat:: --skip e2e_daemon:: --skip e2e_ui:: --test-threads 2 "$@"
  group --skip e2e:: --skip e2e_daemon:: --skip e2e_ui:: "$@"
  # One daemon test at a time: each loads Open WebUI on its own.
  group --skip e2e:: --skip e2e_chat:: --skip e2e_ui:: --test-threads 1 "$@"
  # The pages are ferry's own: one Open WebUI (the newest) is enough.
  case $version in 0.6.*) ;; *) group --skip e2e:: --skip e2e_chat:: --skip e2e_daemon:: "$@" ;; esac
  e2e_stop
  rm -rf "$work"
done
