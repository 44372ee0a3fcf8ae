"""The DICOM network's unit tests: files in a temporary media folder, and tasks recorded
instead of published."""

from __future__ import annotations

import pytest

from devtools import dicom_files


@pytest.fixture(autouse=True)
def _media_in_tmp(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def published(monkeypatch) -> list[tuple[str, list]]:
    """(task name, args) of every task that would have been published."""
    from chestnet_site.celery import app

    sent: list[tuple[str, list]] = []
    monkeypatch.setattr(app, "send_task", lambda name, args=None, **kw: sent.append((name, args)))
    return sent


@pytest.fixture(autouse=True)
def _no_broker(published):
    return published


@pytest.fixture
def chest_dicom():
    """`chest_dicom(**header)`: bytes of a small chest DX instance, fresh UIDs each call."""

    def build(**header) -> bytes:
        pixels = dicom_files.chest_pixels(side=64)
        return dicom_files.to_bytes(dicom_files.radiograph(pixels=pixels, **header))

    return build


@pytest.fixture
def admin_user(db):
    from accounts import roles
    from tests.support import factories

    return factories.UserFactory(
        username="site-admin", role=roles.ADMIN, is_staff=True, is_superuser=True
    )
