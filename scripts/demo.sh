#!/usr/bin/env bash
# Sets up and runs the demo lab: attacker, client, router and server in network namespaces,
# real fail2ban reading a log, netban (SQLite ledger) enforcing on the router with nftables.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --workspace --bins
exec target/release/netban-lab demo --bin-dir target/release "$@"
