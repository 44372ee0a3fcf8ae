from __future__ import annotations

from dataclasses import dataclass


@dataclass
class FakeResult:
    probability: float = 0.73
    label: str = "PNEUMONIA"
    threshold: float = 0.5
    model_version: str = "fake-1"
    heatmap: object = None
    timings: dict | None = None

    def __post_init__(self) -> None:
        self.timings = self.timings or {"decode": 1.0, "heatmap": 5.0}


class FakePredictor:
    """Stands in for ml.predictor.Predictor where the model's numbers do not matter."""

    def __init__(self, result: FakeResult | None = None, error: Exception | None = None) -> None:
        self.result, self.error, self.calls = result or FakeResult(), error, 0

    def predict(self, data: bytes, *, heatmap: bool = True) -> FakeResult:
        self.calls += 1
        if self.error:
            raise self.error
        return self.result
