"""The review page, a reading room: the case bar, the thumbnail strip, the viewers in a
1 x 1, 1 x 2 or 2 x 2 layout, the docked report panel and the patient's priors
(templates/diagnosis/review.html), and its live poll (static/js/review_live.js)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from accounts.permissions import radiologist_required
from diagnosis import selectors, services
from diagnosis.forms import ReviewForm
from diagnosis.models import Case, Prediction, Review
from diagnosis.views import INTENDED_USE


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
    context = _review_context(request, case, current=current, form=form)
    context["priors"] = _priors(request, case)
    return render(
        request,
        "diagnosis/review.html",
        context,
        status=400 if request.method == "POST" else 200,
    )


def _priors(request: HttpRequest, case: Case) -> list[Case]:
    """The patient's earlier cases the reader may see. Their findings and signed reports are
    shown, so each is a view of that case in the audit trail (once per few minutes)."""
    priors = selectors.case_priors(user=request.user, case=case)
    for prior in priors:
        services.case_viewed_audit(
            user=request.user, case=prior, detail=f"prior of case {case.pk}", coalesce=True
        )
    return priors


@dataclass(frozen=True)
class CaseAI:
    """What the case bar says of the AI: the analysed image with the highest probability
    (`top`, numbered as on the page), and how many images are analysed, refused or waiting."""

    top: Prediction | None
    top_number: int
    analysed: int
    refused: int
    waiting: int


def _case_ai(rows: list[selectors.ImageRow]) -> CaseAI:
    top, top_number = None, 0
    counts = {"done": 0, "refused": 0, "waiting": 0}
    for number, row in enumerate(rows, start=1):
        image = row.image
        if image.status == "failed":  # said on its card; neither a result nor on its way
            continue
        counts[image.status if image.status in ("done", "refused") else "waiting"] += 1
        prediction = getattr(image, "prediction", None)
        if image.status == "done" and prediction is not None:
            if top is None or prediction.probability > top.probability:
                top, top_number = prediction, number
    return CaseAI(top, top_number, counts["done"], counts["refused"], counts["waiting"])


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
        "case_ai": _case_ai(rows),
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
                "thumb": render_to_string("diagnosis/_review_thumb.html", card, request).strip(),
            }
        )
    answer.update(
        status=case.status,
        status_display=case.get_status_display(),
        claimed_by=case.claimed_by.get_username() if case.claimed_by else "",
        claimed_by_you=case.claimed_by_id == request.user.pk,
        panel_version=context["live"]["panel"],
        panel=render_to_string("diagnosis/_live_review_panel.html", context, request),
        case_ai=render_to_string("diagnosis/_review_case_ai.html", context, request).strip(),
        images=images,
    )
    return JsonResponse(answer)
