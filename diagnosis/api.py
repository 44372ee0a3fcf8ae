"""The REST API for integrators: token or session auth, JSON errors a person can act on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib.auth.decorators import login_not_required
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.authtoken.views import ObtainAuthToken
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
    """DRF's handler, plus one top-level `detail` sentence on validation errors."""
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(exc, ValidationError):
        problems = " ".join(_messages(response.data))
        response.data = {"detail": f"Invalid input. {problems}", "errors": response.data}
    return response


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


class TokenView(ObtainAuthToken):
    """POST username and password, get {"token": ...} for `Authorization: Token <token>`."""


class CaseListCreateApi(APIView):
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(responses=CaseSerializer(many=True))
    def get(self, request: Request) -> Response:
        cases = selectors.case_list_for(user=request.user).prefetch_related(
            "images__prediction", "reviews__author"
        )[:200]
        return Response(CaseSerializer(cases, many=True).data)

    @extend_schema(request=CaseCreateSerializer, responses={201: CaseSerializer})
    def post(self, request: Request) -> Response:
        if not (roles.is_clinician(request.user) or roles.is_admin(request.user)):
            raise PermissionDenied("Only clinicians can create cases.")
        payload = {**request.data.dict(), "images": request.FILES.getlist("images")}
        serializer = CaseCreateSerializer(data=payload)
        serializer.is_valid(raise_exception=True)
        case = services.case_create(owner=request.user, **serializer.validated_data)
        case = selectors.case_get_for_user(user=request.user, case_id=case.pk)
        return Response(CaseSerializer(case).data, status=status.HTTP_201_CREATED)


class CaseDetailApi(APIView):
    @extend_schema(responses=CaseSerializer)
    def get(self, request: Request, case_id: int) -> Response:
        case = selectors.case_get_for_user(user=request.user, case_id=case_id)
        if request.query_params.get("poll") != "1":  # the case page polls; one view is enough
            services.audit_record(
                actor=request.user, action=AuditEvent.Action.VIEWED, case=case, detail="api"
            )
        return Response(CaseSerializer(case).data)


class WorklistApi(APIView):
    @extend_schema(responses=WorklistCaseSerializer(many=True))
    def get(self, request: Request) -> Response:
        if not roles.is_radiologist(request.user):
            raise PermissionDenied("Only radiologists have a worklist.")
        cases = selectors.worklist_for(user=request.user)[:500]
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


def public(view: Callable[..., Any]) -> Callable[..., Any]:
    """DRF authenticates API requests itself (tokens), so the site-wide login redirect
    must not intercept them; DRF still answers 401/403 as JSON."""
    return login_not_required(view)
