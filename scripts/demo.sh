#!/usr/bin/env bash
# The main job, on a machine without an Open WebUI of its own: starts a
# local Open WebUI and the stand-in model (the e2e harness), runs
# `ferry run` with the example rules in rules/, drops a file into the
# watched inbox and follows it until Open WebUI holds it, then asks a
# question that only the file can answer.
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
export OPENWEBUI_API_KEY=$FERRY_E2E_API_KEY
cat >"$demo/ferry.yaml" <<YAML
openwebui:
  url: $FERRY_E2E_URL
  api_key: \${OPENWEBUI_API_KEY}
state:
  database: $demo/state/ferry.db
server:
  listen: 127.0.0.1:0
rules: $root/rules
YAML
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
