"""How the learned input gate of an artifact behaves, on evidence it was not fitted to.

    .venv/bin/python scripts/gate_report.py [MODEL.keras] [--corpus build/ood-corpus]

1. Shift: thresholds fitted on one end of the held-out acquisition batches (the lower
   numbers of each file-name family), refusal rate on the other end, and the reverse, for
   margins 1.0, 1.1 and 1.2 (ml.gate.fit_gate).
2. The offline corpus (scripts/ood_corpus.py build): refusal rates and reasons per kind with
   the artifact's own gate, through Predictor.predict like any upload.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devtools.reports import print_report  # noqa: E402
from ml.data import acquisition_batch, load_arrays  # noqa: E402
from ml.features import pooled_and_logits  # noqa: E402
from ml.gate import fit_gate, thumbnail  # noqa: E402
from ml.train import config_from_dict, split_for  # noqa: E402


def shift_check(predictor) -> dict:
    config = config_from_dict(predictor.card.training_config)
    split = split_for(config)
    root, cache = Path(config.data_root), Path(config.cache_dir)
    arrays = {
        name: load_arrays(records, root, size=predictor.image_size, cache_dir=cache)[0]
        for name, records in (("train", split.train), ("validation", split.validation))
    }
    layout = {name: thumbnail(x.astype(np.float32) / 255.0) for name, x in arrays.items()}
    pooled = {name: pooled_and_logits(predictor.model, x)[0] for name, x in arrays.items()}
    low = _lower_end(split.validation)
    rows = {}
    for margin in (1.0, 1.1, 1.2):
        for name, fit, other in (
            ("fit lower, test upper", low, ~low),
            ("fit upper, test lower", ~low, low),
        ):
            gate = fit_gate(
                train_layout=layout["train"],
                train_features=pooled["train"],
                validation_layout=layout["validation"][fit],
                validation_features=pooled["validation"][fit],
                refuse_fraction=0.01,
                margin=margin,
            )
            scores = gate.scores(
                layout=layout["validation"][other], features=pooled["validation"][other]
            )
            refused = (scores["layout_distance"] > gate.layout_threshold) | (
                scores["feature_distance"] > gate.feature_threshold
            )
            rows[f"margin {margin}: {name}"] = round(float(refused.mean()), 4)
    return rows


def _lower_end(records) -> np.ndarray:
    numbers = defaultdict(list)
    for record in records:
        family, number = acquisition_batch(record)
        numbers[family].append(number)
    median = {family: np.median(values) for family, values in numbers.items()}
    return np.array([acquisition_batch(r)[1] <= median[acquisition_batch(r)[0]] for r in records])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("model", nargs="?")
    parser.add_argument("--corpus", default="build/ood-corpus")
    parser.add_argument("--json")
    args = parser.parse_args()
    from ml.predictor import Predictor

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from ood_corpus import score  # the same scoring `ood_corpus.py score` prints

    predictor = Predictor.load(args.model)
    report = {
        "model_version": predictor.version,
        "gate": {k: v for k, v in predictor.card.gate.items() if k != "arrays_npz_base64"},
        "shift_check_refusal_rates": shift_check(predictor),
        "corpus": score(Path(args.corpus), args.model)["kinds"],
    }
    print_report(report, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
