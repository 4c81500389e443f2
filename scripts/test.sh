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
target=${CARGO_TARGET_DIR:-target}
# While the tests run (they spend most of their time waiting on their peers), the two builds
# the later phases need run beside them at the lowest priority, each in its own target
# directory so that neither waits for the tests' build lock: the client linked static as the
# package ships it (scripts/build-client.sh), and the fuzz targets (fuzz/target).
aside_dir=$(mktemp -d)
aside_pids=()
# If the run stops early (a failed phase), the builds beside it stop too.
kill_tree() {
  local child
  for child in $(pgrep -P "$1" || true); do kill_tree "$child"; done
  kill "$1" 2>/dev/null || true
}
trap 'for pid in "${aside_pids[@]}"; do kill_tree "$pid"; done; rm -rf "$aside_dir"' EXIT
aside() {
  local name=$1
  shift
  ( start=$SECONDS; status=0
    nice -n 19 "$@" >"$aside_dir/$name.log" 2>&1 || status=$?
    echo "netban test.sh: '$name' (built beside the tests) took $((SECONDS - start)) s" >>"$aside_dir/$name.log"
    exit "$status" ) &
  aside_pids+=($!)
}
aside_wait() {
  local name=$1 pid=$2
  if ! wait "$pid"; then
    cat "$aside_dir/$name.log" >&2
    echo "netban test.sh: '$name' failed" >&2
    exit 1
  fi
  tail -n 1 "$aside_dir/$name.log" >&2
}
aside client env CARGO_TARGET_DIR="$target/static-client" bash scripts/build-client.sh --profile dev
aside fuzz-build cargo fuzz build -s none --dev
phase test cargo test --workspace --no-fail-fast -- --test-threads 2
aside_wait client "${aside_pids[0]}"
aside_wait fuzz-build "${aside_pids[1]}"
# The Debian package, from the binaries just tested with the client relinked static, as
# shipped: lintian, contents, installed into an isolated root, the demo scenario on the
# installed binaries.
cp "$target/static-client/debug/netban" "$target/debug/netban"
phase package bash scripts/test-package.sh --prebuilt "$target/debug"
# The fuzz targets (fuzz/): each replays its saved corpus, then mutates for 10 s, so an input
# that once broke a parser, or a new panic that is quick to find, fails the run.
phase fuzz env NETBAN_FUZZ_DEV=1 bash scripts/fuzz.sh 10
