#!/usr/bin/env bash
# GPT-2 small (random weights, made by transformers) on flex against PyTorch, in one run:
# tokens/s for a prefill of 512 tokens and for decoding 32 tokens over the key/value cache,
# batch 1, both on every core. Prints both and the ratios.
#
#   scripts/lm_vs_torch.sh [WORK_DIR]      (needs the torch venv of `cargo xtask parity-lm`)
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}
work=${1:-$target/lm-vs-torch}
python=${FASTERAI_TORCH_VENV:-$HOME/.cache/fasterai-torch}/bin/python
cli=$target/release/fasterai
mkdir -p "$work"
cargo build --release -q -p fasterai-cli
if [ ! -f "$work/gpt2/config.json" ]; then
  "$python" -c "
import sys; sys.path.insert(0, 'scripts')
import lm_parity
lm_parity.gpt2().save_pretrained('$work/gpt2')"
fi
"$cli" import "$work/gpt2" -o "$work/gpt2.fai.safetensors" --force > /dev/null
ours=$("$cli" bench "$work/gpt2.fai.safetensors" --tokens 512 --new-tokens 32 --runs 3 --json)
theirs=$("$python" scripts/lm_parity.py bench "$work/gpt2" 512 32 3)
"$python" - "$ours" "$theirs" <<'PY'
import json, sys
ours, theirs = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"GPT-2 small, batch 1          fasterai (flex)   PyTorch {theirs['torch']}   ratio (PyTorch time / ours)")
for label, key in [("prefill 512 tokens, tokens/s", "prefill_tokens_per_second"),
                   ("decode 32 tokens, tokens/s", "decode_tokens_per_second")]:
    print(f"{label:30} {ours[key]:>14.1f}   {theirs[key]:>14.1f}   {ours[key] / theirs[key]:.2f}x")
print(f"peak memory: fasterai {ours['peak_rss_mb']:.0f} MB")
PY
