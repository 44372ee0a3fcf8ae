"""The model of this worker process, loaded on first use.

Never at import time and never in the web process: TensorFlow is imported only when a
worker child runs its first task (a Celery prefork parent that ran TF hangs its children).
"""

from __future__ import annotations

import logging
import threading

from django.conf import settings

logger = logging.getLogger(__name__)
_lock = threading.Lock()
_predictor = None


def get_predictor():
    global _predictor
    if _predictor is None:
        with _lock:
            if _predictor is None:
                from ml.predictor import Predictor

                _predictor = Predictor.load(settings.CHESTNET_MODEL_PATH or None)
                logger.info("Loaded model %s", _predictor.version)
    return _predictor
