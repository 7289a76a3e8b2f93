#!/usr/bin/env bash
# Side by side on real Open WebUI 0.12.4 (started here, offline, with the
# stand-in model; a fresh server for each tool, so neither inherits the
# other's vectors): oikb (the official sync tool, from PyPI, into a venv in
# the cache) and ferry, each putting 1,000 small files into a knowledge
# base. Prints figures; not a test.
#
#   oikb: `oikb sync DIR --concurrency 4` under /usr/bin/time (wall, CPU,
#   peak RSS), then the time until Open WebUI lists all 1,000 files in the
#   knowledge base as processed; then a second `oikb sync` of the unchanged
#   tree (it hashes every file again).
#   ferry: `cargo bench --bench watch -- real` (files/s end to end, latency,
#   CPU, RSS).
# usage: scripts/bench-peer.sh      FERRY_BENCH_FILES=1000
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/e2e/lib.sh
trap e2e_stop EXIT
count=${FERRY_BENCH_FILES:-1000}
cache=${FERRY_E2E_CACHE:-$HOME/.cache/ferry-e2e}
venv="$cache/oikb-venv"
if [[ ! -f "$venv/.ferry-installed" ]]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "oikb==0.6.*" >&2
  touch "$venv/.ferry-installed"
fi
cargo bench --no-run --quiet --bench watch
work=$(mktemp -d "${TMPDIR:-/tmp}/ferry-peer.XXXXXX")
e2e_start 0.12.4 "$work/server"

src="$work/oikb-src"
for ((i = 0; i < count; i++)); do
  mkdir -p "$src/s$((i % 10))"
  printf '# Benchmark file %d\n\nUnique words: oikb%dalpha oikb%domega.\n' "$i" "$i" "$i" >"$src/s$((i % 10))/f$(printf %04d "$i").md"
done
kb=$(curl -fsS -X POST "$FERRY_E2E_URL/api/v1/knowledge/create" -H "authorization: Bearer $FERRY_E2E_API_KEY" \
  -H 'content-type: application/json' -d '{"name":"oikb-bench","description":"bench"}' | e2e_json id)

echo "oikb $("$venv/bin/oikb" --version 2>&1 | tail -1), $count files, concurrency 4:"
start=$(date +%s.%N)
/usr/bin/time -f "%e %U %S %M" -o "$work/oikb.time" \
  "$venv/bin/oikb" -q sync "$src" --kb-id "$kb" --token "$FERRY_E2E_API_KEY" --url "$FERRY_E2E_URL" --concurrency 4 \
  >"$work/oikb.log" 2>&1 || { echo "oikb sync failed:"; tail -20 "$work/oikb.log"; }
read -r wall user sys rss_kib < <(tail -n 1 "$work/oikb.time")
# Until Open WebUI lists every file in the knowledge base, processed.
python3 - "$FERRY_E2E_URL" "$FERRY_E2E_API_KEY" "$kb" "$count" "$start" "$wall" "$user" "$sys" "$rss_kib" <<'PY'
import json, sys, time, urllib.request
url, key, kb, count, start, wall, user, sys_, rss = sys.argv[1:]
count, start = int(count), float(start)
def get(path):
    req = urllib.request.Request(url + path, headers={"authorization": "Bearer " + key})
    return json.load(urllib.request.urlopen(req))
deadline = time.time() + 900
best, best_at = -1, time.time()
while True:
    items, page = [], 1
    while True:
        v = get(f"/api/v1/knowledge/{kb}/files?page={page}&limit=1000")
        got = v.get("items", v if isinstance(v, list) else [])
        items += got
        if len(got) < 1000:
            break
        page += 1
    done = [i for i in items if (i.get("data") or {}).get("status", "completed") == "completed"]
    if len(done) > best:
        best, best_at = len(done), time.time()
    # Files whose upload failed never come: stop once nothing changed for 30 s.
    if len(done) >= count or time.time() > deadline or time.time() - best_at > 30:
        break
    time.sleep(0.5)
end = best_at - start
print(f"  oikb sync returned after {float(wall):.1f} s; CPU {float(user)+float(sys_):.2f} s "
      f"({(float(user)+float(sys_))*1000/count:.1f} ms per file); peak RSS {int(rss)/1024:.1f} MiB")
print(f"  {len(done)} of {count} in the knowledge base and processed after {end:.1f} s = {len(done)/end:.1f} files/s"
      + ("" if len(done) >= count else f" — {count - len(done)} never arrived (oikb does not retry them)"))
PY
/usr/bin/time -f "%e %U %S %M" -o "$work/oikb2.time" \
  "$venv/bin/oikb" -q sync "$src" --kb-id "$kb" --token "$FERRY_E2E_API_KEY" --url "$FERRY_E2E_URL" --concurrency 4 \
  >"$work/oikb2.log" 2>&1 || true
read -r wall user sys rss_kib < <(tail -n 1 "$work/oikb2.time")
echo "  second sync: $wall s, CPU $(python3 -c "print(round($user+$sys,2))") s (it hashes every file again, and uploads what failed)"
e2e_stop
echo
e2e_start 0.12.4 "$work/server2"
cargo bench --quiet --bench watch -- real
rm -rf "$work"
