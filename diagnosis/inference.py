"""The model of this worker process, loaded on first use.

Never at import time and never in the web process: TensorFlow is imported only when a
worker child runs its first task (a Celery prefork parent that ran TF hangs its children).
This module imports nothing of Django's models at import time either, so a test's Celery
app module can wrap `get_predictor` before Django is set up.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from django.conf import settings

if TYPE_CHECKING:
    from ml.predictor import Predictor
    from registry.operating_point import ActiveModel

logger = logging.getLogger(__name__)
_lock = threading.Lock()
_predictor: Predictor | None = None
_loaded_key: tuple | None = None  # the registry version it was loaded from


def get_predictor() -> Predictor:
    """The predictor of the active model version. One indexed query per task: an
    activation (or rollback) reaches running workers without a restart. With no version
    registered: CHESTNET_MODEL_PATH, else the shipped default. Which threshold the active
    version serves, and why, is registry.operating_point."""
    from registry.operating_point import active_model

    active = active_model()
    key = active.key if active else None
    if _predictor is None or key != _loaded_key:
        with _lock:
            if _predictor is None or key != _loaded_key:
                _load(active)
    assert _predictor is not None  # loaded just above
    return _predictor


def _load(active: ActiveModel | None) -> None:
    global _predictor, _loaded_key
    from ml.predictor import Predictor
    from registry.artifacts import local_artifact
    from registry.models import ModelVersion

    if active is None:
        _predictor = Predictor.load(settings.CHESTNET_MODEL_PATH or None)
    else:
        version = ModelVersion.objects.get(pk=active.pk)
        _predictor = Predictor.load(local_artifact(version), threshold=active.threshold)
    _loaded_key = active.key if active else None
    logger.info("Loaded model %s at threshold %.4f", _predictor.version, _predictor.threshold)
