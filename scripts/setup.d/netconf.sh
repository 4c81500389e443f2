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
source "$(dirname "$0")/../packages.sh"
root="$(cd "$(dirname "$0")/../.." && pwd)"
venv="$root/.venv-netconf"
ncclient_version="0.6.15"
paramiko_version="3.5.1"

# Keep the package scripts from starting the system sshd / netconfd services while installing.
policy=/usr/sbin/policy-rc.d
placed_policy=no
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  placed_policy=yes
fi
trap '[ "$placed_policy" = yes ] && rm -f "$policy"' EXIT
apt_install_missing netconf netconfd openssh-server openssh-client

apt_install_missing netconf python3 python3-venv

installed() {
  [ -x "$venv/bin/python" ] &&
    "$venv/bin/python" - "$ncclient_version" "$paramiko_version" <<'PY' >/dev/null 2>&1
import sys
from importlib.metadata import version
sys.exit(0 if (version("ncclient"), version("paramiko")) == (sys.argv[1], sys.argv[2]) else 1)
PY
}

venv_install netconf "$venv" "ncclient==$ncclient_version" "paramiko==$paramiko_version"
