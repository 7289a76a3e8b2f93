#!/usr/bin/env bash
# The independent OpenAPI validator of the admin API's description
# (openapi-spec-validator, from PyPI) in a small venv in the cache,
# installed once. Prints the venv path.
set -euo pipefail
cache=${FERRY_E2E_CACHE:-$HOME/.cache/ferry-e2e}
venv="$cache/openapi-validator-venv"
if [[ -f "$venv/.ferry-installed" ]]; then
  echo "$venv"
  exit 0
fi
mkdir -p "$cache"
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check "openapi-spec-validator==0.7.*" >&2
touch "$venv/.ferry-installed"
echo "$venv"
