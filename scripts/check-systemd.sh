#!/usr/bin/env bash
# The Debian package's unit under a real systemd: systemd 252 as PID 1 in a
# podman container (Debian bookworm from Debian's packages, as the image's
# base), ferry's package installed there with dpkg. Checks that
#   - `systemctl start` succeeds with Open WebUI down (Type=notify: READY=1
#     once the store is open and the port bound), STATUS= names the cause;
#   - `systemctl reload` succeeds and the daemon stays up;
#   - a frozen daemon (SIGSTOP) is killed by the watchdog and restarted;
#   - `systemctl stop` ends it cleanly (exit 0).
# Needs root (podman). The container is --privileged: the unit's sandboxing
# (ProtectSystem=, PrivateTmp=, …) needs mount namespaces (226/NAMESPACE
# without). One thing this sandbox cannot do: systemd's credentials here
# arrive unreadable by the service user (even for a bare `systemd-run -p
# LoadCredential=… -p User=…`), so a drop-in points CREDENTIALS_DIRECTORY
# at a copy instead; `check-deb.sh` checks the unit's credentials.
#
# usage: scripts/check-systemd.sh     FERRY_DEB_PROFILE=dev packages the test build
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf '\n== %s\n' "$*" >&2; }
fail() { echo "check-systemd: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || fail "needs root (podman)"

scripts/container-base.sh
image=localhost/ferry-systemd-check:bookworm
if ! podman image exists "$image"; then
  say "an image with systemd, from the Debian base (once)"
  ctx=$(mktemp -d)
  printf '%s\n' 'FROM localhost/ferry-base:bookworm' \
    'RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd systemd-sysv >/dev/null && rm -rf /var/lib/apt/lists/*' \
    'CMD ["/sbin/init"]' >"$ctx/Containerfile"
  podman build --quiet --isolation chroot --format docker -t "$image" "$ctx" >/dev/null
  rm -rf "$ctx"
fi
deb=$(scripts/package-deb.sh)
name=ferry-systemd-check
podman rm -f "$name" >/dev/null 2>&1 || true
trap 'podman rm -f "$name" >/dev/null 2>&1 || true' EXIT
podman --runtime runc run -d --name "$name" --privileged --systemd=always \
  --ulimit nofile=8192:8192 --ulimit nproc=4096:4096 "$image" >/dev/null
inside() { podman exec "$name" bash -c "$*"; }
for _ in $(seq 50); do
  state=$(inside 'systemctl is-system-running' 2>/dev/null || true)
  [[ $state == running || $state == degraded ]] && break
  sleep 0.2
done
[[ $state == running || $state == degraded ]] || fail "systemd did not come up: $state"
say "systemd $(inside 'systemctl --version | head -1 | cut -d" " -f2') as PID 1; installing $(basename "$deb")"
podman cp "$deb" "$name:/tmp/ferry.deb"
inside 'dpkg -i /tmp/ferry.deb >/dev/null'
inside 'mkdir -p /etc/systemd/system/ferry.service.d /var/lib/ferry-credentials
for n in $(sed -n "s/^LoadCredential=\([^:]*\):.*/\1/p" /lib/systemd/system/ferry.service); do
  printf "secret-%s-0123456789\n" "$n" >/var/lib/ferry-credentials/$n
done
chown -R ferry:ferry /var/lib/ferry-credentials; chmod 500 /var/lib/ferry-credentials
printf "[Service]\nLoadCredential=\nEnvironment=CREDENTIALS_DIRECTORY=/var/lib/ferry-credentials\nWatchdogSec=5s\n" \
  >/etc/systemd/system/ferry.service.d/check.conf
systemctl daemon-reload'
show() { inside "systemctl show -p $1 --value ferry"; }

say "start, with Open WebUI down"
inside 'systemctl start ferry' || { inside 'journalctl -u ferry --no-pager | tail -20'; fail "start failed"; }
[ "$(show ActiveState)" = active ] || fail "not active after start: $(show ActiveState)"
status=$(show StatusText)
echo "STATUS=$status"
grep -q 'rule' <<<"$status" && grep -qi 'openwebui\|open webui' <<<"$status" ||
  fail "STATUS= does not name the rules and Open WebUI's state: $status"

say "reload"
pid=$(show MainPID)
inside 'systemctl reload ferry' || { inside 'journalctl -u ferry --no-pager | tail -20'; fail "reload failed"; }
sleep 1
[ "$(show ActiveState)" = active ] && [ "$(show MainPID)" = "$pid" ] || fail "not the same running daemon after reload"
inside 'journalctl -u ferry --no-pager' | grep -q 'reloaded rules and webhooks' || fail "no reload in the journal"

say "watchdog: the daemon frozen (SIGSTOP)"
restarts=$(show NRestarts)
inside "kill -STOP $pid"
for _ in $(seq 60); do
  [ "$(show MainPID)" != "$pid" ] && [ "$(show ActiveState)" = active ] && break
  sleep 0.5
done
inside 'journalctl -u ferry --no-pager' | grep -q 'Watchdog timeout' || fail "no watchdog timeout in the journal"
[ "$(show NRestarts)" -gt "$restarts" ] || fail "not restarted after the watchdog"
[ "$(show ActiveState)" = active ] || fail "not active again after the watchdog: $(show ActiveState)"

say "stop"
inside 'systemctl stop ferry'
[ "$(show ActiveState)" = inactive ] || fail "still $(show ActiveState) after stop"
[ "$(show ExecMainStatus)" = 0 ] || fail "exit status $(show ExecMainStatus) at stop"
echo "check-systemd: started with Open WebUI down, reloaded, killed by the watchdog when frozen and restarted, stopped cleanly"
