"""Every read of the clinical workflow, with the access rules applied in one place."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from django.db.models import Case as When_
from django.db.models import Count, F, IntegerField, Prefetch, Q, QuerySet, Value, When
from django.shortcuts import get_object_or_404

from diagnosis import roles
from diagnosis.models import AuditEvent, Case, Image, PriorPrediction, Review


def case_list_for(*, user) -> QuerySet[Case]:
    """Clinicians see their own cases; radiologists and admins see all."""
    cases = Case.objects.select_related("owner", "claimed_by").order_by("-created_at")
    return cases if roles.sees_all_cases(user) else cases.filter(owner=user)


def case_get_for_user(*, user, case_id: int) -> Case:
    """The case with its images, predictions and reviews, or 404 (also when it exists but
    belongs to someone else: no hint that it exists)."""
    images = Image.objects.select_related("prediction").order_by("pk")
    queryset = case_list_for(user=user).prefetch_related(
        Prefetch("images", queryset=images),
        Prefetch("reviews", queryset=Review.objects.select_related("author").order_by("-version")),
    )
    return get_object_or_404(queryset, pk=case_id)


def image_get_for_user(*, user, image_id: int) -> Image:
    visible = case_list_for(user=user).values("pk")
    return get_object_or_404(
        Image.objects.select_related("case", "prediction"), pk=image_id, case__in=visible
    )


def worklist_for(
    *,
    user,
    urgency: str | None = None,
    flagged: bool | None = None,
    claim: str | None = None,
) -> QuerySet[Case]:
    """Cases awaiting review: urgent first, then highest AI probability, then longest
    waiting (cases with no analysed image, all refused by the AI, have no probability and
    come after those with one). `claim` is 'mine', 'unclaimed' or None (all). Each case
    carries `refused_images`: how many of its images the AI did not analyse."""
    cases = (
        Case.objects.filter(status=Case.Status.AWAITING_REVIEW)
        .select_related("owner", "claimed_by")
        .annotate(
            urgency_rank=When_(
                When(urgency=Case.Urgency.URGENT, then=Value(0)),
                default=Value(1),
                output_field=IntegerField(),
            ),
            refused_images=Count("images", filter=Q(images__status=Image.Status.REFUSED)),
        )
        .order_by("urgency_rank", F("max_probability").desc(nulls_last=True), "ready_at", "pk")
    )
    if urgency:
        cases = cases.filter(urgency=urgency)
    if flagged is not None:
        cases = cases.filter(ai_flagged=flagged)
    if claim == "mine":
        cases = cases.filter(claimed_by=user)
    elif claim == "unclaimed":
        cases = cases.filter(claimed_by__isnull=True)
    return cases


@dataclass(frozen=True)
class ImageRow:
    """An image as a page shows it: with what the AI said when the current report version
    was signed (`signed`), and whether the result shown now came after it (`is_later`: a
    re-analysis), so that the later one is shown beside, never in place of, the other."""

    image: Image
    signed: dict | None
    is_later: bool


def image_rows(*, case: Case) -> list[ImageRow]:
    """Uses the case's prefetched images and reviews."""
    review = review_current(case=case)
    signed = {entry["image"]: entry for entry in (review.ai_results if review else [])}
    return [
        ImageRow(
            image=image,
            signed=signed.get(image.pk),
            is_later=image.pk in signed and _differs(signed[image.pk], image),
        )
        for image in case.images.all()
    ]


def _differs(entry: dict, image: Image) -> bool:
    prediction = getattr(image, "prediction", None)
    if entry["status"] != image.status:
        return True
    if image.status == Image.Status.DONE and prediction is not None:
        return entry.get("prediction_id") != prediction.pk
    return entry.get("model_version") != image.refusal_model_version


def review_current(*, case: Case) -> Review | None:
    """The latest signed version (uses prefetched reviews when present)."""
    reviews = sorted(case.reviews.all(), key=lambda review: review.version, reverse=True)
    return reviews[0] if reviews else None


def audit_for_case(*, case: Case) -> QuerySet[AuditEvent]:
    return case.audit_events.select_related("actor").order_by("-at")


def case_prediction_history(*, case: Case) -> tuple[QuerySet[Image], QuerySet[PriorPrediction]]:
    """The case's images with their current results, and the predictions re-analyses
    replaced (newest first)."""
    images = Image.objects.filter(case=case).select_related("prediction").order_by("pk")
    prior = PriorPrediction.objects.filter(image__case=case).select_related("superseded_by")
    return images, prior


# --- for the feedback loop (mlops pulls signed reports; diagnosis never pushes them) ---


def review_latest_id() -> int:
    """The id of the latest signed report version, or 0."""
    return Review.objects.order_by("-pk").values_list("pk", flat=True).first() or 0


def reviews_signed_after(*, review_id: int, limit: int = 100) -> list[Review]:
    """Signed report versions (first reports and amendments) with a larger id, oldest
    first: ids only grow, and a signed version is never changed."""
    reviews = Review.objects.filter(pk__gt=review_id).select_related("case", "author")
    return list(reviews.order_by("pk")[:limit])


def images_analysable(*, case: Case) -> QuerySet[Image]:
    """The case's images the AI did not refuse (not a chest radiograph, outside the
    population it was made for): only these may become training data."""
    return case.images.exclude(status=Image.Status.REFUSED).order_by("pk")


def audit_events(
    *,
    username: str = "",
    case_id: int | None = None,
    since: date | None = None,
    until: date | None = None,
) -> QuerySet[AuditEvent]:
    """The audit trail, newest first, filtered by user, case and dates (inclusive)."""
    events = AuditEvent.objects.select_related("actor").order_by("-at", "-pk")
    if username:
        events = events.filter(actor__username=username)
    if case_id is not None:
        events = events.filter(Q(case_ref=case_id) | Q(subjects__contains=f",{case_id},"))
    if since is not None:
        events = events.filter(at__date__gte=since)
    if until is not None:
        events = events.filter(at__date__lte=until)
    return events


# --- what the DICOM network sends back (dicomnet) --------------------------------------

NETWORK_SOURCES = (Case.Source.DIMSE, Case.Source.STOW)


def network_results_since(*, since) -> list[tuple[int, int, str, int, str, bool]]:
    """Finished images (analysed or not analysed) of cases received over the network, their
    last run at or after `since`: (image id, case id, study UID, run, status, has heatmap)."""
    recent = Q(claimed_at__gte=since) | Q(claimed_at__isnull=True, created_at__gte=since)
    rows = (
        Image.objects.filter(recent, case__source__in=NETWORK_SOURCES)
        .filter(status__in=[Image.Status.DONE, Image.Status.REFUSED])
        .values_list(
            "pk", "case_id", "case__study_instance_uid", "attempts", "status", "prediction__heatmap"
        )
    )
    return [
        (pk, case, study, run, status, bool(heat)) for pk, case, study, run, status, heat in rows
    ]


def network_reviews_since(*, since) -> list[tuple[int, int, str, int]]:
    """Reports signed (or amended) at or after `since` on cases received over the network:
    (review id, case id, study UID, version)."""
    return list(
        Review.objects.filter(signed_at__gte=since, case__source__in=NETWORK_SOURCES).values_list(
            "pk", "case_id", "case__study_instance_uid", "version"
        )
    )


def image_with_result(*, image_id: int) -> Image | None:
    return Image.objects.select_related("case", "prediction").filter(pk=image_id).first()


def review_with_images(*, review_id: int) -> tuple[Review, list[Image]] | None:
    """A signed report and its case's network-received images, for the report sent back."""
    review = Review.objects.select_related("case", "author").filter(pk=review_id).first()
    if review is None:
        return None
    images = Image.objects.filter(case_id=review.case_id).exclude(sop_instance_uid="")
    return review, list(images.order_by("pk"))
