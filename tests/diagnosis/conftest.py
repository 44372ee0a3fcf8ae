"""Personas and helpers for the web app's tests."""

from __future__ import annotations

import pytest

from accounts import roles
from tests.support import factories
from tests.support.fakes import FakePredictor


@pytest.fixture(autouse=True)
def _media_in_tmp(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture(autouse=True)
def _no_broker(monkeypatch):
    """Unit tests never publish: record what would be enqueued instead."""
    from chestnet_site.celery import app

    sent: list[int] = []

    def publish(name, args=None, **kw):
        assert name == "diagnosis.tasks.inference_run_task", name
        sent.append(args[0])

    monkeypatch.setattr(app, "send_task", publish)
    return sent


@pytest.fixture
def enqueued(_no_broker) -> list[int]:
    return _no_broker


@pytest.fixture
def admin_user(db):
    return factories.UserFactory(
        username="site-admin", role=roles.ADMIN, is_staff=True, is_superuser=True
    )


@pytest.fixture
def fake_predictor() -> FakePredictor:
    return FakePredictor()
