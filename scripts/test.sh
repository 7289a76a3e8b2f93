#!/usr/bin/env bash
# Every check CI runs: formatting, lints, unit and integration tests (with
# the in-process fake of Open WebUI), then the end-to-end suite against real
# Open WebUI 0.12.4 and 0.6.40 (installed into a cache on first use).
#
# usage: scripts/test.sh           FERRY_SKIP_E2E=1 for the fast part only
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
step() { printf '\n== %s\n' "$*" >&2; }

# What the later steps download (Open WebUI, the receiver's verifier, the
# browser, the image's Debian base) is fetched in the background while
# cargo compiles; each is cached, so this costs nothing once it is there.
prefetch_log=$(mktemp "${TMPDIR:-/tmp}/ferry-prefetch.XXXXXX")
prefetch_pip="" prefetch_apt=""
if [ -z "${FERRY_SKIP_E2E:-}" ]; then
  (
    for v in ${FERRY_E2E_VERSIONS:-0.12.4 0.6.40}; do scripts/e2e/install-openwebui.sh "$v" >/dev/null; done
    scripts/e2e/install-receiver.sh >/dev/null
    scripts/e2e/install-openapi-validator.sh >/dev/null
  ) >>"$prefetch_log" 2>&1 &
  prefetch_pip=$!
  if [ "$(id -u)" = 0 ]; then
    (
      scripts/e2e/install-browser.sh
      if [ -z "${FERRY_SKIP_CONTAINER:-}" ]; then scripts/container-base.sh; fi
    ) >>"$prefetch_log" 2>&1 &
    prefetch_apt=$!
  fi
fi
# Waits for a download started above; its failure stops the run.
prefetched() {
  local pid
  for pid in "$@"; do
    [ -n "$pid" ] || continue
    wait "$pid" || { cat "$prefetch_log" >&2; echo "test: a download failed (above)" >&2; exit 1; }
  done
}

step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy --all-targets -- -D warnings"
cargo clippy --quiet --all-targets -- -D warnings
step "cargo test"
cargo test
# The package as an admin installs it: built (from the test build, so CI
# compiles once), dpkg -i, checked, purged. Needs root; CI is.
if [ "$(id -u)" = 0 ] && [ -z "${FERRY_SKIP_DEB:-}" ]; then
  # dpkg's lock: the browser's apt install must be done.
  prefetched "$prefetch_apt"
  prefetch_apt=""
  step "Debian package: build, install, check, purge"
  FERRY_DEB_PROFILE=dev scripts/check-deb.sh
  step "the package's unit under a real systemd (PID 1 in podman)"
  FERRY_DEB_PROFILE=dev scripts/check-systemd.sh
else
  step "Debian package: skipped (needs root, or FERRY_SKIP_DEB is set)"
fi
if [ -z "${FERRY_SKIP_E2E:-}" ]; then
  prefetched "$prefetch_pip" "$prefetch_apt"
  step "end-to-end against real Open WebUI"
  scripts/e2e.sh
  # The image, built from Debian packages, through the demo flow against
  # the Open WebUI the e2e step installed. Needs root (podman).
  if [ "$(id -u)" = 0 ] && [ -z "${FERRY_SKIP_CONTAINER:-}" ]; then
    step "container image: build from Debian packages, run the demo flow"
    FERRY_IMAGE_PROFILE=dev scripts/container.sh
  else
    step "container image: skipped (needs root, or FERRY_SKIP_CONTAINER is set)"
  fi
fi
