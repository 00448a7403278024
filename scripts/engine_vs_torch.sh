#!/usr/bin/env bash
# CPU engine against PyTorch eager and onnxruntime on every family (BENCHMARKS.md, "CPU engine").
# Needs the venv of `cargo xtask parity` (torch 2.9, torchvision) with onnx and onnxruntime
# (`pip install onnx onnxruntime`). Usage: scripts/engine_vs_torch.sh [--quick] [--threads N]
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${FASTERAI_TORCH_VENV:-$HOME/.cache/fasterai-torch}/bin/python"
cargo build --release -q -p fasterai-cli
CLI="${CARGO_TARGET_DIR:-target}/release/fasterai"
"$PY" scripts/engine_vs_torch.py "$CLI" "${CARGO_TARGET_DIR:-target}/engine-vs-torch" "$@"
