#!/usr/bin/env bash
# Runs netban's benchmarks beside their references in one run and prints one table with ratios.
# Release build; needs root (network namespaces). Usage: bench/run.sh [--quick] [--drivers]
# [--fleet] [--only NAME[,NAME...]]
#   --quick    smaller sizes for the core benchmark
#   --drivers  also each driver's benchmark against its real peer and its seed's way (minutes each)
#   --fleet    also the fleet's benchmarks: 4 daemons on one PostgreSQL ledger, beside
#              `ssh B fail2ban-client set JAIL banip` (a few minutes)
#   --only     just these sections (core, api, feed, exafs, bgp, flowspec, cisco_ios, netconf, aws,
#              crowdsec, fleet)
# The sections are listed in bench/src/main.rs; the references' scripts are in bench/reference/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Build only what the sections asked for need: a driver's section needs its driver in the daemon
# and its peer in the bench (`--only bgp` builds the BGP driver alone, in minutes); `--drivers`
# builds every driver (the AWS SDK: half an hour on two cores).
features=(--no-default-features)
only=""
prev=""
for arg in "$@"; do
    [ "$prev" = --only ] && only=$arg
    [ "$arg" = --drivers ] && features=()
    prev=$arg
done
if [ ${#features[@]} -gt 0 ]; then
    for section in ${only//,/ }; do
        case "$section" in
            exafs|bgp|netconf|aws) features+=(--features "netban-daemon/$section,netban-bench/$section") ;;
            flowspec) features+=(--features "netban-daemon/bgp,netban-bench/bgp") ;;
            cisco_ios) features+=(--features "netban-daemon/cisco-ios,netban-bench/cisco-ios") ;;
            crowdsec) features+=(--features "netban-bench/crowdsec") ;;
        esac
    done
fi
cargo build --release -p netban-daemon -p netban-cli -p netban-bench --bins "${features[@]}"
# The client as the package ships it: linked static (static-pie).
bash scripts/build-client.sh --profile release
exec target/release/netban-bench --bin-dir target/release --reference-dir bench/reference "$@"
