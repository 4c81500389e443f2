#!/usr/bin/env bash
# Installs what netban's demo lab and tests need on a fresh Debian 12 machine, idempotently:
# the real peers (fail2ban 1.0.2, nftables), network namespace tools, and a Rust toolchain
# check. Safe to run again: it installs only what is missing.
#
#   scripts/setup.sh          everything: also each driver's test peer (scripts/setup.d/*.sh)
#   scripts/setup.sh --demo   only what the demo lab needs (fail2ban, nftables, iproute2, python3)
set -euo pipefail
source "$(dirname "$0")/packages.sh"

demo=0
case "${1:-}" in
  --demo) demo=1 ;;
  "") ;;
  *) echo "usage: scripts/setup.sh [--demo]" >&2; exit 2 ;;
esac

need_root() {
  if [ "$(id -u)" != 0 ]; then
    echo "netban setup: run as root (the lab creates network namespaces and nftables tables)" >&2
    exit 1
  fi
}
need_root

# The demo lab: fail2ban and nftables are the real peers, iproute2 makes the namespaces,
# python3 runs the lab's connection probes, procps gives `kill`.
packages=(fail2ban nftables iproute2 python3 procps)
# The tests and benchmarks also use these.
# systemd: only `systemd-analyze verify` of the shipped unit (it does not become init).
# lintian, dpkg-dev: build and check the Debian package (scripts/package.sh, tests/package.rs);
# man-db: render its man pages; bash-completion: load its completion.
[ "$demo" = 1 ] || packages+=(iputils-ping hyperfine sqlite3 systemd lintian dpkg-dev man-db bash-completion)
apt_install_missing base "${packages[@]}"
# The Debian package may start a system fail2ban; the lab and tests run their own instances
# with their own sockets, so a system one is left alone but must not hold our paths.

# Each target's real test peer installs itself from scripts/setup.d/NAME.sh (apt packages,
# a Python venv under .venv-NAME): idempotent, and quiet when everything is in place. The
# demo needs none of them.
if [ "$demo" = 0 ]; then
  for part in "$(dirname "$0")"/setup.d/*.sh; do
    [ -e "$part" ] || continue
    bash "$part"
  done
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "netban setup: cargo not found; install a Rust toolchain (rustup) first" >&2
  exit 1
fi
