"""Inputs the model was not made for, through the API and the shipped model (not a fake):
they are recorded as refusals, reach the radiologist unflagged, and say why."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from diagnosis import services
from diagnosis.models import Case
from ml.outcome import REFUSAL_REASONS
from tests.support.factories import TEST_PASSWORD
from tests.support.images import photograph_jpeg

pytestmark = [pytest.mark.slow, pytest.mark.django_db]


@pytest.fixture(scope="module")
def shipped_predictor():
    from ml.predictor import Predictor

    return Predictor.load()


def _ct_dicom() -> bytes:
    from pydicom.data import get_testdata_file

    with open(get_testdata_file("CT_small.dcm"), "rb") as handle:
        return handle.read()


def _token_client(user) -> APIClient:
    client = APIClient()
    token = client.post(
        "/api/v1/auth/token/", {"username": user.username, "password": TEST_PASSWORD}
    ).json()["token"]
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


def test_ct_slice_and_photograph_are_refused_as_not_chest_radiographs(
    clinician, shipped_predictor, enqueued
):
    client = _token_client(clinician)
    response = client.post(
        "/api/v1/cases/",
        {
            "images": [
                SimpleUploadedFile("ct.dcm", _ct_dicom()),
                SimpleUploadedFile("holiday.jpg", photograph_jpeg()),
            ],
            "age": "3",  # inside the intended population: only the content is at issue
        },
        format="multipart",
    )
    assert response.status_code == 201, response.content
    case_id = response.json()["id"]
    outcomes = [
        services.inference_run(
            image_id=image["id"], token="sync", predictor_loader=lambda: shipped_predictor
        )
        for image in response.json()["images"]
    ]
    # The first image's task took both queued images as one batch; the second's found it done.
    assert outcomes == ["refused (batch of 2)", "skipped"]

    body = client.get(f"/api/v1/cases/{case_id}/").json()
    for image in body["images"]:
        assert image["status"] == "refused" and image["prediction"] is None
        assert image["refusal"]["reason"] == "not_chest_radiograph"
        assert image["refusal"]["explanation"] == REFUSAL_REASONS["not_chest_radiograph"]
        assert image["refusal"]["message"]
    assert body["status"] == Case.Status.AWAITING_REVIEW
    assert (body["max_probability"], body["ai_flagged"]) == (None, False)
