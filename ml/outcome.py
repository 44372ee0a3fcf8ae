"""What analysing one file can come to: a Prediction, or a Refusal with a reason code.

A refusal is a result, not a failure: the input was read, and the model was not made for it
(or it could not be read at all). TensorFlow-free, so the web app can import the reasons.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

import numpy as np

# Reason code -> plain words for clinicians. The order is the order the gate checks them.
REFUSAL_REASONS: Final[dict[str, str]] = {
    "unreadable": "The file could not be read as an image.",
    "unsupported": "The file is an image ChestNet does not interpret.",
    "not_chest_radiograph": "This does not look like a frontal chest radiograph.",
    "outside_intended_use": (
        "This radiograph is outside the population or view the AI was validated on."
    ),
}


@dataclass(frozen=True)
class Prediction:
    probability: float  # P(pneumonia), calibrated on held-out acquisition batches
    label: str  # "NORMAL" or "PNEUMONIA" at `threshold`
    threshold: float
    model_version: str
    heatmap: np.ndarray | None  # 2-D in [0, 1] at the model's input size, or None
    image: np.ndarray = field(repr=False)  # the decoded image, 2-D in [0, 1], original size
    # Spread of the ensemble members' calibrated probabilities (standard deviation, 0-0.5):
    # how much the members disagree about this image. None for a single-network model.
    uncertainty: float | None = None
    warnings: tuple[str, ...] = ()  # things the reader should know (e.g. a DICOM quirk fixed)
    timings: dict[str, float] = field(default_factory=dict)  # milliseconds

    refused = False


@dataclass(frozen=True)
class Refusal:
    reason: str  # a key of REFUSAL_REASONS
    message: str  # the specific reason, in plain words, with no patient data
    model_version: str = ""
    details: Mapping[str, float | str] = field(default_factory=dict)  # e.g. the gate's score
    timings: dict[str, float] = field(default_factory=dict)
    # The decoded image when the file could be read (2-D in [0, 1], original size): the
    # reader still sees the radiograph the AI declined, without decoding it again.
    image: np.ndarray | None = field(default=None, repr=False, compare=False)

    refused = True

    def __post_init__(self) -> None:
        if self.reason not in REFUSAL_REASONS:
            raise ValueError(f"Unknown refusal reason {self.reason!r}.")


Outcome = Prediction | Refusal
