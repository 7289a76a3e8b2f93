#!/usr/bin/env bash
# A small Python tool in a venv of its own in the cache, installed once
# from PyPI (a finished install leaves a marker file). Prints the venv path.
#
# usage: install-venv.sh NAME REQUIREMENT     e.g. receiver "standardwebhooks==1.*"
set -euo pipefail
name=${1:?usage: install-venv.sh NAME REQUIREMENT}
requirement=${2:?usage: install-venv.sh NAME REQUIREMENT}
cache=${FERRY_E2E_CACHE:-$HOME/.cache/ferry-e2e}
venv="$cache/$name-venv"
if [[ -f "$venv/.ferry-installed" ]]; then
  echo "$venv"
  exit 0
fi
mkdir -p "$cache"
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check "$requirement" >&2
touch "$venv/.ferry-installed"
echo "$venv"
