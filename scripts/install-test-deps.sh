#!/usr/bin/env bash
# What the test suite needs beyond `make install`: the system chromium that the web page tests drive with
# Playwright (which never downloads browsers itself). Called by `make test` and by .ci/run; idempotent.
set -euo pipefail
if [ -x /usr/bin/chromium ] || command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = 0 ]; then
  sudo=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  sudo="sudo -n"
else
  echo "install-test-deps: chromium is missing and apt needs root; the web page tests will fail." >&2
  echo "Fix: sudo apt-get install chromium (Debian/Ubuntu), then make test." >&2
  exit 0
fi
echo "install-test-deps: installing chromium (apt) for the web page tests"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
