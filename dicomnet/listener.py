"""The DICOM listener: a C-STORE SCP (and C-ECHO) that takes projection radiographs from
modalities and PACS. Each association runs in its own thread; each instance goes to the
clinical app's one receiving service, like a browser upload goes to its upload service."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import connections
from pynetdicom import AE, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

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


def listener_ae() -> AE:
    """The application entity: our AE title only, the allowed callers only (if listed)."""
    ae = AE(ae_title=settings.CHESTNET_DICOM_AET)
    for sop_class in ACCEPTED_SOP_CLASSES:
        ae.add_supported_context(sop_class, TRANSFER_SYNTAXES)
    ae.add_supported_context(Verification)
    ae.require_called_aet = True
    if settings.CHESTNET_DICOM_ALLOWED_AETS:
        ae.require_calling_aet = list(settings.CHESTNET_DICOM_ALLOWED_AETS)
    return ae


def instance_store(event: Any) -> int:
    """EVT_C_STORE: keep the instance as sent (file meta and dataset, not re-encoded)."""
    calling_ae = str(event.assoc.requestor.ae_title).strip()
    if outbox.is_own_object(str(event.request.AffectedSOPInstanceUID or "")):
        return SUCCESS  # our own SR or overlay, forwarded back with its study
    try:
        received = services.instance_receive(
            data=event.encoded_dataset(), source="dimse", source_ae=calling_ae
        )
    except services.InstanceRejected as exc:
        logger.warning("C-STORE from %s refused: %s", calling_ae, exc)
        return CANNOT_UNDERSTAND
    except Exception:
        logger.exception("C-STORE from %s failed", calling_ae)
        return OUT_OF_RESOURCES
    logger.info(
        "C-STORE from %s: image %s of case %s%s",
        calling_ae,
        received.image_id,
        received.case_id,
        "" if received.created else " (already received)",
    )
    return SUCCESS


def _connection_closed(event: Any) -> None:
    # Django's connections are per thread; this association's thread is ending.
    connections.close_all()


HANDLERS: list[Any] = [(evt.EVT_C_STORE, instance_store), (evt.EVT_CONN_CLOSE, _connection_closed)]


def serve(*, host: str, port: int, block: bool = True) -> Any:
    """Listen on host:port; blocking, or return the server (tests stop it)."""
    ae = listener_ae()
    logger.info("DICOM listener %s on %s:%s", settings.CHESTNET_DICOM_AET, host, port)
    return ae.start_server((host, port), block=block, evt_handlers=HANDLERS)
