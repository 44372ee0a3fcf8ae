#!/usr/bin/env bash
# Trains each candidate architecture with the same data, split, seed and budget; the cards
# under build/runs/ are the evidence summarised in docs/model.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=.
for arch in ${ARCHS:-resnet vgg}; do
  .venv/bin/python -m ml train --arch "$arch" --width "${WIDTH:-32}" --epochs "${EPOCHS:-30}" \
    --output "build/runs/$arch/model.keras" --version "candidate-$arch" 2>&1 \
    | tr '\r' '\n' | grep -v -E '(step - auc: [0-9.]+ - loss: [0-9.]+$)|img/s\]' > "build/runs/$arch.log"
done
