"""ChestNet Django project. The Celery app is imported here so `shared_task` binds to it."""

from __future__ import annotations

from chestnet_site.celery import app as celery_app

__all__ = ["celery_app"]
