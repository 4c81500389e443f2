#!/usr/bin/env bash
# What the fuzz targets (fuzz/, run by scripts/fuzz.sh, and briefly by scripts/test.sh) need:
# cargo-fuzz 0.13.2 from crates.io, built with the machine's Rust toolchain. No nightly: the
# targets build without a sanitizer (`-s none`), which needs no unstable flag, so the stable
# toolchain builds them (a nightly one cannot be fetched on every machine). libFuzzer itself is
# compiled from the libfuzzer-sys crate with the C++ compiler. Idempotent and quiet when in
# place.
set -euo pipefail
source "$(dirname "$0")/../packages.sh"

version="0.13.2"
apt_install_missing fuzz g++
if ! cargo fuzz --version 2>/dev/null | grep -qx "cargo-fuzz $version"; then
  echo "netban setup (fuzz): installing cargo-fuzz $version"
  cargo install --quiet --locked cargo-fuzz --version "$version"
  cargo fuzz --version 2>/dev/null | grep -qx "cargo-fuzz $version" || {
    echo "netban setup (fuzz): cargo-fuzz $version did not install" >&2
    exit 1
  }
fi
