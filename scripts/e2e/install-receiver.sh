#!/usr/bin/env bash
# The independent Standard Webhooks verifier of the e2e receiver: the
# reference Python library in a small venv in the cache, installed once.
# Prints the venv path.
set -euo pipefail
cache=${FERRY_E2E_CACHE:-$HOME/.cache/ferry-e2e}
venv="$cache/receiver-venv"
if [[ -f "$venv/.ferry-installed" ]]; then
  echo "$venv"
  exit 0
fi
mkdir -p "$cache"
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check "standardwebhooks==1.*" >&2
touch "$venv/.ferry-installed"
echo "$venv"
