#!/usr/bin/env bash
# Test peer of the ExaFS target: the real ExaFS 1.4.1 (CESNET) and exabgp-process 1.0.5 (its
# ExaAPI HTTP process, which prints every announce/withdraw command) from PyPI, in their own
# venv at .venv-exafs. The benchmark's reference script (bench/reference/exafs_ban.py) uses
# `requests` from the same venv. Idempotent and quiet when everything is in place.
set -euo pipefail
source "$(dirname "$0")/../packages.sh"

root="$(cd "$(dirname "$0")/../.." && pwd)"
venv="$root/.venv-exafs"
pins=(exafs==1.4.1 exabgp-process==1.0.5 requests)

apt_install_missing exafs python3 python3-venv

installed() {
  [ -x "$venv/bin/python" ] || return 1
  "$venv/bin/python" - <<'PY' 2>/dev/null
import importlib.metadata as m, sys
want = {"exafs": "1.4.1", "exabgp-process": "1.0.5"}
sys.exit(0 if all(m.version(k) == v for k, v in want.items()) and m.version("requests") else 1)
PY
}

venv_install exafs "$venv" "${pins[@]}"
