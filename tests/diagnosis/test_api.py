from __future__ import annotations

import io

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from rest_framework.test import APIClient

from diagnosis.models import Case, Image, Review
from ml.outcome import REFUSAL_REASONS
from tests.support import factories
from tests.support.factories import TEST_PASSWORD
from tests.support.images import png_bytes

pytestmark = pytest.mark.django_db


def test_token_auth_then_create_case(clinician, enqueued):
    client = APIClient()
    token = client.post(
        "/api/v1/auth/token/", {"username": clinician.username, "password": TEST_PASSWORD}
    ).json()["token"]
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    response = client.post(
        "/api/v1/cases/",
        {
            "images": [
                SimpleUploadedFile("a.png", png_bytes()),
                SimpleUploadedFile("b.png", png_bytes()),
            ],
            "urgency": "urgent",
            "age": "5",
        },
        format="multipart",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "queued" and body["urgency"] == "urgent" and len(body["images"]) == 2
    assert body["images"][0]["prediction"] is None and body["review"] is None


def test_wrong_password_is_a_400_with_a_message(clinician):
    response = APIClient().post(
        "/api/v1/auth/token/", {"username": clinician.username, "password": "no"}
    )
    assert response.status_code == 400 and "Unable to log in" in response.json()["detail"]


def test_unauthenticated_requests_get_401_json():
    response = APIClient().get("/api/v1/cases/")
    assert response.status_code == 401 and "detail" in response.json()


def test_case_json_has_the_prediction_contract(api_client_for, clinician):
    prediction = factories.PredictionFactory(image__case__owner=clinician)
    body = api_client_for(clinician).get(f"/api/v1/cases/{prediction.image.case_id}/").json()
    image = body["images"][0]
    assert set(image) >= {"id", "status", "error", "prediction"}
    assert set(image["prediction"]) >= {
        "probability",
        "label",
        "threshold",
        "model_version",
        "heatmap_url",
        "image_url",
    }


def test_analysed_image_json_carries_uncertainty_and_warnings_and_no_refusal(
    api_client_for, clinician
):
    prediction = factories.PredictionFactory(
        image__case__owner=clinician, uncertainty=0.04, warnings=["Low contrast."]
    )
    body = api_client_for(clinician).get(f"/api/v1/cases/{prediction.image.case_id}/").json()
    image = body["images"][0]
    assert image["status"] == "done" and image["refusal"] is None
    assert image["prediction"]["uncertainty"] == pytest.approx(0.04)
    assert image["prediction"]["warnings"] == ["Low contrast."]


def test_older_prediction_without_uncertainty_reads_as_null(api_client_for, clinician):
    prediction = factories.PredictionFactory(image__case__owner=clinician, uncertainty=None)
    body = api_client_for(clinician).get(f"/api/v1/cases/{prediction.image.case_id}/").json()
    assert body["images"][0]["prediction"]["uncertainty"] is None


def test_refused_image_json_says_why_and_has_no_prediction(api_client_for, clinician):
    case = factories.refused_case(
        owner=clinician, message="The image looks like a CT slice, not a radiograph."
    )
    body = api_client_for(clinician).get(f"/api/v1/cases/{case.pk}/").json()
    image = body["images"][0]
    assert image["status"] == "refused" and image["prediction"] is None
    assert image["refusal"] == {
        "reason": "not_chest_radiograph",
        "message": "The image looks like a CT slice, not a radiograph.",
        "explanation": REFUSAL_REASONS["not_chest_radiograph"],
        "model_version": "fake-1",
    }
    assert "label" not in image and "heatmap_url" not in image
    assert body["status"] == "awaiting_review"
    assert (body["max_probability"], body["ai_flagged"]) == (None, False)


def test_refused_case_is_on_the_worklist_unflagged_after_analysed_ones(api_client_for, radiologist):
    refused = factories.refused_case()
    analysed = factories.awaiting_review_case(probability=0.2)
    rows = api_client_for(radiologist).get("/api/v1/worklist/").json()
    assert [row["id"] for row in rows] == [analysed.pk, refused.pk]
    assert (rows[1]["status"], rows[1]["ai_flagged"], rows[1]["max_probability"]) == (
        "awaiting_review",
        False,
        None,
    )


def test_openapi_schema_describes_refusal_and_uncertainty(api_client_for, clinician):
    schema = api_client_for(clinician).get("/api/v1/schema/?format=json").json()
    components = schema["components"]["schemas"]
    assert {"reason", "message", "explanation"} <= set(components["Refusal"]["properties"])
    assert {"uncertainty", "warnings"} <= set(components["Prediction"]["properties"])
    assert "refusal" in components["Image"]["properties"]


def test_clinician_lists_own_and_cannot_get_others(api_client_for, clinician, clinician2):
    mine = factories.CaseFactory(owner=clinician)
    theirs = factories.CaseFactory(owner=clinician2)
    client = api_client_for(clinician)
    assert [c["id"] for c in client.get("/api/v1/cases/").json()] == [mine.pk]
    assert client.get(f"/api/v1/cases/{theirs.pk}/").status_code == 404


def test_worklist_and_review_are_for_radiologists_only(api_client_for, clinician, radiologist):
    case = factories.awaiting_review_case(owner=clinician)
    payload = {"agrees_with_ai": True, "finding": "pneumonia", "report": "RUL consolidation."}
    assert api_client_for(clinician).get("/api/v1/worklist/").status_code == 403
    assert (
        api_client_for(clinician)
        .post(f"/api/v1/cases/{case.pk}/review/", payload, format="json")
        .status_code
        == 403
    )
    client = api_client_for(radiologist)
    assert [c["id"] for c in client.get("/api/v1/worklist/").json()] == [case.pk]
    response = client.post(f"/api/v1/cases/{case.pk}/review/", payload, format="json")
    # Signing requires holding the claim; the API claims like the worklist does.
    assert response.status_code == 409 and "Claim the case" in response.json()["detail"]
    claimed = client.post(f"/api/v1/cases/{case.pk}/claim/")
    assert claimed.status_code == 200 and claimed.json()["claimed_by"] == radiologist.username
    response = client.post(f"/api/v1/cases/{case.pk}/review/", payload, format="json")
    assert response.status_code == 201 and response.json()["status"] == "reported"
    assert response.json()["review"]["finding"] == "pneumonia"


def test_review_with_bad_finding_is_400(api_client_for, radiologist):
    case = factories.awaiting_review_case()
    response = api_client_for(radiologist).post(
        f"/api/v1/cases/{case.pk}/review/",
        {"agrees_with_ai": True, "finding": "maybe", "report": "x"},
        format="json",
    )
    assert response.status_code == 400 and "finding" in response.json()["detail"]
    assert not Review.objects.exists() and Case.objects.get().status == "awaiting_review"


def test_all_refused_case_is_signed_without_an_ai_opinion_and_stores_null(
    api_client_for, radiologist
):
    case = factories.refused_case(claimed_by=radiologist)
    response = api_client_for(radiologist).post(
        f"/api/v1/cases/{case.pk}/review/",
        {"finding": "normal", "report": "Clear lungs."},
        format="json",
    )
    assert response.status_code == 201, response.content
    assert response.json()["review"]["agrees_with_ai"] is None
    assert Review.objects.get(case=case).agrees_with_ai is None


@pytest.mark.parametrize("encoding", ["json", "multipart"])
def test_analysed_case_without_an_ai_opinion_is_400(api_client_for, radiologist, encoding):
    case = factories.awaiting_review_case()
    response = api_client_for(radiologist).post(
        f"/api/v1/cases/{case.pk}/review/",
        {"finding": "normal", "report": "Clear lungs."},
        format=encoding,
    )
    assert response.status_code == 400 and "agrees_with_ai" in response.json()["detail"]
    assert not Review.objects.exists() and Case.objects.get().status == "awaiting_review"


def _legacy_cr_dicom() -> bytes:
    """A CR radiograph as older modalities write it: implicit VR little endian, no
    preamble and no file meta (so no 'DICM'); a rising gradient with a bright disc."""
    from pydicom import dcmwrite
    from pydicom.dataset import Dataset
    from pydicom.uid import generate_uid

    rows = np.arange(256, dtype=np.float64)[:, None]
    columns = np.arange(256, dtype=np.float64)[None, :]
    pixels = 200 + rows * 12 + 0 * columns
    pixels[(rows - 128) ** 2 + (columns - 128) ** 2 < 40**2] = 3900
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1"  # CR image storage
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = "CR"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelRepresentation = 0
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, implicit_vr=True, little_endian=True, enforce_file_format=False)
    return buffer.getvalue()


def test_legacy_dicom_upload_is_recorded_and_served_as_dicom(
    api_client_for, client_for, clinician, enqueued
):
    data = _legacy_cr_dicom()
    assert data[:2] == b"\x08\x00" and b"DICM" not in data[:200]
    response = api_client_for(clinician).post(
        "/api/v1/cases/", {"images": [SimpleUploadedFile("old.dcm", data)]}, format="multipart"
    )
    assert response.status_code == 201, response.content
    image = Image.objects.get(pk=response.json()["images"][0]["id"])
    assert image.original_format == "dicom"
    original = client_for(clinician).get(reverse("image_file", args=[image.pk, "original"]))
    assert original.status_code == 200 and original["Content-Type"] == "application/dicom"


def test_openapi_schema_is_served(api_client_for, clinician):
    response = api_client_for(clinician).get("/api/v1/schema/?format=json")
    assert response.status_code == 200
    assert "/api/v1/cases/{case_id}/review/" in response.json()["paths"]
