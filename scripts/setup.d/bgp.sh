#!/usr/bin/env bash
# Test peers of the BGP target: Debian's BIRD 2 (bird2) and FRR 8 (frr) as the routers that
# turn netban's BLACKHOLE announcements into kernel blackhole routes, and GoBGP (gobgpd) as the
# reference announcer of the benchmark. The tests run their own instances inside network
# namespaces (own config, control sockets and pid files); the system services the packages
# may start are stopped and disabled here, so that no BGP speaker runs in the root namespace.
# Idempotent, and quiet when everything is in place.
set -euo pipefail
source "$(dirname "$0")/../packages.sh"

apt_install_missing bgp bird2 frr gobgpd
if [ "$installed_any" = yes ]; then  # The packages' own services (bird, frr, gobgpd) must not run: stop them if they started.
  for service in bird frr gobgpd; do
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
      systemctl disable --now "$service" >/dev/null 2>&1 || true
    elif [ -x "/etc/init.d/$service" ]; then
      "/etc/init.d/$service" stop >/dev/null 2>&1 || true
      update-rc.d "$service" disable >/dev/null 2>&1 || true
    fi
  done
fi
