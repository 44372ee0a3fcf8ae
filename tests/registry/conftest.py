"""The model registry's tests: storage and the model cache in the test's own folder."""

from __future__ import annotations

import pytest

from accounts import roles
from tests.support import factories


@pytest.fixture(autouse=True)
def _media_in_tmp(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.CHESTNET_MODEL_CACHE = tmp_path / "model-cache"


@pytest.fixture
def admin_user(db):
    return factories.UserFactory(username="site-admin", role=roles.ADMIN)
