#!/usr/bin/env bash
# Test peer of the NETCONF target: Debian's netconfd (yuma123, a real RFC 6241 server) reached
# as the `netconf` subsystem of OpenSSH's sshd, both started by the tests themselves on a
# loopback port with their own config, keys and socket (crates/netban-testlab/src/peers/netconfd.rs).
# The system sshd the package installs is kept from starting (a temporary policy-rc.d during the
# install): netban never touches port 22. ncclient 0.6.15 goes into .venv-netconf at the repo
# root for the benchmark reference (bench/reference/netconf_ban.py), with paramiko 3.5.1 (ncclient
# 0.6.15 uses paramiko.DSSKey, which paramiko 4 removed). Idempotent; quiet when
# everything is in place.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
venv="$root/.venv-netconf"
ncclient_version="0.6.15"
paramiko_version="3.5.1"

missing=()
for p in netconfd openssh-server openssh-client; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "netban setup (netconf): installing ${missing[*]}"
  # Keep the package scripts from starting the system sshd / netconfd services.
  policy=/usr/sbin/policy-rc.d
  placed_policy=no
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    placed_policy=yes
  fi
  trap '[ "$placed_policy" = yes ] && rm -f "$policy"' EXIT
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  if ! dpkg -s python3-venv >/dev/null 2>&1; then
    echo "netban setup (netconf): installing python3-venv"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
  fi
fi

installed() {
  [ -x "$venv/bin/python" ] &&
    "$venv/bin/python" - "$ncclient_version" "$paramiko_version" <<'PY' >/dev/null 2>&1
import sys
from importlib.metadata import version
sys.exit(0 if (version("ncclient"), version("paramiko")) == (sys.argv[1], sys.argv[2]) else 1)
PY
}

if ! installed; then
  echo "netban setup (netconf): installing ncclient $ncclient_version (paramiko $paramiko_version) into $venv"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "ncclient==$ncclient_version" "paramiko==$paramiko_version"
  installed || { echo "netban setup (netconf): install check failed" >&2; exit 1; }
fi
