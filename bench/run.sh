#!/usr/bin/env bash
# Runs netban's benchmarks beside their references in one run and prints one table with ratios.
# Release build; needs root (network namespaces). Usage: bench/run.sh [--quick] [--drivers]
# [--fleet] [--only NAME[,NAME...]]
#   --quick    smaller sizes for the core benchmark
#   --drivers  also each driver's benchmark against its real peer and its seed's way (minutes each)
#   --fleet    also the fleet's benchmarks: 4 daemons on one PostgreSQL ledger, beside
#              `ssh B fail2ban-client set JAIL banip` (a few minutes)
#   --only     just these sections (core, api, feed, exafs, bgp, cisco_ios, netconf, aws, crowdsec, fleet)
# The sections are listed in bench/src/main.rs; the references' scripts are in bench/reference/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Only core sections asked for: build without the drivers (no AWS SDK; minutes, not half an hour).
features=()
args=" $* "
if [[ "$args" == *" --only "* && "$args" != *" --drivers "* ]] \
    && ! grep -Eq -- '--only [^ ]*(exafs|bgp|cisco_ios|netconf|aws|crowdsec)' <<<"$args"; then
    features=(--no-default-features)
fi
cargo build --release -p netban-daemon -p netban-cli -p netban-bench --bins "${features[@]}"
# The client as the package ships it: linked static (static-pie).
bash scripts/build-client.sh --profile release
exec target/release/netban-bench --bin-dir target/release --reference-dir bench/reference "$@"
