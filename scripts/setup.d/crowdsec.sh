#!/usr/bin/env bash
# Test peers of CrowdSec, both ways (docs/sources/crowdsec.md, docs/targets/crowdsec-server.md):
# Debian's crowdsec (the Local API and cscli) and crowdsec-firewall-bouncer (nftables mode).
# The tests start their own throwaway LAPI per test (crates/netban-testlab/src/peers/crowdsec.rs:
# own directory, SQLite database and port) and the bouncer in a lab namespace; the system
# services are never used, and are kept from starting where systemd runs.
#
# The install trap: without /etc/crowdsec/online_api_credentials.yaml, crowdsec's postinst runs
# `cscli capi register`, which fails offline and leaves the package half-configured (dpkg exits
# 1). README.Debian's way to skip the community API is to write that file first; a machine
# caught by the trap already is repaired with `dpkg --configure -a` once the file exists.
# Idempotent and quiet when in place.
set -euo pipefail

skip_capi() {
  mkdir -p /etc/crowdsec
  [ -e /etc/crowdsec/online_api_credentials.yaml ] ||
    echo '# no community API (netban setup)' >/etc/crowdsec/online_api_credentials.yaml
}

half_configured() {
  for p in crowdsec crowdsec-firewall-bouncer; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    case "$status" in
      "install ok installed" | "") ;;
      *) return 0 ;;
    esac
  done
  return 1
}

if half_configured; then
  echo "netban setup (crowdsec): finishing a half-configured install"
  skip_capi
  DEBIAN_FRONTEND=noninteractive dpkg --configure -a >/dev/null
fi

missing=()
for p in crowdsec crowdsec-firewall-bouncer; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "netban setup (crowdsec): installing ${missing[*]}"
  skip_capi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    -o Dpkg::Options::=--force-confold "${missing[@]}" >/dev/null
  command -v crowdsec >/dev/null && command -v crowdsec-firewall-bouncer >/dev/null ||
    { echo "netban setup (crowdsec): crowdsec or its bouncer still missing" >&2; exit 1; }
fi

# The system services would take 127.0.0.1:8080 and the host's nftables: never started here.
if [ -d /run/systemd/system ]; then
  for unit in crowdsec crowdsec-firewall-bouncer; do
    if systemctl is-enabled --quiet "$unit" 2>/dev/null || systemctl is-active --quiet "$unit"; then
      echo "netban setup (crowdsec): disabling the system's $unit service (tests run their own)"
      systemctl disable --now "$unit" >/dev/null 2>&1 || true
    fi
  done
fi
