#!/usr/bin/env bash
# Builds the Debian package, installs it on this machine with dpkg -i,
# checks what it installed (binary, unit, example config and rule, man
# page, completions, the `ferry` user), runs `ferry check` on the installed
# example as the unit would (user ferry, its credentials), and purges it,
# checking nothing is left. Needs root; CI runs it (`scripts/test.sh`).
#
# usage: scripts/check-deb.sh      FERRY_DEB_PROFILE=dev to package the test build
set -euo pipefail
cd "$(dirname "$0")/.."
fail() { echo "check-deb: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || fail "needs root (dpkg -i)"
if dpkg -s ferry >/dev/null 2>&1; then
  fail "a ferry package is installed here already; not touching it"
fi
deb=$(scripts/package-deb.sh)
echo "built $deb ($(du -h "$deb" | cut -f1))"
trap 'dpkg --purge ferry >/dev/null 2>&1 || true' EXIT
dpkg -i "$deb" >/dev/null

version=$(/usr/bin/ferry --version)
echo "$version"
grep -Eq '^ferry [0-9.]+ \(commit [0-9a-f]{7,}\)$' <<<"$(head -1 <<<"$version")" ||
  fail "--version names no commit: $version"
grep -q 'Open WebUI 0.6.40 to 0.12.x' <<<"$version" || fail "--version names no Open WebUI range"
getent passwd ferry >/dev/null || fail "no user ferry"
[ "$(stat -c %U:%G:%a /etc/ferry/ferry.yaml)" = root:ferry:640 ] || fail "config ownership: $(stat -c %U:%G:%a /etc/ferry/ferry.yaml)"
[ "$(stat -c %a /etc/ferry/credentials)" = 700 ] || fail "credentials directory is not 0700"
dpkg-query -W -f='${Conffiles}\n' ferry | grep -q /etc/ferry/ferry.yaml || fail "ferry.yaml is no conffile"
unit=/lib/systemd/system/ferry.service
grep -q '^ExecStart=/usr/bin/ferry run' "$unit" || fail "the unit does not start /usr/bin/ferry"
systemd-analyze verify --man=no "$unit"
MANWIDTH=80 man -l /usr/share/man/man1/ferry.1.gz | grep -q 'ferry-completions' || fail "man page lacks commands"
bash -n /usr/share/bash-completion/completions/ferry
test -s /usr/share/zsh/vendor-completions/_ferry
test -s /usr/share/fish/vendor_completions.d/ferry.fish
test -s /usr/share/doc/ferry/README.md

# ExecStartPre as systemd runs it: user ferry, and each LoadCredential= of
# the unit in $CREDENTIALS_DIRECTORY (secrets the admin puts in
# /etc/ferry/credentials/, as the README says).
for name in $(sed -n 's/^LoadCredential=\([^:]*\):.*/\1/p' "$unit"); do
  printf 'secret-%s-0123456789\n' "$name" >"/etc/ferry/credentials/$name"
done
creds=$(mktemp -d)
cp /etc/ferry/credentials/* "$creds/"
chown -R ferry:ferry "$creds"
chmod 500 "$creds"
check=$(sed -n 's/^ExecStartPre=//p' "$unit")
[ -n "$check" ] || fail "no ExecStartPre in the unit"
# shellcheck disable=SC2086 # the unit's command line, split as systemd does
runuser -u ferry -- env -i PATH=/usr/bin:/bin CREDENTIALS_DIRECTORY="$creds" $check ||
  fail "ferry check failed on the installed example"
rm -rf "$creds"

dpkg --purge ferry >/dev/null
trap - EXIT
for left in /usr/bin/ferry "$unit" /etc/ferry /usr/share/doc/ferry /usr/share/man/man1/ferry.1.gz; do
  [ ! -e "$left" ] || fail "$left is left after purge"
done
! getent passwd ferry >/dev/null || fail "user ferry is left after purge"
! dpkg -s ferry >/dev/null 2>&1 || fail "dpkg still knows ferry"
echo "check-deb: installed, checked and purged cleanly"
