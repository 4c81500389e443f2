#!/usr/bin/env bash
# Builds netban's Debian package (Debian 12) with dpkg-deb from the files in dist/: the two
# binaries, netban.service, a commented /etc/netban/netban.toml, fail2ban's netban actions, the
# man pages and shell completions generated from the binaries' clap definitions (crates/xtask),
# the docs, and maintainer scripts that create the `netban` group and enable the unit.
# What the package holds and why: docs/packaging.md.
#
#   scripts/package.sh [--profile PROFILE] [--no-default-features] [--prebuilt DIR] [--out DIR]
#
#   --profile               cargo profile of the binaries (default: release, every driver: about
#                           30 minutes on 2 cores)
#   --no-default-features   the daemon with the nftables driver alone (as scripts/demo.sh)
#   --prebuilt DIR          package the binaries already built in DIR (netban, netban-daemon,
#                           xtask) instead of building them: scripts/test.sh packages the test
#                           build's target/debug, so the package test compiles nothing
#   --out                   where the .deb goes (default: target/debian)
#
# The client `netban` is linked static (static-pie, scripts/build-client.sh): fail2ban's shell
# action starts one per ban, and without the dynamic loader it starts in about 60% of the time
# (bench/fail2ban/bench.py's `client` section). The daemon stays dynamic (it resolves names
# through NSS).
#
# Prints the path of the .deb on its last line of output.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
features=()
prebuilt=""
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile=$2; shift 2 ;;
    --no-default-features) features=(--no-default-features); shift ;;
    --prebuilt) prebuilt=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "usage: scripts/package.sh [--profile PROFILE] [--no-default-features] [--prebuilt DIR] [--out DIR]" >&2; exit 2 ;;
  esac
done

target="${CARGO_TARGET_DIR:-target}"
case "$profile" in
  dev) bin_dir="$target/debug" ;;
  *) bin_dir="$target/$profile" ;;
esac
out="${out:-$target/debian}"

for tool in dpkg-deb dpkg-shlibdeps strip gzip; do
  command -v "$tool" >/dev/null || { echo "package.sh: $tool not found (scripts/setup.sh installs dpkg-dev)" >&2; exit 1; }
done

version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)
changelog_version=$(sed -n '1s/^netban (\([^)]*\)).*/\1/p' dist/debian/changelog)
if [ "$version" != "$changelog_version" ]; then
  echo "package.sh: Cargo.toml says version $version, dist/debian/changelog says $changelog_version; add a changelog entry" >&2
  exit 1
fi
arch=$(dpkg --print-architecture)

if [ -n "$prebuilt" ]; then
  bin_dir=$prebuilt
  for bin in netban netban-daemon xtask; do
    [ -x "$bin_dir/$bin" ] || { echo "package.sh: $bin_dir/$bin not found (--prebuilt)" >&2; exit 1; }
  done
else
  cargo build --profile "$profile" -p netban-daemon -p xtask "${features[@]}"
  bash scripts/build-client.sh --profile "$profile"
fi

root="$out/netban_${version}_${arch}"
rm -rf "$root"
mkdir -p "$root/DEBIAN"
# Modes are set explicitly below; the umask must not leak into the package.
umask 022

# Binaries, stripped as dh_strip does.
install -d "$root/usr/bin"
for bin in netban netban-daemon; do
  install -m 0755 "$bin_dir/$bin" "$root/usr/bin/$bin"
  strip --remove-section=.comment --remove-section=.note --strip-unneeded "$root/usr/bin/$bin"
done

# The unit (enabled by the postinst), the configuration, the state directory. /run/netban is
# not shipped: /run is a tmpfs, and the unit's RuntimeDirectory= makes it at each start.
install -D -m 0644 dist/systemd/netban.service "$root/lib/systemd/system/netban.service"
install -D -m 0640 dist/debian/netban.toml "$root/etc/netban/netban.toml"
install -d -m 0750 "$root/var/lib/netban"

# fail2ban's actions, pointing at the packaged client (the repository's copies default to a
# hand install in /usr/local/bin).
install -d "$root/etc/fail2ban/action.d"
for action in netban.conf netban.py; do
  from="fail2ban/action.d/$action"
  to="$root/etc/fail2ban/action.d/$action"
  sed 's#/usr/local/bin/netban#/usr/bin/netban#g' "$from" >"$to"
  chmod 0644 "$to"
  if grep -q /usr/local/bin/netban "$to" || ! grep -q /usr/bin/netban "$to"; then
    echo "package.sh: $from no longer names /usr/local/bin/netban; update the rewrite" >&2
    exit 1
  fi
done

# Man pages and completions, generated from the clap definitions.
generated="$out/generated"
rm -rf "$generated"
"$bin_dir/xtask" man "$generated/man"
"$bin_dir/xtask" completions "$generated/completions" >/dev/null
install -d "$root/usr/share/man/man1" "$root/usr/share/man/man8"
for page in "$generated"/man/*.1; do
  gzip -9n <"$page" >"$root/usr/share/man/man1/$(basename "$page").gz"
done
gzip -9n <"$generated/man/netban-daemon.8" >"$root/usr/share/man/man8/netban-daemon.8.gz"
chmod 0644 "$root"/usr/share/man/man*/*
install -D -m 0644 "$generated/completions/netban.bash" "$root/usr/share/bash-completion/completions/netban"
install -D -m 0644 "$generated/completions/_netban" "$root/usr/share/zsh/vendor-completions/_netban"
install -D -m 0644 "$generated/completions/netban.fish" "$root/usr/share/fish/vendor_completions.d/netban.fish"

# Documentation: compressed above 4 KiB as dh_compress does (the copyright never).
doc="$root/usr/share/doc/netban"
install -D -m 0644 dist/debian/lintian-overrides "$root/usr/share/lintian/overrides/netban"
install -D -m 0644 dist/debian/copyright "$doc/copyright"
gzip -9n <dist/debian/changelog >"$doc/changelog.gz"
install -m 0644 README.md ARCHITECTURE.md "$doc/"
for file in docs/*.md; do install -m 0644 "$file" "$doc/"; done
install -d "$doc/targets" "$doc/examples"
install -m 0644 docs/targets/*.md "$doc/targets/"
install -m 0644 fail2ban/jail.local.example "$doc/examples/jail.local"
find "$doc" -type f -size +4k ! -name copyright ! -name '*.gz' -exec gzip -9n {} +
chmod 0644 "$doc/changelog.gz"

# Control area.
install -m 0755 dist/debian/postinst dist/debian/prerm dist/debian/postrm "$root/DEBIAN/"
install -m 0644 dist/debian/conffiles "$root/DEBIAN/conffiles"
# Shared-library dependencies as dpkg-shlibdeps computes them (it wants a debian/control).
shlibs_dir=$(mktemp -d)
trap 'rm -rf "$shlibs_dir"' EXIT
mkdir "$shlibs_dir/debian"
printf 'Source: netban\n\nPackage: netban\nArchitecture: any\n' >"$shlibs_dir/debian/control"
abs_root=$(cd "$root" && pwd)
depends=$(cd "$shlibs_dir" && dpkg-shlibdeps -O "$abs_root/usr/bin/netban" "$abs_root/usr/bin/netban-daemon" |
  sed -n 's/^shlibs:Depends=//p')
installed_size=$(du -s -k --exclude=DEBIAN "$root" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@DEPENDS@/$depends/" \
  -e "s/@INSTALLED_SIZE@/$installed_size/" dist/debian/control.in >"$root/DEBIAN/control"
(cd "$root" && find . -path ./DEBIAN -prune -o -type f ! -path './etc/*' -printf '%P\0' |
  LC_ALL=C sort -z | xargs -0 md5sum) >"$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/md5sums"

deb="$out/netban_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
