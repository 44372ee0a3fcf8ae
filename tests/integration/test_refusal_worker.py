"""Refusals end to end: uploads through the API with a token, a real worker process on the
shipped model (whatever artifact is the default), results read back through the API."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from accounts import roles
from diagnosis.models import Case, Prediction
from ml.artifact import DEFAULT_ARTIFACT, read_card
from tests.support import factories
from tests.support.factories import TEST_PASSWORD
from tests.support.images import photograph_jpeg

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

RADIOGRAPH = "chest_xray/train/NORMAL/IM-0115-0001.jpeg"
# Loading TensorFlow and the full-size model in a fresh worker child takes a while here.
SETTLE_TIMEOUT_S = 300


def _token_client(user) -> APIClient:
    client = APIClient()
    response = client.post(
        "/api/v1/auth/token/", {"username": user.username, "password": TEST_PASSWORD}
    )
    client.credentials(HTTP_AUTHORIZATION=f"Token {response.json()['token']}")
    return client


def _upload(client: APIClient, name: str, data: bytes) -> int:
    response = client.post(
        "/api/v1/cases/",
        {"images": [SimpleUploadedFile(name, data)], "age": "3"},
        format="multipart",
    )
    assert response.status_code == 201, response.content
    return response.json()["id"]


def _settled(client: APIClient, case_id: int) -> dict | None:
    body = client.get(f"/api/v1/cases/{case_id}/?poll=1").json()
    return body if body["status"] in (Case.Status.AWAITING_REVIEW, Case.Status.FAILED) else None


def test_worker_on_the_shipped_model_refuses_a_ct_slice_and_a_photograph(
    workers, wait, radiograph_set
):
    from pydicom.data import get_testdata_file

    workers(CHESTNET_MODEL_PATH="")  # empty: the worker loads the shipped default
    shipped = read_card(DEFAULT_ARTIFACT, verify=False)["version"]
    clinician = factories.UserFactory(username="it-refusal-clinician", role=roles.CLINICIAN)
    radiologist = factories.UserFactory(username="it-refusal-radiologist", role=roles.RADIOLOGIST)
    client = _token_client(clinician)
    browser = Client()  # the file routes are HTML views: a session, not a token
    browser.force_login(clinician)
    refused = {
        "ct": _upload(client, "ct.dcm", Path(get_testdata_file("CT_small.dcm") or "").read_bytes()),
        "photo": _upload(client, "holiday.jpg", photograph_jpeg()),
    }
    analysed = _upload(client, "chest.jpeg", (radiograph_set / RADIOGRAPH).read_bytes())

    for kind, case_id in refused.items():
        body = wait(lambda case_id=case_id: _settled(client, case_id), timeout=SETTLE_TIMEOUT_S)
        assert body["status"] == "awaiting_review", (kind, body)
        assert (body["ai_flagged"], body["max_probability"]) == (False, None), kind
        (image,) = body["images"]
        assert image["status"] == "refused" and image["prediction"] is None, (kind, image)
        assert image["refusal"]["reason"] == "not_chest_radiograph", (kind, image)
        assert image["refusal"]["message"].strip(), kind
        assert image["refusal"]["model_version"] == shipped, kind
        assert not Prediction.objects.filter(image_id=image["id"]).exists(), kind
        heatmap = browser.get(reverse("image_file", args=[image["id"], "heatmap"]))
        assert heatmap.status_code == 404, kind

    body = wait(lambda: _settled(client, analysed), timeout=SETTLE_TIMEOUT_S)
    (image,) = body["images"]
    assert image["status"] == "done" and image["refusal"] is None, image
    assert "uncertainty" in image["prediction"] and image["prediction"]["label"]
    assert image["prediction"]["model_version"] == shipped
    assert body["max_probability"] is not None

    reader = _token_client(radiologist)
    worklist = reader.get("/api/v1/worklist/").json()
    assert set(refused.values()) | {analysed} <= {row["id"] for row in worklist}
    # Nothing to agree with: the report is signed without an opinion on the AI (after the
    # claim signing requires).
    assert reader.post(f"/api/v1/cases/{refused['photo']}/claim/").status_code == 200
    signed = reader.post(
        f"/api/v1/cases/{refused['photo']}/review/",
        {"finding": "normal", "report": "Not a radiograph; repeat the examination."},
        format="json",
    )
    assert signed.status_code == 201, signed.content
    assert signed.json()["review"]["agrees_with_ai"] is None
