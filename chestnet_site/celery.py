"""The Celery app. Workers consume the `inference` queue; configuration comes from Django
settings (CELERY_*). TensorFlow is never imported here: each worker process loads the model
lazily on its first task (see diagnosis.inference)."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chestnet_site.settings")
# OpenJPEG (in Pillow and pylibjpeg) decodes JPEG 2000 code blocks on this many threads:
# a lossless CR 114 -> 69 ms on 2 cores (docs/benchmarks.md, Model serving). Unset, it uses
# one. An operator's own value wins.
os.environ.setdefault(
    "OPJ_NUM_THREADS",
    str(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1),
)

app = Celery("chestnet")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
