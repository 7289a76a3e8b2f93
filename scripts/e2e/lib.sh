# Shared by scripts/e2e.sh and scripts/demo.sh: start the stand-in model and
# one Open WebUI (installed into the cache on first use), offline, on
# 127.0.0.1, with a fresh data directory; create the admin and an API key.
# Source it, then: e2e_start VERSION WORKDIR; … ; e2e_stop (also on EXIT).
#
# Exports FERRY_E2E_URL, FERRY_E2E_VERSION, FERRY_E2E_EMAIL,
# FERRY_E2E_PASSWORD, FERRY_E2E_API_KEY, FERRY_E2E_UPSTREAM_LOG,
# FERRY_E2E_UPSTREAM_URL (the stand-in model; POST /control/models
# {"add": NAME} makes a model appear, as one that finished loading), and the
# webhook receiver that verifies signatures with the reference library:
# FERRY_E2E_RECEIVER_URL, FERRY_E2E_RECEIVER_LOG, FERRY_E2E_RECEIVER_SECRET;
# and FERRY_E2E_OPENAPI_VALIDATOR (openapi-spec-validator's command).

E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
E2E_PIDS=()

e2e_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

e2e_wait_http() { # URL SECONDS LOGFILE
  local url=$1 limit=$2 log=$3 i
  for ((i = 0; i < limit * 4; i++)); do
    if curl -fsS -o /dev/null "$url" 2>/dev/null; then return 0; fi
    sleep 0.25
  done
  echo "e2e: $url did not answer within ${limit}s; last log lines:" >&2
  tail -n 40 "$log" >&2 || true
  return 1
}

e2e_json() { # FIELD — reads JSON on stdin
  python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"
}

e2e_start() { # VERSION WORKDIR
  local version=$1 work=$2
  mkdir -p "$work"
  local venv
  venv=$("$E2E_DIR/install-openwebui.sh" "$version")

  local up_port ow_port
  up_port=$(e2e_free_port)
  export FERRY_E2E_UPSTREAM_LOG="$work/upstream.jsonl"
  python3 "$E2E_DIR/fake_upstream.py" "$up_port" "$FERRY_E2E_UPSTREAM_LOG" >"$work/upstream.log" 2>&1 &
  E2E_PIDS+=($!)
  e2e_wait_http "http://127.0.0.1:$up_port/v1/models" 20 "$work/upstream.log"
  export FERRY_E2E_UPSTREAM_URL="http://127.0.0.1:$up_port"

  local validator
  validator=$("$E2E_DIR/install-openapi-validator.sh")
  export FERRY_E2E_OPENAPI_VALIDATOR="$validator/bin/openapi-spec-validator"

  local rx_venv rx_port
  rx_venv=$("$E2E_DIR/install-receiver.sh")
  rx_port=$(e2e_free_port)
  export FERRY_E2E_RECEIVER_URL="http://127.0.0.1:$rx_port"
  export FERRY_E2E_RECEIVER_LOG="$work/received.jsonl"
  export FERRY_E2E_RECEIVER_SECRET="whsec_$(python3 -c 'import base64,secrets; print(base64.b64encode(secrets.token_bytes(32)).decode())')"
  "$rx_venv/bin/python" "$E2E_DIR/receiver.py" "$rx_port" "$FERRY_E2E_RECEIVER_LOG" "$FERRY_E2E_RECEIVER_SECRET" >"$work/receiver.log" 2>&1 &
  E2E_PIDS+=($!)
  e2e_wait_http "$FERRY_E2E_RECEIVER_URL/" 20 "$work/receiver.log"

  ow_port=$(e2e_free_port)
  mkdir -p "$work/data"
  (
    cd "$work" || exit 1
    export DATA_DIR="$work/data"
    export WEBUI_SECRET_KEY="ferry-e2e-$(python3 -c 'import secrets; print(secrets.token_hex(24))')"
    export ENABLE_OLLAMA_API=false OFFLINE_MODE=true HF_HUB_OFFLINE=1
    export OPENAI_API_BASE_URL="http://127.0.0.1:$up_port/v1" OPENAI_API_KEY=sk-e2e
    export RAG_EMBEDDING_ENGINE=openai RAG_EMBEDDING_MODEL=fake-embed
    export RAG_OPENAI_API_BASE_URL="http://127.0.0.1:$up_port/v1" RAG_OPENAI_API_KEY=sk-e2e
    export ENABLE_API_KEYS=true ENABLE_API_KEY=true USER_PERMISSIONS_FEATURES_API_KEYS=true
    export ANONYMIZED_TELEMETRY=false SCARF_NO_ANALYTICS=true DO_NOT_TRACK=true ENABLE_VERSION_UPDATE_CHECK=false
    export ENABLE_PERSISTENT_CONFIG=false
    exec "$venv/bin/open-webui" serve --host 127.0.0.1 --port "$ow_port"
  ) >"$work/openwebui.log" 2>&1 &
  E2E_PIDS+=($!)
  local started=$SECONDS
  e2e_wait_http "http://127.0.0.1:$ow_port/health" 180 "$work/openwebui.log"
  echo "e2e: Open WebUI $version up on 127.0.0.1:$ow_port in $((SECONDS - started))s" >&2

  export FERRY_E2E_URL="http://127.0.0.1:$ow_port"
  export FERRY_E2E_VERSION=$version
  export FERRY_E2E_EMAIL=admin@ferry.test
  export FERRY_E2E_PASSWORD="pw-$(python3 -c 'import secrets; print(secrets.token_hex(8))')"
  local token
  token=$(curl -fsS -X POST "$FERRY_E2E_URL/api/v1/auths/signup" -H 'content-type: application/json' \
    -d "{\"name\":\"ferry e2e\",\"email\":\"$FERRY_E2E_EMAIL\",\"password\":\"$FERRY_E2E_PASSWORD\"}" | e2e_json token)
  FERRY_E2E_API_KEY=$(curl -fsS -X POST "$FERRY_E2E_URL/api/v1/auths/api_key" -H "authorization: Bearer $token" | e2e_json api_key)
  export FERRY_E2E_API_KEY
}

e2e_stop() {
  local pid
  for pid in "${E2E_PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${E2E_PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  E2E_PIDS=()
}
