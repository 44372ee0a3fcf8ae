"""The REST API for integrators: token or session auth, JSON errors a person can act on."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation, TooManyFilesSent
from django.core.signals import got_request_exception
from django.http import FileResponse
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView, set_rollback
from rest_framework.views import exception_handler as drf_exception_handler

from accounts.permissions import ClaimsCases, CreatesCases, HasWorklist, SignsReports
from chestnet_site.middleware import INTERNAL_ERROR_MESSAGE, unavailable_message
from diagnosis import selectors, services
from diagnosis.files import file_response
from diagnosis.serializers import (
    CaseCreateSerializer,
    CaseSerializer,
    ReviewCreateSerializer,
    WorklistCaseSerializer,
    WorklistQuerySerializer,
)
from diagnosis.worklist import InvalidCursor, WorklistFilters, case_claim_next, page_for

logger = logging.getLogger(__name__)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, plus one top-level `detail` sentence on validation errors, and JSON
    (not Django's HTML page) for requests refused while their body is read. A database or
    store that is down, or a disk or store that is full, is a 503 with a sentence; any
    other error a JSON 500 without a traceback, with DEBUG on too (Django's debug page is
    HTML, and shows settings and paths)."""
    refused = _request_refusal(exc)
    if refused is not None:
        return refused
    response = drf_exception_handler(exc, context)
    if response is None:
        return _failure(exc, context)
    if isinstance(exc, ValidationError):
        problems = " ".join(_messages(response.data))
        response.data = {"detail": f"Invalid input. {problems}", "errors": response.data}
    return response


def _failure(exc: Exception, context: dict[str, Any]) -> Response:
    set_rollback()
    request = getattr(context.get("request"), "_request", None)
    unavailable = unavailable_message(exc)
    if unavailable is not None:
        return Response({"detail": unavailable}, status=503, headers={"Retry-After": "60"})
    logger.error("Internal error answering %s", getattr(request, "path", ""), exc_info=exc)
    # As Django's own handler does for a 500: error reporters (and the test client) hear it.
    got_request_exception.send(sender=None, request=request)
    return Response({"detail": INTERNAL_ERROR_MESSAGE}, status=500)


def _request_refusal(exc: Exception) -> Response | None:
    if isinstance(exc, RequestDataTooBig):
        detail = "The request's form fields are too large to read."
        return Response({"detail": detail}, status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    if isinstance(exc, TooManyFilesSent):
        detail = f"At most {settings.CHESTNET_MAX_FILES_PER_CASE} images per case."
        return Response({"detail": detail}, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, SuspiciousOperation):
        return Response({"detail": "The request could not be read."}, status=400)
    return None


def _messages(data: Any, field: str = "") -> list[str]:
    if isinstance(data, dict):
        return [
            m
            for key, value in data.items()
            for m in _messages(value, key if isinstance(key, str) else field)
        ]
    if isinstance(data, list):
        return [m for item in data for m in _messages(item, field)]
    prefix = f"{field}: " if field and field != "non_field_errors" else ""
    return [f"{prefix}{data}"]


class CaseListCreateApi(APIView):
    parser_classes = [MultiPartParser, FormParser]
    permission_classes = [CreatesCases]

    @extend_schema(responses=CaseSerializer(many=True))
    def get(self, request: Request) -> Response:
        cases = list(
            selectors.case_list_for(user=request.user).prefetch_related(
                "images__prediction", "reviews__author"
            )[:200]
        )
        services.cases_listed_audit(user=request.user, cases=cases, listing="api case list")
        return Response(CaseSerializer(cases, many=True).data)

    @extend_schema(request=CaseCreateSerializer, responses={201: CaseSerializer})
    def post(self, request: Request) -> Response:
        payload = {**_fields(request.data), "images": request.FILES.getlist("images")}
        serializer = CaseCreateSerializer(data=payload)
        serializer.is_valid(raise_exception=True)
        case = services.case_create(owner=request.user, **serializer.validated_data)
        case = selectors.case_get_for_user(user=request.user, case_id=case.pk)
        return Response(CaseSerializer(case).data, status=status.HTTP_201_CREATED)


def _fields(data: Any) -> dict[str, Any]:
    """Form fields as plain values, whatever the body was (a multipart form, or none)."""
    return data.dict() if hasattr(data, "dict") else dict(data)


class CaseDetailApi(APIView):
    @extend_schema(responses=CaseSerializer)
    def get(self, request: Request, case_id: int) -> Response:
        case = selectors.case_get_for_user(user=request.user, case_id=case_id)
        # Every view is audited; a page polling the case is recorded once per few minutes.
        services.case_viewed_audit(user=request.user, case=case, detail="api", coalesce=True)
        return Response(CaseSerializer(case).data)


class WorklistApi(APIView):
    """Cases awaiting review, a page at a time, in the order and with the filters asked for.
    Keyset pages: the `Link: <...>; rel="next"` header carries the next page's URL (no
    header on the last page). Poll cheaply with the `ETag` of the last answer in
    `If-None-Match`: 304, without a body (and not audited), while the page is unchanged."""

    permission_classes = [HasWorklist]

    @extend_schema(
        parameters=[WorklistQuerySerializer],
        responses={200: WorklistCaseSerializer(many=True), 304: None},
    )
    def get(self, request: Request) -> Response:
        query = _worklist_query(request)
        filters = WorklistFilters.from_valid(query)
        try:
            page = page_for(
                user=request.user, filters=filters, after=query["after"], size=query["size"]
            )
        except InvalidCursor as exc:
            raise ValidationError({"after": [str(exc)]}) from exc
        headers = {"ETag": f'"{page.version}"'}
        if page.next_cursor is not None:
            params = request.query_params.copy()
            params["after"] = page.next_cursor
            next_url = request.build_absolute_uri(f"{request.path}?{params.urlencode()}")
            headers["Link"] = f'<{next_url}>; rel="next"'
        if headers["ETag"] in request.headers.get("If-None-Match", ""):
            return Response(status=status.HTTP_304_NOT_MODIFIED, headers=headers)
        services.cases_listed_audit(user=request.user, cases=page.cases, listing="api worklist")
        return Response(WorklistCaseSerializer(page.cases, many=True).data, headers=headers)


class WorklistClaimNextApi(APIView):
    """Claim the top unclaimed case of the worklist in this order and with these filters
    (query parameters as for the worklist; `claim`, `after` and `limit` do not apply).
    Two clients asking at once get two different cases; 404 when none matches."""

    permission_classes = [ClaimsCases]

    @extend_schema(
        request=None, parameters=[WorklistQuerySerializer], responses={200: CaseSerializer}
    )
    def post(self, request: Request) -> Response:
        filters = WorklistFilters.from_valid(_worklist_query(request))
        case = case_claim_next(user=request.user, filters=filters)
        if case is None:
            detail = "No unclaimed case on the worklist matches these filters."
            return Response({"detail": detail}, status=status.HTTP_404_NOT_FOUND)
        case = selectors.case_get_for_user(user=request.user, case_id=case.pk)
        return Response(CaseSerializer(case).data)


def _worklist_query(request: Request) -> dict[str, Any]:
    """The worklist's query parameters, checked: a 400 names any that is not valid."""
    query = WorklistQuerySerializer(data=request.query_params)
    query.is_valid(raise_exception=True)
    return query.validated_data


class CaseReviewApi(APIView):
    permission_classes = [SignsReports]

    @extend_schema(request=ReviewCreateSerializer, responses={201: CaseSerializer})
    def post(self, request: Request, case_id: int) -> Response:
        case = selectors.case_get_for_user(user=request.user, case_id=case_id)
        serializer = ReviewCreateSerializer(data=request.data, context={"case": case})
        serializer.is_valid(raise_exception=True)
        review = services.review_fields(serializer.validated_data)
        try:
            services.review_submit(case=case, author=request.user, **review)
        except services.ServiceError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        case = selectors.case_get_for_user(user=request.user, case_id=case_id)
        return Response(CaseSerializer(case).data, status=status.HTTP_201_CREATED)


class CaseClaimApi(APIView):
    """Take the case for review (required before signing); 409 if another holds it."""

    permission_classes = [ClaimsCases]

    @extend_schema(request=None, responses={200: CaseSerializer})
    def post(self, request: Request, case_id: int) -> Response:
        return _claim_action(request, case_id, services.case_claim)


class CaseReleaseApi(APIView):
    """Give a claimed case back to the worklist."""

    permission_classes = [ClaimsCases]

    @extend_schema(request=None, responses={200: CaseSerializer})
    def post(self, request: Request, case_id: int) -> Response:
        return _claim_action(request, case_id, services.case_release)


def _claim_action(request: Request, case_id: int, action: Callable[..., Any]) -> Response:
    case = selectors.case_get_for_user(user=request.user, case_id=case_id)
    try:
        action(case=case, user=request.user)
    except services.ServiceError as exc:
        return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
    case = selectors.case_get_for_user(user=request.user, case_id=case_id)
    return Response(CaseSerializer(case).data)


class ImageFileApi(APIView):
    """The preview, heatmap or original of an image (the URLs the case carries), with the
    same access rule as the case; audited."""

    @extend_schema(responses={(200, "application/octet-stream"): bytes})
    def get(self, request: Request, image_id: int, kind: str) -> FileResponse:
        stored = services.image_file_open(user=request.user, image_id=image_id, kind=kind)
        return file_response(stored)


_HEADER_ELEMENT_FIELDS = {
    "tag": serializers.CharField(help_text="(gggg,eeee)"),
    "keyword": serializers.CharField(help_text="DICOM keyword; empty for private tags"),
    "name": serializers.CharField(),
    "vr": serializers.CharField(),
    "value": serializers.CharField(help_text="As text; long values cut, binary as a size"),
    "depth": serializers.IntegerField(help_text="Sequence nesting: 0 at the top level"),
}


class ImageHeaderApi(APIView):
    """The DICOM header of an image's original (no pixel data), for the viewer's header
    panel. Same access rule as the case, audited; 404 for a PNG or JPEG original. Patient
    identifiers are omitted for a user without a clinical role (see
    services.image_header_for_user)."""

    @extend_schema(
        responses=inline_serializer(
            "DicomHeader",
            {
                "image": serializers.IntegerField(),
                "identifiers_shown": serializers.BooleanField(),
                "omitted": serializers.IntegerField(help_text="Identifying elements left out"),
                "elements": inline_serializer(
                    "DicomHeaderElement", _HEADER_ELEMENT_FIELDS, many=True
                ),
            },
        )
    )
    def get(self, request: Request, image_id: int) -> Response:
        try:
            header = services.image_header_for_user(user=request.user, image_id=image_id)
        except services.ServiceError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_422_UNPROCESSABLE_ENTITY)
        response = Response(header)
        response["Cache-Control"] = "private, no-store"
        return response


def public(view: Callable[..., Any]) -> Callable[..., Any]:
    """DRF authenticates API requests itself (tokens), so the site-wide login redirect
    must not intercept them; DRF still answers 401/403 as JSON."""
    return login_not_required(view)
