"""HTML views: parse the request, call one service or selector, render."""

from __future__ import annotations

import csv
import itertools
import logging
import sys
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import connection
from django.http import (
    FileResponse,
    HttpRequest,
    HttpResponse,
    JsonResponse,
    StreamingHttpResponse,
)
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from chestnet_site.health import checks_run
from diagnosis import roles, selectors, services
from diagnosis.access import is_api_request, unavailable_response
from diagnosis.files import file_response
from diagnosis.forms import AuditFilterForm, CaseForm, ReassignForm, ReviewForm
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
    cases = list(selectors.case_list_for(user=request.user)[:200])
    services.cases_listed_audit(user=request.user, cases=cases, listing="case list")
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
    form = ReassignForm() if roles.is_admin(request.user) else None
    return _case_page(request, case, reassign_form=form)


def _case_page(
    request: HttpRequest, case: Case, *, reassign_form: ReassignForm | None, status: int = 200
) -> HttpResponse:
    context = {
        "case": case,
        "review": selectors.review_current(case=case),
        "rows": selectors.image_rows(case=case),
        "intended_use": INTENDED_USE,
        "reassign_form": reassign_form,
    }
    return render(request, "diagnosis/case_detail.html", context, status=status)


@require_POST
def report_reassign(request: HttpRequest, case_id: int) -> HttpResponse:
    """An administrator hands a signed report to another radiologist, with a reason."""
    _require_admin(request)
    case = selectors.case_get_for_user(user=request.user, case_id=case_id)
    form = ReassignForm(request.POST)
    if not form.is_valid():
        # The page again (a view of the case), with the form and what is wrong with it.
        services.audit_record(
            actor=request.user, action=AuditEvent.Action.VIEWED, case=case, coalesce=True
        )
        messages.error(request, "Choose a radiologist and give the reason in words.")
        return _case_page(request, case, reassign_form=form, status=400)
    try:
        services.report_reassign(
            case=case,
            to=form.cleaned_data["radiologist"],
            reason=form.cleaned_data["reason"],
            by=request.user,
        )
        messages.success(request, f"The report is now {form.cleaned_data['radiologist']}'s.")
    except services.ServiceError as exc:
        messages.error(request, str(exc))
    return redirect("case_detail", case_id=case.pk)


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
    """Preview, heatmap or original bytes, only for users who may see the case; audited."""
    return file_response(services.image_file_open(user=request.user, image_id=image_id, kind=kind))


@never_cache  # a live list: never a stale copy from a cache or the back button
@require_GET
def worklist(request: HttpRequest) -> HttpResponse:
    """The worklist page: its first rows are rendered here (it works without scripts);
    static/js/worklist.js then follows them through `worklist_rows`."""
    _require_radiologist(request)
    filters = _worklist_filters(request.GET)
    page = _worklist_page(request, filters)
    services.cases_listed_audit(user=request.user, cases=page.cases, listing="worklist")
    params = _worklist_params(filters)
    context = {
        "page": page,
        "cases": page.cases,
        "filters": params,
        "query": urlencode(params),
        "next_url": _worklist_next_url(params, page),
        "deeper": bool(request.GET.get("after")),
        "sort_label": selectors.WORKLIST_SORTS[filters["sort"]].label,
        "sorts": [(key, sort.label) for key, sort in selectors.WORKLIST_SORTS.items()],
        "urgencies": WORKLIST_URGENCIES,
        "sources": Case.Source.choices,
        "now": timezone.now(),
    }
    return render(request, "diagnosis/worklist.html", context)


# Most pressing first, in the filter as on the worklist.
WORKLIST_URGENCIES = [
    (Case.Urgency.STAT, "STAT"),
    (Case.Urgency.URGENT, "Urgent"),
    (Case.Urgency.ROUTINE, "Routine"),
]


@never_cache
@require_GET
def worklist_rows(request: HttpRequest) -> JsonResponse:
    """The open worklist page's poll: the same filters, sort and cursor as the page, and
    `since`, the version the page shows. Unchanged, the answer is the version alone: no
    patient data, so nothing to audit. Changed, it carries the rows (rendered as on the
    page) and is audited like the page (identical lists coalesce)."""
    _require_radiologist(request)
    filters = _worklist_filters(request.GET)
    page = _worklist_page(request, filters)
    answer: dict[str, Any] = {
        "version": page.version,
        "changed": request.GET.get("since") != page.version,
        "now": timezone.now().isoformat(),
    }
    if answer["changed"]:
        services.cases_listed_audit(user=request.user, cases=page.cases, listing="worklist")
        rows = render_to_string(
            "diagnosis/_worklist_rows.html", {"cases": page.cases}, request=request
        )
        params = _worklist_params(filters)
        answer.update(html=rows, count=len(page.cases), next=_worklist_next_url(params, page))
    return JsonResponse(answer)


@require_POST
def worklist_claim_next(request: HttpRequest) -> HttpResponse:
    """Claim the top unclaimed case of the worklist as filtered and sorted, and open it."""
    _require_radiologist(request)
    filters = _worklist_filters(request.POST)
    case = services.case_claim_next(
        user=request.user,
        urgency=filters["urgency"],
        flagged=filters["flagged"],
        source=filters["source"],
        sort=filters["sort"],
    )
    if case is None:
        messages.info(request, "No unclaimed case matches these filters.")
        query = urlencode(_worklist_params(filters))
        return redirect(reverse("worklist") + (f"?{query}" if query else ""))
    return redirect("case_review", case_id=case.pk)


def _worklist_filters(params: Any) -> dict[str, Any]:
    """Filters and sort from a query string or form; unknown values mean "all"."""
    flagged = {"yes": True, "no": False}.get(params.get("flagged", ""))
    urgency = params.get("urgency") or None
    claim = params.get("claim") or None
    source = params.get("source") or None
    sort = params.get("sort") or selectors.WORKLIST_DEFAULT_SORT
    return {
        "urgency": urgency if urgency in Case.Urgency.values else None,
        "flagged": flagged,
        "claim": claim if claim in ("mine", "unclaimed") else None,
        "source": source if source in Case.Source.values else None,
        "sort": sort if sort in selectors.WORKLIST_SORTS else selectors.WORKLIST_DEFAULT_SORT,
    }


def _worklist_params(filters: dict[str, Any]) -> dict[str, str]:
    """The filters as the URL carries them: only those that differ from the default."""
    flagged = {True: "yes", False: "no"}.get(filters["flagged"], "")
    params = {**filters, "flagged": flagged}
    if params["sort"] == selectors.WORKLIST_DEFAULT_SORT:
        params["sort"] = ""
    return {name: value for name, value in params.items() if value}


def _worklist_page(request: HttpRequest, filters: dict[str, Any]) -> selectors.WorklistPage:
    try:
        return selectors.worklist_page(
            user=request.user, after=request.GET.get("after", ""), **filters
        )
    except selectors.InvalidCursor:  # an edited or outdated link: the first page
        return selectors.worklist_page(user=request.user, **filters)


def _worklist_next_url(params: dict[str, str], page: selectors.WorklistPage) -> str | None:
    if page.next_cursor is None:
        return None
    return reverse("worklist") + "?" + urlencode({**params, "after": page.next_cursor})


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
    form = ReviewForm(request.POST or None, case=case, current=current)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            services.review_submit(
                case=case,
                author=request.user,
                # One answer per analysed image; none when the AI analysed no image.
                agrees_with_ai=None,
                image_agreement=form.image_agreement(),
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
            "rows": [
                (row, form.agreement_field(row.image)) for row in selectors.image_rows(case=case)
            ],
            "form": form,
            "intended_use": INTENDED_USE,
            "claimed_by_other": case.claimed_by_id not in (None, request.user.pk),
            "may_sign": case.status == Case.Status.AWAITING_REVIEW
            and case.claimed_by_id == request.user.pk,
            "may_amend": case.status == Case.Status.REPORTED
            and case.report_owner_id == request.user.pk,
        },
        status=400 if request.method == "POST" else 200,
    )


# "user" and "role": the actor as they were when the event was written.
AUDIT_COLUMNS = ("at", "user", "action", "case", "cases listed", "detail", "source", "role")


@never_cache
@require_GET
def audit_list(request: HttpRequest) -> HttpResponse:
    """The audit trail for administrators, filterable by user, case and dates."""
    _require_admin(request)
    form = AuditFilterForm(request.GET or None)
    events = selectors.audit_events(**form.filters())
    page = Paginator(events, 100).get_page(request.GET.get("page"))
    return render(request, "diagnosis/audit_list.html", {"form": form, "page": page})


@never_cache
@require_GET
def audit_export(request: HttpRequest) -> StreamingHttpResponse:
    """The same filtered trail as CSV (streamed: the trail only grows)."""
    _require_admin(request)
    events = selectors.audit_events(**AuditFilterForm(request.GET or None).filters())
    writer = csv.writer(_Echo())
    rows = (_audit_row(event) for event in events.iterator(chunk_size=2000))
    response = StreamingHttpResponse(
        (writer.writerow(row) for row in itertools.chain([AUDIT_COLUMNS], rows)),
        content_type="text/csv",
    )
    response["Content-Disposition"] = 'attachment; filename="chestnet-audit.csv"'
    return response


class _Echo:
    def write(self, value: str) -> str:
        return value


def _audit_row(event: AuditEvent) -> tuple:
    listed = " ".join(str(case_id) for case_id in event.subject_ids)
    return (
        event.at.isoformat(),
        event.actor_username,
        event.action,
        event.case_ref or "",
        listed,
        event.detail,
        event.source or "",
        event.actor_role,
    )


def _require_admin(request: HttpRequest) -> None:
    if not roles.is_admin(request.user):
        raise PermissionDenied("Only administrators can read the audit trail.")


@login_not_required
@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Database, broker, worker and DICOM listener state for load balancers and operators;
    no patient data."""
    state: dict[str, Any] = {"database": _database_ok(), "broker": "unknown", "workers": 0}
    state["broker"], state["workers"] = _broker_state()
    state["dicom_listener"] = _dicom_listener_state()
    state["storage"] = _storage_state()
    state.update(checks_run())  # the other apps' checks (the PACS outbox)
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


def _storage_state() -> str:
    """'ok' when the file storage (local folder or object store bucket) answers a lookup.
    Reading the worklist needs only the database, so an unreachable store does not make
    the site unhealthy: uploads and images answer 503 until it is back."""
    from django.core.files.storage import default_storage

    try:
        default_storage.exists("healthz")
    except Exception:
        logger.exception("Health check: storage unavailable")
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


def _dicom_listener_state() -> str:
    """'ok' when our listener answers a C-ECHO (another DICOM service on its port is
    'unavailable'), 'off' when CHESTNET_DICOM_PORT is 0."""
    if not settings.CHESTNET_DICOM_PORT:
        return "off"
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

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


def error_403(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if is_api_request(request):
        return JsonResponse({"detail": str(exception or "Forbidden.")}, status=403)
    return render(request, "403.html", {"message": str(exception or "")}, status=403)


def error_404(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if is_api_request(request):
        return JsonResponse({"detail": "Not found."}, status=404)
    return render(request, "404.html", status=404)


def error_500(request: HttpRequest) -> HttpResponse:
    """Never a traceback: a sentence (JSON for API clients); the log has the details. A
    fault met before any view ran (a temporary folder that fills while an upload's body is
    read) is the 503 of a service that is down or full, as a view's would be."""
    unavailable = unavailable_response(request, sys.exc_info()[1] or Exception())
    if unavailable is not None:
        return unavailable
    message = "An internal error occurred; it has been logged. Try again, or contact support."
    if is_api_request(request):
        return JsonResponse({"detail": message}, status=500)
    return HttpResponse(f"<h1>Server error</h1><p>{message}</p>", status=500)
