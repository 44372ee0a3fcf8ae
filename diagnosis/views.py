"""HTML views: parse the request, call one service or selector, render."""

from __future__ import annotations

import hashlib
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
from diagnosis.forms import CaseForm, ReassignForm, ReviewForm
from diagnosis.models import Case, Review
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


@radiologist_required
def case_review(request: HttpRequest, case_id: int) -> HttpResponse:
    case = selectors.case_get_for_user(user=request.user, case_id=case_id)
    current = selectors.review_current(case=case)
    form = ReviewForm(request.POST or None, case=case, current=current)
    if request.method == "POST" and form.is_valid():
        try:
            services.review_submit(case=case, author=request.user, **form.review_fields())
        except services.ServiceError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, "Report signed.")
            return redirect("case_review", case_id=case.pk)
    elif request.method == "GET":
        services.case_viewed_audit(user=request.user, case=case, detail="review page")
    return render(
        request,
        "diagnosis/review.html",
        _review_context(request, case, current=current, form=form),
        status=400 if request.method == "POST" else 200,
    )


def _review_context(
    request: HttpRequest, case: Case, *, current: Review | None, form: ReviewForm
) -> dict[str, Any]:
    """What the review page shows, for its first render and its live fragments alike;
    `live` holds the versions static/js/review_live.js compares."""
    rows = selectors.image_rows(case=case)
    return {
        "case": case,
        "review": current,
        "rows": [(row, form.agreement_field(row.image)) for row in rows],
        "form": form,
        "intended_use": INTENDED_USE,
        "claimed_by_other": case.claimed_by_id not in (None, request.user.pk),
        "may_sign": case.status == Case.Status.AWAITING_REVIEW
        and case.claimed_by_id == request.user.pk,
        "may_amend": case.status == Case.Status.REPORTED
        and case.report_owner_id == request.user.pk,
        "live": _review_live_versions(case, rows, current),
    }


def _review_live_versions(
    case: Case, rows: list[selectors.ImageRow], current: Review | None
) -> dict[str, str]:
    """`panel`: what the side panel depends on (status, claim, report version and owner,
    the analysed images); `version`: that and every image's state, so that any change the
    page would show is a new version."""
    analysed = ",".join(str(row.image.pk) for row in rows if row.image.status == "done")
    panel = ":".join(
        str(part or "")
        for part in (
            case.status,
            case.claimed_by_id,
            current.version if current else None,
            case.report_owner_id,
            analysed,
        )
    )
    images = [_review_image_state(row) for row in rows]
    digest = hashlib.sha256("|".join([panel, *images]).encode()).hexdigest()[:16]
    return {"panel": panel, "version": digest}


def _review_image_state(row: selectors.ImageRow) -> str:
    image = row.image
    prediction = getattr(image, "prediction", None)
    parts = (image.pk, image.status, prediction.pk if prediction else None, image.error)
    more = (image.refusal_reason, image.refusal_model_version, bool(image.preview), row.is_later)
    return ":".join(str(part) for part in (*parts, *more))


@never_cache  # a live page's poll: never a stale copy
@require_GET
@radiologist_required
def case_review_live(request: HttpRequest, case_id: int) -> JsonResponse:
    """The open review page's poll (static/js/review_live.js). `since`: the version the
    page shows. Unchanged, the answer is the version alone; changed, it carries the side
    panel and every image card, rendered by the templates the page was rendered with.
    Audited like the API's poll: a view of the case, recorded once per few minutes."""
    case = selectors.case_get_for_user(user=request.user, case_id=case_id)
    services.case_viewed_audit(user=request.user, case=case, detail="review page", coalesce=True)
    current = selectors.review_current(case=case)
    context = _review_context(
        request, case, current=current, form=ReviewForm(case=case, current=current)
    )
    version = context["live"]["version"]
    answer: dict[str, Any] = {"version": version, "changed": request.GET.get("since") != version}
    if not answer["changed"]:
        return JsonResponse(answer)
    images = []
    for number, (row, agreement) in enumerate(context["rows"], start=1):
        card = {**context, "row": row, "agreement": agreement, "number": number}
        images.append(
            {
                "id": row.image.pk,
                "number": number,
                "status": row.image.status,
                "html": render_to_string("diagnosis/_live_image_card.html", card, request).strip(),
            }
        )
    answer.update(
        status=case.status,
        status_display=case.get_status_display(),
        claimed_by=case.claimed_by.get_username() if case.claimed_by else "",
        claimed_by_you=case.claimed_by_id == request.user.pk,
        panel_version=context["live"]["panel"],
        panel=render_to_string("diagnosis/_live_review_panel.html", context, request),
        images=images,
    )
    return JsonResponse(answer)
