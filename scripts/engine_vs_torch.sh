#!/usr/bin/env bash
# CPU engine against PyTorch eager and onnxruntime on every family (BENCHMARKS.md, "CPU engine").
# Uses the venv of `cargo xtask parity` (outside the repository), made here when missing, and adds
# onnx and onnxruntime to it. Usage: scripts/engine_vs_torch.sh [--quick | --batch B] [--threads N]
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${FASTERAI_TORCH_VENV:-$HOME/.cache/fasterai-torch}"
PY="$VENV/bin/python"
[ -x "$PY" ] || python3 -m venv "$VENV"
"$PY" -m pip install -q --disable-pip-version-check torch==2.9.0 torchvision==0.24.0 numpy \
    onnx==1.23.2 onnxruntime==1.32.0
cargo build --release -q -p fasterai-cli
CLI="${CARGO_TARGET_DIR:-target}/release/fasterai"
"$PY" scripts/engine_vs_torch.py "$CLI" "${CARGO_TARGET_DIR:-target}/engine-vs-torch" "$@"
