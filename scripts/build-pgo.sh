#!/usr/bin/env bash
# Profile-guided build: the same code, laid out by the compiler for the branches a run takes.
# Results are byte-identical to the plain builds; only speed differs (see
# BENCHMARKS.md, "Tenth round").
#
#   bash scripts/build-pgo.sh          # -> target/pgo/fastest/gpushare
#
# Training runs the shipped experiments that are not benchmarked (the 10-GPU fleet, the seed
# study and the batching, fault, KV-cache and MPS studies), never the 1,000-GPU fleet itself.
# Needs the toolchain's llvm-tools (installed with rustup when missing).
set -euo pipefail
cd "$(dirname "$0")/.."

sysroot=$(rustc --print sysroot)
host=$(rustc -vV | sed -n 's/^host: //p')
profdata="$sysroot/lib/rustlib/$host/bin/llvm-profdata"
if [ ! -x "$profdata" ]; then
    echo "llvm-profdata not found; installing the llvm-tools component" >&2
    rustup component add llvm-tools || {
        echo "error: scripts/build-pgo.sh needs rustup's llvm-tools component" \
            "(rustup component add llvm-tools)" >&2
        exit 1
    }
fi

work=target/pgo-work
rm -rf "$work"
mkdir -p "$work/profiles"
profiles=$(cd "$work/profiles" && pwd)

echo "1/3 instrumented build" >&2
RUSTFLAGS="-Cprofile-generate=$profiles" \
    cargo build --profile fastest --locked --target-dir "$work/target"

echo "2/3 training runs" >&2
bin="$work/target/fastest/gpushare"
"$bin" run experiments/fleet/fleet-10.toml --quiet >/dev/null
for study in seed batching fault kv-cache mps; do
    "$bin" study "experiments/$study-study.toml" >/dev/null
done
"$profdata" merge -o "$work/merged.profdata" "$profiles"

echo "3/3 optimised build" >&2
RUSTFLAGS="-Cprofile-use=$(pwd)/$work/merged.profdata" \
    cargo build --profile fastest --locked --target-dir target/pgo
echo "built target/pgo/fastest/gpushare" >&2
