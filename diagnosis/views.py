"""HTML views: parse the request, call one service or selector, render."""

from __future__ import annotations

import logging

from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from diagnosis import roles, selectors, services
from diagnosis.forms import CaseForm, ReviewForm
from diagnosis.models import AuditEvent, Case

logger = logging.getLogger(__name__)

INTENDED_USE = (
    "Decision support only: the model estimates the probability of pneumonia on frontal chest "
    "radiographs. It was trained on pediatric radiographs (children aged one to five, one "
    "hospital); its performance on adults, other views and other hospitals is unknown. It is "
    "not a diagnosis and does not replace a radiologist; the radiologist's signed report is "
    "the result of record."
)


def _require_radiologist(request: HttpRequest) -> None:
    if not roles.is_radiologist(request.user):
        raise PermissionDenied("Only radiologists can do this.")


def home(request: HttpRequest) -> HttpResponse:
    if roles.is_radiologist(request.user):
        return redirect("worklist")
    return redirect("case_list")


@require_GET
def case_list(request: HttpRequest) -> HttpResponse:
    cases = selectors.case_list_for(user=request.user)[:200]
    return render(request, "diagnosis/case_list.html", {"cases": cases})


def case_new(request: HttpRequest) -> HttpResponse:
    if not roles.is_clinician(request.user) and not roles.is_admin(request.user):
        raise PermissionDenied("Only clinicians can create cases.")
    form = CaseForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        case = services.case_create(
            owner=request.user,
            images=data["images"],
            patient_id=data["patient_id"],
            age=data["age"],
            sex=data["sex"],
            indication=data["indication"],
            urgency=data["urgency"],
        )
        return redirect("case_detail", case_id=case.pk)
    status = 400 if request.method == "POST" else 200
    return render(request, "diagnosis/case_new.html", {"form": form}, status=status)


@require_GET
def case_detail(request: HttpRequest, case_id: int) -> HttpResponse:
    case = selectors.case_get_for_user(user=request.user, case_id=case_id)
    services.audit_record(actor=request.user, action=AuditEvent.Action.VIEWED, case=case)
    return render(
        request,
        "diagnosis/case_detail.html",
        {
            "case": case,
            "review": selectors.review_current(case=case),
            "intended_use": INTENDED_USE,
        },
    )


@require_POST
def image_retry(request: HttpRequest, image_id: int) -> HttpResponse:
    image = selectors.image_get_for_user(user=request.user, image_id=image_id)
    if image.case.owner_id != request.user.pk and not roles.sees_all_cases(request.user):
        raise PermissionDenied
    try:
        services.image_retry(image=image, user=request.user)
    except services.ServiceError as exc:
        messages.error(request, str(exc))
    return redirect("case_detail", case_id=image.case_id)


@never_cache
@require_GET
def image_file(request: HttpRequest, image_id: int, kind: str) -> FileResponse:
    """Preview, heatmap or original bytes, only for users who may see the case."""
    image = selectors.image_get_for_user(user=request.user, image_id=image_id)
    if kind == "preview":
        field, content_type = image.preview, "image/png"
    elif kind == "heatmap":
        prediction = getattr(image, "prediction", None)
        if prediction is None or not prediction.heatmap:
            raise Http404("No heatmap for this image yet.")
        field, content_type = prediction.heatmap, "image/png"
    elif kind == "original":
        field = image.original
        content_type = (
            "application/dicom"
            if image.original_format == "dicom"
            else f"image/{image.original_format}"
        )
    else:
        raise Http404
    response = FileResponse(field.open("rb"), content_type=content_type)
    response["Cache-Control"] = "private, no-store"
    return response


@require_GET
def worklist(request: HttpRequest) -> HttpResponse:
    _require_radiologist(request)
    filters = _worklist_filters(request)
    cases = selectors.worklist_for(user=request.user, **filters)[:500]
    return render(request, "diagnosis/worklist.html", {"cases": cases, "filters": request.GET})


def _worklist_filters(request: HttpRequest) -> dict:
    flagged = {"yes": True, "no": False}.get(request.GET.get("flagged", ""))
    urgency = request.GET.get("urgency") or None
    claim = request.GET.get("claim") or None
    return {
        "urgency": urgency if urgency in Case.Urgency.values else None,
        "flagged": flagged,
        "claim": claim if claim in ("mine", "unclaimed") else None,
    }


@require_POST
def case_claim(request: HttpRequest, case_id: int) -> HttpResponse:
    _require_radiologist(request)
    case = selectors.case_get_for_user(user=request.user, case_id=case_id)
    try:
        services.case_claim(case=case, user=request.user)
    except services.ServiceError as exc:
        messages.error(request, str(exc))
        return redirect("worklist")
    return redirect("case_review", case_id=case.pk)


@require_POST
def case_release(request: HttpRequest, case_id: int) -> HttpResponse:
    _require_radiologist(request)
    case = selectors.case_get_for_user(user=request.user, case_id=case_id)
    try:
        services.case_release(case=case, user=request.user)
    except services.ServiceError as exc:
        messages.error(request, str(exc))
    return redirect("worklist")


def case_review(request: HttpRequest, case_id: int) -> HttpResponse:
    _require_radiologist(request)
    case = selectors.case_get_for_user(user=request.user, case_id=case_id)
    current = selectors.review_current(case=case)
    form = ReviewForm(request.POST or None, case=case)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            services.review_submit(
                case=case,
                author=request.user,
                # Absent when the case has no AI result: the form did not ask.
                agrees_with_ai=data.get("agrees_with_ai"),
                finding=data["finding"],
                report=data["report"],
                reason=data["amendment_reason"],
            )
        except services.ServiceError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, "Report signed.")
            return redirect("case_review", case_id=case.pk)
    elif request.method == "GET":
        services.audit_record(
            actor=request.user, action=AuditEvent.Action.VIEWED, case=case, detail="review page"
        )
    return render(
        request,
        "diagnosis/review.html",
        {
            "case": case,
            "review": current,
            "form": form,
            "intended_use": INTENDED_USE,
            "claimed_by_other": case.claimed_by_id not in (None, request.user.pk),
        },
        status=400 if request.method == "POST" else 200,
    )


@login_not_required
@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Database, broker and worker state for load balancers and operators; no patient data."""
    state = {"database": _database_ok(), "broker": "unknown", "workers": 0}
    state["broker"], state["workers"] = _broker_state()
    status = 200 if state["database"] == "ok" else 503
    return JsonResponse({"status": "ok" if status == 200 else "degraded", **state}, status=status)


def _database_ok() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception:
        logger.exception("Health check: database unavailable")
        return "unavailable"
    return "ok"


def _broker_state() -> tuple[str, int]:
    from chestnet_site.celery import app

    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
    except Exception:
        return "unavailable", 0
    try:
        replies = app.control.ping(timeout=0.5) or []
    except Exception:
        replies = []
    return "ok", len(replies)


def error_403(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return render(request, "403.html", {"message": str(exception or "")}, status=403)


def error_404(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return render(request, "404.html", status=404)
