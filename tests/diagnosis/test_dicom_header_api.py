"""GET /api/v1/images/<id>/header/: the DICOM header of an image's original for the viewer's
header panel: who may read it, which identifiers they see, what is left out, the audit."""

from __future__ import annotations

import numpy as np
import pytest
from django.core.files.base import ContentFile
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from devtools import dicom_files
from diagnosis.models import AuditEvent
from tests.support import factories

pytestmark = pytest.mark.django_db


def _dicom() -> bytes:
    ds = dicom_files.radiograph(pixels=np.full((8, 6), 1000, dtype=np.uint16))
    ds.OtherPatientIDs = "OTHER-77"
    ds.PatientAddress = "1 Hospital Road"
    ds.PixelSpacing = [0.2, 0.2]
    ds.ImageComments = "x" * 1000
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "399348003", "SCT", "PA"
    ds.ViewCodeSequence = Sequence([code])
    ds.add_new(0x00091010, "LO", "vendor secret")
    ds.private_block(0x0009, "ACME", create=True)
    return dicom_files.to_bytes(ds)


def _image(owner, data: bytes | None = None, original_format: str = "dicom"):
    return factories.ImageFactory(
        case__owner=owner,
        original=ContentFile(data if data is not None else _dicom(), name="x.dcm"),
        original_format=original_format,
    )


def _header(client, image) -> dict:
    response = client.get(f"/api/v1/images/{image.pk}/header/")
    assert response.status_code == 200, response.content
    return response.json()


def _by_keyword(header: dict) -> dict[str, dict]:
    return {row["keyword"]: row for row in header["elements"] if row["keyword"]}


def test_radiologist_reads_the_header_with_the_patient_identifiers(
    api_client_for, clinician, radiologist
):
    image = _image(clinician)
    response = api_client_for(radiologist).get(f"/api/v1/images/{image.pk}/header/")
    assert response.status_code == 200
    assert response["Cache-Control"] == "private, no-store"
    header = response.json()
    rows = _by_keyword(header)
    assert header["identifiers_shown"] is True and header["omitted"] == 0
    assert rows["Modality"]["value"] == "DX" and rows["Modality"]["vr"] == "CS"
    assert rows["Modality"]["tag"] == "(0008,0060)"
    assert rows["PatientID"]["value"] == "PAT-0042"
    assert rows["PatientName"]["value"] == "Test^Child"
    assert rows["OtherPatientIDs"]["value"] == "OTHER-77"
    assert rows["PixelSpacing"]["value"] == "0.2\\0.2"
    assert rows["TransferSyntaxUID"]["value"]  # the file meta comes first
    assert header["elements"][0]["tag"].startswith("(0002,")


def test_the_header_never_carries_pixel_data(api_client_for, clinician, radiologist):
    header = _header(api_client_for(radiologist), _image(clinician))
    assert "PixelData" not in _by_keyword(header)
    assert all(not row["tag"].startswith("(7FE0,") for row in header["elements"])


def test_a_clinician_reads_their_own_cases_header_with_identifiers(api_client_for, clinician):
    header = _header(api_client_for(clinician), _image(clinician))
    assert header["identifiers_shown"] is True
    assert _by_keyword(header)["PatientID"]["value"] == "PAT-0042"


def test_an_owner_whose_role_was_withdrawn_reads_nothing(api_client_for):
    """Without a role there is no case to read, not even one's own (nor an integration's
    service account the studies it stored)."""
    former = factories.UserFactory(username="former-clinician")  # role withdrawn
    image = _image(former)
    response = api_client_for(former).get(f"/api/v1/images/{image.pk}/header/")
    assert response.status_code == 404
    assert "PAT-0042" not in response.content.decode()


def test_another_clinician_gets_404(api_client_for, clinician, clinician2):
    image = _image(clinician)
    response = api_client_for(clinician2).get(f"/api/v1/images/{image.pk}/header/")
    assert response.status_code == 404
    assert not AuditEvent.objects.filter(action=AuditEvent.Action.VIEWED_FILE).exists()


def test_anonymous_requests_get_401(api_client_for, clinician):
    image = _image(clinician)
    assert api_client_for().get(f"/api/v1/images/{image.pk}/header/").status_code == 401


def test_a_png_original_has_no_header(api_client_for, clinician, radiologist):
    image = factories.ImageFactory(case__owner=clinician)  # a PNG
    response = api_client_for(radiologist).get(f"/api/v1/images/{image.pk}/header/")
    assert response.status_code == 404
    assert "not a DICOM file" in response.json()["detail"]


def test_reading_the_header_is_audited_once_per_few_minutes(api_client_for, clinician, radiologist):
    image = _image(clinician)
    client = api_client_for(radiologist)
    _header(client, image)
    _header(client, image)  # the panel opened again: coalesced
    events = AuditEvent.objects.filter(action=AuditEvent.Action.VIEWED_FILE)
    assert [(e.actor, e.case_ref, e.detail) for e in events] == [
        (radiologist, image.case_id, f"header of image {image.pk}")
    ]
    assert "PAT-0042" not in events.get().detail


def test_long_values_are_cut_and_sequences_shown_item_by_item(
    api_client_for, clinician, radiologist
):
    header = _header(api_client_for(radiologist), _image(clinician))
    rows = _by_keyword(header)
    comment = rows["ImageComments"]["value"]
    assert comment.endswith("(1000 characters)") and len(comment) < 300
    assert rows["ViewCodeSequence"]["value"] == "1 item"
    assert rows["CodeMeaning"] == {**rows["CodeMeaning"], "value": "PA", "depth": 1}


def test_an_original_missing_from_storage_is_a_422(api_client_for, clinician, radiologist):
    image = _image(clinician)
    image.original.storage.delete(image.original.name)
    response = api_client_for(radiologist).get(f"/api/v1/images/{image.pk}/header/")
    assert response.status_code == 422
    assert response.json()["detail"] == "The DICOM header could not be read."


def test_the_file_route_still_serves_originals(api_client_for, clinician, radiologist):
    image = _image(clinician)
    response = api_client_for(radiologist).get(f"/api/v1/images/{image.pk}/original/")
    assert response.status_code == 200 and response["Content-Type"] == "application/dicom"
