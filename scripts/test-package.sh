#!/usr/bin/env bash
# Tests netban's Debian package (scripts/package.sh): builds it, checks it with lintian,
# inspects its contents and modes, then installs it for real with dpkg into an isolated root and
# checks what the installation did, the installed programs, a reinstall, remove and purge.
#
#   scripts/test-package.sh [--deb FILE | --prebuilt DIR]     (root; scripts/test.sh runs it)
#
# With no option it builds the package from the demo profile (nftables-only daemon: minutes,
# not the release build's half hour). scripts/test.sh passes --prebuilt target/debug: the
# binaries its test build already made (with the client linked static by
# scripts/build-client.sh, as the package ships it), so this test compiles nothing.
#
# The isolated root: a private mount namespace (unshare) in which an overlay whose lower layer
# is this machine's / and whose upper layer is a tmpfs is mounted and chrooted into, with its
# own /proc, /run and /tmp. It is a real Debian 12 system with a real dpkg database (this
# machine's, copy-on-write), not a clean one: what is installed here is installed there
# (adduser, systemd, man-db, bash-completion). Every write lands in the tmpfs and vanishes with
# the namespace; this machine's / is never written. systemd does not run in it (no
# /run/systemd/system), so the maintainer scripts enable the unit but do not start it, as in a
# container or a debootstrap chroot; the test starts the installed daemon itself.
set -euo pipefail
cd "$(dirname "$0")/.."

failures=0
# expect DESCRIPTION COMMAND...: runs COMMAND, reports ok or FAIL.
expect() {
  local what=$1
  shift
  if "$@"; then
    echo "ok   $what"
  else
    echo "FAIL $what" >&2
    failures=$((failures + 1))
  fi
}
finish() {
  if [ "$failures" -gt 0 ]; then
    echo "test-package: $failures check(s) failed" >&2
    exit 1
  fi
}

# ---- inside the private mount namespace (re-executed by the outer part) -------------------
if [ "${1:-}" = --inside ]; then
  deb=$2
  work=$3
  lab=$4
  mount -t tmpfs dp-pkg "$work"
  mkdir "$work/upper" "$work/work" "$work/root"
  root="$work/root"
  mount -t overlay dp-pkg -o "lowerdir=/,upperdir=$work/upper,workdir=$work/work" "$root"
  mount -t proc proc "$root/proc"
  mount --rbind /dev "$root/dev"
  mount -t tmpfs tmpfs "$root/run"
  mount -t tmpfs tmpfs "$root/tmp"
  cp "$deb" "$root/tmp/netban.deb"
  in_root() { chroot "$root" "$@"; }
  has() { grep -q -- "$1" <<<"$2"; }
  mode_of() { in_root stat -c '%U:%G %a' "$1"; }
  status_of() { in_root dpkg-query -W -f='${Status}' netban 2>/dev/null || true; }

  echo "== install (dpkg -i in the isolated root)"
  expect "netban group absent before install" bash -c "! chroot '$root' getent group netban >/dev/null"
  expect "dpkg -i installs the package" in_root dpkg -i /tmp/netban.deb
  expect "package state: install ok installed" test "$(status_of)" = "install ok installed"
  group=$(in_root getent group netban || true)
  gid=$(cut -d: -f3 <<<"$group")
  expect "postinst created the netban group" test -n "$group"
  expect "netban is a system group (gid $gid < 1000)" test -n "$gid" -a "${gid:-1000}" -lt 1000
  expect "/etc/netban/netban.toml is root:netban 0640" test "$(mode_of /etc/netban/netban.toml)" = "root:netban 640"
  expect "/var/lib/netban is root:root 0750" test "$(mode_of /var/lib/netban)" = "root:root 750"
  expect "/usr/bin/netban is root:root 0755" test "$(mode_of /usr/bin/netban)" = "root:root 755"
  expect "netban.service enabled (multi-user.target.wants)" \
    test "$(in_root readlink /etc/systemd/system/multi-user.target.wants/netban.service)" = /lib/systemd/system/netban.service
  expect "the unit was not started (systemd is not running here)" test ! -e "$root/run/netban"
  verify=$(in_root systemd-analyze verify /lib/systemd/system/netban.service 2>&1) && verified=yes || verified=no
  expect "systemd-analyze verify netban.service passes${verify:+ (said: $verify)}" test "$verified" = yes -a -z "$verify"
  expect "fail2ban actions use the packaged client" \
    grep -q '^netban = /usr/bin/netban$' "$root/etc/fail2ban/action.d/netban.conf"
  expect "netban.py's default client is the packaged one" \
    grep -q '^DEFAULT_CLIENT = "/usr/bin/netban"$' "$root/etc/fail2ban/action.d/netban.py"

  echo "== the installed programs"
  help=$(in_root netban --help 2>&1 || true)
  expect "netban --help lists ban and status" bash -c 'grep -q "^  ban " <<<"$0" && grep -q "^  status " <<<"$0"' "$help"
  expect "netban-daemon --version" test "$(in_root netban-daemon --version)" = "netban-daemon $(dpkg-deb -f "$deb" Version)"
  check=$(in_root netban-daemon --check-config 2>&1) && checked=yes || checked=no
  expect "the shipped configuration passes check-config ($check)" test "$checked" = yes
  expect "check-config reads /etc/netban/netban.toml" has "^/etc/netban/netban.toml: ok (0 targets" "$check"

  echo "== man pages"
  man1=$(in_root env MANPAGER=cat MANWIDTH=100 LC_ALL=C.UTF-8 man -l /usr/share/man/man1/netban.1.gz 2>&1 || true)
  expect "man -l netban.1 renders NAME, the ban command and EXIT STATUS" \
    bash -c 'grep -q "netban - Ban abusive addresses" <<<"$0" && grep -q "netban-ban(1)" <<<"$0" && grep -q "EXIT STATUS" <<<"$0"' "$man1"
  man_ban=$(in_root env MANPAGER=cat MANWIDTH=100 LC_ALL=C.UTF-8 man 1 netban-ban 2>&1 || true)
  expect "man netban-ban (found by name) shows --bantime and the global --config" \
    bash -c 'grep -q -- "--bantime" <<<"$0" && grep -q -- "--config" <<<"$0"' "$man_ban"
  man8=$(in_root env MANPAGER=cat MANWIDTH=100 LC_ALL=C.UTF-8 man 8 netban-daemon 2>&1 || true)
  expect "man 8 netban-daemon shows --check-config and FILES" \
    bash -c 'grep -q -- "--check-config" <<<"$0" && grep -q "^FILES" <<<"$0"' "$man8"
  warnings=$(in_root env LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -E UTF-8 -l -Tutf8 -Z \
    /usr/share/man/man1/netban.1.gz /usr/share/man/man8/netban-daemon.8.gz 2>&1 >/dev/null || true)
  expect "groff has no warnings about the pages${warnings:+ (said: $warnings)}" test -z "$warnings"

  echo "== shell completion"
  expect "bash: the completion file defines the netban completion" \
    in_root bash -c 'source /usr/share/bash-completion/completions/netban && complete -p netban >/dev/null'
  # bash-completion's loader finds it by the command's name, and completing `netban ba` offers ban.
  offered=$(in_root bash -c 'source /usr/share/bash-completion/bash_completion
    __load_completion netban || exit 1
    COMP_WORDS=(netban ba); COMP_CWORD=1; COMP_LINE="netban ba"; COMP_POINT=${#COMP_LINE}
    func=$(complete -p netban | sed -n "s/.*-F \([^ ]*\) .*/\1/p")
    "$func" netban ba netban; printf "%s\n" "${COMPREPLY[@]}"' 2>&1 || true)
  expect "bash: loaded on demand, \`netban ba<TAB>\` offers ban (got: $(tr '\n' ' ' <<<"$offered"))" \
    grep -qx ban <<<"$offered"
  expect "zsh completion installed" test -s "$root/usr/share/zsh/vendor-completions/_netban"
  expect "fish completion installed" test -s "$root/usr/share/fish/vendor_completions.d/netban.fish"

  echo "== the installed daemon and client, through the netban group"
  in_root useradd --no-create-home --groups netban dp-banner
  in_root useradd --no-create-home dp-reader
  chroot "$root" netban-daemon >"$work/daemon.log" 2>&1 &
  daemon=$!
  for _ in $(seq 100); do
    [ -S "$root/run/netban/netban.sock" ] && break
    kill -0 "$daemon" 2>/dev/null || break
    sleep 0.1
  done
  expect "the daemon bound /run/netban/netban.sock within 10 s" test -S "$root/run/netban/netban.sock"
  as() { local user=$1; shift; in_root setpriv --reuid="$user" --regid="$user" --init-groups "$@"; }
  expect "a member of netban bans 203.0.113.77" as dp-banner netban ban 203.0.113.77 --source dp-test
  # Outside the group the configuration is unreadable (0640 root:netban), and the client reads
  # it even with --socket: such a user names a configuration of their own (docs/packaging.md).
  # The daemon, not the file's mode, must be what refuses the ban.
  expect "a user outside netban cannot read the configuration" \
    bash -c "! chroot '$root' setpriv --reuid=dp-reader --regid=dp-reader --init-groups cat /etc/netban/netban.toml 2>/dev/null"
  printf '[daemon]\nsocket = "/run/netban/netban.sock"\n' >"$root/tmp/reader.toml"
  chmod 0644 "$root/tmp/reader.toml"
  socket=(--config /tmp/reader.toml)
  refused=$(as dp-reader netban "${socket[@]}" ban 203.0.113.78 --source dp-test 2>&1) && reader_banned=yes || reader_banned=no
  expect "the daemon refuses a ban from a user outside netban (said: $refused)" \
    bash -c '[ "$0" = no ] && grep -q "needs the ban role" <<<"$1"' "$reader_banned" "$refused"
  listed=$(as dp-reader netban "${socket[@]}" list 2>&1 || true)
  expect "anyone may list; the list holds only the member's ban" \
    bash -c 'grep -q "203.0.113.77" <<<"$0" && ! grep -q "203.0.113.78" <<<"$0"' "$listed"
  kill -TERM "$daemon"
  wait "$daemon" && stopped=yes || stopped=no
  expect "the daemon stops on SIGTERM with status 0" test "$stopped" = yes
  [ "$failures" = 0 ] || sed 's/^/  daemon: /' "$work/daemon.log" >&2
  expect "the ledger is in /var/lib/netban" test -s "$root/var/lib/netban/ledger.db"

  echo "== the demo scenario with the installed binaries"
  # netban-lab (scripts/demo.sh's lab: real fail2ban, an SSH brute force, nftables on a router
  # namespace) with --bin-dir on the package's /usr/bin: the installed netban and netban-daemon
  # do the work; the lab brings its own fail2ban configuration.
  demo_log="$work/demo.log"
  "$lab" demo --bin-dir "$root/usr/bin" >"$demo_log" 2>&1 && demo=yes || demo=no
  expect "netban-lab demo passes with the installed binaries" test "$demo" = yes
  [ "$demo" = yes ] || sed 's/^/  demo: /' "$demo_log" >&2

  echo "== reinstall (the upgrade path of the maintainer scripts)"
  in_root chown root:root /etc/netban/netban.toml
  in_root chmod 0600 /etc/netban/netban.toml
  in_root dpkg-statoverride --add root root 0600 /etc/netban/netban.toml
  expect "dpkg -i again" in_root dpkg -i /tmp/netban.deb
  expect "an administrator's statoverride on the configuration is kept" \
    test "$(mode_of /etc/netban/netban.toml)" = "root:root 600"
  in_root dpkg-statoverride --remove /etc/netban/netban.toml
  in_root chmod 0755 /var/lib/netban
  expect "dpkg -i again, over a /var/lib/netban made 0755 by hand" in_root dpkg -i /tmp/netban.deb
  expect "the postinst brings /var/lib/netban back to 0750" test "$(mode_of /var/lib/netban)" = "root:root 750"
  expect "and the configuration back to root:netban 0640" test "$(mode_of /etc/netban/netban.toml)" = "root:netban 640"
  expect "the group keeps its gid" test "$(in_root getent group netban | cut -d: -f3)" = "$gid"

  echo "== remove: programs go; configuration, ledger and group stay"
  expect "dpkg -r netban" in_root dpkg -r netban
  expect "package state: deinstall ok config-files" test "$(status_of)" = "deinstall ok config-files"
  expect "/usr/bin/netban removed" test ! -e "$root/usr/bin/netban"
  expect "the unit removed" test ! -e "$root/lib/systemd/system/netban.service"
  expect "the configuration kept" test -f "$root/etc/netban/netban.toml"
  expect "fail2ban's netban action kept (a conffile)" test -f "$root/etc/fail2ban/action.d/netban.py"
  expect "the ledger kept" test -s "$root/var/lib/netban/ledger.db"

  echo "== purge: configuration and ledger go; the group stays"
  expect "dpkg -P netban" in_root dpkg -P netban
  expect "package state: not installed" test -z "$(status_of)" -o "$(status_of)" = "unknown ok not-installed"
  expect "/etc/netban removed" test ! -e "$root/etc/netban"
  expect "fail2ban's netban actions removed" \
    test ! -e "$root/etc/fail2ban/action.d/netban.py" -a ! -e "$root/etc/fail2ban/action.d/netban.conf"
  expect "/var/lib/netban removed" test ! -e "$root/var/lib/netban"
  expect "no enablement or mask left in /etc/systemd/system" \
    test ! -e "$root/etc/systemd/system/multi-user.target.wants/netban.service" -a ! -L "$root/etc/systemd/system/netban.service"
  expect "the netban group stays (files elsewhere may belong to it)" in_root getent group netban

  umount -R "$root" 2>/dev/null || umount -lR "$root"
  finish
  exit 0
fi

# ---- outside: build, lintian, contents, then the install test in a private namespace ------
if [ "$(id -u)" != 0 ]; then
  echo "test-package: run as root (the install test mounts an overlay in a private namespace)" >&2
  exit 1
fi
deb=""
prebuilt=""
case "${1:-}" in
  --deb) deb=$(realpath "$2") ;;
  --prebuilt) prebuilt=$2 ;;
  "") ;;
  *) echo "usage: scripts/test-package.sh [--deb FILE | --prebuilt DIR]" >&2; exit 2 ;;
esac
if [ -n "$prebuilt" ]; then
  deb=$(realpath "$(scripts/package.sh --prebuilt "$prebuilt" --out target/debian-test | tail -n1)")
  lab=$(realpath "$prebuilt/netban-lab")
elif [ -z "$deb" ]; then
  deb=$(realpath "$(scripts/package.sh --profile demo --no-default-features --out target/debian-test | tail -n1)")
fi
echo "== $deb"
if [ -z "$prebuilt" ]; then
  # The demo lab, to run the demo scenario against the installed binaries (as scripts/demo.sh
  # builds it).
  cargo build --profile demo -p netban-testlab --bins --no-default-features
  lab=$(realpath "${CARGO_TARGET_DIR:-target}/demo/netban-lab")
fi

echo "== lintian"
lintian_out=$(lintian --fail-on error,warning --display-info --tag-display-limit 0 "$deb" 2>&1) && clean=yes || clean=no
[ -z "$lintian_out" ] || sed 's/^/  lintian: /' <<<"$lintian_out"
expect "lintian: no error or warning" test "$clean" = yes

echo "== contents and modes (dpkg-deb -c)"
listing=$(dpkg-deb -c "$deb" | awk '{print $1, $2, $6}')
for entry in \
  "-rwxr-xr-x root/root ./usr/bin/netban" \
  "-rwxr-xr-x root/root ./usr/bin/netban-daemon" \
  "-rw-r--r-- root/root ./lib/systemd/system/netban.service" \
  "-rw-r----- root/root ./etc/netban/netban.toml" \
  "-rw-r--r-- root/root ./etc/fail2ban/action.d/netban.conf" \
  "-rw-r--r-- root/root ./etc/fail2ban/action.d/netban.py" \
  "drwxr-x--- root/root ./var/lib/netban/" \
  "-rw-r--r-- root/root ./usr/share/man/man1/netban.1.gz" \
  "-rw-r--r-- root/root ./usr/share/man/man1/netban-ban.1.gz" \
  "-rw-r--r-- root/root ./usr/share/man/man8/netban-daemon.8.gz" \
  "-rw-r--r-- root/root ./usr/share/bash-completion/completions/netban" \
  "-rw-r--r-- root/root ./usr/share/zsh/vendor-completions/_netban" \
  "-rw-r--r-- root/root ./usr/share/fish/vendor_completions.d/netban.fish" \
  "-rw-r--r-- root/root ./usr/share/doc/netban/copyright" \
  "-rw-r--r-- root/root ./usr/share/doc/netban/changelog.gz"; do
  expect "contains $entry" grep -qxF -- "$entry" <<<"$listing"
done
expect "nothing under /run (a tmpfs: the unit makes /run/netban)" bash -c '! grep -q " ./run/" <<<"$0"' "$listing"
expect "nothing owned by anyone but root" bash -c '! grep -v " root/root " <<<"$0"' "$listing"
expect "conffiles: the configuration and both fail2ban actions" test "$(dpkg-deb -I "$deb" conffiles | sort | tr '\n' ' ')" = \
  "/etc/fail2ban/action.d/netban.conf /etc/fail2ban/action.d/netban.py /etc/netban/netban.toml "
expect "Depends on libc6 (from dpkg-shlibdeps) and adduser" \
  bash -c 'd=$(dpkg-deb -f "$0" Depends); grep -q "libc6 (>=" <<<"$d" && grep -q adduser <<<"$d"' "$deb"

echo "== install into an isolated root"
inside=0
work=$(mktemp -d /tmp/dp-pkg-root.XXXXXX)
trap 'rmdir "$work"' EXIT
# Its own PID namespace too: whatever the test starts there ends with it.
unshare --mount --propagation private --pid --fork --mount-proc "$0" --inside "$deb" "$work" "$lab" || inside=$?
expect "install, use, remove and purge checks" test "$inside" = 0
finish
echo "test-package: all checks passed"
