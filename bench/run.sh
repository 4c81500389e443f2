#!/usr/bin/env bash
# Runs netban's benchmarks beside the references in one run and prints ratios.
# Release build; needs root (network namespaces). Usage: bench/run.sh [--quick] [--drivers]
#   --quick    smaller sizes for the core benchmark
#   --drivers  also each driver's benchmark against its seed's way (real peers; minutes each)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
drivers=0
args=()
for a in "$@"; do
  case "$a" in
    --drivers) drivers=1 ;;
    *) args+=("$a") ;;
  esac
done
cargo build --release --workspace --bins
target/release/netban-bench --bin-dir target/release --reference-dir bench/reference "${args[@]}"
if [ "$drivers" = 1 ]; then
  for t in exafs bgp cisco_ios netconf aws; do
    echo
    echo "== driver benchmark: $t"
    cargo test --release -p netban-targets --test "$t" -- --ignored --nocapture --test-threads 1 bench_ 2>&1 \
      | grep -v -E '^(running|test result|     Running|   Compiling|    Finished)' || true
  done
fi
