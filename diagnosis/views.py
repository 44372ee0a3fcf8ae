"""HTML views: parse the request, call one service or selector, render."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.http import (
    FileResponse,
    HttpRequest,
    HttpResponse,
    JsonResponse,
)
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from accounts import roles
from accounts.permissions import (
    case_action_check,
    case_creator_required,
    radiologist_required,
    report_reassigner_required,
)
from diagnosis import selectors, services
from diagnosis.files import file_response
from diagnosis.forms import CaseForm, ReassignForm
from diagnosis.models import Case
from diagnosis.worklist import (
    WORKLIST_SORTS,
    InvalidCursor,
    WorklistFilters,
    WorklistPage,
    case_claim_next,
    page_for,
)

logger = logging.getLogger(__name__)

INTENDED_USE = (
    "Decision support only: the model estimates the probability of pneumonia on frontal chest "
    "radiographs. It was trained on pediatric radiographs (children aged one to five, one "
    "hospital); its performance on adults, other views and other hospitals is unknown. It is "
    "not a diagnosis and does not replace a radiologist; the radiologist's signed report is "
    "the result of record."
)


def home(request: HttpRequest) -> HttpResponse:
    if roles.is_radiologist(request.user):
        return redirect("worklist")
    return redirect("case_list")


@require_GET
def case_list(request: HttpRequest) -> HttpResponse:
    cases = list(selectors.case_list_for(user=request.user)[:200])
    services.cases_listed_audit(user=request.user, cases=cases, listing="case list")
    return render(request, "diagnosis/case_list.html", {"cases": cases})


@case_creator_required
def case_new(request: HttpRequest) -> HttpResponse:
    form = CaseForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        case = services.case_create(owner=request.user, **form.cleaned_data)
        return redirect("case_detail", case_id=case.pk)
    status = 400 if request.method == "POST" else 200
    return render(request, "diagnosis/case_new.html", {"form": form}, status=status)


@require_GET
def case_detail(request: HttpRequest, case_id: int) -> HttpResponse:
    case = selectors.case_get_for_user(user=request.user, case_id=case_id)
    services.case_viewed_audit(user=request.user, case=case)
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
@report_reassigner_required
def report_reassign(request: HttpRequest, case_id: int) -> HttpResponse:
    """An administrator hands a signed report to another radiologist, with a reason."""
    case = selectors.case_get_for_user(user=request.user, case_id=case_id)
    form = ReassignForm(request.POST)
    if not form.is_valid():
        # The page again (a view of the case), with the form and what is wrong with it.
        services.case_viewed_audit(user=request.user, case=case, coalesce=True)
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
    case_action_check(request.user, image.case)
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
@radiologist_required
def worklist(request: HttpRequest) -> HttpResponse:
    """The worklist page: its first rows are rendered here (it works without scripts);
    static/js/worklist.js then follows them through `worklist_rows`."""
    filters = WorklistFilters.from_query(request.GET)
    page = _worklist_page(request, filters)
    services.cases_listed_audit(user=request.user, cases=page.cases, listing="worklist")
    params = filters.query()
    context = {
        "page": page,
        "cases": page.cases,
        "filters": params,
        "query": urlencode(params),
        "next_url": _worklist_next_url(params, page),
        "deeper": bool(request.GET.get("after")),
        "sort_label": filters.order.label,
        "sorts": [(key, sort.label) for key, sort in WORKLIST_SORTS.items()],
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
@radiologist_required
def worklist_rows(request: HttpRequest) -> JsonResponse:
    """The open worklist page's poll: the same filters, sort and cursor as the page, and
    `since`, the version the page shows. Unchanged, the answer is the version alone: no
    patient data, so nothing to audit. Changed, it carries the rows (rendered as on the
    page) and is audited like the page (identical lists coalesce)."""
    filters = WorklistFilters.from_query(request.GET)
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
        params = filters.query()
        answer.update(html=rows, count=len(page.cases), next=_worklist_next_url(params, page))
    return JsonResponse(answer)


@require_POST
@radiologist_required
def worklist_claim_next(request: HttpRequest) -> HttpResponse:
    """Claim the top unclaimed case of the worklist as filtered and sorted, and open it."""
    filters = WorklistFilters.from_query(request.POST)
    case = case_claim_next(user=request.user, filters=filters)
    if case is None:
        messages.info(request, "No unclaimed case matches these filters.")
        query = urlencode(filters.query())
        return redirect(reverse("worklist") + (f"?{query}" if query else ""))
    return redirect("case_review", case_id=case.pk)


def _worklist_page(request: HttpRequest, filters: WorklistFilters) -> WorklistPage:
    try:
        return page_for(user=request.user, filters=filters, after=request.GET.get("after", ""))
    except InvalidCursor:  # an edited or outdated link: the first page
        return page_for(user=request.user, filters=filters)


def _worklist_next_url(params: dict[str, str], page: WorklistPage) -> str | None:
    if page.next_cursor is None:
        return None
    return reverse("worklist") + "?" + urlencode({**params, "after": page.next_cursor})


@require_POST
@radiologist_required
def case_claim(request: HttpRequest, case_id: int) -> HttpResponse:
    if not _claim_action(request, case_id, services.case_claim):
        return redirect("worklist")
    return redirect("case_review", case_id=case_id)


@require_POST
@radiologist_required
def case_release(request: HttpRequest, case_id: int) -> HttpResponse:
    _claim_action(request, case_id, services.case_release)
    return redirect("worklist")


def _claim_action(request: HttpRequest, case_id: int, action: Callable[..., Any]) -> bool:
    """Claims or releases the case; False, with the reason shown, when a rule refused it."""
    case = selectors.case_get_for_user(user=request.user, case_id=case_id)
    try:
        action(case=case, user=request.user)
    except services.ServiceError as exc:
        messages.error(request, str(exc))
        return False
    return True
