"""The site calibration pages: the form with its counts, the refusal, the job's page, and
the new version's page with the before/after figures. Admins only; bad input is a 4xx."""

from __future__ import annotations

import numpy as np
import pytest
from django.urls import reverse

from accounts import roles
from mlops import calibration
from mlops.execute.calibration import decision_figures
from mlops.models import SiteCalibration
from registry import services as registry
from registry.models import ModelVersion
from tests.support import factories
from tests.support.site_cases import SiteCase, site_cases

BASE = "base-1"


@pytest.fixture
def register(tmp_path, db):
    """A registered version: artifact-shaped files (the pages never load the model)."""
    from ml.artifact import write_card

    def make(name: str, origin: str = "shipped", **card) -> ModelVersion:
        path = tmp_path / name / "m.keras"
        path.parent.mkdir()
        path.write_bytes(name.encode() * 10)
        write_card(
            path,
            {
                "version": name,
                "image_size": 64,
                "threshold": 0.5,
                "labels": ["NORMAL", "PNEUMONIA"],
                "preprocessing_version": "1",
                **card,
            },
        )
        return registry.version_register(path=path, origin=origin)

    return make


@pytest.fixture
def base(register):
    return register(BASE)


@pytest.fixture(autouse=True)
def _minimum(settings):
    """About 84 images per class fit when all cases count, about 42 with one modality."""
    settings.CHESTNET_CALIBRATION_MIN_PER_CLASS = 60


@pytest.fixture
def site(base, clinician, radiologist):
    """120 signed cases per class read by the base version, half CR and half DX."""
    rng = np.random.default_rng(0)
    specs = [
        SiteCase((float(p),), finding=finding, version=BASE, threshold=0.2, modality=modality)
        for finding, low, high in (("normal", 0.02, 0.5), ("pneumonia", 0.35, 0.99))
        for p, modality in zip(rng.uniform(low, high, 120), ["CR", "DX"] * 60, strict=True)
    ]
    return site_cases(specs, owner=clinician, radiologist=radiologist)


@pytest.fixture
def as_admin(client_for, admin_user):
    return client_for(admin_user)


def _page(version: ModelVersion) -> str:
    return reverse("mlops:version_calibrate", args=[version.pk])


FORM = {"holdout_percent": "30", "target_sensitivity": "0.97"}


# --- who may ---------------------------------------------------------------------------


@pytest.mark.parametrize("role", [roles.CLINICIAN, roles.RADIOLOGIST])
def test_only_admins_open_the_calibration_pages(client_for, base, role):
    user = factories.UserFactory(username=f"not-admin-{role}", role=role)
    job = SiteCalibration.objects.create(base_version=base)
    client = client_for(user)
    urls = [
        _page(base),
        reverse("mlops:calibration_detail", args=[job.pk]),
        reverse("mlops:calibration_status", args=[job.pk]),
    ]
    for url in urls:
        assert client.get(url).status_code == 403
    assert client.post(_page(base), FORM).status_code == 403
    assert SiteCalibration.objects.count() == 1


def test_an_anonymous_visitor_is_kept_out(client, base):
    response = client.get(_page(base))
    assert response.status_code in (302, 403)
    assert client.post(_page(base), FORM).status_code in (302, 403)


# --- the form and its counts -----------------------------------------------------------


def test_the_form_counts_the_matching_signed_images_per_class(as_admin, base, site):
    response = as_admin.get(_page(base))
    assert response.status_code == 200
    counts = response.context["counts"]
    assert counts["fitting"]["NORMAL"] + counts["held_back"]["NORMAL"] == 120
    assert counts["fitting"]["PNEUMONIA"] + counts["held_back"]["PNEUMONIA"] == 120
    assert response.context["choices"]["modality"] == ["CR", "DX"]
    assert b'id="calibration-form"' in response.content  # enough: it can be submitted

    narrowed = as_admin.get(_page(base), {**FORM, "modality": "DX"})
    counts = narrowed.context["counts"]
    assert counts["fitting"]["NORMAL"] + counts["held_back"]["NORMAL"] == 60
    # 60 per class, about 70% of them fitting: fewer than the 60 per class a fit needs.
    assert b"Not enough signed cases" in narrowed.content
    assert b'id="calibration-form"' not in narrowed.content


@pytest.mark.parametrize(
    "query",
    [
        {"since": "yesterday"},
        {"holdout_percent": "0"},
        {"holdout_percent": "many"},
        {"target_sensitivity": "2"},
        {"target_sensitivity": "nan"},
        {"since": "2026-03-02", "until": "2026-03-01"},
        {"modality": "X" * 40},
    ],
)
def test_bad_filters_answer_400_with_the_form(as_admin, base, query):
    response = as_admin.get(_page(base), {**FORM, **query})
    assert response.status_code == 400
    assert response.context["form"].errors
    assert as_admin.post(_page(base), {**FORM, **query}).status_code == 400
    assert not SiteCalibration.objects.exists()


def test_an_unknown_version_or_calibration_is_404(as_admin, db):
    assert as_admin.get(reverse("mlops:version_calibrate", args=[999])).status_code == 404
    assert as_admin.post(reverse("mlops:version_calibrate", args=[999]), FORM).status_code == 404
    assert as_admin.get(reverse("mlops:calibration_detail", args=[999])).status_code == 404
    assert as_admin.get(reverse("mlops:calibration_status", args=[999])).status_code == 404


def test_other_methods_are_refused(as_admin, base):
    assert as_admin.put(_page(base)).status_code == 405
    assert as_admin.delete(_page(base)).status_code == 405


# --- submitting ------------------------------------------------------------------------


def test_too_few_signed_cases_are_refused_on_the_page(as_admin, base, site, queued):
    response = as_admin.post(_page(base), {**FORM, "modality": "DX"})
    assert response.status_code == 400
    assert b"Not enough signed cases" in response.content
    assert b'id="calibration-refused"' in response.content
    assert not SiteCalibration.objects.exists() and queued["calibration"] == []


def test_submitting_queues_the_job_and_shows_its_page(
    as_admin, base, site, admin_user, queued, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = as_admin.post(_page(base), {**FORM, "site": "Ward 7"})
    job = SiteCalibration.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("mlops:calibration_detail", args=[job.pk])
    assert queued["calibration"] == [job.pk]
    assert job.requested_by == admin_user and job.options["site"] == "Ward 7"
    assert job.options["holdout"] == 0.3 and job.options["min_per_class"] == 60

    page = as_admin.get(response["Location"])
    assert page.status_code == 200 and b'id="calibration-status"' in page.content
    status = as_admin.get(reverse("mlops:calibration_status", args=[job.pk])).json()
    assert status == {"status": "queued", "error": "", "version": None, "version_url": None}


# --- the result ------------------------------------------------------------------------


@pytest.fixture
def done(base, register, site, admin_user):
    """A finished calibration of the base, its figures made as the worker makes them."""
    job = calibration.calibration_create(
        version=base, filters=calibration.CalibrationFilters(), user=admin_user
    )
    kept = [calibration.CalibrationItem.from_row(r) for r in job.items]
    kept = [item for item in kept if item.held_back]
    targets = np.array([item.truth for item in kept], float)
    scores = np.array([item.probability for item in kept])
    new = register("base-1-site-20260301-1", origin="calibrated", threshold=0.45)
    SiteCalibration.objects.filter(pk=job.pk).update(
        status="done",
        new_version=new,
        fit={"scale": 1.2, "shift": -0.4, "threshold": 0.45, "target_sensitivity": 0.97},
        before=decision_figures(targets, scores, thresholds=np.full(len(kept), 0.2)),
        after=decision_figures(targets, scores, thresholds=np.full(len(kept), 0.4)),
    )
    job.refresh_from_db()
    return job


def test_the_new_versions_page_shows_its_base_and_the_before_after_table(as_admin, done):
    page = as_admin.get(reverse("mlops:version_detail", args=[done.new_version.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="site-calibration"' in html and 'id="before-after"' in html
    assert f">{BASE}</a>" in html and "all signed cases" in html
    rows = {row["key"]: row for row in page.context["site_calibration"]["rows"]}
    specificity = done.after["specificity"]
    low, high = specificity["ci95"]
    assert rows["specificity"]["after"] == (
        f"{specificity['value']:.3f} ({low:.3f}–{high:.3f}) "
        f"{specificity['hits']}/{specificity['total']}"
    )
    assert rows["specificity"]["after"] in html
    assert rows["tp"]["before"] == str(done.before["tp"])
    assert 'id="activate-form"' in html  # activated through the usual form


def test_the_base_versions_page_links_to_calibrating_and_its_calibrations(as_admin, done):
    html = as_admin.get(reverse("mlops:version_detail", args=[done.base_version.pk])).content
    assert _page(done.base_version).encode() in html
    assert done.new_version.version.encode() in html


def test_the_fit_is_written_with_a_signed_offset(as_admin, done):
    html = as_admin.get(reverse("mlops:calibration_detail", args=[done.pk])).content.decode()
    assert "sigmoid(1.200 × logit(p<sub>base</sub>) − 0.400))" in html
    SiteCalibration.objects.filter(pk=done.pk).update(fit={**done.fit, "shift": 0.25})
    html = as_admin.get(reverse("mlops:calibration_detail", args=[done.pk])).content.decode()
    assert "sigmoid(1.200 × logit(p<sub>base</sub>) + 0.250))" in html


def test_the_finished_jobs_page_links_to_the_new_version(as_admin, done):
    page = as_admin.get(reverse("mlops:calibration_detail", args=[done.pk]))
    url = reverse("mlops:version_detail", args=[done.new_version.pk])
    assert page.status_code == 200 and url.encode() in page.content
    status = as_admin.get(reverse("mlops:calibration_status", args=[done.pk])).json()
    assert status["status"] == "done" and status["version_url"] == url


def test_a_failed_jobs_page_says_why(as_admin, base):
    job = SiteCalibration.objects.create(
        base_version=base, status="failed", error="The model separates these site images."
    )
    page = as_admin.get(reverse("mlops:calibration_detail", args=[job.pk]))
    assert page.status_code == 200 and b"separates these site images" in page.content
