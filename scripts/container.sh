#!/usr/bin/env bash
# Builds ferry's container image from Debian's packages alone (debootstrap
# → podman import → podman build; no registry is reached) and proves it:
# the image runs as a non-root user with /data as a volume and a health
# check, and its ferry, configured only through the environment (secrets as
# *_FILE), completes the demo flow against a local Open WebUI — a file
# dropped into the mounted inbox is uploaded, processed and linked, a chat
# summarises it, and the answer reaches a receiver that verifies its
# Standard Webhooks signature.
#
# usage: scripts/container.sh          FERRY_IMAGE_PROFILE=dev packages the test build
# Needs root (podman, debootstrap); installs them with apt when missing.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
say() { printf '\n== %s\n' "$*" >&2; }
fail() { echo "container: $*" >&2; exit 1; }

scripts/container-base.sh

profile=${FERRY_IMAGE_PROFILE:-release}
bin=$(scripts/build-ferry.sh "$profile")

say "podman build (base: localhost/ferry-base:bookworm)"
ctx=$(mktemp -d)
work=$(mktemp -d "${TMPDIR:-/tmp}/ferry-container.XXXXXX")
source scripts/e2e/lib.sh
cleanup() {
  podman rm -f ferry-check >/dev/null 2>&1 || true
  podman volume rm -f ferry-check-data >/dev/null 2>&1 || true
  e2e_stop || true
  rm -rf "$ctx"
}
trap cleanup EXIT
cp "$bin" "$ctx/ferry"
cp deploy/container/ferry.yaml Containerfile "$ctx/"
podman build --quiet --isolation chroot --format docker --build-arg BASE=localhost/ferry-base:bookworm \
  -f "$ctx/Containerfile" -t localhost/ferry:latest "$ctx" >/dev/null
podman image prune -f >/dev/null   # the images this replaced
image_size=$(podman image inspect localhost/ferry:latest --format '{{.Size}}')
echo "localhost/ferry:latest: $((image_size / 1024 / 1024)) MiB"
user=$(podman image inspect localhost/ferry:latest --format '{{.Config.User}}')
[ "$user" = ferry ] || fail "the image runs as '$user', not ferry"
podman image inspect localhost/ferry:latest --format '{{json .Config.Volumes}}' | grep -q '"/data"' ||
  fail "no /data volume"
podman image inspect localhost/ferry:latest --format '{{json .Config.Healthcheck}}' | grep -q healthz ||
  fail "no health check on /healthz"

say "deploy/compose.yaml agrees with the image"
# Its registry images cannot be pulled here, so the stack itself is not
# started; what it tells the image is checked against the image's config.
python3 - deploy/compose.yaml deploy/container/ferry.yaml <<'PY'
import re, sys, yaml
compose = yaml.safe_load(open(sys.argv[1]))
config = open(sys.argv[2]).read()
known = set(re.findall(r"\$\{([A-Z0-9_]+)", config))
ferry = compose["services"]["ferry"]
assert ferry["image"].startswith("localhost/ferry:"), ferry["image"]
for name in ferry["environment"]:
    base = name[:-5] if name.endswith("_FILE") else name
    assert base in known, f"compose sets {name}, which the image's config does not read"
for required in ("OPENWEBUI_API_KEY", "FERRY_ADMIN_TOKEN"):
    assert any(n.startswith(required) for n in ferry["environment"]), required
targets = {v.split(":")[1] for v in ferry["volumes"]}
assert {"/data", "/etc/ferry/rules"} <= targets, targets
for s in ferry["secrets"]:
    assert s in compose["secrets"], s
assert "open-webui" in compose["services"] and "open-webui" in ferry["depends_on"]
print("compose.yaml: the ferry service's environment, secrets and volumes match the image")
PY

say "Open WebUI ${FERRY_E2E_VERSION:-0.12.4}, the stand-in model and the receiver"
e2e_start "${FERRY_E2E_VERSION:-0.12.4}" "$work/server"
mkdir -p "$work/inbox" "$work/rules" "$work/secrets"
chmod 0777 "$work/inbox"   # the image's user (uid 10001) reads it
printf %s "$FERRY_E2E_API_KEY" >"$work/secrets/openwebui_api_key"
printf %s "admin-$(python3 -c 'import secrets; print(secrets.token_hex(12))')" >"$work/secrets/ferry_admin_token"
printf %s "$FERRY_E2E_RECEIVER_SECRET" >"$work/secrets/webhook_secret"
chmod 0644 "$work"/secrets/*
cat >"$work/rules/inbox.yaml" <<'YAML'
on:
  watch:
    path: /srv/inbox
    settle: 1s
ingest:
  collection: Container Inbox
chat:
  model: fake-model
  collections: [Container Inbox]
  prompt: "Summarise {{ file.name }}: {{ file.text }}"
deliver:
  - to: default
YAML
port=$(e2e_free_port)
# What this sandbox needs (no CAP_SYS_RESOURCE, cgroups v1+v2 "hybrid"):
# crun fails at `setrlimit RLIMIT_NOFILE` and then at hybrid cgroups, so
# runc runs it; and the limits podman sets by default (nofile and nproc
# 1048576) are above this machine's, which only a lower value passes.
podman --runtime runc run -d --name ferry-check --network host \
  --ulimit nofile=8192:8192 --ulimit nproc=4096:4096 \
  -e OPENWEBUI_URL="$FERRY_E2E_URL" \
  -e OPENWEBUI_API_KEY_FILE=/run/secrets/openwebui_api_key \
  -e FERRY_ADMIN_TOKEN_FILE=/run/secrets/ferry_admin_token \
  -e FERRY_WEBHOOK_URL="$FERRY_E2E_RECEIVER_URL/container" \
  -e FERRY_WEBHOOK_SECRET_FILE=/run/secrets/webhook_secret \
  -e FERRY_WEBHOOK_ALLOW_PRIVATE=true \
  -e FERRY_LISTEN="127.0.0.1:$port" \
  -v "$work/secrets:/run/secrets:ro" \
  -v "$work/rules:/etc/ferry/rules:ro" \
  -v "$work/inbox:/srv/inbox:ro" \
  -v ferry-check-data:/data \
  localhost/ferry:latest >/dev/null
e2e_wait_http "http://127.0.0.1:$port/healthz" 30 /dev/null ||
  { podman logs ferry-check; fail "ferry in the container did not answer /healthz"; }
podman --runtime runc healthcheck run ferry-check || { podman logs ferry-check; fail "the image's health check failed"; }
echo "health check: healthy"

say "a file dropped into the mounted inbox"
cat >"$work/inbox/timetable.md" <<'MD'
# Harbour ferry timetable
On Sundays the last ferry returns at 22:15.
MD
chmod 0644 "$work/inbox/timetable.md"
delivered=""
for _ in $(seq 1 240); do
  if [ -s "$FERRY_E2E_RECEIVER_LOG" ] && grep -q timetable.md "$FERRY_E2E_RECEIVER_LOG"; then
    delivered=$(grep timetable.md "$FERRY_E2E_RECEIVER_LOG" | head -1)
    break
  fi
  sleep 0.5
done
[ -n "$delivered" ] || { podman logs ferry-check | tail -40; fail "no delivery within 120 s"; }
python3 - "$delivered" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
assert r["verified"] is True, r
body = json.loads(r["body"])
assert body["type"] == "chat.completed", body
assert "22:15" in body["data"]["answer"], body["data"]["answer"]
print(f"delivered: webhook-id {r['webhook_id']}, signature verified, the answer quotes the file")
PY
podman --runtime runc exec ferry-check ferry docs | grep -q "linked.*timetable.md" ||
  { podman --runtime runc exec ferry-check ferry docs; fail "the file is not linked"; }
echo "ferry docs (in the container): timetable.md linked"
podman --runtime runc exec ferry-check sh -c 'test -w /data && test ! -w /etc/ferry && id -u' | grep -qx 10001 ||
  fail "the container does not run as uid 10001 with only /data writable"
echo "container: built from Debian packages, ran as ferry, drop → linked → answer → signed delivery"
