"""The outbox of findings: what becomes an outbound object (network cases only, once per
result and per signed report), its UIDs kept across re-sends, one worker per object, every
attempt recorded with a doubling wait, and what a PACS receives."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

import numpy as np
import pytest
from django.utils import timezone
from pynetdicom import AE, AllStoragePresentationContexts, evt

from devtools.ports import free_port
from diagnosis import services
from diagnosis.models import Image
from dicomnet import sending
from dicomnet import services as outbox
from dicomnet.models import OutboundObject, SendAttempt
from ml.overlay import heatmap_png
from tests.support import factories, reviews
from tests.support.images import png_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture
def pacs(settings):
    """A storage SCP in this process that keeps what it receives; CHESTNET_PACS points at it."""
    received: list = []

    def store(event):
        received.append(event.dataset)
        return 0x0000

    ae = AE(ae_title="TESTPACS")
    ae.supported_contexts = AllStoragePresentationContexts
    port = free_port()
    server = ae.start_server(
        ("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, store)]
    )
    settings.CHESTNET_PACS = f"TESTPACS@127.0.0.1:{port}"
    yield SimpleNamespace(received=received, port=port)
    server.shutdown()


def _received_image(chest_dicom, source: str = "dimse", **header) -> Image:
    received = services.instance_receive(data=chest_dicom(**header), source=source, source_ae="MOD")
    return Image.objects.get(pk=received.image_id)


def _analyse(image: Image, probability: float = 0.87) -> Image:
    assert services.images_claim(image_id=image.pk, token="t", extra=0)
    result = SimpleNamespace(
        probability=probability,
        label="PNEUMONIA" if probability >= 0.5 else "NORMAL",
        threshold=0.5,
        model_version="test-model-7",
        uncertainty=0.03,
        warnings=(),
        refused=False,
    )
    heat = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    analysed = services.Analysed(
        image.pk,
        result,
        preview=services.Preview(data=png_bytes(64, 64), size=(64, 64)),
        heatmap=heatmap_png(heat, size=(64, 64)),
        timings={},
    )
    assert services.analyses_store(token="t", results=[analysed]) == {image.pk}
    return Image.objects.get(pk=image.pk)


def test_each_result_of_a_network_case_becomes_an_sr_and_an_overlay_once(pacs, chest_dicom):
    image = _analyse(_received_image(chest_dicom))
    assert outbox.outbox_fill() == 2
    assert outbox.outbox_fill() == 0  # already in the outbox
    kinds = set(OutboundObject.objects.values_list("kind", flat=True))
    assert kinds == {"findings", "overlay"}
    for outbound in OutboundObject.objects.all():
        assert outbound.study_instance_uid == image.case.study_instance_uid
        assert outbound.status == "pending" and outbound.destination == pacs_destination(pacs)


def pacs_destination(pacs) -> str:
    return f"TESTPACS@127.0.0.1:{pacs.port}"


def test_uploads_and_unconfigured_destinations_send_nothing(settings, chest_dicom, clinician):
    settings.CHESTNET_PACS = ""
    _analyse(_received_image(chest_dicom))
    assert outbox.outbox_fill() == 0
    settings.CHESTNET_PACS = "PACS@127.0.0.1:104"
    OutboundObject.objects.all().delete()
    case = services.case_create(
        owner=clinician, images=[services.image_validate(name="a.dcm", data=chest_dicom())]
    )
    _analyse(case.images.get())
    assert outbox.outbox_fill() == 2  # the network case's two objects, not the upload's


def test_the_pacs_receives_the_findings_in_the_study_with_the_uids_kept_on_a_resend(
    pacs, chest_dicom
):
    image = _analyse(_received_image(chest_dicom))
    outbox.outbox_fill()
    findings = OutboundObject.objects.get(kind="findings")
    assert sending.outbound_deliver(outbound_id=findings.pk) == "sent"
    assert sending.outbound_deliver(outbound_id=findings.pk) == "skipped"  # sent: not again
    sr = pacs.received[0]
    assert sr.SOPInstanceUID == findings.sop_instance_uid
    assert sr.StudyInstanceUID == image.case.study_instance_uid
    assert sr.SeriesInstanceUID == findings.series_instance_uid
    assert "test-model-7" in str(sr.ContentSequence)

    # Delivered again (say its 'sent' mark was lost): the very same object.
    OutboundObject.objects.filter(pk=findings.pk).update(status="pending")
    assert sending.outbound_deliver(outbound_id=findings.pk) == "sent"
    assert pacs.received[1].SOPInstanceUID == sr.SOPInstanceUID
    assert pacs.received[1] == pacs.received[0]  # element for element


def test_the_overlay_is_a_secondary_capture_labelled_not_for_diagnosis(pacs, chest_dicom):
    _analyse(_received_image(chest_dicom))
    outbox.outbox_fill()
    overlay = OutboundObject.objects.get(kind="overlay")
    assert sending.outbound_deliver(outbound_id=overlay.pk) == "sent"
    sc = pacs.received[0]
    assert sc.BurnedInAnnotation == "YES" and "not for diagnosis" in sc.SeriesDescription
    assert sc.Rows > 64 and sc.Columns == 64  # the radiograph, a banner above it


def test_a_signed_report_goes_out_as_its_own_sr_with_the_radiologists_words(
    pacs, chest_dicom, radiologist
):
    image = _analyse(_received_image(chest_dicom))
    services.case_claim(case=image.case, user=radiologist)
    services.review_submit(
        case=image.case, author=radiologist, agrees_with_ai=False, finding="normal", report="Clear."
    )
    outbox.outbox_fill()
    report = OutboundObject.objects.get(kind="report")
    assert sending.outbound_deliver(outbound_id=report.pk) == "sent"
    content = str(pacs.received[0].ContentSequence)
    assert "Clear." in content and "test-model-7" in content
    assert pacs.received[0].VerificationFlag == "VERIFIED"


def test_a_pacs_that_is_down_is_tried_again_later_with_a_doubling_wait(settings, chest_dicom):
    settings.CHESTNET_PACS = f"DOWN@127.0.0.1:{free_port()}"
    _analyse(_received_image(chest_dicom))
    outbox.outbox_fill()
    findings = OutboundObject.objects.get(kind="findings")
    assert sending.outbound_deliver(outbound_id=findings.pk) == "failed"
    findings.refresh_from_db()
    first_wait = findings.next_attempt_at - timezone.now()
    assert findings.status == "pending" and timedelta(seconds=1) < first_wait <= timedelta(
        seconds=2
    )
    assert "no association" in findings.last_error
    assert sending.outbound_deliver(outbound_id=findings.pk) == "skipped"  # not due yet
    OutboundObject.objects.filter(pk=findings.pk).update(next_attempt_at=timezone.now())
    assert sending.outbound_deliver(outbound_id=findings.pk) == "failed"
    findings.refresh_from_db()
    assert timedelta(seconds=3) < findings.next_attempt_at - timezone.now() <= timedelta(seconds=4)
    attempts = SendAttempt.objects.filter(outbound=findings)
    assert [a.outcome for a in attempts] == ["failed", "failed"] and findings.attempts == 2


def test_a_result_replaced_before_it_went_out_is_superseded_not_sent(pacs, chest_dicom, admin_user):
    image = _analyse(_received_image(chest_dicom))
    outbox.outbox_fill()
    services.case_reanalyse(case=image.case, user=admin_user)
    findings = OutboundObject.objects.get(kind="findings")
    assert sending.outbound_deliver(outbound_id=findings.pk) == "superseded"
    assert pacs.received == []


def test_only_one_worker_holds_an_object_and_a_dead_workers_claim_expires(pacs, chest_dicom):
    _analyse(_received_image(chest_dicom))
    outbox.outbox_fill()
    findings = OutboundObject.objects.get(kind="findings")
    assert outbox.outbound_claim(outbound_id=findings.pk) is not None
    assert outbox.outbound_claim(outbound_id=findings.pk) is None
    assert findings.pk not in outbox.outbound_due()
    later = timezone.now() + outbox.SENDING_LEASE + timedelta(seconds=1)
    assert findings.pk in outbox.outbound_due(now=later)
    assert outbox.outbound_claim(outbound_id=findings.pk, now=later) is not None


def test_admins_see_the_outbox_and_its_attempts(client, chest_dicom, settings):
    settings.CHESTNET_PACS = f"DOWN@127.0.0.1:{free_port()}"
    _analyse(_received_image(chest_dicom))
    outbox.outbox_fill()
    sending.outbound_deliver(outbound_id=OutboundObject.objects.get(kind="findings").pk)
    admin = factories.UserFactory(username="ops", is_staff=True, is_superuser=True)
    client.force_login(admin)
    listing = client.get("/admin/dicomnet/outboundobject/")
    assert listing.status_code == 200 and b"image-" in listing.content
    attempts = client.get("/admin/dicomnet/sendattempt/")
    assert attempts.status_code == 200 and b"no association" in attempts.content


def test_an_amendment_goes_out_as_a_new_sr_naming_the_version_it_replaces(
    pacs, chest_dicom, radiologist
):
    image = _analyse(_received_image(chest_dicom))
    services.case_claim(case=image.case, user=radiologist)
    reviews.submit(image.case, radiologist, report="RLL.")
    reviews.submit(image.case, radiologist, report="RLL and LLL.", reason="second look")
    outbox.outbox_fill()
    first, second = OutboundObject.objects.filter(kind="report").order_by("run")
    assert first.series_instance_uid != second.series_instance_uid
    for outbound in (first, second):
        assert sending.outbound_deliver(outbound_id=outbound.pk) == "sent"
    amended = pacs.received[1]
    assert "RLL and LLL." in str(amended.ContentSequence)
    predecessor = amended.PredecessorDocumentsSequence[0]
    referenced = predecessor.ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
    assert referenced.ReferencedSOPInstanceUID == first.sop_instance_uid


def test_with_no_destination_nothing_is_queued_and_objects_wait(settings, chest_dicom, pacs):
    _analyse(_received_image(chest_dicom))
    outbox.outbox_fill()
    settings.CHESTNET_PACS = ""
    assert outbox.outbound_due() == []
    settings.CHESTNET_PACS = pacs_destination(pacs)
    assert len(outbox.outbound_due()) == 2


@pytest.mark.django_db(transaction=True)  # the listener's threads read the outbox
def test_our_own_overlay_forwarded_back_by_the_pacs_is_acknowledged_not_analysed(
    pacs, chest_dicom, client, clinician
):
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian
    from pynetdicom.sop_class import SecondaryCaptureImageStorage

    from dicomnet.listener import serve

    _analyse(_received_image(chest_dicom))
    outbox.outbox_fill()
    overlay = OutboundObject.objects.get(kind="overlay")
    sending.outbound_deliver(outbound_id=overlay.pk)
    ours = pacs.received[0]
    ours.file_meta = FileMetaDataset()
    ours.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    port = free_port()
    server = serve(host="127.0.0.1", port=port, block=False)
    try:
        ae = AE(ae_title="ORTHANC")
        ae.add_requested_context(SecondaryCaptureImageStorage)
        assoc = ae.associate("127.0.0.1", port, ae_title="CHESTNET")
        assert assoc.send_c_store(ours).Status == 0
        assoc.release()
    finally:
        server.shutdown()
    assert Image.objects.count() == 1  # only the radiograph it was made from
