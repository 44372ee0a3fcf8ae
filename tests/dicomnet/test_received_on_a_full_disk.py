"""The DICOM network on a full disk: STOW-RS answers 503 (the instances stored before the
disk filled are kept, with their rows; sent again, they are recognised), the listener
answers Out of Resources; neither leaves a file without its row. And both store a large
instance from the file it was spooled to, never holding it whole."""

from __future__ import annotations

import tracemalloc

import pytest
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.sop_class import DigitalXRayImageStorageForPresentation as DX

from devtools import dicom_files
from devtools.ports import free_port
from devtools.users import token_for
from diagnosis.models import Image
from dicomnet import sop
from dicomnet.listener import serve
from tests.support.full_disk import Disk, full_disk, stored_files

BOUNDARY = "chestnet-full-disk"
MULTIPART = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'


def _instance(side: int = 64):
    return dicom_files.radiograph(pixels=dicom_files.chest_pixels(side=side))


def _body(*instances: bytes) -> bytes:
    parts = [
        b"--" + BOUNDARY.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n" + part + b"\r\n"
        for part in instances
    ]
    return b"".join([*parts, b"--" + BOUNDARY.encode() + b"--\r\n"])


def _stow(client, user, *instances: bytes, body: bytes = b""):
    body = body or _body(*instances)
    return client.generic(
        "POST",
        "/dicomweb/studies",
        body,
        content_type=MULTIPART,
        HTTP_ACCEPT="application/dicom+json",
        HTTP_AUTHORIZATION=f"Token {token_for(user)}",
    )


def _originals_match_rows(settings) -> bool:
    names = set(Image.objects.values_list("original", flat=True))
    return stored_files(settings.MEDIA_ROOT, "originals") == names


@pytest.mark.django_db
def test_stow_on_a_full_disk_is_a_503_keeps_what_was_stored_and_the_resend_completes(
    client, clinician, settings
):
    first, second = (dicom_files.to_bytes(_instance()) for _ in range(2))
    full_disk(settings, room=len(first) + len(second) // 2)
    response = _stow(client, clinician, first, second)
    assert response.status_code == 503 and response["Retry-After"] == "60"
    assert "image store is full; nothing was saved" in response.json()["detail"]
    assert Image.objects.count() == 1 and _originals_match_rows(settings)
    Disk.room = 10**7  # space freed: the sender sends the study again
    again = _stow(client, clinician, first, second)
    assert again.status_code == 200 and len(again.json()["00081199"]["Value"]) == 2
    assert Image.objects.count() == 2 and _originals_match_rows(settings)


@pytest.fixture
def listener(settings):
    port = free_port()
    server = serve(host="127.0.0.1", port=port, block=False)
    yield port
    server.shutdown()


def _c_store(port: int, ds) -> int:
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(DX, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", port, ae_title="CHESTNET")
    try:
        return int(assoc.send_c_store(ds).Status)
    finally:
        assoc.release()


@pytest.mark.django_db(transaction=True)
def test_c_store_on_a_full_disk_is_out_of_resources_and_leaves_nothing(listener, settings):
    ds = _instance()
    full_disk(settings, room=1000)
    assert _c_store(listener, ds) == sop.OUT_OF_RESOURCES
    assert not Image.objects.exists() and stored_files(settings.MEDIA_ROOT) == set()
    Disk.room = 10**7
    assert _c_store(listener, ds) == sop.SUCCESS
    assert Image.objects.count() == 1 and _originals_match_rows(settings)


def _large(megabytes: int) -> bytes:
    import numpy as np

    side = int((megabytes * 1024 * 1024 / 2) ** 0.5)
    pixels = np.random.default_rng(5).integers(0, 4096, size=(side, side), dtype=np.uint16)
    return dicom_files.to_bytes(dicom_files.radiograph(pixels=pixels))


@pytest.mark.django_db
def test_stow_stores_a_large_instance_from_its_spooled_file(client, clinician, tmp_path):
    """The body is spooled to disk and the instance stored from there in chunks: this
    process holds little more than the test client's copy of the body."""
    body = _body(_large(24))
    token_for(clinician)  # imports and first queries outside the measure
    tracemalloc.start()
    try:
        response = _stow(client, clinician, body=body)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert response.status_code == 200 and Image.objects.count() == 1
    # The test client copies the request into its fake socket (24 MB); the view adds only
    # chunks: before, it read the part whole and pydicom copied it (peak 3 x the body).
    extra = peak - len(body)
    assert extra < 8 * 2**20, f"{extra / 2**20:.1f} MB besides the client's copy of 24 MB"
