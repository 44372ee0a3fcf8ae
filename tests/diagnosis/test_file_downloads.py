"""Files served to the browser and the API: an original downloads under a name a
workstation opens (case-<id>-image-<n> with the format's extension and Content-Type), never
the storage's random `.bin` name; previews and heatmaps are shown inline, unnamed."""

from __future__ import annotations

import pytest
from django.urls import reverse

from diagnosis import services
from tests.support import factories
from tests.support.images import dicom_bytes, png_bytes

pytestmark = pytest.mark.django_db


def _case(owner, *files: tuple[str, bytes]):
    validated = [services.image_validate(name=name, data=data) for name, data in files]
    return services.case_create(owner=owner, images=validated, patient_id="P-1", age=4)


def test_originals_download_as_case_image_number_with_their_format(client_for, clinician):
    case = _case(clinician, ("front.png", png_bytes()), ("b.dcm", dicom_bytes()))
    first, second = case.images.order_by("pk")
    client = client_for(clinician)
    png = client.get(reverse("image_file", args=[first.pk, "original"]))
    dcm = client.get(reverse("image_file", args=[second.pk, "original"]))
    assert png["Content-Type"] == "image/png"
    assert png["Content-Disposition"] == f'attachment; filename="case-{case.pk}-image-1.png"'
    assert dcm["Content-Type"] == "application/dicom"
    assert dcm["Content-Disposition"] == f'attachment; filename="case-{case.pk}-image-2.dcm"'
    assert b"".join(dcm.streaming_content) == second.original.open("rb").read()
    assert ".bin" not in png["Content-Disposition"] + dcm["Content-Disposition"]


def test_the_api_serves_the_same_name(api_client_for, clinician):
    case = _case(clinician, ("x.dcm", dicom_bytes()))
    image = case.images.get()
    response = api_client_for(clinician).get(f"/api/v1/images/{image.pk}/original/")
    assert response.status_code == 200
    assert response["Content-Disposition"].endswith(f'filename="case-{case.pk}-image-1.dcm"')


def test_previews_are_inline_and_carry_no_storage_name(client_for, clinician):
    case = factories.awaiting_review_case(owner=clinician)
    image = case.images.get()
    response = client_for(clinician).get(reverse("image_file", args=[image.pk, "preview"]))
    assert response.status_code == 200
    assert "Content-Disposition" not in response
    assert "no-store" in response["Cache-Control"]
