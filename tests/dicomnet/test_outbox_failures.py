"""Findings that cannot go back to the PACS are a visible failure, never a silent one: a
header with values its VR does not allow still builds; an object not delivered after
CHESTNET_PACS_MAX_ATTEMPTS tries is failed, shown on the case page, the worklist row, the
API, the admin's outbox (with a retry) and /healthz, and the retry gets it through."""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import pytest
from django.utils import timezone
from pynetdicom import AE, evt
from pynetdicom.presentation import AllStoragePresentationContexts

from devtools import dicom_files
from devtools.ports import free_port
from diagnosis import services
from diagnosis.models import AuditEvent, Case, Image
from dicomnet import sending
from dicomnet import services as outbox
from dicomnet.models import OutboundObject
from tests.dicomnet.test_outbound import _analyse, _received_image
from tests.support import factories

pytestmark = pytest.mark.django_db
DIGEST = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15"  # 56 characters


@pytest.fixture
def pacs(settings):
    received: list = []
    ae = AE(ae_title="TESTPACS")
    ae.supported_contexts = AllStoragePresentationContexts
    port = free_port()
    handlers = [(evt.EVT_C_STORE, lambda event: received.append(event.dataset) or 0x0000)]
    server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=handlers)
    settings.CHESTNET_PACS = f"TESTPACS@127.0.0.1:{port}"
    yield SimpleNamespace(received=received, destination=settings.CHESTNET_PACS)
    server.shutdown()


def _hashed_dicom() -> bytes:
    ds = dicom_files.radiograph(pixels=dicom_files.chest_pixels(side=64))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.PatientBirthDate, ds.AccessionNumber = DIGEST, DIGEST
    return dicom_files.to_bytes(ds)


def _deliver_all() -> list[str]:
    return [sending.outbound_deliver(outbound_id=pk) for pk in outbox.outbound_due()]


def test_a_header_with_hashes_in_its_date_and_accession_still_gets_its_sr_and_overlay(pacs):
    received = services.instance_receive(data=_hashed_dicom(), source="dimse")
    _analyse(Image.objects.get(pk=received.image_id))
    assert outbox.outbox_fill() == 2
    assert sorted(_deliver_all()) == ["sent", "sent"]
    assert {str(ds.SOPClassUID.name) for ds in pacs.received} == {
        "Comprehensive SR Storage",
        "Secondary Capture Image Storage",
    }
    for ds in pacs.received:
        assert ds["PatientBirthDate"].is_empty and ds["AccessionNumber"].is_empty


def _fail_until_given_up(settings, chest_dicom) -> OutboundObject:
    settings.CHESTNET_PACS = f"DOWN@127.0.0.1:{free_port()}"
    settings.CHESTNET_PACS_MAX_ATTEMPTS = 3
    _analyse(_received_image(chest_dicom))
    outbox.outbox_fill()
    findings = OutboundObject.objects.get(kind="findings")
    for _ in range(3):
        OutboundObject.objects.filter(pk=findings.pk).update(next_attempt_at=timezone.now())
        assert sending.outbound_deliver(outbound_id=findings.pk) == "failed"
    findings.refresh_from_db()
    return findings


def test_after_the_last_try_an_object_is_failed_and_no_longer_due(settings, chest_dicom):
    findings = _fail_until_given_up(settings, chest_dicom)
    assert (findings.status, findings.attempts) == ("failed", 3)
    assert findings.pk not in outbox.outbound_due()
    case = Case.objects.get(pk=findings.case_id)
    assert case.pacs_failure == "AI findings (SR)"


def test_the_failure_shows_on_the_case_the_worklist_the_api_and_healthz(
    settings, chest_dicom, client, radiologist
):
    findings = _fail_until_given_up(settings, chest_dicom)
    client.force_login(radiologist)
    page = client.get(f"/cases/{findings.case_id}/").content.decode()
    assert "Could not be sent back to the PACS after every try: AI findings (SR)" in page
    worklist = client.get("/worklist/").content.decode()
    assert "not sent to PACS" in worklist
    api = client.get(f"/api/v1/cases/{findings.case_id}/").json()
    assert api["pacs_failure"] == "AI findings (SR)"
    health = client.get("/healthz").json()
    assert health["pacs_outbox"]["failed"] == 1


def test_an_admin_retries_a_failed_object_from_the_outbox_and_it_goes_through(
    settings, chest_dicom, client, pacs
):
    findings = _fail_until_given_up(settings, chest_dicom)
    admin = factories.UserFactory(username="ops", is_staff=True, is_superuser=True)
    client.force_login(admin)
    listing = client.get("/admin/dicomnet/outboundobject/?status__exact=failed")
    assert listing.status_code == 200 and findings.key.encode() in listing.content
    detail = client.get(f"/admin/dicomnet/outboundobject/{findings.pk}/change/")
    assert b"Retry sending" in detail.content
    settings.CHESTNET_PACS = pacs.destination  # the PACS is back
    response = client.post(f"/admin/dicomnet/outboundobject/{findings.pk}/retry/")
    assert response.status_code == 302
    findings.refresh_from_db()
    assert (findings.status, findings.attempts) == ("pending", 0)
    assert AuditEvent.objects.filter(case_id=findings.case_id, action="admin_changed").exists()
    assert sending.outbound_deliver(outbound_id=findings.pk) == "sent"
    assert Case.objects.get(pk=findings.case_id).pacs_failure == ""
    assert client.get("/healthz").json()["pacs_outbox"]["failed"] == 0


def test_only_admins_retry(settings, chest_dicom, client, radiologist):
    findings = _fail_until_given_up(settings, chest_dicom)
    client.force_login(radiologist)
    client.post(f"/admin/dicomnet/outboundobject/{findings.pk}/retry/")
    findings.refresh_from_db()
    assert findings.status == "failed"
