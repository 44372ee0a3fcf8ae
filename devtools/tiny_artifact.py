"""Tiny, complete artifacts for tests and demos that must not wait for training."""

from __future__ import annotations

from pathlib import Path

from ml.artifact import write_card
from ml.data import LABELS
from ml.preprocessing import PREPROCESSING_VERSION


def write_tiny_artifact(
    path: Path, *, image_size: int = 64, threshold: float = 0.5, seed: int = 0
) -> Path:
    """An untrained two-stage network with a valid card. Its outputs mean nothing clinically."""
    import keras

    from ml.config import ModelConfig
    from ml.model import build_model

    keras.utils.set_random_seed(seed)
    model = build_model(ModelConfig(arch="resnet", image_size=image_size, width=16, stages=2))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    write_card(
        path,
        {
            "name": "ChestNet tiny test model (untrained)",
            "version": f"tiny-test-{seed}",
            "labels": list(LABELS),
            "image_size": image_size,
            "channels": 1,
            "preprocessing_version": PREPROCESSING_VERSION,
            "threshold": threshold,
            "validation": {},
        },
    )
    return path
