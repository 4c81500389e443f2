#!/usr/bin/env bash
# Runs netban's fuzz targets (fuzz/fuzz_targets, cargo-fuzz with libFuzzer) for SECONDS each,
# one after the other: every target, or the TARGETs named.
#
#   scripts/fuzz.sh               every target for 60 s
#   scripts/fuzz.sh 10            every target for 10 s (what scripts/test.sh runs)
#   scripts/fuzz.sh 900 prefix    one target for 15 minutes
#
# NETBAN_FUZZ_DEV=1 builds the targets unoptimised (cargo fuzz --dev): a third of the compile
# time, for runs that mostly replay the saved corpus (scripts/test.sh); long runs want the
# optimised build (the default).
#
# Each run first replays the target's saved corpus (fuzz/corpus/TARGET, committed, never
# written here), so an input that once found a bug fails again at once, then mutates for the
# rest of the time. New inputs go to fuzz/work/TARGET (not committed; fold them into the saved
# corpus with `cargo fuzz cmin`, see docs/dev/fuzzing.md). A crash, a failed property, a
# timeout or running out of memory stops with the input in fuzz/artifacts/TARGET and a
# non-zero status. Targets are built once, release with debug assertions and overflow checks,
# without a sanitizer (safe Rust parsers; see docs/dev/fuzzing.md).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
if [ $# -gt 0 ]; then shift; fi
case "$seconds" in
  '' | *[!0-9]*) echo "usage: scripts/fuzz.sh [SECONDS] [TARGET...]" >&2; exit 2 ;;
esac

bash scripts/setup.d/fuzz.sh
if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi
profile=()
[ "${NETBAN_FUZZ_DEV:-0}" = 1 ] && profile=(--dev)
cargo fuzz build -s none "${profile[@]}"

failed=()
for target in "${targets[@]}"; do
  mkdir -p "fuzz/work/$target" "fuzz/corpus/$target"
  echo "netban fuzz: $target for ${seconds}s"
  # -timeout: one input taking 10 s is a hang; -rss_limit_mb: a parser must not need 2 GiB.
  options=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1)
  # A dictionary of the format's tokens (fuzz/dict/TARGET.dict) where there is one.
  [ -f "fuzz/dict/$target.dict" ] && options+=(-dict="fuzz/dict/$target.dict")
  if ! cargo fuzz run -s none "${profile[@]}" "$target" "fuzz/work/$target" "fuzz/corpus/$target" -- \
    "${options[@]}" 2> "fuzz/work/$target.log"; then
    failed+=("$target")
    tail -n 40 "fuzz/work/$target.log" >&2
  fi
  grep -E "^stat::number_of_executed_units|^Done [0-9]+ runs" "fuzz/work/$target.log" || true
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "netban fuzz: FAILED: ${failed[*]} (inputs in fuzz/artifacts/; logs in fuzz/work/)" >&2
  exit 1
fi
echo "netban fuzz: ${#targets[@]} target(s), ${seconds}s each, no finding"
