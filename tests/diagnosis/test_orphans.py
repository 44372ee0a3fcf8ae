"""The sweep of clinical files no row names (a process died between writing a file and
committing its row): removed once older than CHESTNET_ORPHAN_GRACE_S, reported in /healthz.
Files rows name, and young files (a row may be committing), are kept."""

from __future__ import annotations

import os
import time

import pytest
from django.urls import reverse

from diagnosis import orphans, services
from diagnosis.models import Image
from tests.support.full_disk import stored_files
from tests.support.images import png_bytes

pytestmark = pytest.mark.django_db
FOLDERS = ("originals", "previews", "heatmaps")


def _orphan(media, folder: str, name: str, *, age_s: float) -> str:
    path = media / folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"left behind")
    written = time.time() - age_s
    os.utime(path, (written, written))
    return f"{folder}/{name}"


def test_the_sweep_removes_old_files_no_row_names_and_keeps_the_rest(settings, clinician):
    settings.CHESTNET_ORPHAN_GRACE_S = 3600
    validated = [services.image_validate(name="a.png", data=png_bytes(128, 128))]
    services.case_create(owner=clinician, images=validated)
    kept = Image.objects.get().original.name
    os.utime(settings.MEDIA_ROOT / kept, (time.time() - 7200, time.time() - 7200))  # old, named
    media = settings.MEDIA_ROOT
    old = [_orphan(media, folder, "old.bin", age_s=7200) for folder in FOLDERS]
    young = _orphan(media, "originals", "young.bin", age_s=60)
    elsewhere = _orphan(media, "datasets/1", "not-clinical.bin", age_s=7200)

    removed = orphans.orphans_sweep()

    assert removed == {"originals": 1, "previews": 1, "heatmaps": 1}
    assert stored_files(media) == {kept, young, elsewhere, orphans.REPORT}
    assert not set(old) & stored_files(media)


def test_healthz_reports_the_last_sweep(client, settings, monkeypatch):
    monkeypatch.setattr("chestnet_site.health.broker_state", lambda: ("ok", 1))
    settings.CHESTNET_DICOM_PORT = 0
    assert client.get(reverse("healthz")).json()["orphans"] == {"last_sweep": None, "removed": 0}
    _orphan(settings.MEDIA_ROOT, "previews", "lost.jpg", age_s=10**5)
    orphans.orphans_sweep()
    reported = client.get(reverse("healthz")).json()["orphans"]
    assert reported["removed"] == 1 and reported["last_sweep"]
    orphans.orphans_sweep()  # the report is replaced, not added to
    assert client.get(reverse("healthz")).json()["orphans"]["removed"] == 0


def test_the_sweep_runs_on_beat_every_half_grace_period(settings):
    from diagnosis import tasks

    entry = settings.CELERY_BEAT_SCHEDULE["remove-orphan-files"]
    assert entry["task"] == tasks.orphans_sweep_task.name
    assert entry["schedule"] == max(60, settings.CHESTNET_ORPHAN_GRACE_S // 2)
    assert tasks.orphans_sweep_task.apply().result == 0
