#!/usr/bin/env bash
# Sets up and runs every netban test: unit tests, integration tests against real peers
# (nftables in network namespaces, fail2ban 1.0.2), the end-to-end proofs.
set -euo pipefail
cd "$(dirname "$0")/.."
# Each phase prints how long it took, so a slow CI run says where its time went.
phase() {
  local name=$1 start=$SECONDS
  shift
  "$@"
  echo "netban test.sh: phase '$name' took $((SECONDS - start)) s" >&2
}
phase setup bash scripts/setup.sh
# Formatting and lints first: a lint regression fails the run like a failing test.
phase fmt cargo fmt --all -- --check
phase clippy cargo clippy --workspace --all-targets -- -D warnings
# One build of binaries and tests together, so both share one feature set (the AWS SDK is
# compiled once, not once per invocation).
phase build cargo build --workspace --bins --tests
phase test cargo test --workspace --no-fail-fast -- --test-threads 2
# The Debian package, from the binaries just tested (the client relinked static, as shipped):
# lintian, contents, installed into an isolated root, the demo scenario on the installed binaries.
phase client bash scripts/build-client.sh --profile dev
phase package bash scripts/test-package.sh --prebuilt "${CARGO_TARGET_DIR:-target}/debug"
# The fuzz targets (fuzz/): each replays its saved corpus, then mutates for 10 s, so an input
# that once broke a parser, or a new panic that is quick to find, fails the run.
phase fuzz env NETBAN_FUZZ_DEV=1 bash scripts/fuzz.sh 10
