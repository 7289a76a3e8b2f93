#!/usr/bin/env bash
# The base of ferry's image: Debian bookworm (minbase) made by debootstrap
# from Debian's packages (no registry), imported into podman as
# localhost/ferry-base:bookworm. Cached; scripts/test.sh runs it early, in
# the background, so CI's compile hides its first run.
#
# usage: scripts/container-base.sh     Needs root; installs podman,
#                                      debootstrap and runc with apt.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf '\n== %s\n' "$*" >&2; }
fail() { echo "container: $*" >&2; exit 1; }

need=()
command -v podman >/dev/null || need+=(podman)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v runc >/dev/null || need+=(runc)
if ((${#need[@]})); then
  [ "$(id -u)" = 0 ] || fail "needs ${need[*]} (apt-get install ${need[*]})"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

cache=${FERRY_E2E_CACHE:-$HOME/.cache/ferry-e2e}/container
mkdir -p "$cache"
base_tar=$cache/bookworm-minbase.tar
if [ ! -s "$base_tar" ]; then
  say "the base: Debian bookworm (minbase) from Debian's packages, once"
  rootfs=$(mktemp -d)
  debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian >"$cache/debootstrap.log" 2>&1 ||
    { tail -20 "$cache/debootstrap.log"; fail "debootstrap failed"; }
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -cf "$base_tar.part" . && mv "$base_tar.part" "$base_tar"
  rm -rf "$rootfs"
fi
if ! podman image exists localhost/ferry-base:bookworm; then
  podman import "$base_tar" localhost/ferry-base:bookworm >/dev/null
fi

