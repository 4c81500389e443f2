#!/usr/bin/env bash
# Test peer of the AWS targets (aws_nacl, aws_waf): moto 5.2.5's standalone server
# (`moto_server`, which emulates the EC2 and WAFv2 APIs over HTTP) from PyPI, in its own venv at
# .venv-aws. The benchmark's reference script (bench/reference/aws_ban.py, the seed's
# boto3-per-ban approach) uses boto3 from the same venv. Idempotent and quiet when in place.
set -euo pipefail
source "$(dirname "$0")/../packages.sh"

root="$(cd "$(dirname "$0")/../.." && pwd)"
venv="$root/.venv-aws"
pins=("moto[server]==5.2.5" boto3)

apt_install_missing aws python3 python3-venv

installed() {
  [ -x "$venv/bin/moto_server" ] || return 1
  "$venv/bin/python" - <<'PY' 2>/dev/null
import importlib.metadata as m, sys
sys.exit(0 if m.version("moto") == "5.2.5" and m.version("boto3") and m.version("flask") else 1)
PY
}

venv_install aws "$venv" "${pins[@]}"
