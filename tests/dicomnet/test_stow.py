"""STOW-RS at /dicomweb/studies: the API's authentication and roles, the standard response
per instance, and a clear 4xx for what cannot be read."""

from __future__ import annotations

import pytest
from rest_framework.authtoken.models import Token

from diagnosis.models import Case, Image
from dicomnet import sop, stow
from tests.support import dicom_files

pytestmark = pytest.mark.django_db
BOUNDARY = "chestnet-test-boundary"
MULTIPART = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'


def _body(*parts: bytes, close: bool = True) -> bytes:
    body = b"".join(
        b"--" + BOUNDARY.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n" + part + b"\r\n"
        for part in parts
    )
    return body + (b"--" + BOUNDARY.encode() + b"--\r\n" if close else b"")


def _post(client, user, body: bytes, *, content_type: str = MULTIPART, path="/dicomweb/studies"):
    headers = {}
    if user is not None:
        headers["HTTP_AUTHORIZATION"] = f"Token {Token.objects.create(user=user).key}"
    return client.generic(
        "POST",
        path,
        body,
        content_type=content_type,
        HTTP_ACCEPT="application/dicom+json",
        **headers,
    )


def test_stored_instances_are_answered_in_the_standard_response(client, clinician, chest_dicom):
    first, second = chest_dicom(), chest_dicom()
    response = _post(client, clinician, _body(first, second))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/dicom+json")
    stored = response.json()["00081199"]["Value"]
    instances = {item["00081155"]["Value"][0] for item in stored}
    assert instances == set(Image.objects.values_list("sop_instance_uid", flat=True))
    assert "00081198" not in response.json()
    assert set(Case.objects.values_list("source", flat=True)) == {"stow"}


def test_a_ct_part_fails_with_sop_class_not_supported_beside_a_stored_one(
    client, clinician, chest_dicom
):
    ct = dicom_files.to_bytes(
        dicom_files.radiograph(
            pixels=dicom_files.chest_pixels(side=32), sop_class=dicom_files.CT, modality="CT"
        )
    )
    response = _post(client, clinician, _body(chest_dicom(), ct))
    assert response.status_code == 202
    failed = response.json()["00081198"]["Value"]
    assert [item["00081197"]["Value"][0] for item in failed] == [sop.SOP_CLASS_NOT_SUPPORTED]
    assert failed[0]["00081150"]["Value"] == [str(dicom_files.CT)]
    assert Image.objects.count() == 1


def test_only_unreadable_parts_answer_409(client, clinician):
    response = _post(client, clinician, _body(b"\x00" * 300))
    assert response.status_code == 409
    assert response.json()["00081198"]["Value"][0]["00081197"]["Value"] == [sop.CANNOT_UNDERSTAND]
    assert not Case.objects.exists()


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"--x\r\n\r\ngarbage", MULTIPART, 400),  # no closing boundary
        (_body(b"abc", close=False), MULTIPART, 400),
        (b"\r\n", MULTIPART, 400),
        (b"{}", "application/json", 415),
        (
            _body(b"abc"),
            f'multipart/related; type="application/dicom+json"; boundary={BOUNDARY}',
            415,
        ),
        (_body(b"abc"), 'multipart/related; type="application/dicom"', 400),  # no boundary
    ],
)
def test_a_malformed_request_gets_a_clear_4xx_and_saves_nothing(
    client, clinician, body, content_type, status
):
    response = _post(client, clinician, body, content_type=content_type)
    assert response.status_code == status
    assert response.json()["detail"]
    assert not Case.objects.exists()


def test_an_instance_sent_to_another_study_path_fails_with_its_reason(
    client, clinician, chest_dicom
):
    response = _post(client, clinician, _body(chest_dicom()), path="/dicomweb/studies/1.2.3.4")
    assert response.status_code == 409
    reason = response.json()["00081198"]["Value"][0]["00081197"]["Value"]
    assert reason == [sop.STUDY_MISMATCH]


def test_anonymous_is_401_and_a_radiologist_403(client, radiologist, chest_dicom):
    assert _post(client, None, _body(chest_dicom())).status_code == 401
    assert _post(client, radiologist, _body(chest_dicom())).status_code == 403
    assert not Case.objects.exists()


def test_a_body_over_the_limit_is_refused_before_it_is_read(client, clinician, settings):
    settings.CHESTNET_MAX_UPLOAD_MB, settings.CHESTNET_MAX_FILES_PER_CASE = 1, 1
    response = _post(client, clinician, _body(b"\x00" * (1024 * 1024 + 10)))
    assert response.status_code == 413


def test_parts_keep_their_bytes_exactly():
    binary = bytes(range(256)) * 4 + b"\r\n--not-the-boundary\r\n"
    assert stow.parts_read(MULTIPART, _body(binary, b"second")) == [binary, b"second"]
