"""STOW-RS at /dicomweb/studies: the API's authentication and roles, the standard response
per instance, and a clear 4xx for what cannot be read."""

from __future__ import annotations

import pytest

from devtools import dicom_files
from devtools.users import token_for
from diagnosis.models import Case, Image
from dicomnet import sop, stow

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
        headers["HTTP_AUTHORIZATION"] = f"Token {token_for(user)}"
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
    settings.CHESTNET_DICOM_MAX_MB, settings.CHESTNET_MAX_FILES_PER_CASE = 1, 1
    response = _post(client, clinician, _body(b"\x00" * (1024 * 1024 + 10)))
    assert response.status_code == 413


def _spooled(body: bytes, tmp_path, *, part_limit=1 << 20, total_limit=1 << 30):
    import io

    parts = stow.parts_spool(
        MULTIPART, io.BytesIO(body), folder=tmp_path, part_limit=part_limit, total_limit=total_limit
    )
    return parts


@pytest.mark.parametrize("chunk", [7, 64, 1 << 20])  # delimiters straddle chunk edges
def test_parts_keep_their_bytes_exactly(tmp_path, monkeypatch, chunk):
    monkeypatch.setattr(stow, "CHUNK", chunk)
    binary = bytes(range(256)) * 4 + b"\r\n--not-the-boundary\r\n" + b"\r\n-"
    parts = _spooled(b"preamble\r\n" + _body(binary, b"second"), tmp_path)
    assert [part.read() for part in parts] == [binary, b"second"]
    assert not any(part.too_large for part in parts)


def test_a_part_over_the_limit_is_counted_not_kept(tmp_path):
    small, large = b"x" * 100, b"y" * 5000
    first, second = _spooled(_body(small, large), tmp_path, part_limit=1000)
    assert (first.too_large, first.read()) == (False, small)
    assert second.too_large and second.size == 5000
    assert second.path.stat().st_size < 1000 + stow.PART_HEAD_MAX  # the rest never written


def test_a_body_without_its_closing_boundary_is_a_400(tmp_path):
    with pytest.raises(stow.StowError) as refused:
        _spooled(_body(b"abc", close=False), tmp_path)
    assert refused.value.status == 400


def test_the_body_is_spooled_to_disk_not_held_in_memory(tmp_path):
    import io
    import tracemalloc

    body = io.BytesIO(_body(b"z" * (12 << 20), b"w" * (12 << 20)))
    tracemalloc.start()
    try:
        parts = stow.parts_spool(
            MULTIPART, body, folder=tmp_path, part_limit=5 << 20, total_limit=1 << 30
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [part.too_large for part in parts] == [True, True]
    assert peak < 6 << 20, f"{peak / 2**20:.1f} MB held for a 24 MB body"


def test_an_instance_over_the_limit_fails_out_of_resources_beside_a_stored_one(
    client, clinician, settings
):
    import numpy as np

    settings.CHESTNET_DICOM_MAX_MB = 1
    small = dicom_files.to_bytes(dicom_files.radiograph(pixels=dicom_files.chest_pixels(side=64)))
    noise = np.random.default_rng(1).integers(0, 4096, size=(1024, 1024), dtype=np.uint16)
    large_ds = dicom_files.radiograph(pixels=noise)
    response = _post(client, clinician, _body(small, dicom_files.to_bytes(large_ds)))
    assert response.status_code == 202
    failed = response.json()["00081198"]["Value"][0]
    assert failed["00081155"]["Value"] == [large_ds.SOPInstanceUID]  # named, from its header
    assert failed["00081197"]["Value"] == [sop.OUT_OF_RESOURCES]
    assert Image.objects.count() == 1


def test_an_integration_account_stores_studies_and_reads_nothing(client, chest_dicom, capsys):
    from django.core.management import call_command

    call_command("integration_account", "pacs-router")
    key = capsys.readouterr().out.strip().rsplit(" ", 1)[-1]
    auth = {"HTTP_AUTHORIZATION": f"Token {key}"}
    stored = client.generic(
        "POST", "/dicomweb/studies", _body(chest_dicom()), content_type=MULTIPART, **auth
    )
    assert stored.status_code == 200
    case = Case.objects.get()
    assert case.owner.username == "pacs-router" and not case.owner.has_usable_password()
    assert client.get("/api/v1/cases/", **auth).json() == []
    assert client.get(f"/api/v1/cases/{case.pk}/", **auth).status_code == 404
    assert client.get("/api/v1/worklist/", **auth).status_code == 403
    image = case.images.get()
    assert client.get(f"/api/v1/images/{image.pk}/original/", **auth).status_code == 404
    # Run again: another token, for another client; the first keeps working until revoked.
    call_command("integration_account", "pacs-router", "--client", "second-router")
    assert client.get("/api/v1/cases/", **auth).status_code == 200
    call_command("integration_account", "pacs-router", "--revoke-all")
    assert client.get("/api/v1/cases/", **auth).status_code == 401


def test_the_integration_command_will_not_turn_a_person_into_an_integration(clinician):
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="a person's account"):
        call_command("integration_account", clinician.username)
