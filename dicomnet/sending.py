"""Delivering one outbound object (runs in the worker): build the SR or the overlay from
the clinical record as it is now, C-STORE it to CHESTNET_PACS, record the attempt."""

from __future__ import annotations

import io
import logging
from typing import Any

from django.conf import settings
from django.utils import timezone
from pydicom import Dataset, dcmread
from pynetdicom import AE

from diagnosis import selectors
from dicomnet import objects, services
from dicomnet.models import OutboundObject
from dicomnet.sop import Destination, destination_parse
from ml.overlay import composite_rgb

logger = logging.getLogger(__name__)
TIMEOUT_S = 10


class SendFailed(Exception):
    """The PACS could not be reached, or did not store the object."""


class Superseded(Exception):
    """The result the object carried was replaced by a re-analysis."""


def outbound_deliver(*, outbound_id: int) -> str:
    """Send one object if this worker can claim it; returns what happened, for logs."""
    destination = destination_parse(settings.CHESTNET_PACS)
    if destination is None:
        return "no destination"
    outbound = services.outbound_claim(outbound_id=outbound_id)
    if outbound is None:
        return "skipped"
    started = timezone.now()
    try:
        dataset = outbound_dataset(outbound)
        detail = store(dataset, destination)
    except Superseded:
        services.outbound_supersede(outbound=outbound)
        return "superseded"
    except SendFailed as exc:
        retry_at = services.outbound_failed(outbound=outbound, started_at=started, error=str(exc))
        logger.warning(
            "Sending %s to %s failed (%s); %s",
            outbound.key,
            destination,
            exc,
            f"retry at {retry_at}" if retry_at else "no more tries: marked failed",
        )
        return "failed"
    except Exception as exc:  # a bug or an unreadable file: recorded, retried, visible
        # The exception's class only: its message may quote a header value (a birth date).
        logger.error("Building %s failed: %s", outbound.key, type(exc).__name__)
        services.outbound_failed(
            outbound=outbound, started_at=started, error=f"could not build ({type(exc).__name__})"
        )
        return "failed"
    services.outbound_sent(outbound=outbound, started_at=started, detail=f"{destination}: {detail}")
    return "sent"


def outbound_dataset(outbound: OutboundObject) -> Dataset:
    identity = _identity(outbound)
    if outbound.kind == OutboundObject.Kind.REPORT:
        return _report(outbound, identity)
    image = selectors.image_with_result(image_id=outbound.image_id or 0)
    if image is None or image.attempts != outbound.run or image.status not in ("done", "refused"):
        raise Superseded
    if outbound.kind == OutboundObject.Kind.OVERLAY:
        return _overlay(image, identity)
    return objects.findings_sr(
        results=[_result(image, _header(image))],
        report=None,
        identity=identity,
        content_datetime=timezone.localtime(outbound.created_at),
    )


def _header(image: Any) -> Dataset:
    with image.original.open("rb") as handle:
        return dcmread(io.BytesIO(handle.read()), stop_before_pixels=True)


def _result(image: Any, source: Dataset) -> objects.AiResult:
    prediction = getattr(image, "prediction", None)
    if image.status == "done" and prediction is not None:
        return objects.AiResult(source=source, analysed=True, **prediction.verdict())
    return objects.AiResult(
        source=source,
        analysed=False,
        model_version=image.refusal_model_version,
        reason=image.refusal_message or image.refusal_explanation,
    )


def _overlay(image: Any, identity: objects.ObjectIdentity) -> Dataset:
    prediction = image.prediction
    with image.preview.open("rb") as preview, prediction.heatmap.open("rb") as heatmap:
        rgb = composite_rgb(preview.read(), heatmap.read())
    return objects.overlay_sc(
        source=_header(image),
        overlay_rgb=rgb,
        identity=identity,
        model_version=prediction.model_version,
        probability=prediction.probability,
        label=prediction.label,
    )


def _report(outbound: OutboundObject, identity: objects.ObjectIdentity) -> Dataset:
    found = selectors.review_with_images(review_id=outbound.review_id or 0)
    if found is None:
        raise Superseded
    review, images = found
    signed = {entry.get("image"): entry for entry in review.ai_results}
    results = [_signed_result(signed.get(image.pk, {}), _header(image)) for image in images]
    report = objects.SignedReport(
        version=review.version,
        finding=review.finding,
        agrees_with_ai=review.agrees_with_ai,
        report=review.report,
        author=review.author.get_full_name() or review.author.get_username(),
        signed_at=timezone.localtime(review.signed_at),
        amendment_reason=review.amendment_reason,
    )
    return objects.findings_sr(
        results=results,
        report=report,
        identity=identity,
        content_datetime=timezone.localtime(review.signed_at),
        supersedes=[_identity(earlier) for earlier in services.reports_before(outbound)],
    )


def _identity(outbound: OutboundObject) -> objects.ObjectIdentity:
    return objects.ObjectIdentity(
        series_instance_uid=outbound.series_instance_uid,
        sop_instance_uid=outbound.sop_instance_uid,
        series_number=outbound.series_number,
        instance_number=max(outbound.run, 1),
    )


def _signed_result(entry: dict[str, Any], source: Dataset) -> objects.AiResult:
    """The AI result the report was signed against (Review.ai_results), not today's."""
    if entry.get("status") == "done":
        return objects.AiResult(
            source=source,
            analysed=True,
            model_version=str(entry.get("model_version", "")),
            probability=entry.get("probability"),
            label=str(entry.get("label", "")),
            threshold=entry.get("threshold"),
            uncertainty=entry.get("uncertainty"),
        )
    reason = entry.get("refusal_reason") or "not analysed when the report was signed"
    return objects.AiResult(
        source=source,
        analysed=False,
        model_version=str(entry.get("model_version", "")),
        reason=str(reason),
    )


def store(dataset: Dataset, destination: Destination) -> str:
    """C-STORE one dataset; returns the peer's status. Raises SendFailed."""
    ae = AE(ae_title=settings.CHESTNET_DICOM_AET)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = TIMEOUT_S
    ae.connection_timeout = TIMEOUT_S
    ae.add_requested_context(dataset.SOPClassUID, dataset.file_meta.TransferSyntaxUID)
    assoc = ae.associate(destination.host, destination.port, ae_title=destination.ae_title)
    if not assoc.is_established:
        raise SendFailed(f"no association with {destination} (down, or it refused us)")
    try:
        status = assoc.send_c_store(dataset)
    finally:
        assoc.release()
    code = getattr(status, "Status", None)
    if code is None:
        raise SendFailed(f"{destination} did not answer the C-STORE")
    if code != 0x0000 and not 0xB000 <= code <= 0xBFFF:  # success, or stored with a warning
        raise SendFailed(f"{destination} answered C-STORE status 0x{code:04X}")
    return "stored" if code == 0 else f"stored with warning 0x{code:04X}"
