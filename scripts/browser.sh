#!/usr/bin/env bash
# Make sure a headless Chromium is available for the browser tests (tests/dashboards).
#
# Idempotent: does nothing when Chromium is already installed. Otherwise installs Debian's
# chromium package (plus a font, so screenshots have readable text). Playwright drives this
# system browser (its own browser downloads are not used). Needs root or passwordless sudo.
#
# Environment: VITALTWIN_CHROMIUM  path of the browser (default /usr/bin/chromium)
set -euo pipefail

chromium="${VITALTWIN_CHROMIUM:-/usr/bin/chromium}"
if [ -x "$chromium" ] && fc-list 2>/dev/null | grep -qi dejavu; then
  exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  sudo=(sudo -n)
else
  echo "browser.sh: $chromium is missing and installing it needs root (apt-get install chromium)" >&2
  exit 1
fi

echo "browser.sh: installing chromium from Debian's packages" >&2
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
"$chromium" --version >&2
