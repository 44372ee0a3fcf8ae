"""The DICOM listener: a C-STORE SCP (and C-ECHO) that takes projection radiographs from
modalities and PACS. Each association runs in its own thread; each instance goes to the
clinical app's one receiving service, like a browser upload goes to its upload service."""

from __future__ import annotations

import errno
import ipaddress
import logging
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connections
from pynetdicom import AE, _config, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from chestnet_site import faults
from diagnosis import services
from dicomnet import services as outbox
from dicomnet.sop import (
    ACCEPTED_SOP_CLASSES,
    CANNOT_UNDERSTAND,
    OUT_OF_RESOURCES,
    SUCCESS,
    TRANSFER_SYNTAXES,
)

logger = logging.getLogger(__name__)


class ListenerUnavailable(Exception):
    """The listener cannot start (its port is in use, say): one line says why and what to
    change; the rest of ChestNet runs without it."""


def listener_ae() -> AE:
    """The application entity: our AE title only, the allowed callers only (if listed)."""
    ae = AE(ae_title=settings.CHESTNET_DICOM_AET)
    ae.implementation_version_name = settings.CHESTNET_DICOM_IMPLEMENTATION_NAME
    for sop_class in ACCEPTED_SOP_CLASSES:
        ae.add_supported_context(sop_class, TRANSFER_SYNTAXES)
    ae.add_supported_context(Verification)
    ae.require_called_aet = True
    if settings.CHESTNET_DICOM_ALLOWED_AETS:
        ae.require_calling_aet = list(settings.CHESTNET_DICOM_ALLOWED_AETS)
    return ae


def instance_store(event: Any) -> int:
    """EVT_C_STORE: keep the instance as sent (file meta and dataset, not re-encoded).
    pynetdicom has written it to a temporary file as it arrived (`serve` turns on its
    chunked receiving): one larger than CHESTNET_DICOM_MAX_MB is refused unread."""
    calling_ae = str(event.assoc.requestor.ae_title).strip()
    if outbox.is_own_object(str(event.request.AffectedSOPInstanceUID or "")):
        return SUCCESS  # our own SR or overlay, forwarded back with its study
    path = Path(event.dataset_path)
    if path.stat().st_size > settings.CHESTNET_DICOM_MAX_MB * 1024 * 1024:
        logger.warning(
            "C-STORE from %s refused: larger than CHESTNET_DICOM_MAX_MB (%s MB)",
            calling_ae,
            settings.CHESTNET_DICOM_MAX_MB,
        )
        return OUT_OF_RESOURCES
    try:
        # Read from its file a header and a chunk at a time, never whole.
        received = services.instance_receive(data=path, source="dimse", source_ae=calling_ae)
    except services.InstanceRejected as exc:
        logger.warning("C-STORE from %s refused: %s", calling_ae, exc)
        return CANNOT_UNDERSTAND
    except Exception as exc:
        if faults.storage_full(exc):  # nothing was kept; the sender may try again later
            logger.error("C-STORE from %s refused: the image store is full", calling_ae)
            return OUT_OF_RESOURCES
        logger.exception("C-STORE from %s failed", calling_ae)
        return OUT_OF_RESOURCES
    if received.created:
        logger.info(
            "C-STORE from %s: image %s of case %s", calling_ae, received.image_id, received.case_id
        )
    else:
        logger.info("C-STORE from %s: already received", calling_ae)
    return SUCCESS


def _connection_closed(event: Any) -> None:
    # Django's connections are per thread; this association's thread is ending.
    connections.close_all()


HANDLERS: list[Any] = [(evt.EVT_C_STORE, instance_store), (evt.EVT_CONN_CLOSE, _connection_closed)]


def serve(*, host: str, port: int, block: bool = True) -> Any:
    """Listen on host:port; blocking, or return the server (tests stop it)."""
    if not _is_loopback(host) and not settings.CHESTNET_DICOM_ALLOWED_AETS:
        raise ListenerUnavailable(
            f"DICOM listener not started: it would listen on {host}, beyond this host, and "
            "CHESTNET_DICOM_ALLOWED_AETS is empty. List the calling AE titles of your "
            "modalities and PACS there (comma-separated), or bind to 127.0.0.1."
        )
    # Each received dataset goes to a temporary file as it arrives, not into memory.
    _config.STORE_RECV_CHUNKED_DATASET = True
    ae = listener_ae()
    try:
        if not block:
            return ae.start_server((host, port), block=False, evt_handlers=HANDLERS)
        server = ae.make_server((host, port), evt_handlers=HANDLERS)
    except OSError as exc:  # EADDRINUSE, EACCES below 1024, an address not on this host
        raise ListenerUnavailable(_unavailable_line(host, port, exc)) from None
    logger.info("DICOM listener %s on %s:%s", settings.CHESTNET_DICOM_AET, host, port)
    try:
        server.serve_forever()
    finally:
        server.shutdown()
    return None


def listener_state() -> str:
    """/healthz: 'ok' when our listener answers a C-ECHO (another DICOM service on its port
    is 'unavailable'), 'off' when CHESTNET_DICOM_PORT is 0."""
    if not settings.CHESTNET_DICOM_PORT:
        return "off"
    ae = AE(ae_title=settings.CHESTNET_DICOM_AET)
    ae.acse_timeout = ae.network_timeout = ae.connection_timeout = 2
    ae.add_requested_context(Verification)
    assoc = ae.associate(
        settings.CHESTNET_DICOM_HOST,
        settings.CHESTNET_DICOM_PORT,
        ae_title=settings.CHESTNET_DICOM_AET,
    )
    if assoc.is_rejected:  # it answered: the allow-list does not name our own AE title
        return "ok"
    if not assoc.is_established:
        return "unavailable"
    if assoc.acceptor.implementation_version_name != settings.CHESTNET_DICOM_IMPLEMENTATION_NAME:
        assoc.release()
        return "unavailable"  # another DICOM service holds the port, not our listener
    try:
        answered = assoc.send_c_echo()
    finally:
        assoc.release()
    return "ok" if getattr(answered, "Status", None) == 0 else "unavailable"


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _unavailable_line(host: str, port: int, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        why = f"port {port} on {host} is in use (another PACS, or a second ChestNet?)"
    elif exc.errno == errno.EACCES:
        why = f"port {port} needs privileges this process does not have"
    else:
        why = f"{host}:{port} cannot be bound ({exc.strerror or exc})"
    return (
        f"DICOM listener not started: {why}. Set CHESTNET_DICOM_PORT to a free port "
        "(or 0 to turn the listener off); the web app and workers run without it."
    )
