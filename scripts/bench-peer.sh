#!/usr/bin/env bash
# Side by side on real Open WebUI 0.12.4 (started here, offline, with the
# stand-in model): oikb (the official sync tool, from PyPI, into a venv in
# the cache) and ferry, each putting N small files into a knowledge base of
# its own. For each size, both orders on one fresh server each (oikb then
# ferry, ferry then oikb: the second tool meets a server that holds more
# vectors), and the ratio of ferry's files/s to oikb's; then, once both
# orders ran, the ratios of the two tools in the same place (both first,
# both second). A tool named twice in an order is a control: the same
# tool twice on one server, each time into a collection of its own, which
# measures what the second place costs that tool (the orders' ratios carry
# it). Prints figures; not a test.
#
#   oikb: `oikb sync DIR --concurrency 4` under /usr/bin/time (wall, CPU,
#   peak RSS), then the time until Open WebUI has linked all N files into
#   the knowledge base (from the server's log, which costs it nothing; the
#   files are then checked processed); then a second `oikb sync` of the
#   unchanged tree (it hashes every file again).
#   ferry: the daemon, `cargo bench --bench watch -- real` (files/s end to
#   end, latency, CPU, RSS; every file verified linked).
#   sync: `ferry sync RULE` over the same tree as oikb's (its one-shot
#   peer): process start to exit 0, which ferry gives only once the
#   collection lists every file processed; checked again after.
# usage: scripts/bench-peer.sh      FERRY_PEER_SIZES="200 1000" (default)
#        FERRY_PEER_ORDERS="oikb sync,sync oikb" (default: both pairs)
#        FERRY_PEER_ORDERS="ferry ferry,oikb oikb" (controls: one tool twice)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/e2e/lib.sh
trap e2e_stop EXIT
sizes=${FERRY_PEER_SIZES:-${FERRY_BENCH_FILES:-200 1000}}
cache=${FERRY_E2E_CACHE:-$HOME/.cache/ferry-e2e}
venv="$cache/oikb-venv"
if [[ ! -f "$venv/.ferry-installed" ]]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "oikb==0.6.*" >&2
  touch "$venv/.ferry-installed"
fi
cargo bench --no-run --quiet --bench watch
ferry=${CARGO_TARGET_DIR:-target}/release/ferry
[[ $ferry == /* ]] || ferry="$(pwd)/$ferry"
work=$(mktemp -d "${TMPDIR:-/tmp}/ferry-peer.XXXXXX")

run_oikb() { # COUNT; prints figures, the last line ends in "= X files/s"
  local count=$1
  src="$work/oikb-src-$count"
  for ((i = 0; i < count; i++)); do
    mkdir -p "$src/s$((i % 10))"
    printf '# Benchmark file %d\n\nUnique words: oikb%dalpha oikb%domega.\n' "$i" "$i" "$i" >"$src/s$((i % 10))/f$(printf %04d "$i").md"
  done
  kb=$(curl -fsS -X POST "$FERRY_E2E_URL/api/v1/knowledge/create" -H "authorization: Bearer $FERRY_E2E_API_KEY" \
    -H 'content-type: application/json' -d "{\"name\":\"oikb-bench-$count\",\"description\":\"bench\"}" | e2e_json id)

  echo "oikb $("$venv/bin/oikb" --version 2>&1 | tail -1), $count files, concurrency 4:"
  start=$(date +%s.%N)
  /usr/bin/time -f "%e %U %S %M" -o "$work/oikb-$count.time" \
    "$venv/bin/oikb" -q sync "$src" --kb-id "$kb" --token "$FERRY_E2E_API_KEY" --url "$FERRY_E2E_URL" --concurrency 4 \
    >"$work/oikb-$count.log" 2>&1 || { echo "oikb sync failed:"; tail -20 "$work/oikb-$count.log"; }
  read -r wall user sys rss_kib < <(tail -n 1 "$work/oikb-$count.time")
  # Until Open WebUI has linked every file, read from the server's own log
  # ("Linked file F to knowledge K", written as the last step of its
  # processing): looking costs the server nothing. Polling the collection
  # twice a second, as this did until 2026-12-07, cost the server 10–31 ms
  # of CPU a look (200 files listed) while it was the bottleneck, and
  # rounded oikb's end up to the next look: both made oikb look slower.
  # oikb's time is the server's last link, ferry's its own verification of
  # it (which comes later): the comparison is the strict one for ferry.
  python3 - "$FERRY_E2E_URL" "$FERRY_E2E_API_KEY" "$kb" "$count" "$start" "$wall" "$user" "$sys" "$rss_kib" \
    "$work/server$n/openwebui.log" <<'PY'
import datetime, json, re, sys, time, urllib.request
url, key, kb, count, start, wall, user, sys_, rss, log = sys.argv[1:]
count, start = int(count), float(start)
linked = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+) .*Linked file (\S+) to knowledge " + re.escape(kb))
seen, last, changed = set(), None, time.time()
with open(log, "rb") as f:
    deadline, pending = time.time() + 900, b""
    # Files whose upload failed never come: stop once nothing changed for 30 s.
    while len(seen) < count and time.time() < deadline and time.time() - changed < 30:
        pending += f.readline()
        if not pending.endswith(b"\n"):
            time.sleep(0.2)
            continue
        m = linked.match(pending.decode(errors="replace"))
        pending = b""
        if m and m[2] not in seen:
            seen.add(m[2])
            changed = time.time()
            # The server logs local time, as `date` gives it here.
            last = datetime.datetime.strptime(m[1], "%Y-%m-%d %H:%M:%S.%f").timestamp()
def get(path):
    req = urllib.request.Request(url + path, headers={"authorization": "Bearer " + key})
    return json.load(urllib.request.urlopen(req))
# Then one look (not timed) at what the collection holds, processed.
time.sleep(1)
items, page = [], 1
while True:
    v = get(f"/api/v1/knowledge/{kb}/files?page={page}&limit=1000")
    got = v.get("items", v if isinstance(v, list) else [])
    items += got
    if len(got) < 1000:
        break
    page += 1
done = [i for i in items if (i.get("data") or {}).get("status", "completed") == "completed"]
end = (last or time.time()) - start
print(f"  oikb sync returned after {float(wall):.1f} s; CPU {float(user)+float(sys_):.2f} s "
      f"({(float(user)+float(sys_))*1000/count:.1f} ms per file); peak RSS {int(rss)/1024:.1f} MiB")
print(f"  {len(done)} of {count} in the knowledge base and processed; the server linked the last after {end:.1f} s = {len(done)/end:.2f} files/s"
      + ("" if len(done) >= count else f" — {count - len(done)} never arrived (oikb does not retry them)"))
PY
  # The second sync below is not timed, nor its part of the server's log.
  run_end=$(stat -c %s "$work/server$n/openwebui.log")
  /usr/bin/time -f "%e %U %S %M" -o "$work/oikb2-$count.time" \
    "$venv/bin/oikb" -q sync "$src" --kb-id "$kb" --token "$FERRY_E2E_API_KEY" --url "$FERRY_E2E_URL" --concurrency 4 \
    >"$work/oikb2-$count.log" 2>&1 || true
  read -r wall user sys rss_kib < <(tail -n 1 "$work/oikb2-$count.time")
  echo "  second sync: $wall s, CPU $(python3 -c "print(round($user+$sys,2))") s (it hashes every file again, and uploads what failed)"
}

run_ferry() { # COUNT
  FERRY_BENCH_FILES=$1 cargo bench --quiet --bench watch -- real
}

# `ferry sync`, the one-shot peer of `oikb sync`: the same tree (10
# folders, mirrored as knowledge directories), a state DB of its own, no
# daemon; timed from process start to exit, which is 0 only once the
# collection lists every file, processed (ferry checks; then so does this).
run_sync() { # COUNT; the last line ends in "= X files/s"
  # A state DB of this run's own: one left by the pair before names that
  # server's collection and files, and the sync would repair their absence
  # (recreate the collection, look up and upload every file again).
  local count=$1 dir="$work/sync-$count-$n-$pos" name="ferry-sync-bench-$count-$pos"
  mkdir -p "$dir/rules"
  for ((i = 0; i < count; i++)); do
    mkdir -p "$dir/src/s$((i % 10))"
    printf '# Benchmark file %d\n\nUnique words: sync%dalpha sync%domega.\n' "$i" "$i" "$i" >"$dir/src/s$((i % 10))/f$(printf %04d "$i").md"
  done
  printf 'openwebui:\n  url: %s\n  api_key: ${FERRY_E2E_API_KEY}\n  max_in_flight: 4\nstate:\n  database: state/ferry.db\n' "$FERRY_E2E_URL" >"$dir/ferry.yaml"
  printf 'name: bench\non:\n  watch:\n    path: %s\ningest:\n  collection: %s\n' "$dir/src" "$name" >"$dir/rules/bench.yaml"
  # A folder at rest, the usual case for a one-shot sync: files changed in
  # the last `settle` (2 s) would wait that out first (not timed here).
  sleep 3
  echo "ferry sync, $count files, max_in_flight 4:"
  local start end
  start=$(date +%s.%N)
  (cd "$dir" && /usr/bin/time -f "%e %U %S %M" -o "$dir/time" "$ferry" sync bench --config ferry.yaml --timeout 30m >"$dir/out" 2>"$dir/err") ||
    { echo "ferry sync failed:"; tail -20 "$dir/err"; return; }
  end=$(date +%s.%N)
  read -r wall user sys rss_kib < <(tail -n 1 "$dir/time")
  python3 - "$FERRY_E2E_URL" "$FERRY_E2E_API_KEY" "$name" "$count" "$start" "$end" "$user" "$sys" "$rss_kib" <<'PY'
import json, sys, urllib.request
url, key, name, count, start, end, user, sys_, rss = sys.argv[1:]
count, wall = int(count), float(end) - float(start)
def get(path):
    req = urllib.request.Request(url + path, headers={"authorization": "Bearer " + key})
    return json.load(urllib.request.urlopen(req))
kbs = get("/api/v1/knowledge/?page=1")
kbs = kbs.get("items", kbs) if isinstance(kbs, dict) else kbs
kb = next(k["id"] for k in kbs if k["name"] == name)
items, page = [], 1
while True:
    got = get(f"/api/v1/knowledge/{kb}/files?page={page}&limit=1000")
    got = got.get("items", got) if isinstance(got, dict) else got
    items += got
    if len(got) < 1000:
        break
    page += 1
done = [i for i in items if (i.get("data") or {}).get("status", "completed") == "completed"]
cpu = float(user) + float(sys_)
print(f"  exited 0 after {wall:.1f} s; CPU {cpu:.2f} s ({cpu*1000/count:.1f} ms per file); peak RSS {int(rss)/1024:.1f} MiB")
print(f"  {len(done)} of {count} in the knowledge base and processed (checked after exit) = {len(done)/wall:.2f} files/s")
PY
}

# The files/s figure of a tool's output.
rate() { grep -oE '= [0-9.]+ files/s' | tail -1 | grep -oE '[0-9.]+'; }

# What the server went through during one run, from its log between byte
# OFFSET and END (0: its end): its longest silence between the run's first
# and last link (no line at all: every request waiting, as when a write
# lock is held until SQLite's 5 s busy timeout) and its refusals for
# "database is locked". Either tool can meet such a stall, most often on a
# server that holds the other's files; it decides a 200-file pair, so each
# run says whether it met one.
server_during() { # LOG OFFSET END
  python3 - "$1" "$2" "$3" <<'PY'
import datetime, re, sys
log, offset, end = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
stamp = re.compile(rb"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+) ")
times, links, locked = [], [], 0
with open(log, "rb") as f:
    f.seek(offset)
    for line in f:
        offset += len(line)
        if end and offset > end:
            break
        m = stamp.match(line)
        if not m:
            continue
        t = datetime.datetime.strptime(m[1].decode(), "%Y-%m-%d %H:%M:%S.%f").timestamp()
        times.append(t)
        # oikb's uploads link themselves; ferry links in batches.
        if b"Linked file " in line or b"files/batch/add - " in line:
            links.append(t)
        if b"database is locked" in line:
            locked += 1
if len(links) < 2:
    sys.exit()
inside = [t for t in times if links[0] <= t <= links[-1]]
silence = max((b - a for a, b in zip(inside, inside[1:])), default=0.0)
print(f"  the server meanwhile: longest silence {silence:.1f} s, {locked} \"database is locked\""
      + (" (a stall)" if silence >= 2 or locked else ""))
PY
}

# The median of the numbers given.
median() { python3 -c 'import statistics, sys; print(round(statistics.median(map(float, sys.argv[1:])), 2))' "$@"; }

# Each pair on a server of its own: the daemon (`ferry`) and `ferry sync`
# (`sync`), each in both orders with oikb. FERRY_PEER_ORDERS="oikb sync,sync oikb"
# to pick; a tool named twice ("ferry ferry", "oikb oikb") is a control,
# which measures what the second place on a server costs.
if [[ -n "${FERRY_PEER_ORDERS:-}" ]]; then
  IFS=, read -ra orders <<<"$FERRY_PEER_ORDERS"
else
  orders=("oikb ferry" "ferry oikb" "oikb sync" "sync oikb")
fi
n=0
declare -A rates=() ratios=() calm=() places=()
for count in $sizes; do
  for order in "${orders[@]}"; do
    n=$((n + 1))
    e2e_start 0.12.4 "$work/server$n"
    declare -A got=()
    pos=0
    stalls=0
    for tool in $order; do
      pos=$((pos + 1))
      offset=$(stat -c %s "$work/server$n/openwebui.log")
      run_end=0 # a run may end its part of the log sooner (oikb's does)
      "run_$tool" "$count" >"$work/$tool-$n-$pos.out"
      server_during "$work/server$n/openwebui.log" "$offset" "$run_end" >>"$work/$tool-$n-$pos.out"
      cat "$work/$tool-$n-$pos.out"
      got[$pos]=$(rate <"$work/$tool-$n-$pos.out")
      if grep -q "(a stall)" "$work/$tool-$n-$pos.out"; then stalls=$((stalls + 1)); fi
      rates["$count|$order|$tool"]=${got[$pos]}
      places["$count|$tool|$pos"]+=" ${got[$pos]}"
      echo
    done
    e2e_stop
    read -r first second <<<"$order"
    if [[ $first == "$second" ]]; then
      # A control: one tool twice on one server. What the second place
      # costs a tool that does the same work both times.
      echo "== $count files, $first twice (a control): first ${got[1]} files/s, second ${got[2]} files/s = $(python3 -c "print(round(${got[2]} / ${got[1]}, 2))")× (what the second place on a server costs)"
    else
      [[ $first == oikb ]] && o=2 k=1 || o=1 k=2
      other=${order/oikb/}
      other=${other// /}
      ratio=$(python3 -c "print(round(${got[$o]} / ${got[$k]}, 2))")
      ratios["$count|$order"]+=" $ratio"
      if ((stalls == 0)); then calm["$count|$order"]+=" $ratio"; fi
      echo "== $count files, $order: $other ${got[$o]} files/s, oikb ${got[$k]} files/s = ${ratio}× oikb's speed"
    fi
    echo
    unset got
  done
  # The same pairs, each tool against oikb in the same place: both first
  # on a fresh server, both second on one that holds the other's files
  # (which costs the server more per file: the orders' ratios differ by
  # that, not by the tools).
  for other in ferry sync; do
    first_o=${rates["$count|$other oikb|$other"]:-} first_k=${rates["$count|oikb $other|oikb"]:-}
    second_o=${rates["$count|oikb $other|$other"]:-} second_k=${rates["$count|$other oikb|oikb"]:-}
    [[ -n $first_o && -n $first_k && -n $second_o && -n $second_k ]] || continue
    echo "== $count files, $other and oikb in the same place: both first $first_o against $first_k files/s = $(python3 -c "print(round($first_o / $first_k, 2))")×; both second $second_o against $second_k = $(python3 -c "print(round($second_o / $second_k, 2))")×"
  done
  echo
done
# Over every pair of the run (an order given twice runs twice): each
# order's ratios and their median, and each tool's median rate by place.
# One pair moves with its servers (their CPU per file differs by up to a
# quarter) and with a stall; the medians of several are the figure.
for count in $sizes; do
  for key in "${!ratios[@]}"; do
    [[ $key == "$count|"* ]] || continue
    # shellcheck disable=SC2086
    echo "== $count files, ${key#*|}, all pairs:${ratios[$key]} (median $(median ${ratios[$key]})×)"
    v=${calm[$key]:-}
    # shellcheck disable=SC2086
    if [[ -n $v ]]; then echo "== $count files, ${key#*|}, the pairs the server did not stall in:$v (median $(median $v)×)"; fi
  done
  for tool in ferry sync oikb; do
    for pos in 1 2; do
      v=${places["$count|$tool|$pos"]:-}
      # shellcheck disable=SC2086
      if [[ -n $v ]]; then echo "== $count files, $tool in place $pos:$v files/s (median $(median $v))"; fi
    done
  done
done
# FERRY_PEER_KEEP=1 keeps the servers' logs and the trees.
if [[ -n "${FERRY_PEER_KEEP:-}" ]]; then echo "kept: $work"; else rm -rf "$work"; fi
