"""The product's Celery app for a worker whose every analysis first holds its claimed image
for SLOW_INFERENCE_S seconds, so that a recovery test can kill the worker while the image
is 'processing'. Start it with `workers(app="tests.support.slow_inference", ...)`."""

from __future__ import annotations

import os
import time

from chestnet_site.celery import app
from diagnosis import inference

__all__ = ["app"]

_get_predictor = inference.get_predictor


def _slow_get_predictor():
    time.sleep(float(os.environ.get("SLOW_INFERENCE_S", "120")))
    return _get_predictor()


# The task looks the loader up on the module at every call (diagnosis.tasks).
inference.get_predictor = _slow_get_predictor
