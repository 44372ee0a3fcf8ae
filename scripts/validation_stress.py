"""Score an artifact on its own validation split (held-out acquisition batches for current
cards), clean and under synthetic exposure, contrast, crop and border shifts, to see how
fragile its ranking and threshold are before the withheld test.

    .venv/bin/python scripts/validation_stress.py [MODEL.keras]

The split is rebuilt from the card's split settings, so no validation image was trained on.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ml import metrics  # noqa: E402
from ml.artifact import DEFAULT_ARTIFACT  # noqa: E402
from ml.features import pooled_and_logits  # noqa: E402
from ml.gate import thumbnail  # noqa: E402
from ml.predictor import Predictor  # noqa: E402
from ml.promote import validation_set  # noqa: E402

SHIFTS = {
    "clean": lambda x: x,
    "gamma 0.7 (brighter)": lambda x: x**0.7,
    "gamma 1.4 (darker)": lambda x: x**1.4,
    "contrast x0.75": lambda x: (x - x.mean()) * 0.75 + x.mean(),
    "contrast x1.25": lambda x: np.clip((x - x.mean()) * 1.25 + x.mean(), 0, 1),
    "crop centre 85 %": lambda x: _zoom(x, 0.85),
    "black border 10 %": lambda x: _zoom(x, 1.25),
}


def _zoom(image: np.ndarray, box: float) -> np.ndarray:
    """Resample the central `box` fraction of the image to full size; box > 1 shrinks the
    image inside a black border (a looser collimation)."""
    from PIL import Image

    size = image.shape[0]
    side = size * box
    offset = (size - side) / 2
    picture = Image.fromarray(image[..., 0].astype(np.float32), mode="F")
    picture = picture.transform(
        (size, size),
        Image.Transform.EXTENT,
        (offset, offset, offset + side, offset + side),
        Image.Resampling.BILINEAR,
        fillcolor=0.0,
    )
    return np.asarray(picture, np.float32)[..., None]


def _refused(predictor, batch: np.ndarray) -> float | None:
    """Share of the shifted images the artifact's learned gate would refuse."""
    if predictor.gate is None:
        return None
    pooled, _ = pooled_and_logits(predictor.model, batch)
    layouts = thumbnail(batch)
    verdicts = [
        predictor.gate.check(layout=layout, features=features)
        for layout, features in zip(layouts, pooled, strict=True)
    ]
    return round(float(np.mean([v is not None for v in verdicts])), 4)


def main(model_path: str | None) -> None:
    predictor = Predictor.load(model_path or DEFAULT_ARTIFACT)
    images, targets = validation_set(predictor)
    base = images.astype(np.float32) / 255.0
    rows = {}
    for name, shift in SHIFTS.items():
        batch = np.stack([shift(image) for image in base]).astype(np.float32)
        scores = predictor.probabilities(batch)
        result = metrics.at_threshold(targets, scores, predictor.threshold)
        rows[name] = {
            "roc_auc": round(metrics.roc_auc(targets, scores), 4),
            **{k: round(result[k], 4) for k in ("accuracy", "sensitivity", "specificity")},
            "gate_refused": _refused(predictor, batch),
        }
    print(
        json.dumps(
            {
                "model_version": predictor.version,
                "validation_images": len(targets),
                "threshold": predictor.threshold,
                "shifts": rows,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
