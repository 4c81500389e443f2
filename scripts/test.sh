#!/usr/bin/env bash
# Sets up and runs every netban test: unit tests, integration tests against real peers
# (nftables in network namespaces, fail2ban 1.0.2), the end-to-end proofs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --workspace --bins
cargo test --workspace --no-fail-fast -- --test-threads 2
