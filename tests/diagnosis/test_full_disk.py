"""A full disk (or object store) is a 503 with a sentence and leaves nothing behind: no file
without its row, no row without its file, for uploads (API and form), an instance received
over the network and the worker's previews and heatmaps. The API answers JSON, never an
HTML debug page, with DEBUG on too. The storage is ChestNet's own on a disk with little room
left (tests/support/full_disk.py); the last test fills a real tmpfs."""

from __future__ import annotations

import errno
import json
import subprocess

import pytest
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from chestnet_site.faults import StorageFull
from diagnosis import services
from diagnosis.models import Case, Image, Prediction
from tests.support.full_disk import Disk, _Filling, full_disk, stored_files
from tests.support.images import png_bytes

pytestmark = pytest.mark.django_db
FOLDERS = ("originals", "previews", "heatmaps")


def _named_by_rows() -> set[str]:
    names = set(Image.objects.values_list("original", flat=True))
    names |= set(Image.objects.values_list("preview", flat=True))
    names |= set(Prediction.objects.values_list("heatmap", flat=True))
    return names - {""}


def _files_match_rows(settings) -> bool:
    return stored_files(settings.MEDIA_ROOT, *FOLDERS) == _named_by_rows()


def test_a_write_that_fills_the_disk_removes_its_part_and_says_the_storage_is_full(settings):
    from django.core.files.storage import FileSystemStorage, default_storage

    full_disk(settings, room=1000)
    with pytest.raises(StorageFull) as full:
        default_storage.save("originals/a.bin", ContentFile(b"x" * 5000))
    assert full.value.errno == errno.ENOSPC
    assert stored_files(settings.MEDIA_ROOT) == set()
    # Django's own storage keeps the part it wrote, under a name no row learns (the issue).
    Disk.room = 1000
    django_storage = FileSystemStorage(location=settings.MEDIA_ROOT)
    with pytest.raises(OSError):
        django_storage.save("originals/b.bin", _Filling(ContentFile(b"x" * 5000)))
    assert stored_files(settings.MEDIA_ROOT) == {"originals/b.bin"}


def _post(way: str, client, images: list[bytes]):
    files = [SimpleUploadedFile(f"{i}.png", data) for i, data in enumerate(images)]
    if way == "api":
        return client.post("/api/v1/cases/", {"images": files}, format="multipart")
    return client.post(reverse("case_new"), {"urgency": "routine", "images": files})


@pytest.mark.parametrize("way", ["api", "form"])
def test_uploads_once_the_disk_is_full_are_a_503_and_leave_no_file_without_its_row(
    way, settings, clinician, client_for, api_client_for
):
    files = [png_bytes(160, 160, seed=seed) for seed in range(5)]
    # Room for three uploads and the first file of the fourth, not its second.
    full_disk(settings, room=sum(map(len, files[:4])) + len(files[4]) // 2)
    client = api_client_for(clinician) if way == "api" else client_for(clinician)
    for data in files[:3]:
        assert _post(way, client, [data]).status_code in (201, 302)
    response = _post(way, client, files[3:])
    assert response.status_code == 503 and response["Retry-After"] == "60"
    body = response.content.decode()
    assert "image store is full; nothing was saved" in body
    assert str(settings.MEDIA_ROOT) not in body and "Traceback" not in body
    if way == "api":
        assert response["Content-Type"] == "application/json"
    else:
        assert "<h1>Service unavailable</h1>" in body
    assert Case.objects.count() == 3 and Image.objects.count() == 3
    assert _files_match_rows(settings)  # the fourth upload's first file was deleted again


@pytest.mark.parametrize("way", ["api", "form"])
def test_a_temporary_folder_that_fills_while_an_upload_arrives_is_a_503(
    way, settings, clinician, client_for, api_client_for, monkeypatch
):
    from django.core.files.uploadhandler import TemporaryFileUploadHandler

    def full(self, raw_data, start):
        raise OSError(errno.ENOSPC, "No space left on device")

    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 100  # every upload spools to a temporary file
    monkeypatch.setattr(TemporaryFileUploadHandler, "receive_data_chunk", full)
    client = api_client_for(clinician) if way == "api" else client_for(clinician)
    response = _post(way, client, [png_bytes(160, 160)])
    assert response.status_code == 503 and "full" in response.content.decode()
    assert not Case.objects.exists()


def test_the_500_page_of_a_fault_met_before_any_view_is_the_503_of_a_full_store(rf):
    from chestnet_site.views import error_500

    try:
        raise OSError(errno.ENOSPC, "No space left on device: '/srv/media/originals/x.bin'")
    except OSError:
        page = error_500(rf.post("/cases/new/"))
        api = error_500(rf.post("/api/v1/cases/"))
    assert page.status_code == api.status_code == 503
    assert b"/srv/media" not in page.content + api.content
    assert json.loads(api.content)["detail"].startswith("ChestNet's image store is full")
    try:
        raise RuntimeError("a bug")
    except RuntimeError:
        assert error_500(rf.get("/api/v1/cases/")).status_code == 500


def test_an_instance_received_while_the_disk_is_full_leaves_no_file_and_no_row(settings):
    data = _instance()
    full_disk(settings, room=len(data) // 2)
    with pytest.raises(StorageFull):
        services.instance_receive(data=data, source="dimse", source_ae="MODALITY")
    assert not Case.objects.exists() and stored_files(settings.MEDIA_ROOT) == set()
    Disk.room = 10 * len(data)  # space freed: the sender's retry is stored
    received = services.instance_receive(data=data, source="dimse", source_ae="MODALITY")
    assert received.created and _files_match_rows(settings)


def _instance(padding: int = 0) -> bytes:
    from devtools import dicom_files

    ds = dicom_files.radiograph(pixels=dicom_files.chest_pixels(side=64))
    return dicom_files.to_bytes(ds) + b"\0" * padding


def _uploaded(owner, n: int) -> list[Image]:
    """n images uploaded in n cases, queued for the worker."""
    for i in range(n):
        validated = services.image_validate(name="a.png", data=png_bytes(96 + i, 80))
        services.case_create(owner=owner, images=[validated])
    return list(Image.objects.order_by("pk"))


def _drawing():
    import numpy as np

    from tests.support.fakes import FakePredictor, FakeResult

    pixels = np.linspace(0, 1, 80 * 96, dtype=np.float32).reshape(80, 96)
    return FakePredictor(result=FakeResult(image=pixels, heatmap=pixels[::8, ::8]))


def test_the_workers_previews_and_heatmaps_on_a_full_disk_leave_nothing_and_are_retried(
    settings, clinician
):
    images = _uploaded(clinician, 2)
    full_disk(settings, room=3000)  # the first preview fits, not the rest
    with pytest.raises(StorageFull):
        services.inference_run(image_id=images[0].pk, token="t", predictor_loader=_drawing)
    assert stored_files(settings.MEDIA_ROOT, "previews", "heatmaps") == set()
    assert set(Image.objects.values_list("status", flat=True)) == {"processing"}
    assert _files_match_rows(settings)
    Disk.room = 10**7  # space freed: the retry (same task, same token) stores both
    outcome = services.inference_run(image_id=images[0].pk, token="t", predictor_loader=_drawing)
    assert outcome == "done (batch of 2)" and _files_match_rows(settings)


def test_a_task_whose_retries_end_on_a_full_disk_fails_its_images_saying_so(
    settings, clinician, monkeypatch
):
    from diagnosis import tasks

    images = _uploaded(clinician, 1)
    full_disk(settings, room=0)
    monkeypatch.setattr("diagnosis.inference.get_predictor", _drawing)
    result = tasks.inference_run_task.apply(args=[images[0].pk], task_id="t", retries=3)
    assert isinstance(result.result, StorageFull)
    image = Image.objects.get()
    assert (image.status, image.error) == ("failed", services.FAILED_STORAGE_FULL)
    assert _files_match_rows(settings)


def test_api_errors_are_json_without_a_traceback_with_debug_on(
    settings, clinician, api_client_for, monkeypatch
):
    """`make run` turns DEBUG on: Django's debug page (HTML, with settings and paths) must
    not reach an API client."""
    settings.DEBUG = True

    def bug(**kwargs):
        raise RuntimeError(f"a bug near {settings.MEDIA_ROOT}")

    monkeypatch.setattr(services, "case_create", bug)
    client = api_client_for(clinician)
    client.raise_request_exception = False
    response = _post("api", client, [png_bytes(160, 160)])
    assert response.status_code == 500 and response["Content-Type"] == "application/json"
    assert response.json() == {
        "detail": "An internal error occurred; it has been logged. Try again, or contact support."
    }
    missing = client.get("/api/v1/no-such-thing/")
    assert missing.status_code == 404 and missing.json() == {"detail": "Not found."}


@pytest.fixture
def tmpfs(tmp_path):
    """A 1 MB tmpfs, the smallest full disk there is (root only: mount(8))."""
    folder = tmp_path / "tmpfs"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip() or 'not root'}")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.mark.django_db(transaction=True)
def test_a_real_full_disk_is_a_503_for_uploads_and_instances_and_leaves_nothing(
    tmpfs, settings, clinician, api_client_for
):
    settings.MEDIA_ROOT = tmpfs
    client = api_client_for(clinician)
    uploads = 0
    for seed in range(8):  # 1 MB: three or four of these fit
        response = _post("api", client, [png_bytes(512, 512, seed=seed)])
        if response.status_code == 503:
            break
        assert response.status_code == 201
        uploads += 1
    assert 0 < uploads < 8 and "full" in response.json()["detail"]
    assert Case.objects.count() == uploads and _files_match_rows(settings)
    with pytest.raises(StorageFull):  # what the DICOM listener answers Out of Resources to
        services.instance_receive(data=_instance(padding=600_000), source="dimse")
    assert Case.objects.count() == uploads and _files_match_rows(settings)
