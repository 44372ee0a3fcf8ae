"""Signed cases with known AI results, for the monitoring figures."""

from __future__ import annotations

import pytest

from accounts import roles
from tests.support import factories


@pytest.fixture(autouse=True)
def _media_in_tmp(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def admin_user(db):
    return factories.UserFactory(username="site-admin", role=roles.ADMIN, is_staff=True)
