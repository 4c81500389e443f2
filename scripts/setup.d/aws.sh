#!/usr/bin/env bash
# Test peer of the AWS targets (aws_nacl, aws_waf): moto 5.2.5's standalone server
# (`moto_server`, which emulates the EC2 and WAFv2 APIs over HTTP) from PyPI, in its own venv at
# .venv-aws. The benchmark's reference script (bench/reference/aws_ban.py, the seed's
# boto3-per-ban approach) uses boto3 from the same venv. Idempotent and quiet when in place.
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
venv="$root/.venv-aws"
pins=("moto[server]==5.2.5" boto3)

missing=()
for p in python3 python3-venv; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "netban setup (aws): installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

installed() {
  [ -x "$venv/bin/moto_server" ] || return 1
  "$venv/bin/python" - <<'PY' 2>/dev/null
import importlib.metadata as m, sys
sys.exit(0 if m.version("moto") == "5.2.5" and m.version("boto3") and m.version("flask") else 1)
PY
}

if ! installed; then
  echo "netban setup (aws): installing ${pins[*]} in $venv"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "${pins[@]}"
  installed || { echo "netban setup (aws): install in $venv failed" >&2; exit 1; }
fi
