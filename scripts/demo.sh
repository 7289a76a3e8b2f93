#!/usr/bin/env bash
# The main job, on a machine without an Open WebUI of its own: starts a
# local Open WebUI and the stand-in model (the e2e harness), points ferry
# at them with the example rules in rules/, drops a file into the inbox and
# follows it through to an answer that quotes it.
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
rules: $root/rules
YAML
cd "$demo"

say "ferry check --connect"
"$ferry" check --config ferry.yaml --connect

say "a file is dropped into the inbox"
cat >"$demo/inbox/ferry-timetable.md" <<'MD'
# Harbour ferry timetable

The first ferry leaves the north pier at 06:40. On Sundays the last ferry
returns at 22:15, and bicycles ride free on the upper deck.
MD
ls -l "$demo/inbox"

say "ferry ingest: uploaded, processed, linked, verified in Open WebUI's own list"
"$ferry" ingest --config ferry.yaml inbox --collection Inbox
"$ferry" docs --config ferry.yaml

say "ferry ask --collection Inbox (the stand-in model echoes what it was given)"
"$ferry" ask --config ferry.yaml --model fake-model --collection Inbox \
  "When does the last ferry return on Sundays?" | tee "$demo/answer.txt" | tail -n 12
if grep -q "22:15" "$demo/answer.txt"; then
  say "the document's text reached the model through retrieval: 22:15 is in the answer"
else
  echo "the answer does not quote the document" >&2
  exit 1
fi
rm -rf "$demo"
