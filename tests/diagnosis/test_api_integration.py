"""What an integrator meets (issue 9, part 4): every URL the API returns works with the
API's token and refuses anonymous requests, and every error is JSON with a sentence."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from devtools.users import token_for
from diagnosis.models import Case
from tests.support import factories
from tests.support.images import png_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture
def token_client(clinician):
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token_for(clinician)}")
    return client


def test_every_url_the_api_returns_works_with_the_token(token_client, clinician):
    case = factories.awaiting_review_case(owner=clinician)
    image = token_client.get(f"/api/v1/cases/{case.pk}/").json()["images"][0]
    urls = [
        image["preview_url"],
        image["original_url"],
        image["prediction"]["heatmap_url"],
        image["prediction"]["image_url"],
    ]
    for url in urls:
        response = token_client.get(url)
        assert response.status_code == 200, url
        assert response["Content-Type"] in ("image/png", "image/jpeg", "application/dicom")
        assert response["Cache-Control"] == "private, no-store"


def test_anonymous_requests_to_those_urls_are_refused(client, clinician):
    case = factories.awaiting_review_case(owner=clinician)
    image = case.images.get()
    for kind in ("preview", "original", "heatmap"):
        response = client.get(f"/api/v1/images/{image.pk}/{kind}/")
        assert response.status_code in (401, 403)
        assert "detail" in response.json()


def test_another_clinicians_image_is_not_found(api_client_for, clinician, clinician2):
    image = factories.awaiting_review_case(owner=clinician).images.get()
    response = api_client_for(clinician2).get(f"/api/v1/images/{image.pk}/original/")
    assert response.status_code == 404 and response.json()["detail"]


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"data": {}, "format": "multipart"}, {"data": "x", "content_type": "text/plain"}],
)
def test_an_empty_or_unreadable_post_is_a_json_4xx_and_saves_nothing(
    api_client_for, clinician, kwargs
):
    response = api_client_for(clinician).post("/api/v1/cases/", **kwargs)
    assert 400 <= response.status_code < 500
    assert response.json()["detail"]
    assert not Case.objects.exists()


def test_too_many_files_is_json(api_client_for, clinician, settings):
    files = [SimpleUploadedFile(f"{i}.png", png_bytes(32, 32)) for i in range(21)]
    response = api_client_for(clinician).post(
        "/api/v1/cases/", {"images": files}, format="multipart"
    )
    assert response.status_code == 400
    assert response.json() == {
        "detail": f"At most {settings.CHESTNET_MAX_FILES_PER_CASE} images per case."
    }
    assert not Case.objects.exists()


def test_a_request_too_large_to_read_is_json(api_client_for, clinician, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    response = api_client_for(clinician).post(
        "/api/v1/cases/",
        {"indication": "x" * 500, "images": [SimpleUploadedFile("a.png", png_bytes(32, 32))]},
        format="multipart",
    )
    assert response.status_code == 413 and "too large" in response.json()["detail"]


def test_unknown_api_urls_answer_json(api_client_for, clinician):
    response = api_client_for(clinician).get("/api/v1/nothing-here/")
    assert response.status_code == 404 and response.json() == {"detail": "Not found."}


def test_an_internal_error_is_a_sentence_never_a_traceback(client, settings):
    from chestnet_site.views import error_500

    request = client.get("/").wsgi_request
    request.path = "/api/v1/cases/"
    response = error_500(request)
    assert response.status_code == 500 and b"Traceback" not in response.content
    assert b"internal error" in response.content
