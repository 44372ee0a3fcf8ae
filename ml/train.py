"""Train a classifier from scratch, calibrate it, choose its threshold on validation data
and write an artifact. Configuration: dataclass defaults, then a JSON file, then flags."""

from __future__ import annotations

import dataclasses
import json
import logging
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from ml import metrics
from ml.artifact import write_card
from ml.config import LOGIT_LAYER, AugmentConfig, ModelConfig, TrainConfig
from ml.data import (
    LABELS,
    MIN_TRAIN_PER_CLASS,
    MIN_VALIDATION_PER_CLASS,
    Record,
    Split,
    batch_split,
    class_weights,
    load_arrays,
    manifest_hash,
    patient_split,
    read_manifest,
    subset_per_class,
)
from ml.preprocessing import PREPROCESSING_VERSION

log = logging.getLogger(__name__)


def resolve_config(config_file: str | None, overrides: dict[str, Any]) -> TrainConfig:
    """Defaults, then the JSON file, then command-line overrides (dotted keys allowed)."""
    values: dict[str, Any] = json.loads(Path(config_file).read_text()) if config_file else {}
    for key, value in overrides.items():
        if value is None:
            continue
        target = values
        *parents, leaf = key.split(".")
        for parent in parents:
            target = target.setdefault(parent, {})
        target[leaf] = value
    return config_from_dict(values)


def config_from_dict(values: dict[str, Any]) -> TrainConfig:
    """A TrainConfig from its JSON form (a file, or a card's `training_config`)."""
    augment = dict(values.get("augment", {}))
    if "crop_area" in augment:
        augment["crop_area"] = tuple(augment["crop_area"])
    return TrainConfig(
        **{k: v for k, v in values.items() if k not in {"model", "augment"}},
        model=ModelConfig(**values.get("model", {})),
        augment=AugmentConfig(**augment),
    )


class TrainingCancelled(RuntimeError):
    """`should_stop` asked for the run to end; no artifact was written."""


Progress = Callable[[dict[str, Any]], None]


def train(
    config: TrainConfig,
    *,
    command: str | None = None,
    verbose: int | str = "auto",
    split: Split | None = None,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Train, calibrate, pick the threshold and write the artifact; returns its card.

    `split` (records with paths relative to `config.data_root`, or absolute) replaces the
    MANIFEST.csv split, for datasets managed elsewhere. `progress` receives each epoch's
    metrics; `should_stop` is polled every batch and raises TrainingCancelled when true.
    """
    import keras

    keras.utils.set_random_seed(config.seed)
    started = time.time()
    data_root = Path(config.data_root)
    if split is None:
        split = split_for(config)
    _check_trainable(split.train, split.validation)
    size = config.model.image_size
    cache = Path(config.cache_dir) if config.cache_dir else None
    x_train, y_train = load_arrays(split.train, data_root, size=size, cache_dir=cache)
    x_val, y_val = load_arrays(split.validation, data_root, size=size, cache_dir=cache)
    log.info("train %d images, validation %d images", len(y_train), len(y_val))

    model, history = _fit(config, x_train, y_train, x_val, y_val, verbose, progress, should_stop)
    val_logits = _logits(model, x_val)
    platt = metrics.fit_platt(val_logits, y_val, balanced=True)
    _fold_calibration(model, *platt)
    val_probability = metrics.sigmoid(platt[0] * val_logits + platt[1])
    threshold = metrics.threshold_for_sensitivity(y_val, val_probability, config.target_sensitivity)
    validation = metrics.summary(y_val, val_probability, threshold)
    validation["operating_points"] = metrics.operating_points(y_val, val_probability)
    in_batch = None
    if split.in_batch:
        x_in, y_in = load_arrays(split.in_batch, data_root, size=size, cache_dir=cache)
        in_batch = metrics.summary(y_in, metrics.sigmoid(_logits(model, x_in)), threshold)

    output = Path(config.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    model = _without_optimizer(model, config.model)
    gate = fit_model_gate(model, (x_train, y_train), (x_val, y_val))
    model.save(output)
    card = _card(
        config,
        split.train + split.validation + split.in_batch,
        history,
        validation,
        platt,
        threshold,
        command,
    )
    card["validation_protocol"] = config.split
    card["gate"] = gate
    if in_batch is not None:
        card["in_batch_validation"] = in_batch
    card["training_seconds"] = round(time.time() - started, 1)
    card["patients"] = {
        "train": len({r.patient for r in split.train}),
        "validation": len({r.patient for r in split.validation}),
        "in_batch": len({r.patient for r in split.in_batch}),
    }
    card["images"] = {
        "train": len(split.train),
        "validation": len(split.validation),
        "in_batch": len(split.in_batch),
    }
    return write_card(output, card)


def split_for(config: TrainConfig) -> Split:
    """The split `config` describes: rebuilt identically from the manifest, seed and fractions."""
    records = read_manifest(Path(config.data_root))
    records = subset_per_class(records, config.limit_per_class, config.split_seed)
    if config.split == "batch":
        return batch_split(
            records,
            val_fraction=config.val_fraction,
            in_batch_fraction=config.in_batch_fraction,
            seed=config.split_seed,
        )
    if config.split != "patient":
        raise ValueError(f"Unknown split {config.split!r}; choose 'batch' or 'patient'.")
    return patient_split(records, val_fraction=config.val_fraction, seed=config.split_seed)


def fit_model_gate(model, train_set, validation_set, *, refuse_fraction: float = 0.01) -> dict:
    """The input gate's card entry for `model` (ml.gate), with its validation refusal rate."""
    from ml.features import pooled_and_logits
    from ml.gate import fit_gate, thumbnail

    layouts = [
        thumbnail(images.astype(np.float32) / 255.0) for images, _ in (train_set, validation_set)
    ]
    pooled = [pooled_and_logits(model, images)[0] for images, _ in (train_set, validation_set)]
    gate = fit_gate(
        train_layout=layouts[0],
        train_features=pooled[0],
        validation_layout=layouts[1],
        validation_features=pooled[1],
        refuse_fraction=refuse_fraction,
        fitted_on="densities: training images; thresholds: validation images",
    )
    scores = gate.scores(layout=layouts[1], features=pooled[1])
    refused = (scores["layout_distance"] > gate.layout_threshold) | (
        scores["feature_distance"] > gate.feature_threshold
    )
    return {**gate.to_card(), "validation_refusal_rate": float(refused.mean())}


def _check_trainable(train: list[Record], validation: list[Record]) -> None:
    for name, part, minimum in (
        ("training", train, MIN_TRAIN_PER_CLASS),
        ("validation", validation, MIN_VALIDATION_PER_CLASS),
    ):
        present = {r.label for r in part}
        if present != set(LABELS):
            raise ValueError(
                f"The {name} split needs images of both classes; it has only {sorted(present)}."
            )
        for label in LABELS:
            count = sum(r.label == label for r in part)
            if count < minimum:
                raise ValueError(
                    f"The {name} split has {count} {label} image(s); at least {minimum} are needed."
                )


def _fit(config, x_train, y_train, x_val, y_val, verbose, progress=None, should_stop=None):
    import keras

    from ml.augment import evaluation_dataset, training_dataset
    from ml.model import build_model

    model = build_model(config.model)
    steps = int(np.ceil(len(y_train) / config.batch_size))
    schedule = keras.optimizers.schedules.CosineDecay(
        1e-5,
        decay_steps=max(steps * (config.epochs - config.warmup_epochs), 1),
        warmup_target=config.learning_rate,
        warmup_steps=steps * config.warmup_epochs,
    )
    model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss=keras.losses.BinaryCrossentropy(label_smoothing=config.label_smoothing),
        metrics=[keras.metrics.AUC(name="auc")],
    )
    best = _Best()
    callbacks = _callbacks(best, config.epochs, progress, should_stop)
    fitted = model.fit(
        training_dataset(
            x_train, y_train, batch_size=config.batch_size, seed=config.seed, augment=config.augment
        ),
        validation_data=evaluation_dataset(x_val, y_val, batch_size=64),
        epochs=config.epochs,
        class_weight=class_weights(y_train),
        callbacks=callbacks,
        verbose=verbose,
    )
    if should_stop and should_stop():
        raise TrainingCancelled("Training was cancelled.")
    model.set_weights(best.weights)
    history: dict[str, Any] = {
        key: [round(float(v), 5) for v in values] for key, values in fitted.history.items()
    }
    history["best_epoch"] = best.epoch + 1
    return model, history


@dataclass
class _Best:
    """The epoch with the best validation ROC AUC so far, and its weights."""

    score: float = -1.0
    epoch: int = -1
    weights: list[np.ndarray] | None = None


def _callbacks(
    best: _Best, epochs: int, progress: Progress | None, should_stop: Callable[[], bool] | None
) -> list[Any]:
    """Keras callbacks: one keeping the best epoch in `best`; with `progress` or
    `should_stop`, one reporting each epoch and stopping when asked. Defined here, not at
    module level, so importing ml.train does not load Keras."""
    import keras

    class KeepBest(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            score = (logs or {}).get("val_auc", 0.0)
            if score > best.score:
                best.score, best.epoch, best.weights = score, epoch, self.model.get_weights()

    class Reporter(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if should_stop and should_stop():
                self.model.stop_training = True

        def on_epoch_end(self, epoch, logs=None):
            if progress:
                metrics_ = {key: round(float(value), 5) for key, value in (logs or {}).items()}
                progress({"epoch": epoch + 1, "epochs": epochs, **metrics_})

    if progress or should_stop:
        return [KeepBest(), Reporter()]
    return [KeepBest()]


def _logits(model, images: np.ndarray) -> np.ndarray:
    import keras

    head = keras.Model(model.inputs, model.get_layer(LOGIT_LAYER).output)
    batches = [
        head.predict_on_batch(images[i : i + 64].astype(np.float32) / 255.0)
        for i in range(0, len(images), 64)
    ]
    return np.concatenate(batches).reshape(-1).astype(np.float64)


def _without_optimizer(model, model_config: ModelConfig):
    """A fresh, uncompiled copy: the artifact carries weights, not optimizer state."""
    from ml.model import build_model

    clean = build_model(model_config)
    clean.set_weights(model.get_weights())
    return clean


def _fold_calibration(model, scale: float, shift: float) -> None:
    """Platt scaling folded into the final Dense layer: the shipped model outputs
    calibrated probabilities with no extra layer to forget."""
    layer = model.get_layer(LOGIT_LAYER)
    kernel, bias = layer.get_weights()
    layer.set_weights([kernel * scale, bias * scale + shift])


def _card(config, records, history, validation, platt, threshold, command) -> dict[str, Any]:
    version = (
        config.version or f"{datetime.now(UTC):%Y%m%d}-{config.model.arch}{config.model.image_size}"
    )
    return {
        "name": "ChestNet pneumonia classifier",
        "version": version,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "labels": list(LABELS),
        "positive_label": LABELS[1],
        "image_size": config.model.image_size,
        "channels": 1,
        "preprocessing_version": PREPROCESSING_VERSION,
        "threshold": threshold,
        "threshold_rule": (
            f"Highest threshold with sensitivity >= {config.target_sensitivity:.2f} on the "
            f"{config.split}-level validation split (a missed pneumonia costs more than a "
            "second look)."
        ),
        "calibration": {
            "method": "platt, classes weighted equally",
            "scale": platt[0],
            "shift": platt[1],
            "fitted_on": "validation",
        },
        "validation": validation,
        "history": history,
        "training_config": dataclasses.asdict(config),
        "seed": config.seed,
        "dataset": {
            "manifest_sha256": manifest_hash(records),
            "images": len(records),
            "source": config.dataset_name,
        },
        "command": command
        or "python -m ml train " + " ".join(shlex.quote(a) for a in sys.argv[2:]),
        "intended_use": INTENDED_USE,
    }


INTENDED_USE = (
    "Decision support for clinicians and radiologists reading frontal (AP/PA) chest "
    "radiographs of children aged one to five: flags radiographs suggestive of pneumonia "
    "and shows where the network looked. Trained on pediatric radiographs from a single "
    "centre (Guangzhou Women and Children's Medical Center); performance on adults, other "
    "views, other sites and other findings is unknown. It supports, and does not replace, "
    "a radiologist's reading."
)
