"""A deep queue is analysed in batches: one task takes several queued images through the
model at once, and every image keeps its own claim, attempts, result and failure."""

from __future__ import annotations

import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection
from django.test.utils import CaptureQueriesContext

from diagnosis import services
from diagnosis.models import Case, Image, Prediction
from tests.support import factories, spies
from tests.support.fakes import FakePredictor, FakeResult
from tests.support.images import png_bytes

pytestmark = pytest.mark.django_db


class CountingPredictor(FakePredictor):
    """Counts passes of the model: predict_batch calls, and the files in each."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.batches: list[int] = []

    def predict_batch(self, items, *, heatmap=False, ages=None):
        self.batches.append(len(items))
        return super().predict_batch(items, heatmap=heatmap, ages=ages)


def _queued(n: int) -> list[Image]:
    """n queued images of n cases, each file different."""
    return [
        factories.ImageFactory(
            case=factories.CaseFactory(),
            original=ContentFile(png_bytes(96 + i, 80), name="x.png"),
        )
        for i in range(n)
    ]


def test_one_task_analyses_the_queued_images_as_one_batch_and_their_own_tasks_skip():
    images = _queued(3)
    predictor = CountingPredictor()

    first = services.inference_run(
        image_id=images[0].pk, token="t0", predictor_loader=lambda: predictor
    )
    later = [
        services.inference_run(image_id=image.pk, token=f"t{i}", predictor_loader=lambda: predictor)
        for i, image in enumerate(images[1:], start=1)
    ]

    assert first == "done (batch of 3)" and later == ["skipped"] * 2
    assert predictor.batches == [3]
    for image in Image.objects.filter(pk__in=[i.pk for i in images]):
        assert (image.status, image.attempts, image.claim_token) == ("done", 1, "t0")
        assert Prediction.objects.filter(image=image).count() == 1
        assert image.prediction.timings["batch"] == 3
        assert image.case.status == Case.Status.AWAITING_REVIEW


def test_each_image_of_a_batch_is_analysed_with_the_age_of_its_own_case():
    images = [factories.ImageFactory(case__age=age) for age in (2, None, 4)]
    predictor = CountingPredictor()
    services.inference_run(image_id=images[0].pk, token="t", predictor_loader=lambda: predictor)
    assert [seen["age_years"] for seen in predictor.seen] == [2, None, 4]


def test_a_batch_is_at_most_chestnet_inference_batch_images_oldest_first(settings):
    settings.CHESTNET_INFERENCE_BATCH = 3
    images = _queued(5)
    predictor = CountingPredictor()
    services.inference_run(image_id=images[4].pk, token="t", predictor_loader=lambda: predictor)
    done = set(Image.objects.filter(status="done").values_list("pk", flat=True))
    assert predictor.batches == [3] and done == {images[4].pk, images[0].pk, images[1].pk}


def test_with_batching_off_a_task_analyses_only_its_own_image(settings):
    settings.CHESTNET_INFERENCE_BATCH = 1
    images = _queued(3)
    predictor = CountingPredictor()
    assert services.inference_run(
        image_id=images[1].pk, token="t", predictor_loader=lambda: predictor
    ) == ("done")
    assert list(Image.objects.filter(status="done").values_list("pk", flat=True)) == [images[1].pk]


def test_a_redelivered_task_takes_the_images_of_its_interrupted_batch_again():
    images = _queued(3)
    # The first delivery claimed the batch, then its worker died before storing anything.
    assert [i.pk for i in services.images_claim(image_id=images[0].pk, token="t", extra=7)] == [
        image.pk for image in images
    ]
    other = services.inference_run(
        image_id=images[1].pk, token="another", predictor_loader=lambda: FakePredictor()
    )
    again = services.inference_run(
        image_id=images[0].pk, token="t", predictor_loader=lambda: FakePredictor()
    )
    assert other == "skipped" and again == "done (batch of 3)"
    assert sorted(Image.objects.values_list("status", "attempts")) == [("done", 2)] * 3
    assert Prediction.objects.count() == 3


def test_an_image_whose_analysis_raises_fails_alone_and_the_rest_are_stored():
    images = _queued(3)
    with images[1].original.open("rb") as handle:
        bad = handle.read()

    class OneBadFile(CountingPredictor):
        def predict(self, data, *, heatmap=True, age_years=None):
            if data == bad:
                raise RuntimeError("the model broke on this file")
            return super().predict(data, heatmap=heatmap, age_years=age_years)

    predictor = OneBadFile()
    outcome = services.inference_run(
        image_id=images[0].pk, token="t", predictor_loader=lambda: predictor
    )
    statuses = dict(Image.objects.values_list("pk", "status"))
    assert outcome == "done (batch of 3)"
    assert statuses == {images[0].pk: "done", images[1].pk: "failed", images[2].pk: "done"}
    assert Image.objects.get(pk=images[1].pk).error == services.FAILED_GENERIC
    assert Case.objects.get(pk=images[1].case_id).status == Case.Status.FAILED


def test_a_task_out_of_retries_fails_every_image_it_holds_and_no_other():
    images = _queued(3)
    services.images_claim(image_id=images[0].pk, token="t", extra=1)
    assert services.images_fail(token="t", reason=services.FAILED_GENERIC) == 2
    assert sorted(Image.objects.values_list("status", flat=True)) == ["failed", "failed", "queued"]


def test_storing_a_batch_costs_the_same_queries_as_storing_one_image(settings):
    def queries(n: int) -> int:
        images = _queued(n)
        predictor = FakePredictor(result=FakeResult())
        with CaptureQueriesContext(connection) as captured:
            services.inference_run(
                image_id=images[0].pk, token=f"t{n}", predictor_loader=lambda: predictor
            )
        assert Image.objects.filter(pk__in=[i.pk for i in images], status="done").count() == n
        return len(captured)

    one, eight = queries(1), queries(8)
    assert one == eight, (one, eight)
    # claim (6), store (3, and 1 to lock the result's model version), the status of every
    # case at once (4)
    assert one <= 18, one


def test_previews_are_served_as_what_they_are_jpeg_now_png_from_before(clinician, client_for):
    fresh = factories.ImageFactory(case__owner=clinician, preview="", preview_width=None)
    pixels = np.full((120, 160), 0.4, dtype=np.float32)
    predictor = FakePredictor(result=FakeResult(image=pixels))
    services.inference_run(image_id=fresh.pk, token="t", predictor_loader=lambda: predictor)
    older = factories.ImageFactory(case__owner=clinician)
    older.preview.name = default_storage.save("previews/before.png", ContentFile(png_bytes()))
    older.save()  # a PNG preview, as stored before

    client = client_for(clinician)
    for image, content_type in ((fresh, "image/jpeg"), (older, "image/png")):
        response = client.get(f"/images/{image.pk}/preview/")
        assert response.status_code == 200 and response["Content-Type"] == content_type
        body = b"".join(response.streaming_content)
        magic = b"\xff\xd8\xff" if content_type == "image/jpeg" else b"\x89PNG"
        assert body.startswith(magic)


def test_an_object_store_that_is_down_is_a_transient_fault_retried_not_a_failure():
    from botocore.exceptions import EndpointConnectionError, ReadTimeoutError

    from diagnosis.tasks import TRANSIENT, inference_run_task

    down = EndpointConnectionError(endpoint_url="http://store:8333/bucket")
    slow = ReadTimeoutError(endpoint_url="http://store:8333/bucket")
    assert isinstance(down, TRANSIENT) and isinstance(slow, TRANSIENT)
    assert set(TRANSIENT) <= set(inference_run_task.autoretry_for)


@pytest.mark.parametrize("path", ["/cases/new/", "/api/v1/cases/"])
def test_an_upload_while_the_object_store_is_down_is_a_503_and_saves_nothing(
    path, clinician, client_for, api_client_for, monkeypatch
):
    from botocore.exceptions import EndpointConnectionError
    from django.core.files.uploadedfile import SimpleUploadedFile

    def store_down(*args, **kwargs):
        raise EndpointConnectionError(endpoint_url="http://store:8333/chestnet")

    monkeypatch.setattr(default_storage, "save", store_down)
    client = api_client_for(clinician) if path.startswith("/api/") else client_for(clinician)
    form = {"urgency": "routine", "images": [SimpleUploadedFile("a.png", png_bytes())]}
    response = (
        client.post(path, form, format="multipart")
        if path.startswith("/api/")
        else (client.post(path, form))
    )
    assert response.status_code == 503 and response["Retry-After"] == "60"
    assert b"nothing was saved" in response.content and b"store:8333" not in response.content
    assert Case.objects.count() == 0 and Image.objects.count() == 0


def test_an_original_gone_from_storage_fails_its_image_and_the_batch_goes_on():
    images = _queued(3)
    images[1].original.storage.delete(images[1].original.name)
    predictor = CountingPredictor()
    outcome = services.inference_run(
        image_id=images[0].pk, token="t", predictor_loader=lambda: predictor
    )
    statuses = dict(Image.objects.values_list("pk", "status"))
    assert outcome == "done (batch of 3)" and predictor.batches == [2]
    assert statuses == {images[0].pk: "done", images[1].pk: "failed", images[2].pk: "done"}


def test_an_object_store_that_is_down_while_reading_retries_the_whole_batch(monkeypatch):
    from botocore.exceptions import EndpointConnectionError
    from django.db.models.fields.files import FieldFile

    images = _queued(2)

    def store_down(self, mode="rb"):
        raise EndpointConnectionError(endpoint_url="http://store:8333/chestnet")

    monkeypatch.setattr(FieldFile, "open", store_down)
    with pytest.raises(EndpointConnectionError):
        services.inference_run(image_id=images[0].pk, token="t", predictor_loader=FakePredictor)
    monkeypatch.undo()
    # The retry is the same task (same token): it takes both images again.
    assert services.inference_run(
        image_id=images[0].pk, token="t", predictor_loader=lambda: FakePredictor()
    ) == ("done (batch of 2)")
    assert sorted(Image.objects.values_list("status", "attempts")) == [("done", 2)] * 2


def _drawing() -> FakePredictor:
    """A fake predictor whose results have pixels and a heatmap: a preview and a heatmap file
    are written for each."""
    pixels = np.linspace(0, 1, 80 * 96, dtype=np.float32).reshape(80, 96)
    return FakePredictor(result=FakeResult(image=pixels, heatmap=pixels[::8, ::8]))


def _without_previews(images: list[Image]) -> list[Image]:
    """As uploaded: the worker makes the preview."""
    Image.objects.filter(pk__in=[i.pk for i in images]).update(
        preview="", preview_width=None, preview_height=None
    )
    return images


def _stored_files(settings) -> set[str]:
    root = settings.MEDIA_ROOT
    return (
        {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
        if root.exists()
        else set()
    )


@pytest.mark.django_db(transaction=True)
def test_previews_and_heatmaps_are_written_before_the_transaction_that_records_them(monkeypatch):
    """No row (with SQLite: no database) stays locked while a batch's files upload."""
    images = _without_previews(_queued(3))
    in_transaction = spies.storage_saves(monkeypatch)
    services.inference_run(image_id=images[0].pk, token="t", predictor_loader=_drawing)
    assert len(in_transaction) == 6 and not any(in_transaction)  # a preview and a heatmap each
    for image in Image.objects.filter(pk__in=[i.pk for i in images]):
        assert image.preview and default_storage.exists(image.preview.name)
        assert default_storage.exists(image.prediction.heatmap.name)


def test_files_of_results_a_task_can_no_longer_record_are_deleted(settings):
    image = _queued(1)[0]
    services.images_claim(image_id=image.pk, token="current", extra=0)
    before = _stored_files(settings)
    outcome = _drawing().predict(b"", heatmap=True)
    stale = services.analysis._analysed(image, outcome, started=0.0, batch=1)
    assert isinstance(stale, services.Analysed) and stale.preview and stale.heatmap
    assert not services.analyses_store(token="stale", results=[stale])
    assert _stored_files(settings) == before


def test_files_written_for_a_batch_whose_rows_cannot_be_stored_are_deleted(settings, monkeypatch):
    images = _queued(2)
    before = _stored_files(settings)

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(services.results, "rows_update", broken)
    with pytest.raises(RuntimeError):
        services.inference_run(image_id=images[0].pk, token="t", predictor_loader=_drawing)
    assert _stored_files(settings) == before
    assert not Prediction.objects.exists()


def test_a_reanalysed_image_keeps_its_preview_and_no_second_one_is_written(settings):
    image = _without_previews(_queued(1))[0]
    services.inference_run(image_id=image.pk, token="first", predictor_loader=_drawing)
    image.refresh_from_db()
    preview = image.preview.name
    Prediction.objects.filter(image=image).delete()
    Image.objects.filter(pk=image.pk).update(status=Image.Status.QUEUED, result_at=None)
    files = _stored_files(settings)
    services.inference_run(image_id=image.pk, token="second", predictor_loader=_drawing)
    image.refresh_from_db()
    assert image.preview.name == preview
    assert _stored_files(settings) - files == {image.prediction.heatmap.name}


def test_the_worker_records_each_images_acquisition_facts_analysed_or_refused():
    from devtools import dicom_files
    from ml.outcome import Refusal

    pixels = (np.arange(300 * 200).reshape(300, 200) % 4096).astype(np.uint16)
    dicom = dicom_files.to_bytes(dicom_files.radiograph(pixels=pixels, modality="CR"))
    analysed = factories.ImageFactory(
        case=factories.CaseFactory(), original=ContentFile(dicom, name="x.dcm")
    )
    refused = factories.ImageFactory(
        case=factories.CaseFactory(), original=ContentFile(png_bytes(96, 80), name="x.png")
    )

    class RefusingPng(FakePredictor):
        def predict(self, data, *, heatmap=False, age_years=None):
            if data.startswith(b"\x89PNG"):
                return Refusal(reason="not_chest_radiograph", message="A photograph.")
            return super().predict(data, heatmap=heatmap, age_years=age_years)

    predictor = RefusingPng()
    for image in (analysed, refused):
        services.inference_run(
            image_id=image.pk, token=f"t{image.pk}", predictor_loader=lambda: predictor
        )
    analysed.refresh_from_db()
    refused.refresh_from_db()
    assert analysed.status == "done" and refused.status == "refused"
    facts = ("modality", "manufacturer", "width", "height", "bits_stored", "view_position")
    assert [getattr(analysed, f) for f in facts] == ["CR", "TestVendor", 200, 300, 12, "PA"]
    assert [getattr(refused, f) for f in facts] == ["", "", 96, 80, 8, ""]


def test_the_view_comes_from_view_position_else_the_view_code_sequence():
    from pydicom.dataset import Dataset

    from devtools import dicom_files
    from ml.preprocessing import acquisition

    pixels = np.zeros((64, 64), dtype=np.uint16)
    ds = dicom_files.radiograph(pixels=pixels, modality="DX")
    assert acquisition(dicom_files.to_bytes(ds)).view_position == "PA"
    del ds.ViewPosition
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator = "R-10214", "SRT"
    code.CodeMeaning = "antero-posterior"
    ds.ViewCodeSequence = [code]
    assert acquisition(dicom_files.to_bytes(ds)).view_position == "antero-posterior"
    del ds.ViewCodeSequence
    assert acquisition(dicom_files.to_bytes(ds)).view_position == ""


def test_acquisition_facts_never_raise_on_a_broken_file():
    from ml.preprocessing import Acquisition, acquisition

    assert acquisition(b"") == Acquisition()
    broken = acquisition(b"\x00" * 128 + b"DICM" + b"\xff" * 40)
    assert (broken.manufacturer, broken.width, broken.bits_stored) == ("", 0, 0)
