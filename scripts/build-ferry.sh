#!/usr/bin/env bash
# Builds ferry in PROFILE (release: what ships; dev: the test build, so CI
# compiles once) and prints the binary's path. Used by the packaging
# scripts.
#
# usage: scripts/build-ferry.sh release|dev
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}
case "${1:-}" in
  release) cargo build --release --locked --quiet; echo "$target/release/ferry" ;;
  dev) cargo build --locked --quiet; echo "$target/debug/ferry" ;;
  *) echo "build-ferry: the profile is release or dev, not '${1:-}'" >&2; exit 2 ;;
esac
