"""Several trained networks shipped as one artifact with one card.

The members' final feature maps are concatenated and the shared head (pool, dropout,
logit) is set so that its logit is the mean of the members' logits: pooling and the dense
layer are linear, so mean_i(w_i . pool(F_i) + b_i) == (w / M) . pool(concat F_i) + mean(b).
Grad-CAM, calibration folding and every layer lookup by name then work unchanged, and the
members' spread (the uncertainty) is read from the pooled features and the card.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ml import metrics
from ml.config import (
    DROPOUT_LAYER,
    GRADCAM_LAYER,
    INPUT_LAYER,
    LOGIT_LAYER,
    POOL_LAYER,
    PROBABILITY_LAYER,
    TRIM_LAYER,
)
from ml.features import pooled_and_logits

if TYPE_CHECKING:
    from ml.artifact import ModelCard

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Members:
    """What the predictor needs to split an ensemble's pooled features back into members:
    member i's calibrated logit is count * pooled_i . kernel_i + bias[i]."""

    count: int
    bias: np.ndarray  # (count,)

    @classmethod
    def from_card(cls, card: ModelCard) -> Members | None:
        entry = card.ensemble
        if not entry or entry.get("members", 1) < 2:
            return None
        return cls(count=int(entry["members"]), bias=np.asarray(entry["member_bias"], float))

    def probabilities(self, pooled: np.ndarray, kernel: np.ndarray) -> np.ndarray:
        """(N, count) calibrated member probabilities from pooled features (N, D)."""
        parts = np.split(pooled.astype(np.float64), self.count, axis=1)
        weights = np.split(kernel.reshape(-1).astype(np.float64), self.count)
        logits = np.stack([p @ w for p, w in zip(parts, weights, strict=True)], axis=1)
        return 1.0 / (1.0 + np.exp(-(self.count * logits + self.bias)))


def build_ensemble(members: list, *, trim: float = 0.0) -> Any:
    """One Keras model whose logit is the mean of the members' logits; with `trim`, every
    member sees the input with that fraction of each border trimmed (ml.model.TrimBorders)."""
    import keras
    from keras import layers

    from ml.model import TrimBorders

    size = members[0].input_shape[1]
    if any(m.input_shape[1] != size for m in members):
        raise ValueError("Ensemble members must share one input size.")
    inputs = keras.Input((size, size, 1), name=INPUT_LAYER)
    view = TrimBorders(trim, name=TRIM_LAYER)(inputs) if trim else inputs
    features = [
        keras.Model(m.inputs, m.get_layer(GRADCAM_LAYER).output, name=f"member_{i}")(view)
        for i, m in enumerate(members)
    ]
    joined = layers.Concatenate(name=GRADCAM_LAYER)(features)
    pooled = layers.GlobalAveragePooling2D(name=POOL_LAYER)(joined)
    pooled = layers.Dropout(0.0, name=DROPOUT_LAYER)(pooled)
    logit = layers.Dense(1, name=LOGIT_LAYER)(pooled)
    probability = layers.Activation("sigmoid", name=PROBABILITY_LAYER, dtype="float32")(logit)
    model = keras.Model(inputs, probability, name=f"chestnet_ensemble{len(members)}")
    kernels, biases = zip(*(m.get_layer(LOGIT_LAYER).get_weights() for m in members), strict=True)
    model.get_layer(LOGIT_LAYER).set_weights(
        [np.concatenate(kernels, axis=0) / len(members), np.mean(biases, axis=0)]
    )
    return model


def member_bias(members: list, scale: float, shift: float) -> list[float]:
    """Each member's logit bias after the ensemble's calibration (see `Members`)."""
    return [float(scale * m.get_layer(LOGIT_LAYER).get_weights()[1][0] + shift) for m in members]


def combine(
    paths: list[Path],
    *,
    output: Path,
    version: str,
    command: str = "",
    target_sensitivity: float = 0.97,
    refuse_fraction: float = 0.01,
    trim: float = 0.0,
) -> dict[str, Any]:
    """Join trained members (one shared split) into one calibrated, gated artifact."""
    import keras

    import ml.model  # noqa: F401  (custom layers)
    from ml.artifact import read_card, write_card

    cards = [read_card(Path(p)) for p in paths]
    config = _shared_config(cards)
    members = [keras.saving.load_model(p, compile=False) for p in paths]
    model = build_ensemble(members, trim=trim)
    sets = _arrays(config)
    _, logits_val = pooled_and_logits(model, sets["validation"][0])
    scale, shift = metrics.fit_platt(logits_val, sets["validation"][1], balanced=True)
    layer = model.get_layer(LOGIT_LAYER)
    kernel, bias = layer.get_weights()
    layer.set_weights([kernel * scale, bias * scale + shift])
    figures = _figures(model, sets, scale * logits_val + shift, target_sensitivity)
    gate = _fit_gate(model, sets, refuse_fraction)
    output.parent.mkdir(parents=True, exist_ok=True)
    model.save(output)
    card = _ensemble_card(cards, config, figures, gate, version, command)
    card["ensemble"] = {
        "members": len(members),
        "member_bias": member_bias(members, scale, shift),
        "rule": "mean of the members' logits, then Platt scaling with classes weighted equally",
        "trim_borders": trim,
    }
    card["calibration"] = {
        "method": "platt, classes weighted equally",
        "scale": scale,
        "shift": shift,
        "fitted_on": "validation (held-out acquisition batches)",
    }
    return write_card(output, card)


_SPLIT_KEYS = ("data_root", "split", "split_seed", "val_fraction", "in_batch_fraction")


def _shared_config(cards: list[dict[str, Any]]):
    from ml.train import config_from_dict

    if len(cards) < 2:
        raise ValueError("An ensemble needs at least two members.")
    first = cards[0]["training_config"]
    for card in cards[1:]:
        other = card["training_config"]
        differing = [key for key in _SPLIT_KEYS if other.get(key) != first.get(key)]
        if differing or card["image_size"] != cards[0]["image_size"]:
            raise ValueError(
                f"Members must share one split and input size; {card['version']} differs in "
                f"{', '.join(differing) or 'image_size'}."
            )
    return config_from_dict(first)


def _arrays(config) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from ml.data import load_arrays
    from ml.train import split_for

    split = split_for(config)
    cache = Path(config.cache_dir) if config.cache_dir else None
    root, size = Path(config.data_root), config.model.image_size
    parts = {"train": split.train, "validation": split.validation, "in_batch": split.in_batch}
    return {
        name: load_arrays(records, root, size=size, cache_dir=cache)
        for name, records in parts.items()
        if records
    }


def _figures(model, sets, calibrated_val_logits, target_sensitivity) -> dict[str, Any]:
    targets = sets["validation"][1].astype(np.float64)
    scores = metrics.sigmoid(calibrated_val_logits)
    threshold = metrics.threshold_for_sensitivity(targets, scores, target_sensitivity)
    validation = metrics.summary(targets, scores, threshold)
    validation["operating_points"] = metrics.operating_points(targets, scores)
    figures = {"threshold": threshold, "validation": validation, "rule": target_sensitivity}
    if "in_batch" in sets:
        _, logits = pooled_and_logits(model, sets["in_batch"][0])
        figures["in_batch"] = metrics.summary(
            sets["in_batch"][1], metrics.sigmoid(logits), threshold
        )
    return figures


def _fit_gate(model, sets, refuse_fraction):
    from ml.train import fit_model_gate

    entry = fit_model_gate(
        model, sets["train"], sets["validation"], refuse_fraction=refuse_fraction
    )
    entry["fitted_on"] = "densities: training images; thresholds: held-out-batch validation"
    return entry


def _ensemble_card(cards, config, figures, gate, version, command) -> dict[str, Any]:
    from datetime import UTC, datetime

    first = cards[0]
    keep = ("name", "labels", "positive_label", "image_size", "channels", "preprocessing_version")
    card = {key: first[key] for key in keep if key in first}
    card.update(
        version=version,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        threshold=figures["threshold"],
        threshold_rule=(
            f"Highest threshold with sensitivity >= {figures['rule']:.2f} on held-out "
            "acquisition batches (a missed pneumonia costs more than a second look)."
        ),
        validation=figures["validation"],
        validation_protocol=VALIDATION_PROTOCOL,
        gate=gate,
        intended_population=INTENDED_POPULATION,
        intended_use=first.get("intended_use", ""),
        dataset=first["dataset"],
        training_config=first["training_config"],
        seed=[c["seed"] for c in cards],
        images=first.get("images"),
        patients=first.get("patients"),
        command=command,
        members=[_member_entry(c) for c in cards],
    )
    if "in_batch" in figures:
        card["in_batch_validation"] = figures["in_batch"]
    return card


def _member_entry(card: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": card["version"],
        "sha256": card["sha256"],
        "seed": card["seed"],
        "command": card.get("command", ""),
        "best_epoch": card.get("history", {}).get("best_epoch"),
        "training_seconds": card.get("training_seconds"),
        "validation_roc_auc": card["validation"].get("roc_auc"),
        "in_batch_roc_auc": card.get("in_batch_validation", {}).get("roc_auc"),
    }


VALIDATION_PROTOCOL = (
    "Every choice (recipe, epoch, calibration, threshold, gate) was made on held-out "
    "acquisition batches: the first and last numbers of each file-name family of "
    "chest_xray/train (ml.data.batch_split), whole patients. 'in_batch_validation' is a "
    "random patient-level split of the remaining batches, reported only to show how much "
    "a plain split flatters the model."
)
INTENDED_POPULATION = {"min_age_years": 1, "max_age_years": 6, "views": ["AP", "PA"]}
