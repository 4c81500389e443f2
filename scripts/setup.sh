#!/usr/bin/env bash
# Installs what netban's demo lab and tests need on a fresh Debian 12 machine, idempotently:
# the real peers (fail2ban 1.0.2, nftables), network namespace tools, and a Rust toolchain
# check. Safe to run again: it installs only what is missing.
set -euo pipefail

need_root() {
  if [ "$(id -u)" != 0 ]; then
    echo "netban setup: run as root (the lab creates network namespaces and nftables tables)" >&2
    exit 1
  fi
}
need_root

packages=(fail2ban nftables iproute2 iputils-ping python3 procps hyperfine sqlite3)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "netban setup: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The Debian package may start a system fail2ban; the lab and tests run their own instances
# with their own sockets, so a system one is left alone but must not hold our paths.

# Each target's real test peer installs itself from scripts/setup.d/NAME.sh (apt packages,
# a Python venv under .venv-NAME): idempotent, and quiet when everything is in place.
for part in "$(dirname "$0")"/setup.d/*.sh; do
  [ -e "$part" ] || continue
  bash "$part"
done

if ! command -v cargo >/dev/null 2>&1; then
  echo "netban setup: cargo not found; install a Rust toolchain (rustup) first" >&2
  exit 1
fi
