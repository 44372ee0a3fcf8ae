"""Uploads stay on disk: a request over FILE_UPLOAD_MAX_MEMORY_SIZE is spooled to temporary
files by Django, and the upload rules and the store read those files a header and a chunk at
a time, never whole. The memory of a real web process under two concurrent requests of 20 x
45 MB is measured by scripts/upload_memory.py (docs/benchmarks.md)."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile, TemporaryUploadedFile

from devtools import dicom_files
from diagnosis import services
from diagnosis.models import Image

pytestmark = pytest.mark.django_db
MB = 1024 * 1024


def _large_dicom(megabytes: int) -> bytes:
    side = int((megabytes * MB / 2) ** 0.5)
    pixels = np.random.default_rng(7).integers(0, 4096, size=(side, side), dtype=np.uint16)
    return dicom_files.to_bytes(dicom_files.radiograph(pixels=pixels))


def _spooled(name: str, data: bytes) -> TemporaryUploadedFile:
    """An upload as Django's TemporaryFileUploadHandler leaves it: in a temporary file."""
    upload = TemporaryUploadedFile(name, "application/dicom", len(data), None)
    upload.write(data)
    upload.seek(0)
    return upload


def test_a_request_over_the_memory_threshold_reaches_the_upload_rules_on_disk(
    settings, clinician, api_client_for, monkeypatch
):
    assert settings.FILE_UPLOAD_MAX_MEMORY_SIZE <= 1 * MB  # 20 files x 1 MB at most in memory
    seen = []
    real = services.uploads_validate

    def spy(files):
        seen.extend(type(upload).__name__ for upload in files)
        return real(files)

    monkeypatch.setattr(services, "uploads_validate", spy)
    data = _large_dicom(2)
    response = api_client_for(clinician).post(
        "/api/v1/cases/",
        {"images": [SimpleUploadedFile("a.dcm", data), SimpleUploadedFile("b.dcm", data)]},
        format="multipart",
    )
    assert response.status_code == 201
    assert seen == ["TemporaryUploadedFile", "TemporaryUploadedFile"]


def test_checking_and_storing_large_uploads_reads_them_in_chunks(clinician, settings):
    """Four 20 MB files spooled to disk: checked from their headers, stored from their
    temporary files in 64 kB chunks. Before, each was read whole (`upload.read()`) and
    kept until the request ended."""
    data = _large_dicom(20)
    uploads = [_spooled(f"{i}.dcm", data) for i in range(4)]
    del data
    tracemalloc.start()
    try:
        validated = services.uploads_validate(uploads)
        case = services.case_create(owner=clinician, images=validated)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 * MB, f"{peak / MB:.1f} MB held to check and store 80 MB"
    originals = [image.original for image in Image.objects.filter(case=case)]
    assert [original.size for original in originals] == [uploads[0].size] * 4
    with originals[0].open("rb") as stored, open(uploads[0].temporary_file_path(), "rb") as sent:
        assert stored.read() == sent.read()


def test_an_instance_received_from_a_file_is_read_in_chunks(tmp_path):
    """The listener and STOW-RS hand over the file the instance was spooled to."""
    path = tmp_path / "instance.dcm"
    path.write_bytes(_large_dicom(20))
    tracemalloc.start()
    try:
        received = services.instance_receive(data=path, source="dimse", source_ae="MODALITY")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert received.created and peak < 2 * MB, f"{peak / MB:.1f} MB held for a 20 MB instance"
    with Image.objects.get().original.open("rb") as stored:
        assert stored.read() == path.read_bytes()
