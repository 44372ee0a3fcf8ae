"""DICOMweb: STOW-RS at /dicomweb/studies for PACS, routers and scripts, with the API's
token (or session) authentication. Each instance takes the same path as one received by
the DICOM listener."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import StoresStudies
from chestnet_site import faults
from diagnosis import services
from dicomnet import services as outbox
from dicomnet import sop, stow
from dicomnet.sop import ACCEPTED_SOP_CLASSES

logger = logging.getLogger(__name__)


class DicomJsonRenderer(JSONRenderer):
    media_type = "application/dicom+json"
    format = "dicomjson"


STOW_SCHEMA: dict[str, Any] = {
    "request": {"multipart/related": OpenApiTypes.BINARY},
    "responses": {200: OpenApiTypes.OBJECT, 202: OpenApiTypes.OBJECT, 409: OpenApiTypes.OBJECT},
    "description": 'STOW-RS: multipart/related; type="application/dicom". Answers the Store '
    "Instances Response (DICOM JSON): stored instances in 00081199, failed ones in "
    "00081198 with their FailureReason; 200 all stored, 202 some, 409 none.",
}


class StowApi(APIView):
    """Store instances (multipart/related; type="application/dicom")."""

    renderer_classes = [DicomJsonRenderer, JSONRenderer]
    parser_classes: list[Any] = []  # the body is read here, as bytes
    permission_classes = [StoresStudies]

    @extend_schema(operation_id="dicomweb_store_instances", **STOW_SCHEMA)
    def post(self, request: Request, study_instance_uid: str = "") -> Response:
        # Where uploads spool too (FILE_UPLOAD_TEMP_DIR; None: the system's temporary folder).
        spool = settings.FILE_UPLOAD_TEMP_DIR
        with tempfile.TemporaryDirectory(prefix="stow-", dir=spool) as folder:
            try:
                parts = _parts(request, Path(folder))
            except stow.StowError as exc:
                return Response({"detail": str(exc)}, status=exc.status)
            outcomes = [_store(part, request.user, study_instance_uid) for part in parts]
        return Response(stow.response_body(outcomes), status=stow.response_status(outcomes))


def _parts(request: Request, folder: Path) -> list[stow.SpooledPart]:
    """The body's parts, written to `folder` as they arrive; refused (413) past the
    largest study a case may hold, each instance over CHESTNET_DICOM_MAX_MB kept only as
    its size (it fails with Out of Resources)."""
    part_limit = settings.CHESTNET_DICOM_MAX_MB * 1024 * 1024
    total_limit = part_limit * settings.CHESTNET_MAX_FILES_PER_CASE
    declared = int(request.META.get("CONTENT_LENGTH") or 0)
    if declared > total_limit:
        raise stow.StowError(413, "The request is larger than this server accepts.")
    return stow.parts_spool(
        request.content_type or "",
        request._request,
        folder=folder,
        part_limit=part_limit,
        total_limit=total_limit,
    )


def _store(spooled: stow.SpooledPart, user: Any, study_instance_uid: str) -> stow.Outcome:
    with spooled.open() as handle:
        part = stow.part_identify(handle)  # from its header: nothing read past it
    if spooled.too_large:
        logger.warning("STOW-RS: an instance over CHESTNET_DICOM_MAX_MB was refused")
        return stow.Outcome(part.sop_class_uid, part.sop_instance_uid, failure=sop.OUT_OF_RESOURCES)
    sop_class, instance = part.sop_class_uid, part.sop_instance_uid
    if not sop_class or not instance:
        return stow.Outcome(sop_class, instance, failure=sop.CANNOT_UNDERSTAND)
    if sop_class not in ACCEPTED_SOP_CLASSES:
        return stow.Outcome(sop_class, instance, failure=sop.SOP_CLASS_NOT_SUPPORTED)
    if outbox.is_own_object(instance):  # our own overlay, sent back with its study
        return stow.Outcome(sop_class, instance)
    # A Part 10 file is stored from its spooled file, read in chunks; a part sent without
    # the preamble is written out again with it, in memory (one instance at a time).
    data = spooled.path if spooled.is_part10() else stow.part_read(spooled.read()).data
    try:
        services.instance_receive(
            data=data, source="stow", owner=user, study_instance_uid=study_instance_uid
        )
    except services.StudyMismatch:
        return stow.Outcome(sop_class, instance, failure=sop.STUDY_MISMATCH)
    except services.InstanceRejected:
        return stow.Outcome(sop_class, instance, failure=sop.CANNOT_UNDERSTAND)
    except Exception as exc:
        if faults.unavailable(exc):
            raise  # a store that is full or down: the whole request is a 503, sent again later
        logger.exception("STOW-RS: storing an instance failed")
        return stow.Outcome(sop_class, instance, failure=sop.PROCESSING_FAILURE)
    return stow.Outcome(sop_class, instance)


class StowStudyApi(StowApi):
    """Store instances of one study: an instance of another study fails (0xA900)."""

    @extend_schema(operation_id="dicomweb_store_study_instances", **STOW_SCHEMA)
    def post(self, request: Request, study_instance_uid: str = "") -> Response:
        return super().post(request, study_instance_uid)


stow_view = login_not_required(StowApi.as_view())
stow_study_view = login_not_required(StowStudyApi.as_view())
