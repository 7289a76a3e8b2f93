#!/usr/bin/env bash
# Install one Open WebUI version into a cached virtualenv outside the source
# tree, torch-free: the wheel without deps, then its own pinned requirements
# minus the local-model stack (torch, transformers, …), which the e2e setup
# never loads because embeddings go to the stand-in over the OpenAI API.
# Reused when present; a finished install leaves a marker file.
#
# usage: install-openwebui.sh VERSION    → prints the venv path on stdout
set -euo pipefail
version=${1:?usage: install-openwebui.sh VERSION}
cache=${FERRY_E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ferry-e2e}
venv="$cache/openwebui-$version"
python=${FERRY_PYTHON:-python3}

if [ -f "$venv/.ferry-installed" ]; then
  echo "$venv"
  exit 0
fi

mkdir -p "$cache"
rm -rf "$venv"
echo "installing Open WebUI $version into $venv (a few minutes, once)" >&2
"$python" -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check --upgrade pip packaging >&2
"$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps "open-webui==$version" >&2

# The wheel's own Requires-Dist, without extras and without the heavy stack.
"$venv/bin/python" - "$venv/requirements-slim.txt" <<'PY'
import sys, importlib.metadata as md
from packaging.requirements import Requirement
heavy = {"torch", "accelerate", "sentence-transformers", "transformers", "einops",
         "faster-whisper", "sentencepiece", "colbert-ai"}
out = []
for raw in md.requires("open-webui") or []:
    req = Requirement(raw)
    if req.marker is not None and "extra" in str(req.marker):
        continue
    if req.name.lower() in heavy:
        continue
    out.append(str(req))
open(sys.argv[1], "w").write("\n".join(out) + "\n")
PY
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$venv/requirements-slim.txt" >&2
touch "$venv/.ferry-installed"
echo "$venv"
