"""Compare trained candidates on the held-out acquisition batches, the way every choice of
the shipped model was made (docs/model.md), and try test-time border trimming.

    .venv/bin/python scripts/recipe_report.py build/runs/*/model.keras [--json OUT]

Per candidate: ROC AUC on held-out batches and on the in-batch patient split, and the
specificity reached at sensitivity >= 0.95 and 0.97 on held-out batches after calibration.
For the mean of all candidates' logits (the ensemble), the same with the input's borders
trimmed by 5 and 10 % (resize larger, centre-crop) and averaged with the plain view.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devtools.reports import print_report  # noqa: E402
from ml import metrics  # noqa: E402
from ml.artifact import load_card  # noqa: E402
from ml.data import load_arrays  # noqa: E402
from ml.features import pooled_and_logits  # noqa: E402
from ml.train import config_from_dict, split_for  # noqa: E402


def trimmed(images: np.ndarray, fraction: float) -> np.ndarray:
    """Centre crops of (1 - 2 * fraction) of each side, resized back to full size."""
    from PIL import Image

    size = images.shape[1]
    inner = size * (1 - 2 * fraction)
    box = ((size - inner) / 2, (size - inner) / 2, (size + inner) / 2, (size + inner) / 2)
    out = np.empty(images.shape, np.float32)
    for i, image in enumerate(images):
        picture = Image.fromarray(image[..., 0].astype(np.float32) / 255.0, mode="F")
        out[i, ..., 0] = np.asarray(
            picture.resize((size, size), Image.Resampling.BILINEAR, box=box), np.float32
        )
    return out


def scores(targets: np.ndarray, logits: np.ndarray) -> dict:
    scale, shift = metrics.fit_platt(logits, targets, balanced=True)
    probability = metrics.sigmoid(scale * logits + shift)
    row = {"roc_auc": round(metrics.roc_auc(targets, probability), 4)}
    for target in (0.95, 0.97):
        threshold = metrics.threshold_for_sensitivity(targets, probability, target)
        point = metrics.at_threshold(targets, probability, threshold)
        row[f"specificity_at_sensitivity_{target}"] = round(point["specificity"], 4)
    row["ece_after_balanced_platt"] = round(
        metrics.expected_calibration_error(targets, probability), 4
    )
    return row


def main() -> int:
    import keras

    import ml.model  # noqa: F401

    parser = argparse.ArgumentParser()
    parser.add_argument("models", nargs="+")
    parser.add_argument("--json")
    args = parser.parse_args()
    cards = [load_card(Path(p)) for p in args.models]
    config = config_from_dict(cards[0].training_config)
    split = split_for(config)
    root, size = Path(config.data_root), cards[0].image_size
    cache = Path(config.cache_dir) if config.cache_dir else None
    x_val, y_val = load_arrays(split.validation, root, size=size, cache_dir=cache)
    x_in, y_in = load_arrays(split.in_batch, root, size=size, cache_dir=cache)
    views = {"plain": x_val, "trim 5 %": trimmed(x_val, 0.05), "trim 10 %": trimmed(x_val, 0.10)}
    report: dict = {"validation_images": len(y_val), "in_batch_images": len(y_in), "models": {}}
    logits: dict[str, list[np.ndarray]] = {name: [] for name in views}
    for path, card in zip(args.models, cards, strict=True):
        model = keras.saving.load_model(path, compile=False)
        for name, images in views.items():
            logits[name].append(pooled_and_logits(model, images)[1])
        in_batch = pooled_and_logits(model, x_in)[1]
        report["models"][card.version] = {
            "geometry": card.training_config["augment"].get("geometry", "affine"),
            "seed": card.seed,
            "best_epoch": card.history["best_epoch"],
            "epochs": card.training_config["epochs"],
            "training_seconds": card.training_seconds,
            "held_out_batches": scores(y_val, logits["plain"][-1]),
            "in_batch_roc_auc": round(metrics.roc_auc(y_in, in_batch), 4),
        }
    mean = {name: np.mean(values, axis=0) for name, values in logits.items()}
    report["mean_of_all_logits"] = {
        "plain": scores(y_val, mean["plain"]),
        "trim 5 %": scores(y_val, mean["trim 5 %"]),
        "trim 10 %": scores(y_val, mean["trim 10 %"]),
        "plain + trim 5 %": scores(y_val, (mean["plain"] + mean["trim 5 %"]) / 2),
        "plain + trim 10 %": scores(y_val, (mean["plain"] + mean["trim 10 %"]) / 2),
    }
    print_report(report, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
