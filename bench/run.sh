#!/usr/bin/env bash
# Runs netban's benchmarks beside the references in one run and prints ratios.
# Release build; needs root (network namespaces). Usage: bench/run.sh [--quick]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --workspace --bins
exec target/release/netban-bench --bin-dir target/release --reference-dir bench/reference "$@"
