#!/usr/bin/env bash
# Builds the client `netban` statically linked (static-pie) into target/PROFILE/netban: what
# the package ships and the benchmarks time. fail2ban's shell action starts one client per
# ban; without the dynamic loader resolving shared libraries it starts in about 60% of the
# time (bench/fail2ban/bench.py, section `client`). It stays position-independent, so ASLR
# still applies: the client parses foreign input as root. (Non-PIE would save ~0.1 ms more per
# start; not worth losing ASLR.) The flag applies to the final link only (`cargo rustc`): the
# dependencies are the ordinary build's, and proc-macros (host artifacts) are untouched.
#
#   scripts/build-client.sh [--profile PROFILE]     (default: release)
set -euo pipefail
cd "$(dirname "$0")/.."
profile=release
case "${1:-}" in
  --profile) profile=$2 ;;
  "") ;;
  *) echo "usage: scripts/build-client.sh [--profile PROFILE]" >&2; exit 2 ;;
esac
cargo rustc --profile "$profile" -p netban-cli --bin netban -- -C target-feature=+crt-static
case "$profile" in dev) dir=debug ;; *) dir=$profile ;; esac
bin="${CARGO_TARGET_DIR:-target}/$dir/netban"
# A client that needs the dynamic loader, or is not position-independent, means the flags were
# lost or changed: fail rather than ship it. (readelf: binutils, which the Rust linker needs.)
if readelf -l "$bin" | grep -q INTERP || ! readelf -h "$bin" | grep -q 'Type: *DYN'; then
  echo "build-client.sh: $bin is not a static position-independent executable" >&2
  exit 1
fi
