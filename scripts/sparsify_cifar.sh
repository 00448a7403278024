#!/usr/bin/env bash
# Seed 004's story on real data (issue 6): a trained 32×32 VGG16-bn (width 0.25) sparsified
# while fine-tuning, then pruned; accuracy, parameters, MACs and flex latency at each step.
#   scripts/sparsify_cifar.sh TRAINED.safetensors [OUT_DIR]
# Environment: FASTERAI (binary), DATA_DIR (CIFAR-10 folder), EPOCHS (5), LR (0.01).
set -euo pipefail
trained=${1:?usage: sparsify_cifar.sh TRAINED [OUT_DIR]}
out=${2:-sparsify-runs}
fasterai=${FASTERAI:-target/release/fasterai}
data=(--data "cifar10:${DATA_DIR:-../shared/data/cifar-10-batches-bin}"
      --train-files data_batch_1,data_batch_2 --valid-files data_batch_5)
tune=(--epochs "${EPOCHS:-5}" --lr "${LR:-0.01}" --end-pct 0.6 --force)
mkdir -p "$out"
run() { # name, sparsify options...
  local name=$1; shift
  "$fasterai" sparsify "$trained" "$@" "${data[@]}" "${tune[@]}" \
    -o "$out/$name.sparse.safetensors" --history "$out/$name.json" | tee "$out/$name.log"
  "$fasterai" prune "$out/$name.sparse.safetensors" -o "$out/$name.pruned.safetensors" --force \
    | tail -1 | tee -a "$out/$name.log"
}
run local40 --sparsity 0.4 --granularity filter --context local --criterion l1 --schedule cos
run agp70 --sparsity 0.7 --granularity filter --context local --criterion l1 --schedule agp
run global40 --sparsity 0.4 --granularity filter --context global --criterion l1 --schedule cos
# Accuracy, parameters, MACs and latency of every model, measured one after the other.
for model in "$trained" "$out"/*.pruned.safetensors; do
  echo "== $model"
  "$fasterai" eval "$model" "${data[@]}" | head -1
  "$fasterai" inspect "$model" | tail -2
  "$fasterai" bench "$model" --input 3x32x32 --runs 30 | tail -1
done | tee "$out/summary.txt"
