#!/usr/bin/env bash
# Issue 10's CIFAR-10 check on this CPU: resnet20 trained from scratch, pruned to half its MACs
# (global, coupled groups, L2 group importance) and fine-tuned; accuracy, parameters, MACs and
# flex latency before and after.
#   scripts/prune_resnet20_cifar.sh [OUT_DIR]
# Environment: FASTERAI (binary), DATA_DIR (CIFAR-10 folder), EPOCHS (8), TUNE_EPOCHS (3),
# BASE (skip training: an already trained resnet20 file).
# Data: data_batch_1, 2 and 5 (30,000 images) to train; test_batch_first1000 (the first 1,000
# official test images) to validate, so accuracies carry about ±1.3 points of sampling error.
set -euo pipefail
out=${1:-resnet20-runs}
fasterai=${FASTERAI:-target/release/fasterai}
data=(--data "cifar10:${DATA_DIR:-../shared/data/cifar-10-batches-bin}" --valid-files test_batch_first1000)
mkdir -p "$out"
base=${BASE:-$out/base.safetensors}
if [ -z "${BASE:-}" ]; then
  "$fasterai" train resnet20 "${data[@]}" --epochs "${EPOCHS:-8}" --lr 0.1 \
    -o "$base" --history "$out/base.json" --force | tee "$out/base.log"
fi
"$fasterai" prune "$base" --speedup 2 --context global --criterion l2 \
  -o "$out/pruned.safetensors" --force | tail -3 | tee "$out/prune.log"
"$fasterai" train "$out/pruned.safetensors" "${data[@]}" --epochs "${TUNE_EPOCHS:-3}" --lr 0.02 \
  -o "$out/finetuned.safetensors" --history "$out/finetune.json" --force | tee "$out/finetune.log"
# Accuracy, parameters, MACs and latency of each model, measured one after the other.
for model in "$base" "$out/pruned.safetensors" "$out/finetuned.safetensors"; do
  echo "== $model"
  "$fasterai" eval "$model" "${data[@]}" | head -1
  "$fasterai" inspect "$model" | tail -4 | head -2
  "$fasterai" bench "$model" --input 3x32x32 --runs 50 | tail -1
done | tee "$out/summary.txt"
