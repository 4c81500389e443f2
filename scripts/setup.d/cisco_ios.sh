#!/usr/bin/env bash
# Test peer of the Cisco IOS target: PyPI fakenos 1.2.1 (a real SSH server presenting IOS
# prompts; netban's own stateful ACL shell plugin runs inside it, see
# crates/netban-testlab/peers/cisco_ios/) and netmiko 4.8 as an independent client for the
# emulator cross-check and the benchmark reference. Installed into .venv-cisco_ios at the repo
# root; idempotent and quiet when already in place.
set -euo pipefail
source "$(dirname "$0")/../packages.sh"
root="$(cd "$(dirname "$0")/../.." && pwd)"
venv="$root/.venv-cisco_ios"
fakenos_version="1.2.1"
netmiko_version="4.8.0"

apt_install_missing cisco_ios python3 python3-venv

installed() {
  [ -x "$venv/bin/python" ] &&
    "$venv/bin/python" - "$fakenos_version" "$netmiko_version" <<'PY' >/dev/null 2>&1
import sys
from importlib.metadata import version
sys.exit(0 if (version("fakenos"), version("netmiko")) == (sys.argv[1], sys.argv[2]) else 1)
PY
}

venv_install cisco_ios "$venv" "fakenos==$fakenos_version" "netmiko==$netmiko_version"
