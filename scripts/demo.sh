#!/usr/bin/env bash
# The main job, on a machine without an Open WebUI of its own: starts a
# local Open WebUI, the stand-in model and a webhook receiver that checks
# signatures with the Standard Webhooks reference library (the e2e
# harness), runs `ferry run` with the example rules in rules/, and shows:
#   a file dropped into the watched inbox → uploaded, processed, linked →
#   summarised by a chat → the summary delivered, signed, to the "team chat";
#   a signed Alertmanager-style alert → a chat with the inbox attached →
#   delivered; the daily digest run by hand (`ferry trigger`); the job and
#   delivery logs; and a question only the dropped file can answer.
#
# usage: scripts/demo.sh        (FERRY_DEMO_VERSION=0.6.40 for the older server)
# Against a real install it is: ferry run --config /etc/ferry/ferry.yaml
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
source scripts/e2e/lib.sh
trap e2e_stop EXIT

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
cargo build --quiet --release
ferry="$root/target/release/ferry"

demo=$(mktemp -d "${TMPDIR:-/tmp}/ferry-demo.XXXXXX")
say "starting Open WebUI ${FERRY_DEMO_VERSION:-0.12.4} and the stand-in model (first run installs it: a few minutes)"
e2e_start "${FERRY_DEMO_VERSION:-0.12.4}" "$demo/server"

mkdir -p "$demo/inbox"
export FERRY_INBOX="$demo/inbox" FERRY_MODEL=fake-model
export FERRY_ALERTS_SECRET=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
export OPENWEBUI_API_KEY=$FERRY_E2E_API_KEY TEAM_CHAT_SECRET=$FERRY_E2E_RECEIVER_SECRET
export FERRY_ADMIN_TOKEN=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
port=$(e2e_free_port)
cat >"$demo/ferry.yaml" <<YAML
openwebui:
  url: $FERRY_E2E_URL
  api_key: \${OPENWEBUI_API_KEY}
state:
  database: $demo/state/ferry.db
server:
  listen: 127.0.0.1:$port
  admin_token: \${FERRY_ADMIN_TOKEN}
rules: $root/rules
webhooks:
  team-chat:                       # stands in for Slack/Teams/Matrix
    url: $FERRY_E2E_RECEIVER_URL/team-chat
    secret: \${TEAM_CHAT_SECRET}
    allow_private: true            # the receiver is on 127.0.0.1
YAML
# What the receiver got: "verified" is the reference library's verdict.
received() {
  python3 - "$FERRY_E2E_RECEIVER_LOG" "$1" <<'PY'
import json, sys
for line in open(sys.argv[1]) if __import__("os").path.exists(sys.argv[1]) else []:
    r = json.loads(line)
    if sys.argv[2] in r["body"]:
        print(f"webhook-id {r['webhook_id']}  signature verified: {r['verified']}")
        print("  " + r["body"][:600].replace("\\n", "\n  "))
PY
}
cd "$demo"

say "ferry check --connect"
"$ferry" check --config ferry.yaml --connect

say "ferry run (the daemon) with the example rules"
"$ferry" run --config ferry.yaml >"$demo/ferry.log" 2>&1 &
daemon=$!
sleep 1
kill -0 "$daemon" || { cat "$demo/ferry.log"; exit 1; }

say "a file is dropped into the watched inbox"
cat >"$demo/inbox/ferry-timetable.md" <<'MD'
# Harbour ferry timetable

The first ferry leaves the north pier at 06:40. On Sundays the last ferry
returns at 22:15, and bicycles ride free on the upper deck.
MD
ls -l "$demo/inbox"

say "waiting until it is uploaded, processed and linked (ferry docs)"
for _ in $(seq 1 120); do
  if "$ferry" docs --config ferry.yaml --state linked 2>/dev/null | grep -q ferry-timetable.md; then break; fi
  sleep 0.5
done
"$ferry" docs --config ferry.yaml
grep -E "linked|failed" "$demo/ferry.log" || true

say "the summary is delivered to the team chat, signed (the receiver checks it with the reference library)"
for _ in $(seq 1 120); do
  if [[ -n "$(received ferry-timetable.md)" ]]; then break; fi
  sleep 0.5
done
received ferry-timetable.md | tee "$demo/delivered.txt"
grep -q "signature verified: True" "$demo/delivered.txt" || { echo "no verified delivery" >&2; cat "$demo/ferry.log"; exit 1; }

say "an Alertmanager-style alert arrives, signed (hex HMAC in X-Signature)"
body='{"alerts":[{"labels":{"alertname":"FerryDelayed"},"annotations":{"summary":"the 22:15 ferry is 40 minutes late"}}]}'
sig=$(python3 -c 'import hmac,hashlib,sys; print(hmac.new(sys.argv[1].encode(), sys.argv[2].encode(), hashlib.sha256).hexdigest())' "$FERRY_ALERTS_SECRET" "$body")
curl -sS -X POST "http://127.0.0.1:$port/hooks/alerts" -H "content-type: application/json" -H "X-Signature: $sig" -d "$body"
echo
echo "(a wrong signature is refused:)"
curl -sS -w ' → HTTP %{http_code}\n' -X POST "http://127.0.0.1:$port/hooks/alerts" -H "X-Signature: 00" -d "$body"
for _ in $(seq 1 120); do
  if [[ -n "$(received FerryDelayed)" ]]; then break; fi
  sleep 0.5
done
received FerryDelayed

say "ferry trigger daily-digest --wait (a schedule rule, run by hand)"
"$ferry" trigger --config ferry.yaml daily-digest --wait | tail -n 6

say "ferry jobs and ferry deliveries"
"$ferry" jobs --config ferry.yaml
"$ferry" deliveries --config ferry.yaml

say "ferry ask --collection Inbox (the stand-in model echoes what it was given)"
"$ferry" ask --config ferry.yaml --model fake-model --collection Inbox \
  "When does the last ferry return on Sundays?" | tee "$demo/answer.txt" | tail -n 12
kill -TERM "$daemon"; wait "$daemon" || true
if grep -q "22:15" "$demo/answer.txt"; then
  say "the document's text reached the model through retrieval: 22:15 is in the answer"
else
  echo "the answer does not quote the document" >&2
  exit 1
fi
rm -rf "$demo"
