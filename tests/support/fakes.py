from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ml.outcome import REFUSAL_REASONS, Refusal


@dataclass
class FakeResult:
    """A prediction as ml.outcome.Prediction carries it, with numbers chosen by the test."""

    probability: float = 0.73
    label: str = "PNEUMONIA"
    threshold: float = 0.5
    model_version: str = "fake-1"
    heatmap: object = None
    uncertainty: float | None = 0.04  # None: a single model, no ensemble spread
    warnings: tuple[str, ...] = ()
    timings: dict | None = None
    image: object = None  # the decoded pixels the worker makes the preview from

    refused = False

    def __post_init__(self) -> None:
        self.timings = self.timings or {"decode": 1.0, "heatmap": 5.0}


def fake_refusal(reason: str = "not_chest_radiograph", message: str = "") -> Refusal:
    """A real ml.outcome.Refusal, as the predictor returns it."""
    return Refusal(
        reason=reason,
        message=message or f"Fake refusal: {REFUSAL_REASONS[reason]}",
        model_version="fake-1",
        timings={"decode": 1.0},
    )


@dataclass
class FakePredictor:
    """Stands in for ml.predictor.Predictor where the model's numbers do not matter.

    `result` may be a FakeResult or a Refusal (see `fake_refusal`); `error` is raised
    instead. Every call's keyword arguments are kept in `seen`."""

    result: FakeResult | Refusal = field(default_factory=FakeResult)
    error: Exception | None = None
    seen: list[dict[str, Any]] = field(default_factory=list)

    @property
    def calls(self) -> int:
        return len(self.seen)

    def predict(
        self, data: bytes, *, heatmap: bool = True, age_years: float | None = None
    ) -> FakeResult | Refusal:
        self.seen.append({"heatmap": heatmap, "age_years": age_years})
        if self.error:
            raise self.error
        return self.result

    def predict_batch(
        self,
        items: list[bytes],
        *,
        heatmap: bool = False,
        ages: list[float | None] | None = None,
    ) -> list[FakeResult | Refusal]:
        ages = ages if ages is not None else [None] * len(items)
        return [
            self.predict(data, heatmap=heatmap, age_years=age)
            for data, age in zip(items, ages, strict=True)
        ]
