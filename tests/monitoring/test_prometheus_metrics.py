"""`/metrics`: the Prometheus text format, counted in the database at each scrape (web and
workers are separate processes), read with the metrics token or from an allowed address,
never showing patient data."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import OperationalError
from django.test import Client
from django.utils import timezone
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from diagnosis.models import AuditEvent, Image, PriorPrediction
from dicomnet.models import OutboundObject, SendAttempt
from monitoring import prometheus
from registry.models import ModelVersion
from tests.support import factories

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]
TOKEN = "metrics-token-for-tests-0123456789abcdef"
PATIENT_ID = "PAT-ZX9Q-4471"


@pytest.fixture(autouse=True)
def _media_in_tmp(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture(autouse=True)
def _defaults(settings):
    settings.CHESTNET_METRICS_TOKEN = ""
    settings.CHESTNET_METRICS_ALLOWED_IPS = ["127.0.0.1", "::1"]


@pytest.fixture
def scraper() -> Client:
    """A client as Prometheus is one: no session, and CSRF checked as in production."""
    return Client(enforce_csrf_checks=True)


def _families(response) -> dict:
    assert response.status_code == 200, response.content
    text = response.content.decode()
    return {family.name: family for family in text_string_to_metric_families(text)}


def _values(family, sample_name: str | None = None) -> dict[tuple, float]:
    """{sorted label pairs: value} of the family's samples named `sample_name`."""
    wanted = sample_name or family.name
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for sample in family.samples
        if sample.name == wanted
    }


def _prediction(version: str, timings: dict, **image) -> None:
    factories.PredictionFactory(model_version=version, timings=timings, **image)


def _prior(version: str, timings: dict) -> None:
    image = factories.ImageFactory(status=Image.Status.DONE)
    PriorPrediction.objects.create(
        image=image,
        probability=0.3,
        label="NORMAL",
        threshold=0.5,
        model_version=version,
        timings=timings,
        predicted_at=timezone.now(),
    )


def _refused(reason: str, version: str, **image) -> None:
    factories.ImageFactory(
        status=Image.Status.REFUSED,
        refusal_reason=reason,
        refusal_message="Looks like a photograph.",
        refusal_model_version=version,
        **image,
    )


def _outbound(status: str, *, attempts: list[str]) -> None:
    now = timezone.now()
    outbound = OutboundObject.objects.create(
        key=f"image-{status}-{OutboundObject.objects.count()}",
        kind=OutboundObject.Kind.FINDINGS,
        destination="PACS@127.0.0.1:104",
        study_instance_uid="1.2.3",
        series_instance_uid="1.2.3.4",
        sop_instance_uid=f"1.2.3.4.{OutboundObject.objects.count()}",
        series_number=9001,
        status=status,
        next_attempt_at=now,
    )
    for outcome in attempts:
        SendAttempt.objects.create(outbound=outbound, started_at=now, outcome=outcome)


# --- what it counts -------------------------------------------------------------------------


def test_analyses_are_counted_by_model_version_with_their_latency(scraper):
    _prediction("v1", {"worker_total": 40.0, "total": 999.0})  # 0.04 s: worker_total wins
    _prediction("v1", {"total": 300.0})  # 0.3 s: an older row without worker_total
    _prediction("v1", {"worker_total": 1500.0})  # 1.5 s
    _prediction("v2", {"worker_total": 70_000.0})  # 70 s: beyond the last bucket
    _prediction("v2", {"decode": 1.0})  # no wall time: counted, not timed
    _prior("v0", {"worker_total": 100.0})  # replaced by a re-analysis: still counted; 0.1 s

    families = _families(scraper.get("/metrics"))

    analysed = _values(families["chestnet_images_analysed"], "chestnet_images_analysed_total")
    assert analysed == {
        (("model_version", "v0"),): 1,
        (("model_version", "v1"),): 3,
        (("model_version", "v2"),): 2,
    }
    latency = families["chestnet_inference_latency_seconds"]
    assert latency.type == "histogram"
    buckets = _values(latency, "chestnet_inference_latency_seconds_bucket")
    bounds = ["0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "5.0", "10.0", "30.0", "60.0", "+Inf"]
    expected = {
        "v0": [0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
        "v1": [1, 1, 1, 2, 2, 3, 3, 3, 3, 3, 3],
        "v2": [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
    }
    for version, counts in expected.items():
        found = [buckets[(("le", bound), ("model_version", version))] for bound in bounds]
        assert found == counts, version
    counts = _values(latency, "chestnet_inference_latency_seconds_count")
    sums = _values(latency, "chestnet_inference_latency_seconds_sum")
    assert counts == {
        (("model_version", "v0"),): 1,
        (("model_version", "v1"),): 3,
        (("model_version", "v2"),): 1,
    }
    assert sums[(("model_version", "v1"),)] == pytest.approx(1.84)
    assert sums[(("model_version", "v2"),)] == pytest.approx(70.0)


def test_refusals_failures_and_the_queue_are_counted(scraper):
    _refused("not_chest_radiograph", "v1")
    _refused("not_chest_radiograph", "v1")
    _refused("outside_intended_use", "v2")
    factories.ImageFactory(status=Image.Status.FAILED, error="Worker lost")
    factories.ImageFactory(status=Image.Status.QUEUED)
    factories.ImageFactory(status=Image.Status.QUEUED)
    factories.ImageFactory(status=Image.Status.PROCESSING)
    _prediction("v1", {"worker_total": 10.0})  # done: in none of these

    families = _families(scraper.get("/metrics"))

    refused = _values(families["chestnet_images_refused"], "chestnet_images_refused_total")
    assert refused == {
        (("model_version", "v1"), ("reason", "not_chest_radiograph")): 2,
        (("model_version", "v2"), ("reason", "outside_intended_use")): 1,
    }
    assert _values(families["chestnet_images_failed"]) == {(): 1}
    assert _values(families["chestnet_queue_depth"]) == {
        (("status", "queued"),): 2,
        (("status", "processing"),): 1,
    }


def test_the_pacs_outbox_is_counted_by_state_with_its_failed_attempts(scraper):
    _outbound("pending", attempts=["failed"])
    _outbound("failed", attempts=["failed", "failed"])
    _outbound("failed", attempts=[])
    _outbound("sent", attempts=["failed", "sent"])

    families = _families(scraper.get("/metrics"))

    assert _values(families["chestnet_pacs_outbox"]) == {
        (("state", "pending"),): 1,
        (("state", "sending"),): 0,
        (("state", "sent"),): 1,
        (("state", "superseded"),): 0,
        (("state", "failed"),): 2,
    }
    failures = families["chestnet_pacs_outbox_failures"]
    assert _values(failures, "chestnet_pacs_outbox_failures_total") == {(): 4}


def test_the_active_model_is_named_with_its_threshold(scraper):
    before = _families(scraper.get("/metrics"))
    assert before["chestnet_active_model_info"].samples == []  # nothing registered is active

    ModelVersion.objects.create(
        version="v2",
        origin=ModelVersion.Origin.TRAINED,
        artifact="models/v2.keras",
        card_file="models/v2.json",
        sha256="0" * 64,
        is_active=True,
        active_threshold=0.42,
    )
    after = _families(scraper.get("/metrics"))

    info = _values(after["chestnet_active_model_info"])
    assert info == {(("threshold", "0.42"), ("version", "v2")): 1}


def test_an_empty_database_gives_zeros_and_empty_families(scraper):
    families = _families(scraper.get("/metrics"))

    assert _values(families["chestnet_images_failed"]) == {(): 0}
    assert set(_values(families["chestnet_queue_depth"]).values()) == {0}
    assert families["chestnet_images_analysed"].samples == []
    assert families["chestnet_inference_latency_seconds"].samples == []


def test_no_patient_identifier_appears(scraper):
    case = factories.CaseFactory(patient_id=PATIENT_ID, indication="Cough since Tuesday")
    _prediction("v1", {"worker_total": 10.0}, image__case=case, image__name="PA chest QX71")
    _refused("not_chest_radiograph", "v1", case=case)

    text = scraper.get("/metrics").content.decode()

    assert "chestnet_images_analysed_total" in text
    for private in (PATIENT_ID, "Cough since Tuesday", "PA chest QX71", "photograph"):
        assert private not in text


# --- the hook for other apps' gauges -----------------------------------------------------------


@pytest.fixture
def registered():
    """`registered(source)`: a gauge source for this test only."""
    sources = []

    def register(source):
        sources.append(prometheus.gauge_source_register(source))

    yield register
    for source in sources:
        prometheus.gauge_source_unregister(source)


def test_registered_gauge_sources_are_exposed_as_gauges(scraper, registered):
    registered(
        lambda: [
            ("chestnet_monitoring_sensitivity", "Sensitivity.", {"model_version": "v1"}, 0.93),
            ("chestnet_monitoring_sensitivity", "Sensitivity.", {"model_version": "v2"}, 0.9),
            ("chestnet_monitoring_alerts", "Open alerts.", {}, 2),
        ]
    )

    families = _families(scraper.get("/metrics"))

    sensitivity = families["chestnet_monitoring_sensitivity"]
    assert sensitivity.type == "gauge"
    assert sensitivity.documentation == "Sensitivity."
    assert _values(sensitivity) == {
        (("model_version", "v1"),): 0.93,
        (("model_version", "v2"),): 0.9,
    }
    assert _values(families["chestnet_monitoring_alerts"]) == {(): 2.0}


def test_a_failing_or_invalid_gauge_source_is_left_out_not_the_scrape(scraper, registered):
    def broken():
        raise OperationalError("the figures' table is gone")

    registered(broken)
    registered(
        lambda: [
            ("not a name", "Bad name.", {}, 1),
            ("chestnet_queue_depth", "Taken by a built-in.", {}, 99),
            ("chestnet_monitoring_bad_label", "Bad label.", {"1st": "x"}, 1),
            ("chestnet_monitoring_psi", "Drift.", {"feature": "modality"}, 0.05),
        ]
    )

    families = _families(scraper.get("/metrics"))

    assert _values(families["chestnet_monitoring_psi"]) == {(("feature", "modality"),): 0.05}
    assert _values(families["chestnet_queue_depth"]) == {
        (("status", "queued"),): 0,
        (("status", "processing"),): 0,
    }
    assert "chestnet_monitoring_bad_label" not in families


# --- who may read it ------------------------------------------------------------------------


def test_loopback_may_scrape_by_default_without_a_login_and_nothing_is_audited(scraper):
    response = scraper.get("/metrics")
    response_v6 = scraper.get("/metrics", REMOTE_ADDR="::1")

    assert response.status_code == response_v6.status_code == 200
    assert response["Content-Type"] == CONTENT_TYPE_LATEST
    assert "no-store" in response["Cache-Control"]
    assert not response.cookies  # no session, no CSRF cookie
    assert not AuditEvent.objects.exists()


def test_an_address_outside_the_allow_list_is_refused_in_one_plain_line(scraper):
    response = scraper.get("/metrics", REMOTE_ADDR="10.1.2.3")

    assert response.status_code == 403
    assert response["Content-Type"].startswith("text/plain")
    assert response.content.decode().count("\n") == 1
    assert "no-store" in response["Cache-Control"]


def test_networks_in_the_allow_list_admit_their_addresses(scraper, settings):
    settings.CHESTNET_METRICS_ALLOWED_IPS = ["10.0.0.0/8", "192.0.2.7"]

    assert scraper.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 200
    assert scraper.get("/metrics", REMOTE_ADDR="::ffff:10.1.2.3").status_code == 200
    assert scraper.get("/metrics", REMOTE_ADDR="192.0.2.7").status_code == 200
    assert scraper.get("/metrics", REMOTE_ADDR="192.0.2.8").status_code == 403
    assert scraper.get("/metrics").status_code == 403  # loopback is no longer listed


def test_the_right_bearer_token_opens_it_from_any_address(scraper, settings):
    settings.CHESTNET_METRICS_TOKEN = TOKEN

    right = scraper.get("/metrics", REMOTE_ADDR="10.1.2.3", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    wrong = scraper.get("/metrics", REMOTE_ADDR="10.1.2.3", HTTP_AUTHORIZATION=f"Bearer {TOKEN}x")
    other_scheme = scraper.get("/metrics", REMOTE_ADDR="10.1.2.3", HTTP_AUTHORIZATION=TOKEN)

    assert right.status_code == 200
    assert wrong.status_code == 403
    assert other_scheme.status_code == 403


def test_without_a_token_setting_no_token_opens_it(scraper):
    for header in ("Bearer ", "Bearer", f"Bearer {TOKEN}"):
        response = scraper.get("/metrics", REMOTE_ADDR="10.1.2.3", HTTP_AUTHORIZATION=header)
        assert response.status_code == 403, header


def test_a_request_relayed_by_a_proxy_needs_the_token(scraper, settings):
    """Behind the reverse proxy every request arrives from loopback: its address says
    nothing about the sender, and X-Forwarded-For is whatever the sender wrote."""
    settings.CHESTNET_METRICS_TOKEN = TOKEN
    relayed = {"HTTP_X_FORWARDED_FOR": "127.0.0.1"}

    assert scraper.get("/metrics", **relayed).status_code == 403
    with_token = scraper.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}", **relayed)
    assert with_token.status_code == 200


def test_only_get_and_head_are_answered(scraper):
    assert scraper.post("/metrics").status_code == 405
    assert scraper.put("/metrics").status_code == 405
    head = scraper.head("/metrics")
    assert head.status_code == 200
    assert head["Content-Type"] == CONTENT_TYPE_LATEST


def test_a_database_fault_is_a_503_line_not_an_error_page(scraper, monkeypatch):
    def down():
        raise OperationalError("could not connect to server")

    monkeypatch.setattr(prometheus, "active_model", down)

    response = scraper.get("/metrics")

    assert response.status_code == 503
    assert response["Content-Type"].startswith("text/plain")
    assert response.content.decode() == "Metrics unavailable: the database cannot be reached.\n"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("CHESTNET_METRICS_ALLOWED_IPS", "127.0.0.1,not-an-address", "must list addresses"),
        ("CHESTNET_METRICS_TOKEN", "short", "at least 32 characters"),
    ],
)
def test_settings_refuse_a_bad_allow_list_or_a_short_token(variable, value, message):
    environment = {**os.environ, variable: value}
    result = subprocess.run(
        [sys.executable, "-c", "import chestnet_site.settings"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert message in result.stderr
