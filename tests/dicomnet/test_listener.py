"""The DICOM listener in this process, spoken to by a pynetdicom SCU: C-ECHO, C-STORE of a
chest DX, a CT refused at negotiation, the calling AE allow-list, a re-sent instance."""

from __future__ import annotations

import pytest
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.sop_class import (
    CTImageStorage,
    DigitalXRayImageStorageForPresentation,
    Verification,
)

from devtools import dicom_files
from devtools.ports import free_port
from diagnosis.models import Case, Image
from dicomnet.listener import CANNOT_UNDERSTAND, serve

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def listener(settings):
    settings.CHESTNET_DICOM_ALLOWED_AETS = ["MODALITY"]
    port = free_port()
    server = serve(host="127.0.0.1", port=port, block=False)
    yield port
    server.shutdown()


def _associate(port: int, *contexts, calling: str = "MODALITY", called: str = "CHESTNET"):
    ae = AE(ae_title=calling)
    for context in contexts:
        ae.add_requested_context(context, ExplicitVRLittleEndian)
    return ae.associate("127.0.0.1", port, ae_title=called)


def test_echo_and_store_a_chest_radiograph(listener):
    assoc = _associate(listener, Verification, DigitalXRayImageStorageForPresentation)
    assert assoc.is_established
    ds = dicom_files.radiograph(pixels=dicom_files.chest_pixels(side=48))
    try:
        assert assoc.send_c_echo().Status == 0
        assert assoc.send_c_store(ds).Status == 0
        assert assoc.send_c_store(ds).Status == 0  # sent again: success, stored once
    finally:
        assoc.release()
    image = Image.objects.get(sop_instance_uid=ds.SOPInstanceUID)
    assert (image.case.source, image.case.source_ae) == ("dimse", "MODALITY")
    assert Image.objects.count() == 1


def test_a_ct_has_no_presentation_context_and_an_unlisted_caller_is_rejected(listener):
    assoc = _associate(listener, CTImageStorage)
    assert not assoc.is_established  # no context accepted: nothing to send on
    assert _associate(listener, Verification, calling="STRANGER").is_rejected
    assert _associate(listener, Verification, called="SOMEONE").is_rejected
    assert not Case.objects.exists()


def test_an_instance_without_uids_is_answered_cannot_understand(listener):
    ds = dicom_files.radiograph(pixels=dicom_files.chest_pixels(side=32))
    del ds.StudyInstanceUID
    assoc = _associate(listener, DigitalXRayImageStorageForPresentation)
    try:
        assert assoc.send_c_store(ds).Status == CANNOT_UNDERSTAND
    finally:
        assoc.release()
    assert not Case.objects.exists()


def test_healthz_reports_the_listener_by_a_c_echo(listener, client, settings):
    settings.CHESTNET_DICOM_PORT = listener
    assert client.get("/healthz").json()["dicom_listener"] == "ok"
    settings.CHESTNET_DICOM_PORT = free_port()  # nothing listens there
    assert client.get("/healthz").json()["dicom_listener"] == "unavailable"
    settings.CHESTNET_DICOM_PORT = 0
    assert client.get("/healthz").json()["dicom_listener"] == "off"


def test_every_projection_radiography_class_is_accepted_in_the_common_transfer_syntaxes(listener):
    from pydicom import uid

    from dicomnet.sop import ACCEPTED_SOP_CLASSES

    syntaxes = [
        uid.JPEGBaseline8Bit,
        uid.JPEGLosslessSV1,
        uid.JPEGLSLossless,
        uid.JPEG2000Lossless,
        uid.JPEG2000,
        uid.RLELossless,
        uid.ImplicitVRLittleEndian,
    ]
    ae = AE(ae_title="MODALITY")
    for sop_class in ACCEPTED_SOP_CLASSES:
        for syntax in syntaxes:
            ae.add_requested_context(sop_class, syntax)  # one context per pair
    assoc = ae.associate("127.0.0.1", listener, ae_title="CHESTNET")
    try:
        accepted = {(c.abstract_syntax, c.transfer_syntax[0]) for c in assoc.accepted_contexts}
    finally:
        assoc.release()
    assert len(ACCEPTED_SOP_CLASSES) * len(syntaxes) == len(accepted)


def _large_dicom(tmp_path, megabytes: int):
    """A DX of about `megabytes` MB on disk (16-bit pixels)."""
    import numpy as np

    side = int((megabytes * 1024 * 1024 / 2) ** 0.5)
    pixels = np.random.default_rng(3).integers(0, 4096, size=(side, side), dtype=np.uint16)
    path = tmp_path / "large.dcm"
    path.write_bytes(dicom_files.to_bytes(dicom_files.radiograph(pixels=pixels)))
    return path


SEND = """
import sys
from pydicom import dcmread
from pynetdicom import AE
from pynetdicom.sop_class import DigitalXRayImageStorageForPresentation as DX
from pydicom.uid import ExplicitVRLittleEndian
ae = AE(ae_title="MODALITY")
ae.add_requested_context(DX, ExplicitVRLittleEndian)
assoc = ae.associate("127.0.0.1", int(sys.argv[2]), ae_title="CHESTNET")
status = assoc.send_c_store(dcmread(sys.argv[1]))
assoc.release()
print(f"{status.Status:04X}")
"""


def test_an_instance_over_the_limit_is_refused_out_of_resources_without_being_held(
    listener, settings, tmp_path
):
    """Sent from another process, so this process's memory is the listener's alone."""
    import tracemalloc

    settings.CHESTNET_DICOM_MAX_MB = 5
    path = _large_dicom(tmp_path, 24)
    tracemalloc.start()
    try:
        sent = _send(path, listener)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sent == "A700"  # Out of Resources
    assert peak < 8 * 1024 * 1024, f"the listener held {peak / 2**20:.1f} MB"
    assert not Case.objects.exists() and not Image.objects.exists()
    settings.CHESTNET_DICOM_MAX_MB = 50  # the same instance under a larger limit is stored
    assert _send(path, listener) == "0000" and Image.objects.count() == 1


def _send(path, port: int) -> str:
    """The C-STORE status (hex) of `path` sent by a pynetdicom SCU in another process."""
    import subprocess
    import sys

    sent = subprocess.run(
        [sys.executable, "-c", SEND, str(path), str(port)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return sent.stdout.strip()


def test_bound_beyond_this_host_the_listener_needs_an_allow_list(settings):
    from dicomnet.listener import ListenerUnavailable

    settings.CHESTNET_DICOM_ALLOWED_AETS = []
    with pytest.raises(ListenerUnavailable, match="CHESTNET_DICOM_ALLOWED_AETS is empty"):
        serve(host="0.0.0.0", port=free_port(), block=False)
    settings.CHESTNET_DICOM_ALLOWED_AETS = ["MODALITY"]
    server = serve(host="0.0.0.0", port=free_port(), block=False)
    server.shutdown()
    settings.CHESTNET_DICOM_ALLOWED_AETS = []  # on this host only, any caller may store
    server = serve(host="127.0.0.1", port=free_port(), block=False)
    server.shutdown()


def test_the_command_says_in_one_line_that_the_port_is_in_use_and_exits_78(capsys):
    import socket

    from django.core.management import call_command

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        with pytest.raises(SystemExit) as exited:
            call_command("dicom_listener", port=port, bind="127.0.0.1")
    assert exited.value.code == 78
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"port {port} on 127.0.0.1 is in use" in err
    assert "CHESTNET_DICOM_PORT" in err
