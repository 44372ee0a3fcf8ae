from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from chestnet_site.celery import app
from diagnosis import services
from diagnosis.models import AuditEvent, Case, Image, Prediction, Review
from ml.outcome import REFUSAL_REASONS
from ml.preprocessing import UnreadableImage
from tests.support import factories, spies
from tests.support.fakes import FakePredictor, FakeResult, fake_refusal
from tests.support.images import dicom_bytes, jpeg_bytes, png_bytes

pytestmark = pytest.mark.django_db


def _validated(*datas: bytes):
    return [services.image_validate(name=f"f{i}", data=d) for i, d in enumerate(datas)]


def test_case_create_saves_images_and_enqueues_after_commit(
    clinician, enqueued, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        case = services.case_create(
            owner=clinician,
            images=_validated(png_bytes(), jpeg_bytes(), dicom_bytes()),
            urgency="urgent",
            patient_id="P1",
        )
    assert case.status == Case.Status.QUEUED
    assert sorted(enqueued) == sorted(case.images.values_list("pk", flat=True))
    assert list(case.images.values_list("original_format", flat=True)) == ["png", "jpeg", "dicom"]
    assert AuditEvent.objects.filter(case=case, action="created", actor=clinician).exists()


def test_case_create_does_not_enqueue_when_transaction_rolls_back(clinician, enqueued):
    services.case_create(owner=clinician, images=_validated(png_bytes()))
    assert enqueued == []  # the test transaction never commits


def test_case_create_leaves_no_files_when_database_write_fails(clinician, settings, monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(services.uploads, "audit_record", broken)
    with pytest.raises(RuntimeError):
        services.case_create(owner=clinician, images=_validated(png_bytes()))
    assert Case.objects.count() == 0
    files = (
        [p for p in (settings.MEDIA_ROOT).rglob("*") if p.is_file()]
        if settings.MEDIA_ROOT.exists()
        else []
    )
    assert files == []


@pytest.mark.django_db(transaction=True)
def test_uploaded_originals_are_stored_before_the_transaction_that_records_them(
    clinician, monkeypatch
):
    """No row (with SQLite: no database) stays locked while the files upload."""
    from django.core.files.storage import default_storage

    in_transaction = spies.storage_saves(monkeypatch)
    case = services.case_create(owner=clinician, images=_validated(png_bytes(), jpeg_bytes()))
    assert in_transaction == [False, False]
    for image in case.images.all():
        assert default_storage.exists(image.original.name)


def test_image_validate_rejects_bad_bytes_with_the_filename():
    with pytest.raises(services.ImageRejected, match="scan.png: The file is empty"):
        services.image_validate(name="scan.png", data=b"")


def test_inference_run_stores_prediction_and_case_awaits_review(clinician, fake_predictor):
    image = factories.ImageFactory(case__owner=clinician)
    outcome = services.inference_run(
        image_id=image.pk, token="t1", predictor_loader=lambda: fake_predictor
    )
    assert outcome == "done"
    image.refresh_from_db()
    prediction = image.prediction
    assert (image.status, prediction.label, prediction.model_version) == (
        "done",
        "PNEUMONIA",
        "fake-1",
    )
    assert {"decode", "heatmap", "worker_total"} <= set(prediction.timings)
    case = image.case
    case.refresh_from_db()
    assert case.status == Case.Status.AWAITING_REVIEW
    assert case.max_probability == pytest.approx(0.73) and case.ai_flagged


def test_redelivered_task_after_success_does_nothing(fake_predictor):
    image = factories.ImageFactory()
    services.inference_run(image_id=image.pk, token="t1", predictor_loader=lambda: fake_predictor)
    again = services.inference_run(
        image_id=image.pk, token="t1", predictor_loader=lambda: fake_predictor
    )
    assert again == "skipped" and fake_predictor.calls == 1
    assert Prediction.objects.filter(image=image).count() == 1


def test_second_task_cannot_claim_an_image_being_processed():
    image = factories.ImageFactory()
    assert services.images_claim(image_id=image.pk, token="a", extra=0)
    assert not services.images_claim(image_id=image.pk, token="b", extra=0)
    assert services.images_claim(image_id=image.pk, token="a", extra=0)  # the same task again


def test_image_abandoned_by_dead_worker_can_be_claimed_after_lease():
    image = factories.ImageFactory(
        status=Image.Status.PROCESSING,
        claim_token="dead",
        claimed_at=timezone.now() - services.PROCESSING_LEASE - timedelta(seconds=1),
    )
    assert services.images_claim(image_id=image.pk, token="new", extra=0)


def test_failed_analysis_can_be_retried_and_is_requeued(
    clinician, enqueued, django_capture_on_commit_callbacks
):
    image = factories.ImageFactory(case__owner=clinician)
    services.images_claim(image_id=image.pk, token="t", extra=0)
    services.images_fail(token="t", reason=services.FAILED_GENERIC)
    image.case.refresh_from_db()
    assert image.case.status == Case.Status.FAILED
    with django_capture_on_commit_callbacks(execute=True):
        services.image_retry(image=image, user=clinician)
    image.refresh_from_db()
    assert image.status == Image.Status.QUEUED and image.error == "" and enqueued == [image.pk]


def test_retry_refuses_an_image_that_has_not_failed(clinician):
    image = factories.ImageFactory(case__owner=clinician)
    with pytest.raises(services.ServiceError):
        services.image_retry(image=image, user=clinician)


def test_prediction_keeps_the_ensemble_uncertainty_and_warnings():
    image = factories.ImageFactory()
    predictor = FakePredictor(
        result=FakeResult(uncertainty=0.04, warnings=("Inverted DICOM pixels were corrected.",))
    )
    services.inference_run(image_id=image.pk, token="t", predictor_loader=lambda: predictor)
    prediction = Prediction.objects.get(image=image)
    assert prediction.uncertainty == pytest.approx(0.04)
    assert prediction.warnings == ["Inverted DICOM pixels were corrected."]


def test_single_network_prediction_is_stored_without_uncertainty():
    image = factories.ImageFactory()
    predictor = FakePredictor(result=FakeResult(uncertainty=None))
    services.inference_run(image_id=image.pk, token="t", predictor_loader=lambda: predictor)
    prediction = Prediction.objects.get(image=image)
    assert prediction.uncertainty is None and prediction.warnings == []


def test_inference_tells_the_predictor_the_age_of_the_case(fake_predictor):
    image = factories.ImageFactory(case__age=3)
    services.inference_run(image_id=image.pk, token="t", predictor_loader=lambda: fake_predictor)
    assert fake_predictor.seen == [{"heatmap": True, "age_years": 3}]


def test_inference_of_a_case_without_age_passes_no_age(fake_predictor):
    image = factories.ImageFactory(case__age=None)
    services.inference_run(image_id=image.pk, token="t", predictor_loader=lambda: fake_predictor)
    assert fake_predictor.seen[0]["age_years"] is None


def test_refusal_is_stored_as_a_result_without_prediction_and_case_awaits_review(clinician):
    image = factories.ImageFactory(case__owner=clinician, case__age=34)
    predictor = FakePredictor(
        result=fake_refusal("outside_intended_use", "The patient is 34; the AI covers 1-5.")
    )
    outcome = services.inference_run(
        image_id=image.pk, token="t", predictor_loader=lambda: predictor
    )
    assert outcome == "refused"
    image.refresh_from_db()
    assert (image.status, image.refusal_reason, image.refusal_message, image.error) == (
        Image.Status.REFUSED,
        "outside_intended_use",
        "The patient is 34; the AI covers 1-5.",
        "",
    )
    assert image.refusal_explanation == REFUSAL_REASONS["outside_intended_use"]
    assert not Prediction.objects.filter(image=image).exists()
    case = Case.objects.get(pk=image.case_id)
    assert case.status == Case.Status.AWAITING_REVIEW and case.ready_at is not None
    assert case.max_probability is None and case.ai_flagged is False


def test_second_delivery_of_a_refusal_changes_nothing():
    image = factories.ImageFactory()
    predictor = FakePredictor(result=fake_refusal("not_chest_radiograph", "A photograph."))
    services.inference_run(image_id=image.pk, token="t", predictor_loader=lambda: predictor)
    again = image.pk in services.analyses_store(
        token="t",
        results=[services.Analysed(image.pk, fake_refusal("unreadable", "Other words."), None)],
    )
    redelivered = services.inference_run(
        image_id=image.pk, token="t", predictor_loader=lambda: predictor
    )
    assert (again, redelivered, predictor.calls) == (False, "skipped", 1)
    image.refresh_from_db()
    assert (image.status, image.refusal_reason, image.refusal_message) == (
        Image.Status.REFUSED,
        "not_chest_radiograph",
        "A photograph.",
    )


def test_refusal_from_a_task_that_lost_its_claim_is_ignored():
    image = factories.ImageFactory()
    services.images_claim(image_id=image.pk, token="current", extra=0)
    stale = services.Analysed(image.pk, fake_refusal(), None)
    assert not services.analyses_store(token="stale", results=[stale])
    image.refresh_from_db()
    assert image.status == Image.Status.PROCESSING and image.refusal_reason == ""


def test_predictor_raising_unreadable_is_recorded_as_an_unreadable_refusal():
    image = factories.ImageFactory()
    broken = FakePredictor(error=UnreadableImage("The DICOM file is malformed or truncated."))
    outcome = services.inference_run(image_id=image.pk, token="t", predictor_loader=lambda: broken)
    image.refresh_from_db()
    assert outcome == "refused"
    assert (image.status, image.refusal_reason, image.refusal_message) == (
        Image.Status.REFUSED,
        "unreadable",
        "The DICOM file is malformed or truncated.",
    )


def test_a_refused_image_cannot_be_retried(clinician):
    case = factories.refused_case(owner=clinician)
    with pytest.raises(services.ServiceError, match="Only a failed analysis"):
        services.image_retry(image=case.images.get(), user=clinician)


def test_case_of_an_analysed_and_a_refused_image_takes_the_ai_result_of_the_analysed_one():
    case = factories.CaseFactory()
    factories.PredictionFactory(image__case=case, probability=0.91, label="PNEUMONIA")
    factories.ImageFactory(
        case=case, status=Image.Status.REFUSED, refusal_reason="not_chest_radiograph"
    )
    case = services.case_refresh_status(case_id=case.pk)
    assert case.status == Case.Status.AWAITING_REVIEW
    assert case.max_probability == pytest.approx(0.91) and case.ai_flagged


def test_case_with_a_refused_and_a_failed_image_is_failed():
    case = factories.CaseFactory()
    factories.ImageFactory(case=case, status=Image.Status.REFUSED, refusal_reason="unsupported")
    factories.ImageFactory(case=case, status=Image.Status.FAILED)
    assert services.case_refresh_status(case_id=case.pk).status == Case.Status.FAILED


def test_radiologist_can_sign_a_case_whose_images_were_all_refused(radiologist):
    case = factories.refused_case(claimed_by=radiologist)
    review = services.review_sign(
        case=case, author=radiologist, agrees_with_ai=None, finding="normal", report="Clear."
    )
    assert review.version == 1 and Case.objects.get(pk=case.pk).status == Case.Status.REPORTED
    assert Review.objects.get(pk=review.pk).agrees_with_ai is None


def test_ai_opinion_on_an_all_refused_case_is_stored_as_not_applicable(radiologist):
    case = factories.refused_case(claimed_by=radiologist)
    first = services.review_sign(
        case=case, author=radiologist, agrees_with_ai=True, finding="normal", report="Clear."
    )
    amendment = {"agrees_with_ai": False, "finding": "other", "reason": "Second look."}
    second = services.review_amend(case=case, author=radiologist, report="Revised.", **amendment)
    assert (first.agrees_with_ai, second.agrees_with_ai) == (None, None)


def test_case_with_an_analysed_image_requires_an_ai_opinion(radiologist):
    case = factories.awaiting_review_case(claimed_by=radiologist)
    factories.ImageFactory(case=case, status=Image.Status.REFUSED, refusal_reason="unsupported")
    assert case.has_ai_result and not factories.refused_case().has_ai_result
    with pytest.raises(services.ServiceError, match="agree with the AI"):
        services.review_sign(
            case=case, author=radiologist, agrees_with_ai=None, finding="normal", report="x"
        )
    assert not Review.objects.exists()


def test_case_with_one_done_and_one_queued_image_is_processing():
    case = factories.CaseFactory()
    factories.PredictionFactory(image__case=case)
    factories.ImageFactory(case=case)
    assert services.case_refresh_status(case_id=case.pk).status == Case.Status.PROCESSING


def test_requeue_stale_publishes_images_lost_while_broker_was_down(enqueued, settings):
    old = timezone.now() - timedelta(seconds=settings.CHESTNET_REQUEUE_AFTER_S + 5)
    lost = factories.ImageFactory(enqueued_at=old)
    fresh = factories.ImageFactory()
    abandoned = factories.ImageFactory(
        status=Image.Status.PROCESSING, claimed_at=timezone.now() - services.PROCESSING_LEASE * 2
    )
    assert services.requeue_stale() == 2
    assert sorted(enqueued) == sorted([lost.pk, abandoned.pk]) and fresh.pk not in enqueued


def test_image_enqueue_survives_a_broker_outage(monkeypatch):
    def down(*args, **kwargs):
        raise ConnectionRefusedError("broker down")

    monkeypatch.setattr(app, "send_task", down)
    image = factories.ImageFactory()
    assert services.image_enqueue(image_id=image.pk) is False
    image.refresh_from_db()
    assert image.status == Image.Status.QUEUED


def test_claim_keeps_a_second_radiologist_off_the_case(radiologist, radiologist2):
    case = factories.awaiting_review_case()
    services.case_claim(case=case, user=radiologist)
    with pytest.raises(services.ServiceError, match="already claimed"):
        services.case_claim(case=case, user=radiologist2)
    with pytest.raises(services.ServiceError):
        services.review_sign(
            case=case, author=radiologist2, agrees_with_ai=True, finding="normal", report="x"
        )


def test_release_lets_another_radiologist_claim(radiologist, radiologist2):
    case = factories.awaiting_review_case()
    services.case_claim(case=case, user=radiologist)
    services.case_release(case=case, user=radiologist)
    assert services.case_claim(case=case, user=radiologist2).claimed_by == radiologist2


def test_sign_reports_the_case_and_cannot_sign_twice(radiologist):
    case = factories.awaiting_review_case(claimed_by=radiologist)
    review = services.review_sign(
        case=case, author=radiologist, agrees_with_ai=False, finding="other", report="Effusion."
    )
    case.refresh_from_db()
    assert case.status == Case.Status.REPORTED and review.version == 1
    with pytest.raises(services.ServiceError):
        services.review_sign(
            case=case, author=radiologist, agrees_with_ai=True, finding="normal", report="changed"
        )
    assert AuditEvent.objects.filter(case=case, action="signed").count() == 1


def test_amendment_creates_a_new_version_and_keeps_the_old(radiologist):
    case = factories.awaiting_review_case(claimed_by=radiologist)
    first = services.review_sign(
        case=case,
        author=radiologist,
        agrees_with_ai=True,
        finding="pneumonia",
        report="RLL consolidation.",
    )
    amendment = {"agrees_with_ai": False, "finding": "indeterminate", "reason": "second look"}
    second = services.review_amend(case=case, author=radiologist, report="Revised.", **amendment)
    first.refresh_from_db()
    assert (first.version, first.report, first.finding) == (1, "RLL consolidation.", "pneumonia")
    assert second.version == 2 and Review.objects.filter(case=case).count() == 2


def test_cannot_sign_a_case_still_processing(radiologist):
    image = factories.ImageFactory()
    with pytest.raises(services.ServiceError, match="not awaiting review"):
        services.review_sign(
            case=image.case, author=radiologist, agrees_with_ai=True, finding="normal", report="x"
        )


def test_tasks_published_by_name_are_the_registered_tasks():
    """Services publish by name (no import of the task modules): the names must be real."""
    from diagnosis import tasks as clinical_tasks
    from mlops import services as mlops_services
    from mlops import tasks as mlops_tasks

    assert services.INFERENCE_TASK == clinical_tasks.inference_run_task.name
    assert (
        mlops_services.IMPORT_TASK,
        mlops_services.TRAINING_TASK,
        mlops_services.EVALUATION_TASK,
    ) == (
        mlops_tasks.dataset_import_task.name,
        mlops_tasks.training_run_task.name,
        mlops_tasks.evaluation_run_task.name,
    )


def test_tasks_published_by_name_are_routed_to_their_queues():
    """send_task routes by name (CELERY_TASK_ROUTES): inference never waits behind training.
    The integration tests show real workers on each queue receiving them."""

    def queue_of(name: str) -> str:
        return app.amqp.router.route({}, name, (1,), {})["queue"].name

    assert queue_of(services.INFERENCE_TASK) == "inference"
    assert queue_of("mlops.tasks.training_run_task") == "training"


def test_submitting_a_report_signs_first_and_amends_once_signed(radiologist):
    """One rule for the HTML view and the API: the case's state decides."""
    case = factories.awaiting_review_case(claimed_by=radiologist)
    first = services.review_submit(
        case=case, author=radiologist, agrees_with_ai=True, finding="pneumonia", report="Signed."
    )
    amendment = {"agrees_with_ai": False, "finding": "normal", "reason": "Second look."}
    second = services.review_submit(case=case, author=radiologist, report="Amended.", **amendment)
    assert (first.version, second.version, second.amendment_reason) == (1, 2, "Second look.")
    actions = AuditEvent.objects.filter(case=case).values_list("action", flat=True)
    assert {"signed", "amended"} <= set(actions)


def test_the_worker_makes_the_preview_from_the_pixels_the_model_read(clinician):
    import io

    import numpy as np
    from PIL import Image as PILImage

    validated = [services.image_validate(name="big.png", data=png_bytes(1500, 1200))]
    image = services.case_create(owner=clinician, images=validated).images.get()
    assert not image.preview and image.preview_width is None  # the web decoded nothing
    pixels = np.tile(np.linspace(0, 1, 1500, dtype=np.float32), (1200, 1))
    heat = np.linspace(0, 1, 49, dtype=np.float32).reshape(7, 7)
    predictor = FakePredictor(result=FakeResult(image=pixels, heatmap=heat))
    services.inference_run(image_id=image.pk, token="t", predictor_loader=lambda: predictor)
    image.refresh_from_db()
    assert (image.status, image.preview_width, image.preview_height) == ("done", 1024, 819)
    with image.preview.open("rb") as handle, PILImage.open(io.BytesIO(handle.read())) as shown:
        assert (shown.format, shown.mode, shown.size) == ("JPEG", "L", (1024, 819))
        row = np.asarray(shown, dtype=np.float32)[400]
    assert abs(row[0] - 0) <= 2 and abs(row[-1] - 255) <= 2  # the model's pixels, not the file's
    heatmap = image.prediction.heatmap
    with heatmap.open("rb") as handle, PILImage.open(io.BytesIO(handle.read())) as layer:
        # The heatmap keeps the preview's aspect ratio at 256 px: viewers stretch it over it.
        assert (layer.format, layer.convert("RGBA").mode, layer.size) == ("PNG", "RGBA", (256, 205))


def test_a_refused_image_is_previewed_from_the_pixels_the_model_read(clinician):
    import numpy as np

    from ml.outcome import Refusal

    image = factories.ImageFactory(
        case__owner=clinician, preview="", preview_width=None, preview_height=None
    )
    pixels = np.full((300, 400), 0.5, dtype=np.float32)
    refusal = Refusal("not_chest_radiograph", "A photograph.", image=pixels)
    predictor = FakePredictor(result=refusal)
    assert services.inference_run(image_id=image.pk, token="t", predictor_loader=lambda: predictor)
    image.refresh_from_db()
    assert (image.status, image.preview_width, image.preview_height) == ("refused", 400, 300)


def test_an_unreadable_file_has_no_preview_and_is_not_decoded_again(clinician):
    image = factories.ImageFactory(
        case__owner=clinician, preview="", preview_width=None, preview_height=None
    )
    predictor = FakePredictor(result=fake_refusal("unreadable", "Truncated."))
    assert services.inference_run(image_id=image.pk, token="t", predictor_loader=lambda: predictor)
    image.refresh_from_db()
    assert image.status == "refused" and not image.preview and image.preview_width is None


def test_the_result_time_is_written_with_the_result_and_cleared_when_queued_again(
    enqueued, radiologist
):
    """Monitoring reads a version's latest results by this indexed time."""
    before = timezone.now()
    images = []
    for result in (FakeResult(), fake_refusal()):  # one after the other: a run takes a batch
        images.append(image := factories.ImageFactory())
        predictor = FakePredictor(result=result)
        services.inference_run(image_id=image.pk, token="t", predictor_loader=lambda p=predictor: p)
    analysed, refused = images
    analysed.refresh_from_db()
    refused.refresh_from_db()
    assert (analysed.status, refused.status) == (Image.Status.DONE, Image.Status.REFUSED)
    assert before <= refused.result_at and before <= analysed.result_at <= timezone.now()
    assert abs(analysed.result_at - analysed.prediction.created_at) < timedelta(seconds=1)

    first = refused.result_at
    services.case_reanalyse(case=refused.case, user=radiologist)
    refused.refresh_from_db()
    assert (refused.status, refused.result_at) == (Image.Status.QUEUED, None)
    predictor = FakePredictor(result=FakeResult())
    services.inference_run(image_id=refused.pk, token="u", predictor_loader=lambda: predictor)
    refused.refresh_from_db()
    assert refused.status == Image.Status.DONE and refused.result_at > first


def test_the_migration_gives_older_images_the_time_monitoring_computed_before():
    import importlib

    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    long_ago = timezone.now() - timedelta(days=30)
    analysed = factories.PredictionFactory().image
    Prediction.objects.filter(pk=analysed.prediction.pk).update(created_at=long_ago)
    by_the_model = factories.ImageFactory(status=Image.Status.REFUSED)
    Image.objects.filter(pk=by_the_model.pk).update(claimed_at=long_ago + timedelta(hours=1))
    on_arrival = factories.ImageFactory(status=Image.Status.REFUSED)
    waiting = factories.ImageFactory()
    # Before the field every time was null; the constraint of 0020 forbids that now, so
    # the finished images carry a wrong time for the backfill to replace.
    Image.objects.exclude(result_at=None).update(result_at=timezone.now() + timedelta(days=9))
    migration = importlib.import_module("diagnosis.migrations.0019_image_result_at")
    state = MigrationExecutor(connection).loader.project_state(
        ("diagnosis", "0019_image_result_at")
    )
    migration.fill_result_at(state.apps, None)
    times = dict(Image.objects.values_list("pk", "result_at"))
    assert times[analysed.pk] == long_ago
    assert times[by_the_model.pk] == long_ago + timedelta(hours=1)
    assert times[on_arrival.pk] == Image.objects.get(pk=on_arrival.pk).created_at
    assert times[waiting.pk] is None


def test_the_database_ties_the_result_time_to_a_result():
    """Monitoring selects images with a result by their time alone: a result without a
    time, or a time without a result, is refused by the database."""
    from django.db import IntegrityError, transaction

    image = factories.ImageFactory()
    for change in (
        {"status": Image.Status.DONE, "result_at": None},
        {"status": Image.Status.REFUSED, "result_at": None},
        {"status": Image.Status.FAILED, "result_at": timezone.now()},
    ):
        with pytest.raises(IntegrityError), transaction.atomic():
            Image.objects.filter(pk=image.pk).update(**change)
    Image.objects.filter(pk=image.pk).update(status=Image.Status.DONE, result_at=timezone.now())
