# Functions the setup scripts share (sourced by scripts/setup.sh and scripts/setup.d/*.sh, not
# run by itself): installing what is missing, and saying so.

# apt_install_missing LABEL PACKAGE...: installs those of the Debian packages that are not
# installed yet (quiet when all are). Sets `installed_any` to yes when it installed some.
apt_install_missing() {
  local label=$1
  shift
  local missing=() p
  installed_any=no
  for p in "$@"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  [ ${#missing[@]} -gt 0 ] || return 0
  echo "netban setup ($label): installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  installed_any=yes
}

# venv_install LABEL VENV PIN...: unless the caller's `installed` function says the venv is in
# place, makes the venv (python3 -m venv) and pip-installs the pins into it; fails when
# `installed` still says no afterwards.
venv_install() {
  local label=$1 venv=$2
  shift 2
  installed && return 0
  echo "netban setup ($label): installing $* into $venv"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "$@"
  installed || { echo "netban setup ($label): install into $venv failed" >&2; exit 1; }
}
