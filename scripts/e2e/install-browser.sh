#!/usr/bin/env bash
# The browser of the status-page tests: Debian's Chromium and its
# ChromeDriver (/usr/bin/chromium, /usr/bin/chromedriver). Installed with
# apt when missing (needs root); nothing to do when present.
set -euo pipefail
command -v chromedriver >/dev/null && command -v chromium >/dev/null && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "install-browser: needs chromium and chromium-driver (apt-get install chromium chromium-driver)" >&2
  exit 1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
