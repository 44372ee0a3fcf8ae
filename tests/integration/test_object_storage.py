"""Every file ChestNet keeps, in an S3-compatible object store (a real SeaweedFS) instead of
MEDIA_ROOT: this process (the web side) and a real worker share the bucket and nothing else.
Uploads, previews, heatmaps, DICOMweb instances, model artifacts (loaded by the worker
through its local cache), dataset images, import zips and evaluation plots go to the bucket;
ChestNet's views serve them; the bucket refuses unsigned requests; a deleted case's objects
go with it; and nothing is written under MEDIA_ROOT."""

from __future__ import annotations

import io
import subprocess
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from pydicom.uid import ComprehensiveSRStorage
from storages.backends.s3 import S3Storage

from accounts import roles
from chestnet_site.settings import storage_from_env
from devtools import dicom_files
from devtools.users import token_for
from devtools.workers import start_worker, stop_worker
from diagnosis import services as diagnosis
from diagnosis.models import Case, Image
from dicomnet import sending
from dicomnet import services as outbox
from dicomnet.models import OutboundObject
from mlops import services as mlops
from mlops.execute.feedback import feedback_pull
from mlops.models import Dataset, DatasetImage, Evaluation, ImportJob
from registry import services as registry
from registry.models import ModelVersion
from tests.support import factories
from tests.support.datasets import labelled_entries, zip_bytes
from tests.support.images import dicom_bytes, png_bytes
from tests.support.seaweedfs import SeaweedFS
from tests.support.stack import database_url, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """MEDIA_ROOT (never created: nothing may land there) and the worker's local caches."""
    root = tmp_path_factory.mktemp("object-storage")
    return SimpleNamespace(
        media=root / "media-stays-empty", model_cache=root / "model-cache", work=root / "work"
    )


@pytest.fixture(scope="module")
def s3_worker(
    seaweedfs: SeaweedFS,
    folders: SimpleNamespace,
    django_db_setup: None,
    redis_url: str,
    tiny_model_path: Path,
) -> Iterator[subprocess.Popen]:
    """One worker for every queue (inference, the default, training), storing in the bucket."""
    env = {
        **seaweedfs.env(),
        "DATABASE_URL": database_url(),
        "REDIS_URL": redis_url,
        "MEDIA_ROOT": str(folders.media),
        "CHESTNET_MODEL_PATH": str(tiny_model_path),
        "CHESTNET_MODEL_CACHE": str(folders.model_cache),
        "CHESTNET_TRAINING_WORK_DIR": str(folders.work),
    }
    log = folders.work.parent / "worker.log"
    process = start_worker(log=log, env=env, queues="inference,celery,training")
    yield process
    stop_worker(process)


@pytest.fixture(autouse=True)
def on_s3(seaweedfs, settings, monkeypatch, folders, tmp_path, s3_worker) -> None:
    """This process stores in the bucket too, configured as a deployment's settings are."""
    with monkeypatch.context() as patched:
        for name, value in seaweedfs.env().items():
            patched.setenv(name, value)
        settings.STORAGES = {**settings.STORAGES, "default": storage_from_env("s3")}
    settings.MEDIA_ROOT = folders.media
    settings.CHESTNET_MODEL_CACHE = tmp_path / "model-cache"
    settings.CHESTNET_TRAINING_WORK_DIR = tmp_path / "work"


def _nothing_under_media_root(folders) -> bool:
    return not folders.media.exists() or not any(folders.media.rglob("*"))


def _body(response) -> bytes:
    return b"".join(response.streaming_content)


def _settled(case_id: int) -> Case | None:
    case = Case.objects.get(pk=case_id)
    return case if case.status in (Case.Status.AWAITING_REVIEW, Case.Status.FAILED) else None


def _stored_names(case: Case) -> dict[tuple[int, str], str]:
    names = {}
    for image in case.images.select_related("prediction"):
        names[image.pk, "original"] = image.original.name
        names[image.pk, "preview"] = image.preview.name
        names[image.pk, "heatmap"] = image.prediction.heatmap.name
    return names


def _upload(clinician, *, png: bool = True) -> Case:
    """A PNG and a DICOM file (or the DICOM file alone) uploaded through the page, analysed."""
    client = Client()
    client.force_login(clinician)
    images = [SimpleUploadedFile("b.dcm", dicom_bytes())]
    if png:
        images.append(SimpleUploadedFile("a.png", png_bytes(256, 256)))
    response = client.post(reverse("case_new"), {"urgency": "routine", "images": images})
    assert response.status_code == 302
    case = wait_for(lambda: _settled(Case.objects.get(owner=clinician).pk), timeout=120)
    assert case.status == Case.Status.AWAITING_REVIEW
    return case


def test_this_process_and_every_file_field_store_in_the_bucket(seaweedfs):
    assert isinstance(default_storage, S3Storage)
    assert isinstance(Image._meta.get_field("original").storage, S3Storage)
    assert isinstance(DatasetImage._meta.get_field("file").storage, S3Storage)
    assert default_storage.bucket_name == seaweedfs.bucket


def test_an_upload_is_kept_in_the_bucket_and_served_only_through_chestnet(
    seaweedfs, folders, tiny_model_path
):
    version = registry.version_register(path=tiny_model_path, origin=ModelVersion.Origin.TRAINED)
    registry.version_activate(version=version, user=None)
    assert {version.artifact, version.card_file} <= set(seaweedfs.keys())
    clinician = factories.UserFactory(username="s3-clinician", role=roles.CLINICIAN)

    case = _upload(clinician)

    names = _stored_names(case)
    assert len(names) == 6 and set(names.values()) <= set(seaweedfs.keys())
    client = Client()
    client.force_login(clinician)
    for (image_id, kind), name in names.items():
        response = client.get(reverse("image_file", args=[image_id, kind]))
        assert response.status_code == 200, (kind, response.status_code)
        assert _body(response) == seaweedfs.get(name), kind
    api = client.get(f"/api/v1/cases/{case.pk}/").json()
    heatmap = client.get(api["images"][0]["prediction"]["heatmap_url"])
    assert heatmap.status_code == 200 and heatmap["Content-Type"] == "image/png"
    # The worker loaded the registered version from its local copy of the bucket's artifact.
    assert (folders.model_cache / version.sha256 / "model.keras").is_file()
    assert _nothing_under_media_root(folders)


def test_the_bucket_refuses_whoever_does_not_sign_with_its_key(seaweedfs):
    clinician = factories.UserFactory(username="s3-clinician2", role=roles.CLINICIAN)
    image = _upload(clinician).images.first()
    url = default_storage.url(image.original.name)  # what the admin would link to
    assert url.startswith(seaweedfs.endpoint_url) and "Signature" not in url
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, timeout=10)
    assert refused.value.code == 403


def test_deleting_an_unsigned_case_deletes_its_objects(seaweedfs, folders):
    clinician = factories.UserFactory(username="s3-clinician3", role=roles.CLINICIAN)
    admin = factories.UserFactory(
        username="s3-admin", role=roles.ADMIN, is_staff=True, is_superuser=True
    )
    case = _upload(clinician)
    names = set(_stored_names(case).values())
    assert names <= set(seaweedfs.keys())

    client = Client()
    client.force_login(admin)
    response = client.post(f"/admin/diagnosis/case/{case.pk}/delete/", {"post": "yes"})

    assert response.status_code == 302 and not Case.objects.filter(pk=case.pk).exists()
    assert names.isdisjoint(seaweedfs.keys())
    assert _nothing_under_media_root(folders)


def test_dataset_import_export_and_evaluation_keep_their_files_in_the_bucket(
    seaweedfs, folders, tiny_model_path
):
    admin = factories.UserFactory(username="s3-mlops-admin", role=roles.ADMIN)
    client = Client()
    client.force_login(admin)
    dataset = mlops.dataset_create(name="on-s3", user=admin)
    entries = labelled_entries(10, 10)
    archive = SimpleUploadedFile("set.zip", zip_bytes(entries), content_type="application/zip")

    response = client.post(reverse("mlops:dataset_import", args=[dataset.pk]), {"archive": archive})

    assert response.status_code == 302
    job = wait_for(
        lambda: ImportJob.objects.exclude(
            status__in=[ImportJob.Status.QUEUED, ImportJob.Status.RUNNING]
        ).first(),
        timeout=120,
    )
    assert job.status == ImportJob.Status.DONE, job.error
    images = list(DatasetImage.objects.filter(dataset=dataset))
    assert len(images) == 20
    keys = set(seaweedfs.keys())
    assert {i.file.name for i in images} | {i.thumbnail.name for i in images} <= keys
    assert not any(key.startswith("imports/") for key in keys), "the import zip is deleted"
    for image in images[:2]:
        shown = client.get(reverse("mlops:image_file", args=[image.pk, "view"]))
        assert _body(shown) == seaweedfs.get(image.view.name or image.file.name)

    exported = client.get(reverse("mlops:dataset_export", args=[dataset.pk]))
    with zipfile.ZipFile(io.BytesIO(_body(exported))) as archive_out:
        files = [name for name in archive_out.namelist() if name != "MANIFEST.csv"]
        assert len(files) == 20
        assert {archive_out.read(name) for name in files} == set(entries.values())

    version = registry.version_register(path=tiny_model_path, origin=ModelVersion.Origin.TRAINED)
    evaluation = mlops.evaluation_start(
        version=version, dataset=Dataset.objects.get(pk=dataset.pk), user=admin
    )
    evaluation = wait_for(
        lambda: (
            Evaluation.objects.filter(pk=evaluation.pk)
            .exclude(status__in=[Evaluation.Status.QUEUED, Evaluation.Status.RUNNING])
            .first()
        ),
        timeout=120,
    )
    assert evaluation.status == Evaluation.Status.DONE, evaluation.error
    assert set(evaluation.plots.values()) <= set(seaweedfs.keys())
    plot = client.get(reverse("mlops:evaluation_plot", args=[evaluation.pk, "roc"]))
    assert _body(plot) == seaweedfs.get(evaluation.plots["roc"])
    assert _nothing_under_media_root(folders)


def test_a_dicomweb_instance_is_kept_in_the_bucket_and_its_findings_are_built_from_it(
    seaweedfs, folders, settings
):
    clinician = factories.UserFactory(username="s3-stow", role=roles.CLINICIAN)
    instance = dicom_files.to_bytes(
        dicom_files.radiograph(pixels=dicom_files.chest_pixels(side=64))
    )
    boundary = "chestnet-s3"
    body = (
        f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        + instance
        + f"\r\n--{boundary}--\r\n".encode()
    )
    response = Client().generic(
        "POST",
        "/dicomweb/studies",
        body,
        content_type=f'multipart/related; type="application/dicom"; boundary={boundary}',
        HTTP_ACCEPT="application/dicom+json",
        HTTP_AUTHORIZATION=f"Token {token_for(clinician)}",
    )
    assert response.status_code == 200, response.content

    image = Image.objects.get()
    assert seaweedfs.get(image.original.name) == instance
    assert wait_for(lambda: _settled(image.case_id), timeout=120).status == "awaiting_review"
    settings.CHESTNET_PACS = "PACS@127.0.0.1:104"  # only so that the outbox is filled
    assert outbox.outbox_fill() == 2
    # The SR reads the original's header; the overlay the preview and the heatmap as well.
    built = {o.kind: sending.outbound_dataset(o) for o in OutboundObject.objects.all()}
    assert built["findings"].SOPClassUID == ComprehensiveSRStorage
    assert "PixelData" in built["overlay"]
    assert _nothing_under_media_root(folders)


def test_a_signed_reports_image_is_copied_into_the_feedback_dataset_in_the_bucket(
    seaweedfs, folders, radiologist
):
    admin = factories.UserFactory(username="s3-feedback-admin", role=roles.ADMIN)
    dataset = mlops.dataset_create(name="feedback", user=admin)
    mlops.dataset_set_feedback_target(dataset=dataset, user=admin)
    clinician = factories.UserFactory(username="s3-clinician4", role=roles.CLINICIAN)
    case = diagnosis.case_claim(case=_upload(clinician, png=False), user=radiologist)
    diagnosis.review_sign(
        case=case, author=radiologist, agrees_with_ai=True, finding="pneumonia", report="R."
    )

    feedback_pull()  # the periodic task's work

    copy = DatasetImage.objects.get(dataset=dataset)
    stored = seaweedfs.get(copy.file.name)
    assert stored[128:132] == b"DICM" and stored != seaweedfs.get(case.images.get().original.name)
    assert copy.thumbnail.name in seaweedfs.keys()
    assert _nothing_under_media_root(folders)
