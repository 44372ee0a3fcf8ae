#!/usr/bin/env bash
# Trains each candidate with the same data, split, seed and budget; the cards under
# build/runs/ and the per-epoch logs under docs/evidence/ are the evidence in docs/model.md.
#   ARCHS="resnet vgg" EPOCHS=30 EXTRA="--no-standardize" scripts/compare_archs.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=.
mkdir -p build/runs docs/evidence
for arch in ${ARCHS:-resnet vgg}; do
  name="${arch}${TAG:-}"
  .venv/bin/python -m ml train --arch "$arch" --width "${WIDTH:-32}" --epochs "${EPOCHS:-30}" \
    --output "build/runs/$name/model.keras" --version "candidate-$name" ${EXTRA:-} \
    > "build/runs/$name.log" 2>&1
  tr '\r' '\n' < "build/runs/$name.log" | grep val_auc | sed 's/.*step - //' > "docs/evidence/$name-epochs.txt"
done
