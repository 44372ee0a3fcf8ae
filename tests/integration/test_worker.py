"""Upload to stored result through a real broker, a real worker process and the real model
code (a tiny untrained artifact: the numbers mean nothing, the pipeline is what is tested)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts import roles
from chestnet_site.celery import app
from diagnosis import services
from diagnosis.models import Case, Image
from tests.support import factories
from tests.support.images import dicom_bytes, png_bytes

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _settled(case_id: int):
    case = Case.objects.get(pk=case_id)
    return case if case.status in (Case.Status.AWAITING_REVIEW, Case.Status.FAILED) else None


def test_upload_is_analysed_by_the_worker_and_stores_a_full_result(worker, wait):
    clinician = factories.UserFactory(username="it-clinician", role=roles.CLINICIAN)
    client = Client()
    client.force_login(clinician)
    response = client.post(
        reverse("case_new"),
        {
            "urgency": "urgent",
            "images": [
                SimpleUploadedFile("a.png", png_bytes(256, 256)),
                SimpleUploadedFile("b.dcm", dicom_bytes()),
            ],
        },
    )
    assert response.status_code == 302
    case = wait(lambda: _settled(Case.objects.get().pk))
    assert case.status == Case.Status.AWAITING_REVIEW
    for image in case.images.select_related("prediction"):
        prediction = image.prediction
        assert prediction.label in ("NORMAL", "PNEUMONIA")
        assert 0.0 <= prediction.probability <= 1.0
        assert prediction.model_version == "tiny-test-0" and prediction.threshold == 0.5
        assert prediction.heatmap and prediction.heatmap.size > 0
        assert {"decode", "heatmap", "worker_total"} <= set(prediction.timings)
    body = client.get(f"/api/v1/cases/{case.pk}/").json()
    assert body["status"] == "awaiting_review"
    heatmap = client.get(body["images"][0]["prediction"]["heatmap_url"])
    assert heatmap.status_code == 200 and heatmap["Content-Type"] == "image/png"


def test_case_saved_while_broker_was_down_is_analysed_once_it_is_back(worker, wait, monkeypatch):
    def broker_down(*args, **kwargs):
        raise ConnectionRefusedError("broker down")

    clinician = factories.UserFactory(username="it-clinician2", role=roles.CLINICIAN)
    validated = [services.image_validate(name="a.png", data=png_bytes(128, 128))]
    with monkeypatch.context() as patched:
        patched.setattr(app, "send_task", broker_down)
        case = services.case_create(owner=clinician, images=validated)
    assert Case.objects.get(pk=case.pk).status == Case.Status.QUEUED
    # What the periodic sweep (celery beat) does once the broker answers again.
    assert services.requeue_stale(now=timezone.now() + timedelta(minutes=5)) == 1
    assert wait(lambda: _settled(case.pk)).status == Case.Status.AWAITING_REVIEW


def test_duplicate_deliveries_store_one_prediction(worker, wait):
    image = factories.ImageFactory()
    for _ in range(3):
        services.image_enqueue(image_id=image.pk)
    wait(lambda: _settled(image.case_id))
    assert Image.objects.get(pk=image.pk).status == Image.Status.DONE
    from diagnosis.models import Prediction

    assert Prediction.objects.filter(image=image).count() == 1
