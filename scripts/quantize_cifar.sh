#!/usr/bin/env bash
# Issue 13 on real data: a trained 32×32 VGG16-bn (width 0.25) and its pruned version, each
# quantized to int8 post-training (three calibrations per channel, one per tensor, weights
# only) and by QAT with distillation from its float self; accuracy, file size and flex latency
# of every model, measured one after the other.
#   scripts/quantize_cifar.sh TRAINED.safetensors [OUT_DIR]
# Environment: FASTERAI (binary), DATA_DIR (CIFAR-10 folder), PRUNE_EPOCHS (3),
# QAT_EPOCHS (2), QAT_LR (0.005).
set -euo pipefail
trained=${1:?usage: quantize_cifar.sh TRAINED [OUT_DIR]}
out=${2:-quantize-runs}
fasterai=${FASTERAI:-target/release/fasterai}
data=(--data "cifar10:${DATA_DIR:-../shared/data/cifar-10-batches-bin}"
      --train-files data_batch_1,data_batch_2 --valid-files data_batch_5)
mkdir -p "$out"
cp "$trained" "$out/dense.safetensors"
# The pruned model: 40 % of filters, global L1, cosine schedule while fine-tuning, then removed.
if [ ! -f "$out/pruned.safetensors" ]; then
  "$fasterai" sparsify "$out/dense.safetensors" --sparsity 0.4 --granularity filter \
    --context global --criterion l1 --schedule cos --end-pct 0.6 \
    --epochs "${PRUNE_EPOCHS:-3}" --lr 0.01 "${data[@]}" -o "$out/sparse.safetensors" --force \
    | tail -1
  "$fasterai" prune "$out/sparse.safetensors" -o "$out/pruned.safetensors" --force | tail -1
fi
for base in dense pruned; do
  model="$out/$base.safetensors"
  ptq() { # name, quantize options...
    local name=$1; shift
    "$fasterai" quantize "$model" "${data[@]}" "$@" -o "$out/$base.$name.safetensors" --force \
      --json > "$out/$base.$name.json"
    python3 -c "import json,sys; s=json.load(open(sys.argv[1])); print(sys.argv[2], \
'float %.2f %% -> int8 %.2f %%' % (100*s['float_accuracy'], 100*s['quantized_accuracy']), \
'%.0f -> %.0f bytes' % (s['input_bytes'], s['output_bytes']))" "$out/$base.$name.json" \
      "$base.$name"
  }
  ptq minmax --calibration minmax
  ptq p9999 --calibration percentile:99.99
  ptq mse --calibration mse
  ptq mse_tensor --calibration mse --per-tensor
  ptq weights --weights-only
  # QAT, distilled from the float model it starts from.
  "$fasterai" distill --teacher "$model" --student "$model" --qat --calibration mse \
    --epochs "${QAT_EPOCHS:-2}" --lr "${QAT_LR:-0.005}" "${data[@]}" \
    -o "$out/$base.qat.safetensors" --history "$out/$base.qat.history.json" --force | tail -1
done
# Accuracy, size and batch-1 latency of every model, one after the other.
for model in "$out"/dense*.safetensors "$out"/pruned*.safetensors; do
  echo "== $model $(stat -c %s "$model") bytes"
  "$fasterai" eval "$model" "${data[@]}" | head -1
  "$fasterai" bench "$model" --input 3x32x32 --runs 100 | tail -1
done | tee "$out/summary.txt"
