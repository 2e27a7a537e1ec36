#!/usr/bin/env bash
# Installs Debian's headless-capable Chromium for the report browser test
# (transforms/report_browser_test.go), which renders report.html and checks
# it for console errors, SVG charts and a non-blank screenshot.
#
# Idempotent: when /usr/bin/chromium (or $CHROMIUM) already runs, it does
# nothing but say so. It prints every step it takes, so a slow `make test`
# on a fresh machine shows why. Needs root (or sudo) for apt-get; without
# either it explains and exits non-zero, and the browser test then skips.
set -euo pipefail

CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"

if [[ -x "$CHROMIUM" ]] && "$CHROMIUM" --version >/dev/null 2>&1; then
	echo "install-chromium: $("$CHROMIUM" --version 2>/dev/null) already installed at $CHROMIUM"
	exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
	echo "install-chromium: no apt-get on this machine; install Chromium yourself (the report browser test skips without it)" >&2
	exit 1
fi

SUDO=""
if [[ "$(id -u)" != 0 ]]; then
	if command -v sudo >/dev/null 2>&1; then
		SUDO="sudo"
	else
		echo "install-chromium: not root and no sudo; run as root: apt-get update && apt-get install -y chromium" >&2
		exit 1
	fi
fi

echo "install-chromium: $CHROMIUM missing; running: ${SUDO:+$SUDO }apt-get update"
$SUDO apt-get update
echo "install-chromium: running: ${SUDO:+$SUDO }apt-get install -y --no-install-recommends chromium fonts-dejavu-core"
# fonts-dejavu-core: without any font the screenshot renders blank boxes.
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends chromium fonts-dejavu-core

if ! "$CHROMIUM" --version; then
	echo "install-chromium: installed, but $CHROMIUM --version fails" >&2
	exit 1
fi
echo "install-chromium: done"
