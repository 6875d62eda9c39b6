#!/usr/bin/env bash
# How a sweep scales with cores: the shipped users-by-mode sweep with 20 seeds per point
# (320 runs, long enough that process start and loading do not dominate), timed with one
# and with two worker threads, alternated three times; the two outputs must be identical.
#
#   bash scripts/bench-sweep.sh [BINARY]     # default: target/fastest/gpushare
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${1:-target/fastest/gpushare}
if [ ! -x "$bin" ]; then
    echo "error: $bin is not an executable (build it with: cargo build --profile fastest)" >&2
    exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The same sweep, its base made absolute (the copy lives elsewhere) and 20 seeds per point.
base=$(pwd)/experiments/seed/mig-heavy.toml
sed -e "s|^base = .*|base = \"$base\"|" -e 's|^seeds = [0-9]*|seeds = 20|' \
    experiments/sweeps/users-by-mode.toml >"$work/sweep.toml"

for round in 1 2 3; do
    for threads in 1 2; do
        rm -rf "$work/out-$threads"
        start=$(date +%s%N)
        RAYON_NUM_THREADS=$threads "$bin" sweep "$work/sweep.toml" \
            --out "$work/out-$threads" --quiet >/dev/null
        end=$(date +%s%N)
        awk -v r="$round" -v t="$threads" -v ns=$((end - start)) \
            'BEGIN { printf "round %d, %d thread(s): %.2f s\n", r, t, ns / 1e9 }'
    done
done
if diff -r "$work/out-1" "$work/out-2" >/dev/null; then
    echo "outputs of 1 and 2 threads: identical"
else
    echo "error: the outputs of 1 and 2 threads differ" >&2
    exit 1
fi
