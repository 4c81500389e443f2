#!/usr/bin/env bash
# Consumers of the feed target's test (crates/netban-e2e/tests/drivers/feed.rs): the real curl,
# Python 3 for feed_client.py (standard library only) and md5sum (coreutils). The benchmark
# (bench/src/feed.rs) also uses nginx as a reference when it is installed; it is not installed
# here. Idempotent and quiet when everything is in place.
set -euo pipefail
source "$(dirname "$0")/../packages.sh"

apt_install_missing feed curl python3 coreutils
