"""The product's Celery app for a worker that loads the active version as usual and then
takes SLOW_PREDICT_S seconds over each analysis: the version is fixed before the wait, so a
test can switch versions while an image is in analysis. After loading, the worker appends
the loaded version to the file SLOW_MARKER. Start it with
`workers(app="tests.support.slow_predictor", ...)`."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from chestnet_site.celery import app
from diagnosis import inference

__all__ = ["app"]

_get_predictor = inference.get_predictor


class _Slow:
    def __init__(self, predictor: Any) -> None:
        self._predictor = predictor

    def __getattr__(self, name: str) -> Any:
        return getattr(self._predictor, name)

    def predict(self, *args: Any, **kwargs: Any) -> Any:
        time.sleep(float(os.environ.get("SLOW_PREDICT_S", "5")))
        return self._predictor.predict(*args, **kwargs)

    def predict_batch(self, *args: Any, **kwargs: Any) -> Any:
        time.sleep(float(os.environ.get("SLOW_PREDICT_S", "5")))
        return self._predictor.predict_batch(*args, **kwargs)


def _slow_get_predictor() -> Any:
    predictor = _get_predictor()
    marker = os.environ.get("SLOW_MARKER")
    if marker:
        with Path(marker).open("a") as handle:
            handle.write(f"{predictor.version}\n")
    return _Slow(predictor)


inference.get_predictor = _slow_get_predictor
