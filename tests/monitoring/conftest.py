"""Signed cases with known AI results, for the monitoring figures."""

from __future__ import annotations

import pytest

from diagnosis import roles
from tests.support import factories


@pytest.fixture(autouse=True)
def _media_in_tmp(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def admin_user(db):
    return factories.UserFactory(username="site-admin", role=roles.ADMIN, is_staff=True)


@pytest.fixture
def api_client_for():
    from rest_framework.test import APIClient

    def login(user=None):
        client = APIClient()
        if user is not None:
            client.force_authenticate(user)
        return client

    return login
