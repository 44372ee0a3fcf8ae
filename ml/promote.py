"""Promote a trained candidate to the shipped default (or any path) under a release version.

The weights are copied byte for byte (same sha256); the card gains the release version, the
candidate's own version, and validation operating points recomputed from the candidate's
own patient-level validation split, after checking they reproduce the card's validation AUC.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from ml import metrics
from ml.artifact import DEFAULT_ARTIFACT, card_path, read_card, write_card
from ml.data import load_arrays


def validation_set(predictor) -> tuple[np.ndarray, np.ndarray]:
    """The uint8 inputs and targets of the validation split the predictor's card describes
    (rebuilt from its data root, seed and fraction: no image of it was trained on)."""
    from ml.train import config_from_dict, split_for

    values = dict(predictor.card.training_config or {})
    # Cards written before the batch split validated on a patient split seeded by `seed`.
    values.setdefault("split", "patient")
    values.setdefault("split_seed", values["seed"])
    config = config_from_dict(values)
    split = split_for(config)
    cache = Path(config.cache_dir) if config.cache_dir else None
    images, targets = load_arrays(
        split.validation, Path(config.data_root), size=predictor.image_size, cache_dir=cache
    )
    return images, targets.astype(np.float64)


def validation_scores(model_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Targets and calibrated probabilities on the validation split the card describes."""
    from ml.predictor import Predictor

    predictor = Predictor.load(model_path)
    images, targets = validation_set(predictor)
    return targets, predictor.probabilities(images)


def promote(
    source: Path,
    *,
    version: str,
    destination: Path = DEFAULT_ARTIFACT,
    command: str = "",
    target_sensitivity: float | None = None,
) -> dict:
    """Copy `source` to `destination` under `version`; with `target_sensitivity`, re-choose
    the threshold on the validation split (never on test) for that operating point."""
    card = read_card(source)
    targets, scores = validation_scores(source)
    auc = metrics.roc_auc(targets, scores)
    if abs(auc - card["validation"]["roc_auc"]) > 1e-3:
        raise ValueError(
            f"Recomputed validation AUC {auc:.4f} differs from the card's "
            f"{card['validation']['roc_auc']:.4f}: the split or data changed since training."
        )
    destination.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, destination)
    if target_sensitivity is not None:
        threshold = metrics.threshold_for_sensitivity(targets, scores, target_sensitivity)
        card["validation"] = metrics.summary(targets, scores, threshold)
        card["threshold"] = threshold
        card["threshold_rule"] = (
            f"Highest threshold with sensitivity >= {target_sensitivity:.2f} on the "
            "card's validation split (a missed pneumonia costs more than a second look)."
        )
    card["validation"]["operating_points"] = metrics.operating_points(targets, scores)
    card.update(
        candidate_version=card["version"],
        version=version,
        promoted=datetime.now(UTC).isoformat(timespec="seconds"),
        promote_command=command,
    )
    for key in ("sha256", "file"):
        card.pop(key, None)
    return write_card(destination, card)


def describe(path: Path) -> str:
    return json.dumps(json.loads(card_path(path).read_text()), indent=2)
