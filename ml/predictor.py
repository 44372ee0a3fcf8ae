"""The serving API the workers use: load once, compile once, analyse many.

predictor = Predictor.load()                 # the shipped default, sha256-checked
outcome = predictor.predict(data, age_years=4)   # bytes of a PNG, JPEG or DICOM
outcome.refused -> Refusal(reason, message) | Prediction(probability, label, heatmap, ...)

Every input passes the gate before a score exists: the DICOM header (modality, body part,
view, species, age), the age the caller knows, colour, then the learned distances of
`ml.gate` in the network's own feature space. A refused input never gets a probability.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ml.artifact import DEFAULT_ARTIFACT, ArtifactError, ModelCard, load_card
from ml.config import LOGIT_LAYER, POOL_LAYER
from ml.ensemble import Members
from ml.gate import Gate, colour_refusal, thumbnail
from ml.header import Population, age_refusal, header_refusal
from ml.outcome import Outcome, Prediction, Refusal
from ml.preprocessing import (
    PREPROCESSING_VERSION,
    Decoded,
    ImageError,
    UnreadableImage,
    UnsupportedImage,
    decode,
    to_model_input,
)

__all__ = ["Prediction", "Predictor", "Refusal"]

log = logging.getLogger(__name__)


class Predictor:
    def __init__(self, model, card: ModelCard, *, threshold: float | None = None) -> None:
        import tensorflow as tf

        from ml.gradcam import CompiledExplainer

        self.model = model
        self.card = card
        self.version: str = card.version
        # An operator may activate the model at another operating point than the card's.
        self.threshold: float = float(card.threshold if threshold is None else threshold)
        self.labels: tuple[str, str] = tuple(card.labels)  # type: ignore[assignment]
        self.image_size: int = int(card.image_size)
        self.population = Population.from_card(card.to_dict())
        self.gate: Gate | None = Gate.from_card(card.gate) if card.gate else None
        if self.gate is None:
            log.warning("Model %s carries no learned input gate.", self.version)
        self.members = Members.from_card(card)
        self._kernel = model.get_layer(LOGIT_LAYER).get_weights()[0]
        signature = [tf.TensorSpec((None, self.image_size, self.image_size, 1), tf.float32)]
        probe = _probe(model)
        self._forward = tf.function(lambda x: probe(x, training=False), input_signature=signature)
        self._explainer = CompiledExplainer(model, with_pooled=True)
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
        card = load_card(path)
        if card.preprocessing_version != PREPROCESSING_VERSION:
            raise ArtifactError(
                f"{path.name} was trained with preprocessing v{card.preprocessing_version}, "
                f"this code runs v{PREPROCESSING_VERSION}."
            )
        model = keras.saving.load_model(path, compile=False)
        expected = (None, card.image_size, card.image_size, 1)
        if tuple(model.input_shape) != expected:
            raise ArtifactError(f"{path.name} takes {model.input_shape}, its card says {expected}.")
        return cls(model, card, threshold=threshold)

    def predict(
        self, data: bytes, *, heatmap: bool = True, age_years: float | None = None
    ) -> Outcome:
        """Analyse one file: a Prediction, or a Refusal saying why it was not scored."""
        return self.predict_batch([data], heatmap=heatmap, age_years=age_years)[0]

    def predict_batch(
        self,
        items: list[bytes],
        *,
        heatmap: bool = False,
        batch_size: int = 32,
        age_years: float | None = None,
        ages: Sequence[float | None] | None = None,
    ) -> list[Outcome]:
        """Analyse several files: of one patient when `age_years` is given, of several
        patients with `ages` (one per file, None where unknown)."""
        if ages is None:
            ages = [age_years] * len(items)
        elif len(ages) != len(items):
            raise ValueError(f"{len(items)} files but {len(ages)} ages.")
        results: list[Outcome] = []
        for start in range(0, len(items), batch_size):
            end = start + batch_size
            results += self._predict_chunk(items[start:end], heatmap, ages[start:end])
        return results

    def probabilities(self, images: np.ndarray, *, batch_size: int = 64) -> np.ndarray:
        """Calibrated P(pneumonia) for already preprocessed inputs (N, size, size, 1), as
        float [0, 1] or the uint8 arrays `ml.data.load_arrays` caches. No gate."""
        divisor = 255.0 if images.dtype == np.uint8 else 1.0
        chunks = [
            self._forward(images[i : i + batch_size].astype(np.float32) / divisor)[0].numpy()[:, 0]
            for i in range(0, len(images), batch_size)
        ]
        return np.concatenate(chunks).astype(np.float64)

    def _predict_chunk(
        self, items: list[bytes], heatmap: bool, ages: Sequence[float | None]
    ) -> list[Outcome]:
        started = time.perf_counter()
        outcomes: list[Outcome | None] = []
        accepted: list[tuple[int, Decoded]] = []
        for data, age_years in zip(items, ages, strict=True):
            decoded = _decode(data)
            refusal = decoded if isinstance(decoded, Refusal) else self._screen(decoded, age_years)
            outcomes.append(refusal)
            if refusal is None:
                decoded = self._age_noted(decoded, age_years)  # type: ignore[arg-type]
                accepted.append((len(outcomes) - 1, decoded))
        decoded_at = time.perf_counter()
        if accepted:
            self._score(accepted, outcomes, heatmap, started, decoded_at)
        return [self._versioned(outcome) for outcome in outcomes]  # type: ignore[arg-type]

    def _screen(self, decoded: Decoded, age_years: float | None) -> Refusal | None:
        """The rules that need no network: header, stated age, colour."""
        found = (
            (header_refusal(decoded.header, self.population) if decoded.header else None)
            or age_refusal(age_years, self.population)
            or colour_refusal(decoded.colourfulness)
        )
        if not found:
            return None
        return Refusal(reason=found[0], message=found[1], image=decoded.image)

    def _age_noted(self, decoded: Decoded, age_years: float | None) -> Decoded:
        """With no age stated and none in the header, the image is analysed (an unknown
        age is not a reason to refuse) and the result says that the AI was validated on
        its intended population only."""
        if age_years is not None or (decoded.header and decoded.header.age_years is not None):
            return decoded
        note = f"Age unknown: the AI was validated on {self.population.describe()} only."
        return dataclasses.replace(decoded, warnings=(*decoded.warnings, note))

    def _score(self, accepted, outcomes, heatmap: bool, started: float, decoded_at: float):
        batch = np.stack([to_model_input(d.image, self.image_size) for _, d in accepted])
        if heatmap:
            probabilities, maps, pooled = self._explainer(batch)
        else:
            probability, pooled_t = self._forward(batch)
            probabilities, maps = probability.numpy()[:, 0].astype(np.float64), None
            pooled = pooled_t.numpy()
        spread = self._spread(pooled)
        layouts = thumbnail(batch)
        finished = time.perf_counter()
        per_item = {
            "decode": (decoded_at - started) * 1000 / len(outcomes),
            "heatmap" if heatmap else "forward": (finished - decoded_at) * 1000 / len(accepted),
        }
        for j, (index, decoded) in enumerate(accepted):
            verdict = self.gate.check(layout=layouts[j], features=pooled[j]) if self.gate else None
            if verdict is not None:
                outcomes[index] = Refusal(
                    verdict[0], verdict[1], details=verdict[2], image=decoded.image
                )
                continue
            p = float(probabilities[j])
            outcomes[index] = Prediction(
                probability=p,
                label=self.labels[int(p >= self.threshold)],
                threshold=self.threshold,
                model_version=self.version,
                heatmap=None if maps is None else maps[j],
                image=decoded.image,
                uncertainty=None if spread is None else float(spread[j]),
                warnings=decoded.warnings,
                timings=dict(per_item),
            )

    def _spread(self, pooled: np.ndarray) -> np.ndarray | None:
        if self.members is None:
            return None
        return self.members.probabilities(pooled, self._kernel).std(axis=1)

    def _versioned(self, outcome: Outcome) -> Outcome:
        if isinstance(outcome, Refusal) and not outcome.model_version:
            return dataclasses.replace(outcome, model_version=self.version)
        return outcome

    def _warm_up(self) -> None:
        blank = np.zeros((1, self.image_size, self.image_size, 1), np.float32)
        with self._lock:
            self._forward(blank)
            self._explainer(blank)


def _decode(data: bytes) -> Decoded | Refusal:
    try:
        return decode(data)
    except UnsupportedImage as exc:
        return Refusal("unsupported", str(exc))
    except (UnreadableImage, ImageError) as exc:
        return Refusal("unreadable", str(exc))


def _probe(model):
    """The model with its pooled features as a second output (for the gate and spread)."""
    import keras

    return keras.Model(model.inputs, [model.output, model.get_layer(POOL_LAYER).output])
