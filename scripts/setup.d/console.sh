#!/usr/bin/env bash
# Test peer of the web console (crates/netban-e2e/tests/console.rs): Debian's chromium, driven
# headless through WebDriver by chromium-driver (`chromedriver`). Idempotent and quiet when in
# place.
set -euo pipefail
source "$(dirname "$0")/../packages.sh"

apt_install_missing console chromium chromium-driver
command -v chromedriver >/dev/null || {
  echo "netban setup (console): chromedriver is not on PATH after installing chromium-driver" >&2
  exit 1
}
