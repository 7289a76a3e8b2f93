#!/usr/bin/env bash
# End-to-end tests against real Open WebUI servers (default: 0.12.4 and
# 0.6.40), each started offline on 127.0.0.1 with a fresh data directory and
# the stand-in model. Installs each version once into
# ${FERRY_E2E_CACHE:-~/.cache/ferry-e2e}. Extra arguments go to the test
# binary (a test name filter, say).
#
# The versions run side by side, each against its own server (most of a
# daemon test is waiting on Open WebUI, so two fit on two cores); their
# lines are prefixed with the version. FERRY_E2E_SERIAL=1 runs one after
# the other.
#
# usage: scripts/e2e.sh [TEST_FILTER...]     FERRY_E2E_VERSIONS="0.12.4" to pick
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/e2e/lib.sh

versions=${FERRY_E2E_VERSIONS:-0.12.4 0.6.40}
# The status pages are tested in headless Chromium.
scripts/e2e/install-browser.sh
cargo build --quiet --tests --bins
# Installed before anything runs, so that two versions never install at
# once into the same cache.
for version in $versions; do scripts/e2e/install-openwebui.sh "$version" >/dev/null; done
scripts/e2e/install-receiver.sh >/dev/null
scripts/e2e/install-openapi-validator.sh >/dev/null

# The e2e tests are the ignored ones of the one test binary, in groups (by
# module) that want different parallelism (the last: the status pages in a
# browser); `--skip` picks the group, so a filter given here still narrows
# within it.
group() { cargo test --quiet --test it -- --ignored "$@"; }

one_version() { # VERSION TEST_ARGS...
  local version=$1 work
  shift
  trap e2e_stop EXIT
  work=$(mktemp -d "${TMPDIR:-/tmp}/ferry-e2e-$version.XXXXXX")
  e2e_start "$version" "$work"
  echo "e2e: running tests against Open WebUI $version" >&2
  group --skip e2e_chat:: --skip e2e_daemon:: --skip e2e_ui:: --test-threads 2 "$@"
  group --skip e2e:: --skip e2e_daemon:: --skip e2e_ui:: "$@"
  # One daemon test at a time: each loads its Open WebUI on its own.
  group --skip e2e:: --skip e2e_chat:: --skip e2e_ui:: --test-threads 1 "$@"
  # The pages are ferry's own: one Open WebUI (the newest) is enough.
  case $version in 0.6.*) ;; *) group --skip e2e:: --skip e2e_chat:: --skip e2e_daemon:: "$@" ;; esac
  e2e_stop
  rm -rf "$work"
}

count=$(wc -w <<<"$versions")
if [ -n "${FERRY_E2E_SERIAL:-}" ] || [ "$count" -le 1 ]; then
  for version in $versions; do (one_version "$version" "$@"); done
  exit 0
fi
pids=()
for version in $versions; do
  (one_version "$version" "$@") > >(sed -u "s/^/[$version] /") 2>&1 &
  pids+=($!)
done
failed=()
for i in "${!pids[@]}"; do
  wait "${pids[$i]}" || failed+=("$(echo $versions | cut -d' ' -f$((i + 1)))")
done
# Let the prefixing finish its last lines.
sleep 1
if ((${#failed[@]})); then
  echo "e2e: failed against Open WebUI ${failed[*]}" >&2
  exit 1
fi
