#!/usr/bin/env bash
# VGG16-bn (10 classes) and ViT-B/16 (1000 classes) batch-1 latency: fasterai on flex and
# PyTorch on the CPU, in one run.
# Needs the venv of `cargo xtask parity` (torch 2.9 from PyPI). Threads: torch uses
# torch.get_num_threads() (= cores); flex uses rayon's pool (= cores).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${FASTERAI_TORCH_VENV:-$HOME/.cache/fasterai-torch}/bin/python"
cargo build --release -q -p fasterai-cli
CLI="${CARGO_TARGET_DIR:-target}/release/fasterai"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
for shape in 3x224x224 3x64x64 3x32x32; do
  runs=20; [ "$shape" = 3x224x224 ] && runs=10
  "$CLI" bench vgg16_bn --num-classes 10 --input "$shape" --runs "$runs" --warmup 3
  "$PY" scripts/torch_parity.py latency "$shape" "$runs"
done
"$CLI" bench vit_b_16 --runs 10 --warmup 3
"$PY" scripts/torch_parity.py latency 3x224x224 10 vit_b_16
