#!/usr/bin/env bash
# Issue 29 on real data: the CIFAR-10 ViT (`vit_cifar`, trained as BENCHMARKS.md says) pruned
# to about 2× fewer MACs by heads and MLP units, then fine-tuned briefly; accuracy on
# data_batch_5 (10,000 images) before, right after pruning, and after fine-tuning. Two head
# rankings: weight magnitude (L2) and what each head writes on 128 calibration images. As a
# control, the unpruned model gets the same fine-tuning.
#   scripts/prune_vit_cifar.sh TRAINED.safetensors [OUT_DIR]
# Environment: FASTERAI (binary), DATA_DIR (CIFAR-10 folder), EPOCHS (1), LR (5e-4).
set -euo pipefail
trained=${1:?usage: prune_vit_cifar.sh TRAINED [OUT_DIR]}
out=${2:-prune-vit-runs}
fasterai=${FASTERAI:-target/release/fasterai}
dir=${DATA_DIR:-../shared/data/cifar-10-batches-bin}
files=(--train-files data_batch_1,data_batch_2)
mkdir -p "$out"
accuracy() { # model → "NN.NN"
  "$fasterai" eval "$1" --data "cifar10:$dir" --valid-files data_batch_5 --json \
    | python3 -c 'import json,sys; print("%.2f" % (100 * json.load(sys.stdin)["accuracy"]))'
}
finetune() { # in, out
  "$fasterai" train "$1" --data "cifar10:$dir" "${files[@]}" --valid-files test_batch_first1000 \
    --epochs "${EPOCHS:-1}" --batch-size 128 --optimizer adamw --weight-decay 0.05 \
    --lr "${LR:-5e-4}" --lr-schedule cosine -o "$2" --force | tail -1
}
echo "| model | MACs | parameters | accuracy % | after fine-tuning % |"
echo "|---|---:|---:|---:|---:|"
row() { # name, model, fine-tuned
  local macs params
  macs=$("$fasterai" inspect "$2" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["total_macs"])')
  params=$("$fasterai" inspect "$2" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["total_params"])')
  echo "| $1 | $macs | $params | $(accuracy "$2") | $(accuracy "$3") |"
}
for criterion in l2 output; do
  calibration=()
  [ "$criterion" = output ] && calibration=(--data "cifar10:$dir" "${files[@]}")
  # One head of three per block, then as many MLP units as reach 2× fewer MACs (kept from an
  # earlier run into the same OUT_DIR).
  if [ ! -f "$out/$criterion.ft.safetensors" ]; then
    "$fasterai" prune "$trained" --heads 0.34 --speedup 2 --criterion "$criterion" \
      "${calibration[@]}" -o "$out/$criterion.safetensors" --force > "$out/$criterion.prune.txt"
    finetune "$out/$criterion.safetensors" "$out/$criterion.ft.safetensors" > "$out/$criterion.ft.log"
  fi
  row "pruned, heads by $criterion" "$out/$criterion.safetensors" "$out/$criterion.ft.safetensors"
done
[ -f "$out/dense.ft.safetensors" ] ||
  finetune "$trained" "$out/dense.ft.safetensors" > "$out/dense.ft.log"
row "vit_cifar (trained), the same fine-tuning" "$trained" "$out/dense.ft.safetensors"
