"""The model of this worker process, loaded on first use.

Never at import time and never in the web process: TensorFlow is imported only when a
worker child runs its first task (a Celery prefork parent that ran TF hangs its children).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from django.conf import settings

if TYPE_CHECKING:
    from ml.predictor import Predictor

logger = logging.getLogger(__name__)
_lock = threading.Lock()
_predictor: Predictor | None = None
_loaded_key: tuple | None = None  # the ModelVersion it was loaded from


def get_predictor() -> Predictor:
    """The loaded predictor. Called after the image was claimed, so the test-only delay
    (CHESTNET_TEST_INFERENCE_DELAY_S, refused in production) holds it in 'processing'."""
    global _predictor
    if settings.CHESTNET_TEST_INFERENCE_DELAY_S:
        logger.warning("Test-only delay: waiting %s s", settings.CHESTNET_TEST_INFERENCE_DELAY_S)
        time.sleep(settings.CHESTNET_TEST_INFERENCE_DELAY_S)
    # One indexed query per task: an activation (or rollback) reaches running workers
    # without a restart. No version registered: CHESTNET_MODEL_PATH or the shipped default.
    active = active_model()
    key = active.key if active else None
    if _predictor is None or key != _loaded_key:
        with _lock:
            if _predictor is None or key != _loaded_key:
                _load(active)
    assert _predictor is not None  # loaded just above
    return _predictor


def active_model():
    from mlops.selectors import active_model as selector

    return selector()


def _load(active) -> None:
    global _predictor, _loaded_key
    from ml.predictor import Predictor

    if active is None:
        _predictor = Predictor.load(settings.CHESTNET_MODEL_PATH or None)
    else:
        from mlops.models import ModelVersion
        from mlops.versions import local_artifact

        version = ModelVersion.objects.get(pk=active.pk)
        _predictor = Predictor.load(local_artifact(version), threshold=active.threshold)
    _loaded_key = active.key if active else None
    logger.info("Loaded model %s at threshold %.4f", _predictor.version, _predictor.threshold)
