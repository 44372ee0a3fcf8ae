"""Site calibration (mlops.calibration, mlops.execute.calibration, `calibrate_model`): the
set of signed cases, the case-level split, the refusal below the minimum, the calibrated
version with its before/after figures on the held-back cases, and its roll-out through the
activation floors."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from chestnet_site.errors import ServiceError
from mlops import calibration, rollout
from mlops.calibration import CalibrationFilters
from mlops.execute.calibration import calibration_execute, decision_figures, rate
from mlops.models import Event, SiteCalibration
from registry import services as registry
from registry.models import ModelVersion
from tests.support.site_cases import SiteCase, site_cases

BASE = "tiny-test-0"  # the version of the tiny artifact (devtools.tiny_artifact)


@pytest.fixture
def make_cases(clinician, radiologist):
    def make(specs: list[SiteCase]) -> list[int]:
        return site_cases(specs, owner=clinician, radiologist=radiologist)

    return make


@pytest.fixture
def base_version(tiny_model_path, db) -> ModelVersion:
    """The tiny artifact registered and active: the version the site's cases were read by."""
    version = registry.version_register(path=tiny_model_path, origin="shipped")
    return registry.version_activate(version=version, user=None)


def overlapping(normal: int, pneumonia: int, *, seed: int = 0, **fields) -> list[SiteCase]:
    """Cases of one image whose scores overlap the way a real site's do: the model ranks
    them well, but its threshold of 0.2 flags many healthy children."""
    rng = np.random.default_rng(seed)
    cases = [
        SiteCase((float(p),), finding="normal", version=BASE, threshold=0.2, **fields)
        for p in rng.uniform(0.02, 0.5, normal)
    ]
    cases += [
        SiteCase((float(p),), finding="pneumonia", version=BASE, threshold=0.2, **fields)
        for p in rng.uniform(0.35, 0.99, pneumonia)
    ]
    return cases


def _everything(version: ModelVersion, **filters) -> calibration.CalibrationSet:
    return calibration.calibration_set(
        version=version, filters=CalibrationFilters(**filters), holdout=0.3, min_per_class=1
    )


# --- the set ---------------------------------------------------------------------------


def test_the_set_is_the_versions_analysed_images_with_a_normal_or_pneumonia_report(
    base_version, make_cases
):
    ids = make_cases(
        [
            SiteCase((0.1, 0.3), finding="normal", version=BASE),
            SiteCase((0.9,), finding="pneumonia", version=BASE),
            SiteCase((0.7,), finding="other", version=BASE),
            SiteCase((0.4,), finding="indeterminate", version=BASE),
            SiteCase((0.8,), finding="", version=BASE),  # not signed yet
            SiteCase((0.6, None), finding="pneumonia", version=BASE),  # one image refused
            SiteCase((0.2,), finding="normal", version="another-1"),
        ]
    )
    chosen = _everything(base_version)
    by_case = {}
    for item in chosen.items:
        by_case.setdefault(item.case_id, []).append((item.probability, item.truth))
    assert by_case == {
        ids[0]: [(0.1, 0), (0.3, 0)],
        ids[1]: [(0.9, 1)],
        ids[5]: [(0.6, 1)],
    }


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({}, {"a", "b", "c", "d", "e"}),
        ({"since": date(2026, 3, 1)}, {"b", "c", "d", "e"}),
        ({"until": date(2026, 3, 1)}, {"a", "b"}),  # inclusive: the whole day
        ({"since": date(2026, 3, 2), "until": date(2026, 3, 2)}, {"c", "d", "e"}),
        ({"source": "dimse"}, {"c", "d"}),
        ({"source": "MODALITY1"}, {"c"}),  # a calling AE title
        ({"modality": "DX"}, {"d"}),
        ({"manufacturer": "Other Corp"}, {"e"}),
    ],
)
def test_filters_narrow_the_set(base_version, make_cases, filters, expected):
    day = lambda d, h=12: timezone.make_aware(datetime(2026, 3, d, h))  # noqa: E731
    specs = {
        "a": SiteCase((0.11,), at=timezone.make_aware(datetime(2026, 2, 28, 23))),
        "b": SiteCase((0.12,), at=day(1, 23)),
        "c": SiteCase((0.13,), at=day(2), source="dimse", source_ae="MODALITY1"),
        "d": SiteCase((0.14,), at=day(2), source="dimse", source_ae="MODALITY2", modality="DX"),
        "e": SiteCase((0.15,), at=day(2), manufacturer="Other Corp"),
    }
    ids = make_cases([replace(spec, version=BASE) for spec in specs.values()])
    names = dict(zip(ids, specs, strict=True))
    chosen = _everything(base_version, **filters)
    assert {names[item.case_id] for item in chosen.items} == expected


def test_the_split_keeps_every_case_on_one_side_and_repeats(base_version, make_cases):
    make_cases([SiteCase((0.2, 0.3, 0.4), version=BASE) for _ in range(60)])
    first, again = _everything(base_version), _everything(base_version)
    sides: dict[int, set[bool]] = {}
    for item in first.items:
        sides.setdefault(item.case_id, set()).add(item.held_back)
    assert all(len(side) == 1 for side in sides.values())
    assert [i.held_back for i in first.items] == [i.held_back for i in again.items]
    assert first.counts()["held_back"]["cases"] + first.counts()["fitting"]["cases"] == 60


def test_about_the_holdout_share_of_cases_is_held_back():
    held = sum(calibration.held_back(case_id, holdout=0.3) for case_id in range(1, 5001))
    assert 0.28 < held / 5000 < 0.32
    assert calibration.held_back(17, holdout=0.3) == calibration.held_back(17, holdout=0.3)


# --- refusals --------------------------------------------------------------------------


def test_too_few_signed_cases_are_refused_before_anything_is_queued(
    base_version, make_cases, admin_user, queued
):
    make_cases(overlapping(20, 30))
    with pytest.raises(ServiceError) as refused:
        calibration.calibration_start(
            version=base_version, filters=CalibrationFilters(), user=admin_user
        )
    message = str(refused.value)
    assert "Not enough signed cases" in message and "each class needs at least 50" in message
    assert "NORMAL" in message and "PNEUMONIA" in message
    assert not SiteCalibration.objects.exists() and queued["calibration"] == []


def test_a_held_back_part_without_a_class_is_refused(base_version, make_cases, admin_user):
    make_cases(overlapping(0, 40))
    with pytest.raises(ServiceError, match="held-back part has no NORMAL image"):
        calibration.calibration_create(
            version=base_version, filters=CalibrationFilters(), user=admin_user, min_per_class=1
        )


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"holdout": 0.0}, "Hold back between 5% and 90%"),
        ({"holdout": 0.95}, "Hold back between 5% and 90%"),
        ({"target_sensitivity": 1.0}, "target sensitivity"),
        ({"min_per_class": 0}, "At least one image"),
    ],
)
def test_options_out_of_range_are_refused(base_version, admin_user, given, message):
    with pytest.raises(ServiceError, match=message):
        calibration.calibration_create(
            version=base_version, filters=CalibrationFilters(), user=admin_user, **given
        )


def test_dates_the_wrong_way_round_are_refused(base_version, admin_user):
    filters = CalibrationFilters(since=date(2026, 3, 2), until=date(2026, 3, 1))
    with pytest.raises(ServiceError, match="first date is after the last"):
        calibration.calibration_create(version=base_version, filters=filters, user=admin_user)


# --- the job ---------------------------------------------------------------------------


def test_start_records_the_split_and_queues_the_job(
    base_version, make_cases, admin_user, queued, django_capture_on_commit_callbacks
):
    make_cases(overlapping(40, 40))
    with django_capture_on_commit_callbacks(execute=True):
        job = calibration.calibration_start(
            version=base_version,
            filters=CalibrationFilters(modality="CR"),
            user=admin_user,
            min_per_class=10,
        )
    assert queued["calibration"] == [job.pk]
    assert job.status == "queued" and job.requested_by == admin_user
    assert job.filters["modality"] == "CR" and job.options["min_per_class"] == 10
    counts = job.counts
    assert sum(counts[p]["NORMAL"] + counts[p]["PNEUMONIA"] for p in calibration.PARTS) == 80
    assert len(job.items) == 80
    event = Event.objects.get(action="calibration_queued")
    assert event.actor == admin_user and BASE in event.detail


def _calibrated(base_version, make_cases, admin_user, **options) -> SiteCalibration:
    make_cases(overlapping(60, 60, seed=3))
    job = calibration.calibration_create(
        version=base_version,
        filters=CalibrationFilters(),
        user=admin_user,
        min_per_class=20,
        site="Test children's hospital",
        **options,
    )
    assert calibration_execute(calibration_id=job.pk) == "done"
    job.refresh_from_db()
    return job


def _by_hand(job: SiteCalibration) -> dict:
    """Counts on the held-back images, computed here from the stored items and fit."""
    kept = [calibration.CalibrationItem.from_row(row) for row in job.items]
    kept = [item for item in kept if item.held_back]
    fit = job.fit
    p = np.clip([item.probability for item in kept], 1e-6, 1 - 1e-6)
    after = 1 / (1 + np.exp(-(fit["scale"] * np.log(p / (1 - p)) + fit["shift"])))
    counts: dict = {"before": dict.fromkeys(("tp", "fp", "tn", "fn"), 0)}
    counts["after"] = dict(counts["before"])
    for item, calibrated in zip(kept, after, strict=True):
        for side, flagged in (
            ("before", item.probability >= item.threshold),
            ("after", calibrated >= fit["threshold"]),
        ):
            key = ("t" if flagged == bool(item.truth) else "f") + ("p" if flagged else "n")
            counts[side][key] += 1
    return counts


def test_the_calibrated_version_is_registered_with_held_back_figures(
    base_version, make_cases, admin_user
):
    job = _calibrated(base_version, make_cases, admin_user)
    version = job.new_version
    assert version.origin == ModelVersion.Origin.CALIBRATED and not version.is_active
    assert version.version.startswith(f"{BASE}-site-") and version.version.endswith(f"-{job.pk}")
    entry = version.card["site_calibration"]
    assert entry["base_version"] == BASE and entry["base_sha256"] == base_version.sha256
    assert entry["site"] == "Test children's hospital"
    assert "calibrate_model tiny-test-0" in entry["command"]
    assert entry["images"] == {
        "NORMAL": job.counts["fitting"]["NORMAL"],
        "PNEUMONIA": job.counts["fitting"]["PNEUMONIA"],
    }
    held = job.counts["held_back"]
    validation = version.validation
    assert validation["count"] == held["NORMAL"] + held["PNEUMONIA"] == job.after["images"]
    assert validation["threshold"] == version.card["threshold"] == job.fit["threshold"]
    assert validation["held_back_site_cases"] is True

    by_hand = _by_hand(job)
    for side in ("before", "after"):
        figures = getattr(job, side)
        assert {k: figures[k] for k in ("tp", "fp", "tn", "fn")} == by_hand[side]
        tp, fn = figures["tp"], figures["fn"]
        assert figures["sensitivity"]["value"] == pytest.approx(tp / (tp + fn))
        assert figures["sensitivity"]["ci95"][0] < figures["sensitivity"]["value"]
    assert job.before["thresholds"] == [0.2]
    # The served threshold flags many healthy children; the site's threshold flags fewer.
    assert job.after["specificity"]["value"] > job.before["specificity"]["value"]
    assert Event.objects.filter(action="calibration_done", actor=admin_user).exists()


def test_the_figures_are_counts_and_wilson_intervals():
    figures = decision_figures(
        np.array([1, 1, 1, 0, 0, 0, 0], float),
        np.array([0.9, 0.6, 0.3, 0.7, 0.2, 0.1, 0.4]),
        thresholds=np.array([0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.45]),
    )
    assert {k: figures[k] for k in ("tp", "fp", "tn", "fn")} == {"tp": 2, "fp": 1, "tn": 3, "fn": 1}
    assert figures["sensitivity"]["value"] == pytest.approx(2 / 3)
    assert figures["sensitivity"]["ci95"] == pytest.approx([0.2077, 0.9385], abs=1e-4)
    assert figures["specificity"]["ci95"] == pytest.approx([0.3006, 0.9544], abs=1e-4)
    assert figures["ppv"]["value"] == pytest.approx(2 / 3)
    assert figures["thresholds"] == [0.45, 0.5]
    assert figures["roc_auc"] == pytest.approx(9 / 12)
    # The textbook example: 8 of 10 gives 0.490 to 0.943.
    assert rate(8, 10)["ci95"] == pytest.approx([0.4902, 0.9433], abs=1e-4)
    assert rate(0, 0) == {"value": None, "hits": 0, "total": 0, "ci95": None}


def test_the_floors_judge_the_new_version_on_its_held_back_cases(
    base_version, make_cases, admin_user, settings
):
    job = _calibrated(base_version, make_cases, admin_user)
    version = job.new_version
    evidence = rollout.activation_evidence(version=version, threshold=job.fit["threshold"])
    assert evidence.images == job.after["images"] and "held-back site cases" in evidence.source
    assert evidence.sensitivity == job.after["sensitivity"]["value"]
    with pytest.raises(rollout.ActivationRefused, match="fewer than 200"):
        rollout.rollout_activate(version=version, user=admin_user)
    done = rollout.rollout_activate(
        version=version, user=admin_user, override_reason="Site evaluation on held-back cases."
    )
    assert done.version.is_active and done.withdrawn == BASE


def test_a_calibration_runs_once(base_version, make_cases, admin_user):
    job = _calibrated(base_version, make_cases, admin_user)
    assert calibration_execute(calibration_id=job.pk) == "skipped"
    assert ModelVersion.objects.filter(origin="calibrated").count() == 1


def test_a_fit_that_cannot_be_made_fails_the_job_with_the_reason(
    base_version, make_cases, admin_user
):
    # Every pneumonia outscores every normal image: no finite calibration exists.
    make_cases(
        [SiteCase((0.1 + i / 1000,), finding="normal", version=BASE) for i in range(40)]
        + [SiteCase((0.8 + i / 1000,), finding="pneumonia", version=BASE) for i in range(40)]
    )
    job = calibration.calibration_create(
        version=base_version, filters=CalibrationFilters(), user=admin_user, min_per_class=5
    )
    assert calibration_execute(calibration_id=job.pk) == "failed"
    job.refresh_from_db()
    assert job.status == "failed" and "separates these site images perfectly" in job.error
    assert job.new_version is None and job.finished_at is not None
    assert not ModelVersion.objects.filter(origin="calibrated").exists()


# --- the command -----------------------------------------------------------------------


def test_calibrate_model_prints_the_new_version_and_the_figures(base_version, make_cases, capsys):
    make_cases(overlapping(60, 60, seed=3))
    since = (timezone.localdate() - timedelta(days=1)).isoformat()
    call_command("calibrate_model", BASE, "--since", since, "--min-per-class", "20")
    out = capsys.readouterr().out
    version = ModelVersion.objects.get(origin="calibrated")
    assert out.splitlines()[0] == version.version
    assert "Specificity" in out and "Sensitivity" in out and "–" in out
    assert f"activate_model {version.version}" in out
    job = SiteCalibration.objects.get()
    assert job.requested_by is None and job.filters["since"] == since


def test_calibrate_model_refuses_too_few_labels(base_version, make_cases):
    make_cases(overlapping(10, 10))
    with pytest.raises(CommandError, match="Not enough signed cases"):
        call_command("calibrate_model", BASE)
    assert not SiteCalibration.objects.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["no-such-version"], "No model version 'no-such-version'"),
        ([BASE, "--since", "yesterday"], "not a date"),
        ([BASE, "--holdout", "0.99"], "Hold back between"),
    ],
)
def test_calibrate_model_refuses_bad_arguments(base_version, args, message):
    with pytest.raises(CommandError, match=message):
        call_command("calibrate_model", *args)
