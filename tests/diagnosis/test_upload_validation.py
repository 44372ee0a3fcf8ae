"""Every bad upload is refused with a clear message and nothing is saved."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from diagnosis.models import Case, Image
from tests.support.images import bomb_png, dicom_bytes, gif_bytes, jpeg_bytes, png_bytes

pytestmark = pytest.mark.django_db

BAD_FILES = {
    "empty": (b"", "The file is empty"),
    "text": (b"patient notes, not an image" * 10, "not a readable PNG, JPEG or DICOM"),
    "truncated": (png_bytes()[:200], "not a readable PNG, JPEG or DICOM"),
    "gif": (gif_bytes(), "GIF images are not accepted"),
    "bomb": (bomb_png(), "more than the"),
    "dicom-no-pixels": (dicom_bytes(with_pixels=False), "no pixel data"),
    "dicom-truncated": (dicom_bytes()[:400], "DICOM"),
}


@pytest.mark.parametrize("kind", BAD_FILES)
def test_form_rejects_bad_file_and_saves_nothing(client_for, clinician, kind):
    data, message = BAD_FILES[kind]
    response = client_for(clinician).post(
        reverse("case_new"),
        {
            "urgency": "routine",
            "images": [
                SimpleUploadedFile("good.png", png_bytes()),
                SimpleUploadedFile(f"{kind}.bin", data),
            ],
        },
    )
    assert response.status_code == 400
    assert message in response.content.decode()
    assert Case.objects.count() == 0 and Image.objects.count() == 0


@pytest.mark.parametrize("kind", BAD_FILES)
def test_api_rejects_bad_file_with_400_json(api_client_for, clinician, kind):
    data, message = BAD_FILES[kind]
    response = api_client_for(clinician).post(
        "/api/v1/cases/", {"images": [SimpleUploadedFile(f"{kind}.bin", data)]}, format="multipart"
    )
    assert response.status_code == 400
    assert message in response.json()["detail"]
    assert Case.objects.count() == 0


def test_oversized_upload_is_refused(client_for, clinician, settings):
    settings.CHESTNET_MAX_UPLOAD_MB = 1
    big = SimpleUploadedFile("big.png", b"\x89PNG" + b"0" * (1024 * 1024 + 10))
    response = client_for(clinician).post(
        reverse("case_new"), {"urgency": "routine", "images": [big]}
    )
    assert response.status_code == 400 and "larger than the 1 MB limit" in response.content.decode()
    assert Case.objects.count() == 0


def test_form_without_images_is_refused(client_for, clinician):
    response = client_for(clinician).post(reverse("case_new"), {"urgency": "routine"})
    assert response.status_code == 400 and "Add at least one image" in response.content.decode()


def test_png_jpeg_and_dicom_are_accepted_together(client_for, clinician, enqueued):
    files = [
        SimpleUploadedFile("a.png", png_bytes()),
        SimpleUploadedFile("b.jpg", jpeg_bytes()),
        SimpleUploadedFile("c.dcm", dicom_bytes()),
    ]
    response = client_for(clinician).post(
        reverse("case_new"), {"urgency": "routine", "images": files}
    )
    assert response.status_code == 302 and Image.objects.count() == 3
