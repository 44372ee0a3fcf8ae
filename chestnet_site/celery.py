"""The Celery app. Workers consume the `inference` queue; configuration comes from Django
settings (CELERY_*). TensorFlow is never imported here: each worker process loads the model
lazily on its first task (see diagnosis.inference)."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chestnet_site.settings")

app = Celery("chestnet")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
