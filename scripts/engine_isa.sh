#!/usr/bin/env bash
# Whole-model latency of the CPU engine with AVX-512 against AVX2 on the same machine
# (BENCHMARKS.md, "CPU engine"): the workspace's release CLI (gemm and Burn built with
# `x86-v4`, loops forced to AVX-512) against a second build without `x86-v4` from a copy of
# this checkout (loops forced to AVX2). Batch 1, 2 threads, 3 alternated rounds, best median
# each. Needs a CPU with AVX-512. Usage: scripts/engine_isa.sh
set -euo pipefail
cd "$(dirname "$0")/.."
grep -q avx512f /proc/cpuinfo || { echo "this CPU has no AVX-512: nothing to compare" >&2; exit 1; }
TARGET="${CARGO_TARGET_DIR:-target}"
COPY="${TARGET}/engine-isa/src"
rm -rf "$COPY" && mkdir -p "$COPY"
git ls-files -z | xargs -0 cp --parents -t "$COPY"
# The same sources with AVX-512 left out of gemm and Burn: their AVX2 kernels only.
sed -i 's/, "x86-v4"\]/]/' "$COPY/Cargo.toml"
if grep -q x86-v4 <(grep -v '^#' "$COPY/Cargo.toml" | grep -E '^(burn|gemm) '); then
  echo "could not strip x86-v4 from the copy's Cargo.toml" >&2; exit 1
fi
cargo build --release -q -p fasterai-cli
CARGO_TARGET_DIR="${TARGET}/engine-isa/target" cargo build --release -q -p fasterai-cli \
  --manifest-path "$COPY/Cargo.toml"
A512="$TARGET/release/fasterai"
A2="$TARGET/engine-isa/target/release/fasterai"
median() { "$@" --threads 2 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["median_ms"])'; }
echo "| model | input | AVX2 (ms) | AVX-512 (ms) | AVX2 / AVX-512 |"
echo "|---|---|---:|---:|---:|"
for row in "vgg16_bn --num-classes 10;224;10" "resnet18 --num-classes 10;224;20" \
  "resnet50 --num-classes 10;224;20" "mobilenet_v2 --num-classes 10;224;30" \
  "efficientnet_b0 --num-classes 10;224;30" "resnet20;32;50" "vit_b_16 --num-classes 10;224;10" \
  "vit_cifar;32;30"; do
  IFS=';' read -r model side runs <<<"$row"
  best512=inf best2=inf
  for _ in 1 2 3; do
    # shellcheck disable=SC2086
    t=$(FASTERAI_ISA=avx512 median "$A512" bench $model --input "3x${side}x${side}" --runs "$runs")
    best512=$(python3 -c "print(min(float('$best512'), $t))")
    # shellcheck disable=SC2086
    t=$(FASTERAI_ISA=avx2 median "$A2" bench $model --input "3x${side}x${side}" --runs "$runs")
    best2=$(python3 -c "print(min(float('$best2'), $t))")
  done
  python3 -c "print(f'| ${model%% *} | ${side}² | {$best2:.2f} | {$best512:.2f} | {$best2 / $best512:.2f}× |')"
done
