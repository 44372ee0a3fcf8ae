"""The REST API for integrators: token or session auth, JSON errors a person can act on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation, TooManyFilesSent
from django.http import FileResponse
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from diagnosis import roles, selectors, services
from diagnosis.models import AuditEvent
from diagnosis.serializers import (
    CaseCreateSerializer,
    CaseSerializer,
    ReviewCreateSerializer,
    WorklistCaseSerializer,
)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, plus one top-level `detail` sentence on validation errors, and JSON
    (not Django's HTML page) for requests refused while their body is read."""
    refused = _request_refusal(exc)
    if refused is not None:
        return refused
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(exc, ValidationError):
        problems = " ".join(_messages(response.data))
        response.data = {"detail": f"Invalid input. {problems}", "errors": response.data}
    return response


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
        if not (roles.is_clinician(request.user) or roles.is_admin(request.user)):
            raise PermissionDenied("Only clinicians can create cases.")
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
        services.audit_record(
            actor=request.user,
            action=AuditEvent.Action.VIEWED,
            case=case,
            detail="api",
            coalesce=True,
        )
        return Response(CaseSerializer(case).data)


class WorklistApi(APIView):
    @extend_schema(responses=WorklistCaseSerializer(many=True))
    def get(self, request: Request) -> Response:
        if not roles.is_radiologist(request.user):
            raise PermissionDenied("Only radiologists have a worklist.")
        cases = list(selectors.worklist_for(user=request.user)[:500])
        services.cases_listed_audit(user=request.user, cases=cases, listing="api worklist")
        return Response(WorklistCaseSerializer(cases, many=True).data)


class CaseReviewApi(APIView):
    @extend_schema(request=ReviewCreateSerializer, responses={201: CaseSerializer})
    def post(self, request: Request, case_id: int) -> Response:
        if not roles.is_radiologist(request.user):
            raise PermissionDenied("Only radiologists can sign reports.")
        case = selectors.case_get_for_user(user=request.user, case_id=case_id)
        serializer = ReviewCreateSerializer(data=request.data, context={"case": case})
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            services.review_submit(
                case=case,
                author=request.user,
                agrees_with_ai=data["agrees_with_ai"],
                finding=data["finding"],
                report=data["report"],
                reason=data["amendment_reason"],
            )
        except services.ServiceError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        case = selectors.case_get_for_user(user=request.user, case_id=case_id)
        return Response(CaseSerializer(case).data, status=status.HTTP_201_CREATED)


class CaseClaimApi(APIView):
    """Take the case for review (required before signing); 409 if another holds it."""

    @extend_schema(request=None, responses={200: CaseSerializer})
    def post(self, request: Request, case_id: int) -> Response:
        return _claim_action(request, case_id, services.case_claim)


class CaseReleaseApi(APIView):
    """Give a claimed case back to the worklist."""

    @extend_schema(request=None, responses={200: CaseSerializer})
    def post(self, request: Request, case_id: int) -> Response:
        return _claim_action(request, case_id, services.case_release)


def _claim_action(request: Request, case_id: int, action: Callable[..., Any]) -> Response:
    if not roles.is_radiologist(request.user):
        raise PermissionDenied("Only radiologists can claim cases.")
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
        handle, content_type = services.image_file_open(
            user=request.user, image_id=image_id, kind=kind
        )
        response = FileResponse(handle, content_type=content_type)
        response["Cache-Control"] = "private, no-store"
        return response


def public(view: Callable[..., Any]) -> Callable[..., Any]:
    """DRF authenticates API requests itself (tokens), so the site-wide login redirect
    must not intercept them; DRF still answers 401/403 as JSON."""
    return login_not_required(view)
