#!/usr/bin/env bash
# Installs Debian's headless-capable Chromium for the report's browser test
# (tests/test_reports_browser.py) and for docs/report-screenshot.png.
# Idempotent: does nothing when /usr/bin/chromium is already there. Needs root (or sudo).
#
# This closed network refuses Chromium's background connections; run it as
#   chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
#     --disable-background-networking --disable-component-update --disable-sync \
#     --user-data-dir="$(mktemp -d)" --screenshot=out.png file:///path/report.html
set -euo pipefail

CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
log() { printf '[install-chromium] %s\n' "$*"; }

if [ -x "$CHROMIUM" ]; then
  log "$CHROMIUM already installed: $("$CHROMIUM" --version 2>/dev/null || echo '?')"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { log "needs root (or sudo) to apt-get install chromium"; exit 1; }
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive

# An apt list that has never been fetched (fresh container) knows no chromium: update first.
if ! apt-cache show chromium >/dev/null 2>&1 || [ -z "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v -e lock -e partial)" ]; then
  log "apt-get update"
  $SUDO apt-get update -q
fi
log "apt-get install chromium"
if ! $SUDO apt-get install -y -q --no-install-recommends chromium; then
  # A stale list can point at removed package versions: refresh once and retry.
  log "install failed; refreshing the package lists and retrying"
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends chromium
fi
# Text in screenshots needs at least one font; chromium's recommends are skipped above.
if ! fc-list 2>/dev/null | grep -q .; then
  log "apt-get install fonts-dejavu-core"
  $SUDO apt-get install -y -q --no-install-recommends fonts-dejavu-core fontconfig
fi
log "installed: $("$CHROMIUM" --version 2>/dev/null || echo '?')"
