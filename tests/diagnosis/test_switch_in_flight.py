"""A model switch while an image is in analysis: the result of the version withdrawn in the
meantime is never stored; the image is queued again for the active version."""

from __future__ import annotations

import pytest
from django.core.files.base import ContentFile

from diagnosis import services
from diagnosis.models import AuditEvent, Case, Image, Prediction
from registry.models import ModelVersion
from tests.support import factories
from tests.support.fakes import FakePredictor, FakeResult, fake_refusal
from tests.support.images import png_bytes

pytestmark = pytest.mark.django_db


def _version(name: str, *, active: bool) -> ModelVersion:
    return ModelVersion.objects.create(
        version=name,
        origin=ModelVersion.Origin.TRAINED,
        artifact=f"models/{name}.keras",
        card_file=f"models/{name}.json",
        card={"version": name, "threshold": 0.5},
        sha256="0" * 64,
        is_active=active,
    )


def _switch_to(name: str) -> None:
    ModelVersion.objects.update(is_active=False)
    ModelVersion.objects.filter(version=name).update(is_active=True)


class SwitchingPredictor(FakePredictor):
    """Analyses with `version` while an admin switches to `to` (before the result is stored)."""

    def __init__(self, version: str, to: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.version, self.to = version, to

    def predict(self, data, *, heatmap=True, age_years=None):
        _switch_to(self.to)
        result = super().predict(data, heatmap=heatmap, age_years=age_years)
        if result.refused:
            return fake_refusal()
        return FakeResult(model_version=self.version)


def _queued_stat_image() -> Image:
    case = factories.CaseFactory(urgency=Case.Urgency.STAT)
    return factories.ImageFactory(case=case, original=ContentFile(png_bytes(), name="x.png"))


def test_a_result_of_a_version_withdrawn_during_analysis_is_dropped_and_queued_again(
    enqueued, django_capture_on_commit_callbacks
):
    _version("v1", active=True)
    _version("v2", active=False)
    image = _queued_stat_image()
    predictor = SwitchingPredictor("v1", to="v2")
    with django_capture_on_commit_callbacks(execute=True):
        outcome = services.inference_run(
            image_id=image.pk, token="t1", predictor_loader=lambda: predictor
        )
    assert outcome == "skipped"
    image.refresh_from_db()
    assert (image.status, image.claim_token, image.attempts) == ("queued", "", 0)
    assert not Prediction.objects.filter(image=image).exists()
    assert enqueued == [image.pk]
    assert image.case.status == Case.Status.QUEUED
    event = AuditEvent.objects.get(action=AuditEvent.Action.REANALYSED)
    assert event.case_id == image.case_id and "v1 withdrawn" in event.detail

    # The next delivery runs with v2, which is still active: stored.
    predictor = SwitchingPredictor("v2", to="v2")
    assert (
        services.inference_run(image_id=image.pk, token="t2", predictor_loader=lambda: predictor)
        == "done"
    )
    image.refresh_from_db()
    assert image.prediction.model_version == "v2" and image.attempts == 1


def test_a_refusal_by_a_withdrawn_version_is_dropped_too(enqueued):
    _version("fake-1", active=True)  # the version fake refusals name
    _version("v2", active=False)
    image = _queued_stat_image()
    predictor = SwitchingPredictor("fake-1", to="v2", result=fake_refusal())
    services.inference_run(image_id=image.pk, token="t1", predictor_loader=lambda: predictor)
    image.refresh_from_db()
    assert (image.status, image.refusal_reason) == ("queued", "")


def test_results_of_an_unregistered_version_are_stored_as_they_are(enqueued):
    """No registry yet (the shipped default serves): nothing to compare with."""
    image = _queued_stat_image()
    services.inference_run(image_id=image.pk, token="t1", predictor_loader=lambda: FakePredictor())
    image.refresh_from_db()
    assert image.status == "done" and image.prediction.model_version == "fake-1"
