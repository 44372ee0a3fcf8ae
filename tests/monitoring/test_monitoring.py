"""Monitoring: the figures on a known set of signed cases (refused images, "other" and
"indeterminate" among them), the API and page, score drift, and alerts raised, shown,
acknowledged (audited) and cleared."""

from __future__ import annotations

import random
from datetime import datetime, time, timedelta

import numpy as np
import pytest
from django.utils import timezone

from diagnosis import selectors as clinical
from diagnosis import services
from diagnosis.models import AuditEvent, Case, Image, Review
from ml import metrics
from monitoring import alerts, figures
from monitoring import selectors as monitoring_selectors
from monitoring.models import Alert
from registry.models import ModelVersion
from tests.support import factories

VERSION = "site-1"
THRESHOLD = 0.5


def _card(reference_counts: list[int] | None = None) -> dict:
    counts = reference_counts or [30, 10, 5, 5, 5, 5, 5, 5, 10, 30]
    return {
        "version": VERSION,
        "threshold": THRESHOLD,
        "validation": {
            "calibration": [
                {"low": i / 10, "high": (i + 1) / 10, "count": c} for i, c in enumerate(counts)
            ]
        },
    }


@pytest.fixture
def version(db):
    return ModelVersion.objects.create(
        version=VERSION,
        origin=ModelVersion.Origin.SHIPPED,
        artifact="models/site-1.keras",
        card_file="models/site-1.json",
        card=_card(),
        sha256="0" * 64,
        is_active=True,
        active_threshold=THRESHOLD,
    )


def _analysed_case(probability: float, *, manufacturer: str = "Acme", source: str = "upload"):
    case = factories.CaseFactory(source=source, source_ae="MODALITY1" if source != "upload" else "")
    factories.PredictionFactory(
        image__case=case,
        image__manufacturer=manufacturer,
        image__modality="DX",
        image__width=2000,
        image__height=2500,
        image__bits_stored=12,
        probability=probability,
        label="PNEUMONIA" if probability >= THRESHOLD else "NORMAL",
        threshold=THRESHOLD,
        model_version=VERSION,
    )
    return services.case_refresh_status(case_id=case.pk)


def _sign(case: Case, radiologist, finding: str) -> None:
    services.case_claim(case=case, user=radiologist)
    ai_flagged = case.images.first().prediction.label == "PNEUMONIA"
    services.review_sign(
        case=case,
        author=radiologist,
        agrees_with_ai=(finding == "pneumonia") == ai_flagged,
        finding=finding,
        report="Signed for monitoring.",
    )


@pytest.fixture
def signed_set(version, radiologist):
    """30 signed analysed cases with random scores and findings, 4 "other" or
    "indeterminate", 3 unsigned, 2 refused images (one in a signed case)."""
    rng = random.Random(7)
    cases = []
    for i in range(30):
        case = _analysed_case(rng.random(), manufacturer="Acme" if i % 3 else "Zeta")
        _sign(case, radiologist, rng.choice(["normal", "pneumonia"]))
        cases.append(case)
    for finding in ("other", "indeterminate", "other", "indeterminate"):
        _sign(_analysed_case(rng.random()), radiologist, finding)
    for _ in range(3):
        _analysed_case(rng.random())
    factories.refused_case(reason="not_chest_radiograph")
    Image.objects.filter(refusal_model_version="fake-1").update(refusal_model_version=VERSION)
    refused_signed = _analysed_case(0.9)
    factories.ImageFactory(
        case=refused_signed,
        status=Image.Status.REFUSED,
        refusal_reason="outside_intended_use",
        refusal_model_version=VERSION,
    )
    _sign(services.case_refresh_status(case_id=refused_signed.pk), radiologist, "pneumonia")
    cases.append(refused_signed)
    return cases


def _expected(cases: list[Case]) -> dict[str, int]:
    """tp/fp/tn/fn from the cases' own AI labels and final findings."""
    counts = {"tp": 0, "fp": 0, "tn": 0, "fn": 0}
    for case in cases:
        finding = Review.objects.filter(case=case).order_by("-version").first().finding
        for image in case.images.filter(status=Image.Status.DONE):
            flagged = image.prediction.label == "PNEUMONIA"
            truth = finding == "pneumonia"
            counts[("t" if flagged == truth else "f") + ("p" if flagged else "n")] += 1
    return counts


def test_the_api_counts_equal_the_cases_own_labels_and_findings(
    signed_set, admin_user, api_client_for
):
    response = api_client_for(admin_user).get(
        "/api/v1/monitoring/", {"version": VERSION, "period": "day"}
    )
    assert response.status_code == 200, response.content
    data = response.json()
    expected = _expected(signed_set)
    assert sum(expected.values()) == 31
    for group in (data["summary"], data["periods"][-1]):
        assert group["confusion"] == expected
        tp, fp, tn, fn = (expected[k] for k in ("tp", "fp", "tn", "fn"))
        assert group["sensitivity"] == pytest.approx(tp / (tp + fn))
        assert group["specificity"] == pytest.approx(tn / (tn + fp))
        assert group["ppv"] == pytest.approx(tp / (tp + fp))
        assert group["sensitivity_ci95"] == pytest.approx(metrics.wilson_interval(tp, tp + fn))
        assert group["agreement"] == pytest.approx((tp + tn) / 31)
    summary = data["summary"]
    # 30 + 4 + 3 + 1 analysed, 2 refused; "other"/"indeterminate" signed but not judged.
    assert (summary["analysed"], summary["refused"], summary["images"]) == (38, 2, 40)
    assert summary["refused_by_reason"] == {"not_chest_radiograph": 1, "outside_intended_use": 1}
    assert summary["signed"] == 35 and summary["judged"] == 31
    assert summary["signed_by_finding"]["other"] == 2
    assert summary["signed_by_finding"]["indeterminate"] == 2
    zeta = data["by_manufacturer"]["Zeta"]
    assert zeta["analysed"] == 10
    assert (
        sum(data["by_manufacturer"][m]["confusion"]["tp"] for m in data["by_manufacturer"])
        == (expected["tp"])
    )
    assert data["query"]["version"] == VERSION
    assert data["reliability"]["count"] == 31
    assert data["inputs"]["bits_stored"]["12"] == 38


def test_an_unknown_version_or_bad_period_is_a_400_and_clinicians_are_refused(
    signed_set, admin_user, clinician, api_client_for
):
    client = api_client_for(admin_user)
    assert client.get("/api/v1/monitoring/", {"version": "nope"}).status_code == 400
    assert client.get("/api/v1/monitoring/", {"period": "year"}).status_code == 400
    assert client.get("/api/v1/monitoring/", {"start": "2026-13-01"}).status_code == 400
    assert api_client_for(clinician).get("/api/v1/monitoring/").status_code == 403
    assert api_client_for(None).get("/api/v1/monitoring/").status_code in (401, 403)


def test_the_page_shows_figures_and_plots_to_radiologists_only(
    signed_set, radiologist, clinician, client_for
):
    client = client_for(clinician)
    assert client.get("/monitoring/").status_code == 403
    client = client_for(radiologist)
    response = client.get("/monitoring/", {"period": "day"})
    assert response.status_code == 200
    html = response.content.decode()
    assert html.count("<svg") == 2 and "Reliability" in html
    expected = _expected(signed_set)
    row = f"{expected['tp']} / {expected['fp']} / {expected['tn']} / {expected['fn']}"
    assert row in html
    assert "Acknowledge" not in html  # radiologists see alerts, admins acknowledge them
    assert client.get("/monitoring/", {"end": "yesterday"}).status_code == 400


def test_patient_identifiers_stay_out_of_the_report(signed_set, admin_user, api_client_for):
    patient_ids = {case.patient_id for case in signed_set}
    text = api_client_for(admin_user).get("/api/v1/monitoring/").content.decode()
    assert not [pid for pid in patient_ids if pid in text]


def test_periods_split_the_span_by_day_and_week(signed_set, admin_user, api_client_for):
    old = timezone.now() - timedelta(days=3)
    first = signed_set[0].images.first()
    Image.objects.filter(pk=first.pk).update(result_at=old)
    data = (
        api_client_for(admin_user)
        .get("/api/v1/monitoring/", {"period": "day", "start": str((old).date())})
        .json()
    )
    assert len(data["periods"]) == 4
    assert data["periods"][0]["analysed"] == 1
    assert sum(p["analysed"] for p in data["periods"]) == data["summary"]["analysed"]
    weeks = api_client_for(admin_user).get("/api/v1/monitoring/", {"period": "week"}).json()
    assert len(weeks["periods"]) == 8


def _outcome_facts(row) -> tuple:
    return (row.image_id, row.status, row.model_version, row.probability, row.finding)


def _reference_outcomes() -> list[tuple]:
    """What image_outcomes must say, written the plain way: every finished image of the
    version in Python, its time and its case's latest finding, oldest first."""
    rows = []
    for image in Image.objects.filter(status__in=["done", "refused"]).order_by("pk"):
        prediction = getattr(image, "prediction", None) if image.status == "done" else None
        version = prediction.model_version if prediction else image.refusal_model_version
        if version != VERSION:
            continue
        at = image.result_at
        latest = Review.objects.filter(case_id=image.case_id).order_by("-version").first()
        finding = latest.finding if latest else None
        probability = prediction.probability if prediction else None
        rows.append((at, image.pk, (image.pk, image.status, version, probability, finding)))
    return [facts for _, _, facts in sorted(rows)]


def test_the_outcomes_cut_by_the_database_are_those_of_the_whole_list(signed_set, radiologist):
    """The windows the alerts and the page read (the last N, the judged, a span, the signed)
    are cut in SQL: each equals the plain reading of every image cut in Python, with the
    latest report's finding (an amendment counts) and a refusal never carrying an old
    result."""
    amended = signed_set[0]
    before = Review.objects.filter(case=amended).get().finding
    services.review_amend(
        case=amended,
        author=radiologist,
        agrees_with_ai=True,
        finding="normal" if before == "pneumonia" else "pneumonia",
        report="Amended.",
        reason="Second look at the film.",
    )
    refused = Image.objects.filter(status="refused", case=signed_set[-1]).get()
    factories.PredictionFactory(image=refused, model_version="other-1", probability=0.99)
    Image.objects.filter(pk=refused.pk).update(result_at=timezone.now() + timedelta(hours=1))
    every = clinical.image_outcomes(model_version=VERSION)
    assert [_outcome_facts(row) for row in every] == _reference_outcomes()
    facts = {row.image_id: row for row in every}
    assert facts[refused.pk].probability is None and facts[refused.pk].model_version == VERSION

    last = clinical.image_outcomes(model_version=VERSION, last=7)
    assert [_outcome_facts(r) for r in last] == [_outcome_facts(r) for r in every[-7:]]
    judged = clinical.image_outcomes(model_version=VERSION, judged_only=True, last=10)
    expected = [r for r in every if r.status == "done" and r.truth is not None][-10:]
    assert [_outcome_facts(r) for r in judged] == [_outcome_facts(r) for r in expected]
    signed = clinical.image_outcomes(model_version=VERSION, signed_only=True)
    assert [r.image_id for r in signed] == [r.image_id for r in every if r.finding is not None]
    middle = every[len(every) // 3].at
    later = clinical.image_outcomes(model_version=VERSION, since=middle)
    earlier = clinical.image_outcomes(model_version=VERSION, until=middle)
    assert [r.image_id for r in later] == [r.image_id for r in every if r.at >= middle]
    assert [r.image_id for r in earlier] == [r.image_id for r in every if r.at < middle]
    assert monitoring_selectors.filter_choices(ModelVersion.objects.get()) == {
        "source": sorted({r.source_name for r in every}),
        "modality": sorted({r.modality for r in every} - {""}),
        "manufacturer": sorted({r.manufacturer for r in every} - {""}),
    }


def test_score_drift_is_near_zero_for_the_reference_and_large_when_shifted():
    reference = figures.Reference(np.array([30, 10, 5, 5, 5, 5, 5, 5, 10, 30], float), "validation")

    class Row:
        def __init__(self, p):
            self.probability = p

    rng = np.random.default_rng(0)
    same = [
        Row(p)
        for p in np.concatenate(
            [
                rng.uniform(lo, lo + 0.1, n)
                for lo, n in zip(
                    np.arange(0, 1, 0.1), [300, 100, 50, 50, 50, 50, 50, 50, 100, 300], strict=True
                )
            ]
        )
    ]
    shifted = [Row(p) for p in rng.uniform(0.3, 0.7, 500)]
    assert figures.score_drift(same, reference)["psi"] < 0.02
    drift = figures.score_drift(shifted, reference)
    assert drift["psi"] > 1.0 and drift["ks"] > 0.3
    assert figures.score_drift(shifted, None)["psi"] is None


def test_an_alert_is_raised_shown_acknowledged_audited_and_cleared(
    version, radiologist, admin_user, client_for, settings
):
    settings.CHESTNET_ALERT_MIN_IMAGES = 5
    settings.CHESTNET_ALERT_MIN_SPECIFICITY = 0.8
    settings.CHESTNET_ALERT_MAX_PSI = 100.0  # ten scores at 0.1 and 0.9 are far from any reference
    # Ten normal children, six of them flagged: specificity 0.4.
    for i in range(10):
        _sign(_analysed_case(0.9 if i < 6 else 0.1), radiologist, "normal")
    open_alerts = alerts.alerts_check()
    assert [a.kind for a in open_alerts] == [Alert.Kind.SPECIFICITY]
    assert open_alerts[0].value == pytest.approx(0.4) and open_alerts[0].window == 10

    from django.test import Client

    assert Client().get("/healthz").json()["monitoring"] == {
        "open_alerts": ["specificity"],
        "unacknowledged": 1,
    }
    client = client_for(admin_user)
    page = client.get("/mlops/").content.decode()
    assert "1 monitoring alert" in page
    alert = open_alerts[0]
    url = f"/monitoring/alerts/{alert.pk}/acknowledge/"
    assert client_for(radiologist).post(url, {"note": "x"}).status_code == 403
    client = client_for(admin_user)
    client.post(url, {"note": "\u200b  "})
    alert.refresh_from_db()
    assert alert.acknowledged_at is None
    response = client.post(url, {"note": "Reviewing the threshold with the radiologists."})
    assert response.status_code == 302
    alert.refresh_from_db()
    assert alert.acknowledged_by == admin_user
    event = AuditEvent.objects.get(action="alert_acknowledged")
    assert event.actor == admin_user and "Reviewing the threshold" in event.detail
    assert "monitoring alert" not in client.get("/mlops/").content.decode()
    assert Client().get("/healthz").json()["monitoring"]["unacknowledged"] == 0
    # Eight more correctly normal children: 12 of 18, specificity 0.67, still under 0.8.
    for _ in range(8):
        _sign(_analysed_case(0.1), radiologist, "normal")
    assert alerts.alerts_check()[0].pk == alert.pk
    settings.CHESTNET_ALERT_MIN_SPECIFICITY = 0.6
    assert alerts.alerts_check() == []
    alert.refresh_from_db()
    assert alert.cleared_at is not None
    assert Alert.objects.count() == 1


def test_a_refusal_rate_alert_and_drift_alert(version, settings):
    settings.CHESTNET_ALERT_MIN_IMAGES = 5
    for _ in range(4):
        factories.refused_case()
    Image.objects.filter(refusal_model_version="fake-1").update(refusal_model_version=VERSION)
    for _ in range(6):
        _analysed_case(0.5)
    kinds = {alert.kind for alert in alerts.alerts_check()}
    assert kinds == {Alert.Kind.REFUSAL_RATE, Alert.Kind.SCORE_DRIFT}


def test_metrics_carry_the_monitoring_figures_and_open_alerts(
    version, radiologist, client, settings
):
    from prometheus_client.parser import text_string_to_metric_families

    settings.CHESTNET_ALERT_MIN_IMAGES = 5
    settings.CHESTNET_ALERT_MAX_PSI = 100.0
    for i in range(10):
        _sign(_analysed_case(0.9 if i < 6 else 0.1), radiologist, "normal")
    alerts.alerts_check()
    text = client.get("/metrics", REMOTE_ADDR="127.0.0.1").content.decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    labels = (("model_version", VERSION),)
    assert samples[("chestnet_monitoring_specificity", labels)] == pytest.approx(0.4)
    assert samples[("chestnet_monitoring_specificity_limit", labels)] == pytest.approx(0.75)
    assert ("chestnet_monitoring_sensitivity", labels) not in samples  # no positives yet
    assert samples[("chestnet_monitoring_alerts_open", (("kind", "specificity"),))] == 1
    assert samples[("chestnet_monitoring_alerts_open", (("kind", "sensitivity"),))] == 0


def test_the_input_drift_baseline_counted_by_the_database_is_the_mix_of_the_earlier_images(
    signed_set, admin_user, api_client_for
):
    """The baseline (every image before the span) is read as counted groups, not as rows:
    it equals the plain mix of those rows, unknown sizes and makers included."""
    rng = random.Random(3)
    for image in Image.objects.filter(status__in=["done", "refused"]):
        longer = rng.choice([None, 400, 900, 2000, 2500, 3500])
        Image.objects.filter(pk=image.pk).update(
            width=None if longer is None else longer - rng.randint(0, 50),
            height=longer if rng.random() < 0.8 else None,
            bits_stored=rng.choice([None, 8, 12, 16]),
            modality=rng.choice(["", "CR", "DX"]),
            result_at=timezone.now() - timedelta(days=rng.randint(0, 20)),
        )
    since = timezone.now() - timedelta(days=9)
    before = clinical.image_outcomes(model_version=VERSION, until=since)
    counted = clinical.input_facts_counted(model_version=VERSION, until=since)
    assert len(before) > 5 and sum(group[-1] for group in counted) == len(before)
    assert figures.input_mix_counted(counted) == figures.input_mix(before)
    assert figures.input_mix(before)["size"].get("unknown")  # a side unknown is unknown

    start = (timezone.localtime(since) + timedelta(days=1)).date()
    data = api_client_for(admin_user).get("/api/v1/monitoring/", {"start": str(start)}).json()
    cut = clinical.input_facts_counted(
        model_version=VERSION, until=timezone.make_aware(datetime.combine(start, time.min))
    )
    assert data["input_drift"]["baseline_images"] == sum(group[-1] for group in cut) > 0


def test_the_latest_results_are_read_by_walking_the_result_time_index(signed_set):
    """The alerts' windows (the last N, the last N judged) must not sort every finished
    image: SQLite without statistics, as `make run` keeps it, chose the status index and
    sorted them all until the reads selected by the result time alone. (PostgreSQL picks
    its plan from statistics a small test table does not have: SQLite only.)"""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    if connection.vendor != "sqlite":
        pytest.skip("the plan is checked on SQLite; PostgreSQL's depends on its statistics")
    for window in ({"last": 200}, {"last": 200, "judged_only": True}):
        with CaptureQueriesContext(connection) as captured:
            clinical.image_outcomes(model_version=VERSION, **window)
        (query,) = captured.captured_queries
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN QUERY PLAN " + query["sql"])
            plan = " | ".join(str(row[-1]) for row in cursor.fetchall())
        assert "USING INDEX image_result_at" in plan and "TEMP B-TREE" not in plan, plan
