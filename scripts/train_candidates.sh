#!/usr/bin/env bash
# The recipe comparison behind the shipped model (docs/model.md): each run validates on
# held-out acquisition batches (ml.data.batch_split) and reports the in-batch figure beside it.
#   scripts/train_candidates.sh crop 1      # new recipe: wide random-resized crop, seed 1
#   scripts/train_candidates.sh affine 1    # the earlier rotation/zoom/translate recipe
set -euo pipefail
cd "$(dirname "$0")/.."
geometry=${1:?crop or affine}
seed=${2:?seed}
epochs=${EPOCHS:-14}
name="vgg-${geometry}-s${seed}"
mkdir -p "build/runs/$name"
exec .venv/bin/python -m ml train --arch vgg --width 32 --epochs "$epochs" --seed "$seed" \
  --geometry "$geometry" --output "build/runs/$name/model.keras" --version "candidate-$name" \
  > "build/runs/$name/log.txt" 2>&1
