#!/usr/bin/env bash
# Sets up and runs the demo lab: attacker, client, router and server in network namespaces,
# real fail2ban reading a log, netban (SQLite ledger) enforcing on the router with nftables.
#
# It installs and builds only what the demo uses: fail2ban and nftables (not the other
# drivers' test peers), and netban with the nftables driver alone (`--no-default-features`:
# no AWS SDK, no SSH or HTTP clients), unoptimised (the `demo` profile in Cargo.toml, into
# target/demo). The build with every driver is `cargo build --release --workspace --bins`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --demo
dir="${CARGO_TARGET_DIR:-target}/demo"
cargo build --profile demo -p netban-daemon -p netban-cli -p netban-testlab --bins --no-default-features
exec "$dir/netban-lab" demo --bin-dir "$dir" "$@"
