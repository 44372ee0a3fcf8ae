"""Two model switches one second apart while a STAT case is in a real worker: the result of
the version withdrawn during the analysis is never stored; the case is analysed again by
the version active when the last switch committed."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from accounts import roles
from devtools.tiny_artifact import write_tiny_artifact
from diagnosis import services
from diagnosis.models import AuditEvent, Case, Image, Prediction
from mlops import rollout
from registry import services as registry
from registry.models import ModelVersion
from tests.support import factories
from tests.support.images import png_bytes

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

SLOW = "tests.support.slow_predictor"


def _loaded(marker: Path) -> list[str]:
    return marker.read_text().split() if marker.exists() else []


def test_two_switches_one_second_apart_with_a_case_in_the_worker(workers, wait, tmp_path):
    versions = [
        registry.version_register(
            path=write_tiny_artifact(tmp_path / f"m{seed}" / "model.keras", seed=seed),
            origin=ModelVersion.Origin.TRAINED,
        )
        for seed in (0, 1, 2)
    ]
    registry.version_activate(version=versions[0], user=None)
    admin = factories.UserFactory(username="switch-admin", role=roles.ADMIN)
    clinician = factories.UserFactory(username="switch-clinician", role=roles.CLINICIAN)
    marker = tmp_path / "loaded.txt"
    workers(app=SLOW, SLOW_PREDICT_S="6", SLOW_MARKER=str(marker))

    validated = [services.image_validate(name="a.png", data=png_bytes(128, 128))]
    case = services.case_create(owner=clinician, images=validated, urgency=Case.Urgency.STAT)
    image = case.images.get()
    # The worker holds the image and has loaded tiny-test-0: the analysis is under way.
    assert wait(lambda: _loaded(marker) == ["tiny-test-0"], timeout=120)
    assert Image.objects.get(pk=image.pk).status == Image.Status.PROCESSING

    for version in versions[1:]:
        rollout.rollout_activate(version=version, user=admin, override_reason="switch drill")
        time.sleep(1)

    def analysed_by_active() -> Prediction | None:
        prediction = Prediction.objects.filter(image=image).first()
        return prediction if prediction and prediction.model_version == "tiny-test-2" else None

    assert wait(analysed_by_active, timeout=120)
    assert Prediction.objects.filter(image=image).count() == 1
    assert _loaded(marker) == ["tiny-test-0", "tiny-test-2"]
    image.refresh_from_db()
    assert image.status == Image.Status.DONE and image.attempts == 1
    assert AuditEvent.objects.filter(
        case=case, action=AuditEvent.Action.REANALYSED, detail__contains="tiny-test-0 withdrawn"
    ).exists()
