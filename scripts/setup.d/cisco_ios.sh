#!/usr/bin/env bash
# Test peer of the Cisco IOS target: PyPI fakenos 1.2.1 (a real SSH server presenting IOS
# prompts; netban's own stateful ACL shell plugin runs inside it, see
# crates/netban-testlab/peers/cisco_ios/) and netmiko 4.8 as an independent client for the
# emulator cross-check and the benchmark reference. Installed into .venv-cisco_ios at the repo
# root; idempotent and quiet when already in place.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
venv="$root/.venv-cisco_ios"
fakenos_version="1.2.1"
netmiko_version="4.8.0"

if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  if ! dpkg -s python3-venv >/dev/null 2>&1; then
    echo "netban setup (cisco_ios): installing python3-venv"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
  fi
fi

installed() {
  [ -x "$venv/bin/python" ] &&
    "$venv/bin/python" - "$fakenos_version" "$netmiko_version" <<'PY' >/dev/null 2>&1
import sys
from importlib.metadata import version
sys.exit(0 if (version("fakenos"), version("netmiko")) == (sys.argv[1], sys.argv[2]) else 1)
PY
}

if ! installed; then
  echo "netban setup (cisco_ios): installing fakenos $fakenos_version and netmiko $netmiko_version into $venv"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check \
    "fakenos==$fakenos_version" "netmiko==$netmiko_version"
  installed || { echo "netban setup (cisco_ios): install check failed" >&2; exit 1; }
fi
