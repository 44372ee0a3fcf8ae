"""Every bad upload is refused with a clear message and nothing is saved."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from diagnosis import services
from diagnosis.models import Case, Image
from tests.support.images import bomb_png, dicom_bytes, gif_bytes, jpeg_bytes, png_bytes

pytestmark = pytest.mark.django_db

BAD_FILES = {
    "empty": (b"", "The file is empty"),
    "text": (b"patient notes, not an image" * 10, "not a readable PNG, JPEG or DICOM"),
    # Cut inside its header: a file cut only inside its pixels passes the web's header
    # check and is reported by the worker (test_a_file_cut_inside_its_pixels_...).
    "truncated": (png_bytes()[:20], "not a readable PNG, JPEG or DICOM"),
    "gif": (gif_bytes(), "GIF images are not accepted"),
    "bomb": (bomb_png(), "more than the"),
    "dicom-no-pixels": (dicom_bytes(with_pixels=False), "no pixel data"),
    "dicom-truncated": (dicom_bytes()[:400], "DICOM"),
}


@pytest.mark.parametrize("kind", BAD_FILES)
def test_form_rejects_bad_file_and_saves_nothing(client_for, clinician, kind):
    data, message = BAD_FILES[kind]
    response = client_for(clinician).post(
        reverse("case_new"),
        {
            "urgency": "routine",
            "images": [
                SimpleUploadedFile("good.png", png_bytes()),
                SimpleUploadedFile(f"{kind}.bin", data),
            ],
        },
    )
    assert response.status_code == 400
    assert message in response.content.decode()
    assert Case.objects.count() == 0 and Image.objects.count() == 0


@pytest.mark.parametrize("kind", BAD_FILES)
def test_api_rejects_bad_file_with_400_json(api_client_for, clinician, kind):
    data, message = BAD_FILES[kind]
    response = api_client_for(clinician).post(
        "/api/v1/cases/", {"images": [SimpleUploadedFile(f"{kind}.bin", data)]}, format="multipart"
    )
    assert response.status_code == 400
    assert message in response.json()["detail"]
    assert Case.objects.count() == 0


def test_oversized_upload_is_refused(client_for, clinician, settings):
    settings.CHESTNET_MAX_UPLOAD_MB = 1
    big = SimpleUploadedFile("big.png", b"\x89PNG" + b"0" * (1024 * 1024 + 10))
    response = client_for(clinician).post(
        reverse("case_new"), {"urgency": "routine", "images": [big]}
    )
    assert response.status_code == 400 and "larger than the 1 MB limit" in response.content.decode()
    assert Case.objects.count() == 0


def test_form_without_images_is_refused(client_for, clinician):
    response = client_for(clinician).post(reverse("case_new"), {"urgency": "routine"})
    assert response.status_code == 400 and "Add at least one image" in response.content.decode()


def test_png_jpeg_and_dicom_are_accepted_together(client_for, clinician, enqueued):
    files = [
        SimpleUploadedFile("a.png", png_bytes()),
        SimpleUploadedFile("b.jpg", jpeg_bytes()),
        SimpleUploadedFile("c.dcm", dicom_bytes()),
    ]
    response = client_for(clinician).post(
        reverse("case_new"), {"urgency": "routine", "images": files}
    )
    assert response.status_code == 302 and Image.objects.count() == 3


# The rules themselves, as every way in (form, API, later the DICOM listener) meets them.


def _upload(name: str, data: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data)


def test_upload_rules_refuse_too_many_files_before_decoding_any(settings):
    settings.CHESTNET_MAX_FILES_PER_CASE = 2
    files = [_upload(f"{i}.png", b"not an image") for i in range(3)]
    with pytest.raises(services.ImageRejected, match="At most 2 images per case"):
        services.uploads_validate(files)


def test_upload_rules_refuse_an_oversized_file_without_reading_it(settings):
    settings.CHESTNET_MAX_UPLOAD_MB = 1
    big = _upload("big.png", b"x" * (1024 * 1024 + 1))
    good = _upload("good.png", png_bytes(64, 64))
    with pytest.raises(services.ImageRejected) as refused:
        services.uploads_validate([big, good])
    assert refused.value.messages == ["big.png: the file is larger than the 1 MB limit."]


def test_upload_rules_report_every_bad_file_and_accept_good_ones():
    with pytest.raises(services.ImageRejected) as refused:
        services.uploads_validate([_upload("a.png", b"junk"), _upload("b.png", b"junk")])
    assert [m.split(":")[0] for m in refused.value.messages] == ["a.png", "b.png"]
    validated = services.uploads_validate([_upload("ok.png", png_bytes(64, 64))])
    assert [v.format for v in validated] == ["png"]


def test_upload_rules_need_at_least_one_file():
    with pytest.raises(services.ImageRejected, match="at least one image"):
        services.uploads_validate([])


# The web process checks headers only; the worker decodes (bounded memory on the web tier).


def test_the_web_path_never_decodes_pixels(client_for, api_client_for, clinician, monkeypatch):
    import ml.preprocessing

    def decoder_called(*args, **kwargs):
        raise AssertionError("the web process decoded pixels")

    for name in ("decode", "decode_image", "_decode_any", "_decode_raster", "_decode_dicom"):
        monkeypatch.setattr(ml.preprocessing, name, decoder_called)
    form = {"urgency": "routine", "images": [SimpleUploadedFile("a.png", png_bytes())]}
    assert client_for(clinician).post(reverse("case_new"), form).status_code == 302
    api = api_client_for(clinician).post(
        "/api/v1/cases/",
        {
            "images": [
                SimpleUploadedFile("b.dcm", dicom_bytes()),
                SimpleUploadedFile("c.jpg", jpeg_bytes()),
            ]
        },
        format="multipart",
    )
    assert api.status_code == 201, api.content
    assert Image.objects.count() == 3 and not any(image.preview for image in Image.objects.all())


def test_a_file_cut_inside_its_pixels_is_accepted_and_reported_by_the_worker(
    api_client_for, clinician, enqueued
):
    from diagnosis import services
    from tests.support.fakes import FakePredictor, fake_refusal

    cut = png_bytes(256, 256)[:-200]  # header intact, pixel data short
    response = api_client_for(clinician).post(
        "/api/v1/cases/", {"images": [SimpleUploadedFile("cut.png", cut)]}, format="multipart"
    )
    assert response.status_code == 201
    image = Image.objects.get()
    assert response.json()["images"][0]["preview_url"] is None
    # What the real predictor answers for such a file (tests/ml: unreadable refusal).
    predictor = FakePredictor(result=fake_refusal("unreadable", "The file is truncated."))
    services.inference_run(image_id=image.pk, token="t", predictor_loader=lambda: predictor)
    image.refresh_from_db()
    assert (image.status, image.refusal_reason, bool(image.preview)) == (
        "refused",
        "unreadable",
        False,
    )
    page = api_client_for(clinician).get(f"/api/v1/images/{image.pk}/preview/")
    assert page.status_code == 404
