"""The serving API the workers use: load once, compile once, predict many.

predictor = Predictor.load()           # the shipped default, sha256-checked
result = predictor.predict(data)       # bytes of a PNG, JPEG or DICOM
result.probability, result.label, result.heatmap
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ml.artifact import DEFAULT_ARTIFACT, ArtifactError, read_card
from ml.preprocessing import PREPROCESSING_VERSION, decode_image, to_model_input


@dataclass(frozen=True)
class Prediction:
    probability: float  # P(pneumonia), calibrated on the validation split
    label: str  # "NORMAL" or "PNEUMONIA" at `threshold`
    threshold: float
    model_version: str
    heatmap: np.ndarray | None  # 2-D in [0, 1] at the model's input size, or None
    image: np.ndarray = field(repr=False)  # the decoded image, 2-D in [0, 1], original size
    timings: dict[str, float] = field(default_factory=dict)  # milliseconds


class Predictor:
    def __init__(self, model, card: dict[str, Any], *, threshold: float | None = None) -> None:
        import tensorflow as tf

        from ml.gradcam import CompiledExplainer

        self.model = model
        self.card = card
        self.version: str = card["version"]
        # An operator may activate the model at another operating point than the card's.
        self.threshold: float = float(card["threshold"] if threshold is None else threshold)
        self.labels: tuple[str, str] = tuple(card["labels"])  # type: ignore[assignment]
        self.image_size: int = int(card["image_size"])
        signature = [tf.TensorSpec((None, self.image_size, self.image_size, 1), tf.float32)]
        self._forward = tf.function(lambda x: model(x, training=False), input_signature=signature)
        self._explainer = CompiledExplainer(model)
        # tf.function tracing is not re-entrant across threads; calls after it are.
        self._lock = threading.Lock()
        self._warm_up()

    @classmethod
    def load(cls, path: str | Path | None = None, *, threshold: float | None = None) -> Predictor:
        """Load an artifact (None: the shipped default), refusing one whose sha256,
        preprocessing version or input shape disagrees with its card. `threshold`
        overrides the card's decision threshold."""
        import keras

        import ml.model  # noqa: F401  (registers the custom layers the file refers to)

        path = Path(path) if path else DEFAULT_ARTIFACT
        card = read_card(path)
        if card["preprocessing_version"] != PREPROCESSING_VERSION:
            raise ArtifactError(
                f"{path.name} was trained with preprocessing v{card['preprocessing_version']}, "
                f"this code runs v{PREPROCESSING_VERSION}."
            )
        model = keras.saving.load_model(path, compile=False)
        expected = (None, card["image_size"], card["image_size"], 1)
        if tuple(model.input_shape) != expected:
            raise ArtifactError(f"{path.name} takes {model.input_shape}, its card says {expected}.")
        return cls(model, card, threshold=threshold)

    def predict(self, data: bytes, *, heatmap: bool = True) -> Prediction:
        return self.predict_batch([data], heatmap=heatmap)[0]

    def predict_batch(
        self, items: list[bytes], *, heatmap: bool = False, batch_size: int = 32
    ) -> list[Prediction]:
        """Predict several files; raises ml.preprocessing.ImageError on the first bad one."""
        results: list[Prediction] = []
        for start in range(0, len(items), batch_size):
            results += self._predict_chunk(items[start : start + batch_size], heatmap)
        return results

    def probabilities(self, images: np.ndarray, *, batch_size: int = 64) -> np.ndarray:
        """Calibrated P(pneumonia) for already preprocessed inputs (N, size, size, 1), as
        float [0, 1] or the uint8 arrays `ml.data.load_arrays` caches."""
        divisor = 255.0 if images.dtype == np.uint8 else 1.0
        chunks = [
            self._forward(images[i : i + batch_size].astype(np.float32) / divisor).numpy()[:, 0]
            for i in range(0, len(images), batch_size)
        ]
        return np.concatenate(chunks).astype(np.float64)

    def _predict_chunk(self, items: list[bytes], heatmap: bool) -> list[Prediction]:
        started = time.perf_counter()
        images = [decode_image(data) for data in items]
        batch = np.stack([to_model_input(image, self.image_size) for image in images])
        decoded = time.perf_counter()
        if heatmap:
            probabilities, maps = self._explainer(batch)
        else:
            probabilities, maps = self._forward(batch).numpy()[:, 0].astype(np.float64), None
        finished = time.perf_counter()
        per_item = {
            "decode": (decoded - started) * 1000 / len(items),
            "heatmap" if heatmap else "forward": (finished - decoded) * 1000 / len(items),
        }
        return [
            Prediction(
                probability=float(p),
                label=self.labels[int(p >= self.threshold)],
                threshold=self.threshold,
                model_version=self.version,
                heatmap=None if maps is None else maps[i],
                image=images[i],
                timings=dict(per_item),
            )
            for i, p in enumerate(probabilities)
        ]

    def _warm_up(self) -> None:
        blank = np.zeros((1, self.image_size, self.image_size, 1), np.float32)
        with self._lock:
            self._forward(blank)
            self._explainer(blank)
