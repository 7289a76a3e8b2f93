#!/usr/bin/env bash
# Builds the Debian package: target/deb/ferry_<version>_<arch>.deb with
# the binary, the systemd unit, the example config and rule under
# /etc/ferry (conffiles), the man page and shell completions. The service
# runs as the system user `ferry`, which the package makes.
#
# usage: scripts/package-deb.sh            release build (what to ship)
#        FERRY_DEB_PROFILE=dev scripts/package-deb.sh
#                                          the test build (CI: no second
#                                          compile; the package is the same)
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${FERRY_DEB_PROFILE:-release}
bin=$(scripts/build-ferry.sh "$profile")
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
arch=$(dpkg --print-architecture)
out=target/deb
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/ferry_${version}_${arch}

install -D -m 755 "$bin" "$root/usr/bin/ferry"
install -d "$root/lib/systemd/system"
sed 's#/usr/local/bin/ferry#/usr/bin/ferry#g' systemd/ferry.service >"$root/lib/systemd/system/ferry.service"
# The config is readable by root and the ferry group only: it may name
# secrets inline if an admin chooses to.
install -D -m 640 systemd/ferry.yaml "$root/etc/ferry/ferry.yaml"
# The watch rule is the one that starts with the shipped unit as it is;
# the others need secrets and models of their own: examples.
install -D -m 644 rules/inbox.yaml "$root/etc/ferry/rules/inbox.yaml"
install -d -m 700 "$root/etc/ferry/credentials"
for r in rules/*.yaml; do
  install -D -m 644 "$r" "$root/usr/share/doc/ferry/examples/rules/$(basename "$r")"
done
install -D -m 644 README.md "$root/usr/share/doc/ferry/README.md"
{
  echo "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/"
  echo "Upstream-Name: ferry"
  echo
  echo "Files: *"
  echo "License: Apache-2.0"
  echo " On Debian systems the full text is in /usr/share/common-licenses/Apache-2.0."
} >"$work/copyright"
install -D -m 644 "$work/copyright" "$root/usr/share/doc/ferry/copyright"
install -d "$root/usr/share/man/man1"
"$bin" man | gzip -9n >"$root/usr/share/man/man1/ferry.1.gz"
install -d "$root/usr/share/bash-completion/completions" \
  "$root/usr/share/zsh/vendor-completions" "$root/usr/share/fish/vendor_completions.d"
"$bin" completions bash >"$root/usr/share/bash-completion/completions/ferry"
"$bin" completions zsh >"$root/usr/share/zsh/vendor-completions/_ferry"
"$bin" completions fish >"$root/usr/share/fish/vendor_completions.d/ferry.fish"

install -d "$root/DEBIAN"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat >"$root/DEBIAN/control" <<EOF
Package: ferry
Version: $version
Architecture: $arch
Maintainer: ferry developers <ferry@example.org>
Installed-Size: $size
Depends: libc6 (>= 2.34), libgcc-s1, passwd
Recommends: systemd
Section: net
Priority: optional
Homepage: https://example.org/ferry
Description: Open WebUI folder sync, templated chats and signed webhooks
 ferry keeps Open WebUI knowledge collections an exact, verified mirror of
 folders, runs templated chats on schedules, webhooks and new documents,
 and forwards the answers to webhooks, signed and retried, with its state
 in SQLite. Works with Open WebUI 0.6.40 to 0.12.x.
EOF
printf '/etc/ferry/ferry.yaml\n/etc/ferry/rules/inbox.yaml\n' >"$root/DEBIAN/conffiles"
cat >"$root/DEBIAN/postinst" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
  if ! getent passwd ferry >/dev/null; then
    useradd --system --user-group --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin --comment "ferry daemon" ferry
  fi
  chgrp ferry /etc/ferry/ferry.yaml
  if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null || true
  fi
  echo "ferry: put the secrets in /etc/ferry/credentials/ (see /usr/share/doc/ferry/README.md), then: systemctl enable --now ferry"
fi
EOF
cat >"$root/DEBIAN/prerm" <<'EOF'
#!/bin/sh
set -e
if [ -d /run/systemd/system ] && [ "$1" = remove ]; then
  systemctl stop ferry.service >/dev/null 2>&1 || true
fi
EOF
cat >"$root/DEBIAN/postrm" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = purge ]; then
  # The state (jobs, answers, the outbox) and the secrets go with a purge.
  rm -rf /var/lib/ferry /var/lib/private/ferry /etc/ferry/credentials
  rmdir /etc/ferry/rules /etc/ferry 2>/dev/null || true
  if getent passwd ferry >/dev/null; then
    userdel ferry >/dev/null 2>&1 || true
  fi
  if getent group ferry >/dev/null; then
    groupdel ferry >/dev/null 2>&1 || true
  fi
fi
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null 2>&1 || true
fi
EOF
chmod 755 "$root/DEBIAN/postinst" "$root/DEBIAN/prerm" "$root/DEBIAN/postrm"
mkdir -p "$out"
dpkg-deb --root-owner-group -Zxz --build "$root" "$out/" >/dev/null
echo "$out/ferry_${version}_${arch}.deb"
