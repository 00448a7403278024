#!/usr/bin/env bash
# Soft-target distillation against the same student trained alone (issue 5): same data, epochs
# and seeds; prints each run's best validation accuracy.
#   scripts/kd_experiment.sh TEACHER.safetensors [OUT_DIR]
# Environment: FASTERAI (binary), DATA_DIR (CIFAR-10 folder), EPOCHS (5), SEEDS ("0 1"),
# STUDENT (vgg11_bn_small), WIDTH (0.125).
set -euo pipefail
teacher=${1:?usage: kd_experiment.sh TEACHER [OUT_DIR]}
out=${2:-kd-runs}
fasterai=${FASTERAI:-target/release/fasterai}
data=cifar10:${DATA_DIR:-../shared/data/cifar-10-batches-bin}
split=(--train-files data_batch_1,data_batch_2 --valid-files data_batch_5)
common=(--width "${WIDTH:-0.125}" --data "$data" "${split[@]}" --epochs "${EPOCHS:-5}" --force)
mkdir -p "$out"
for seed in ${SEEDS:-0 1}; do
  "$fasterai" train "${STUDENT:-vgg11_bn_small}" "${common[@]}" --seed "$seed" \
    -o "$out/alone_$seed.safetensors" --history "$out/alone_$seed.json" | tee "$out/alone_$seed.log"
  "$fasterai" distill --teacher "$teacher" --student "${STUDENT:-vgg11_bn_small}" "${common[@]}" \
    --seed "$seed" --loss soft-target --temperature 4 --weight 0.5 \
    -o "$out/kd_$seed.safetensors" --history "$out/kd_$seed.json" | tee "$out/kd_$seed.log"
done
grep -H "best validation accuracy" "$out"/*.log
