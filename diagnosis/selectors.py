"""Every read of the clinical workflow, with the access rules applied in one place."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from django.db.models import Case as DbCase
from django.db.models import (
    Count,
    Exists,
    F,
    IntegerField,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    When,
)
from django.db.models.functions import Greatest
from django.shortcuts import get_object_or_404

from accounts import roles
from diagnosis.models import AuditEvent, Case, Image, PriorPrediction, Review

# The worklist's reads live in diagnosis.worklist; these names stay here for their callers.
from diagnosis.worklist import (  # noqa: F401
    WORKLIST_DEFAULT_SORT,
    WORKLIST_PAGE_SIZE,
    WORKLIST_SORTS,
    InvalidCursor,
    WorklistPage,
    WorklistSort,
    cursor_decode,
    cursor_encode,
    worklist_for,
    worklist_page,
)


def case_list_for(*, user) -> QuerySet[Case]:
    """Clinicians see their own cases; radiologists and admins see all; anyone else
    (an integration's service account, a user without a role) none."""
    cases = Case.objects.select_related("owner", "claimed_by").order_by("-created_at")
    if roles.sees_all_cases(user):
        return cases
    return cases.filter(owner=user) if roles.sees_own_cases(user) else cases.none()


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


PRIORS_SHOWN = 10


def case_priors(*, user, case: Case, limit: int = PRIORS_SHOWN) -> list[Case]:
    """The same patient's earlier cases that `user` may see, newest first, with their images
    and signed reports: a reader compares a film with the last ones. The same patient is the
    same Patient ID from the same issuer (Issuer of Patient ID; two cases that both lack one
    count as the same issuer, one with and one without do not). A case without a Patient ID
    has no priors. Earlier: an earlier study time (the study's, else the upload's)."""
    if not case.patient_id.strip():
        return []
    earlier = Q(study_time__lt=case.study_time) | Q(study_time=case.study_time, pk__lt=case.pk)
    images = Image.objects.select_related("prediction").order_by("pk")
    reviews = Review.objects.select_related("author").order_by("-version")
    priors = (
        case_list_for(user=user)
        .filter(earlier, patient_id=case.patient_id, issuer_of_patient_id=case.issuer_of_patient_id)
        .prefetch_related(
            Prefetch("images", queryset=images), Prefetch("reviews", queryset=reviews)
        )
        .order_by("-study_time", "-pk")
    )
    return list(priors[:limit])


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
    """The audit trail, newest first, filtered by user, case and dates (inclusive). A user
    is found by the name an event kept (they may have been renamed or deleted since) or by
    the account's present name."""
    events = AuditEvent.objects.select_related("actor").order_by("-at", "-pk")
    if username:
        events = events.filter(Q(actor_username=username) | Q(actor__username=username))
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


# --- outcomes for monitoring and site calibration ----------------------------------------


@dataclass(frozen=True)
class ImageOutcome:
    """One read image, what the AI made of it and, once signed, what the radiologist found:
    the row that monitoring and site calibration count. No patient data."""

    image_id: int
    case_id: int
    at: datetime  # when the AI's result (prediction or refusal) was stored, else uploaded
    source: str  # Case.Source: "upload", "dimse" or "stow"
    sender: str  # the calling AE title ("" for uploads)
    modality: str
    manufacturer: str
    width: int | None
    height: int | None
    bits_stored: int | None
    status: str  # Image.Status: "done" or "refused"
    refusal_reason: str
    model_version: str  # the prediction's, or the refusing artifact's
    probability: float | None
    ai_label: str | None  # "NORMAL" / "PNEUMONIA" at the threshold it was served at
    threshold: float | None
    finding: str | None  # the latest signed report's finding, None while unsigned
    signed_at: datetime | None

    @property
    def truth(self) -> int | None:
        """1 pneumonia, 0 normal, None: unsigned, "other" or "indeterminate"."""
        return _TRUTH.get(self.finding or "")

    @property
    def source_name(self) -> str:
        return self.sender if self.sender else self.source


def image_outcomes(
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    model_version: str | None = None,
    source: str | None = None,
    modality: str | None = None,
    manufacturer: str | None = None,
    signed_only: bool = False,
    judged_only: bool = False,
    last: int | None = None,
) -> list[ImageOutcome]:
    """Every analysed or refused image (optionally only those of signed cases, or only the
    analysed ones whose latest report judged them normal or pneumonia), oldest first; with
    `last`, only the latest `last` of them. `since`/`until` bound the result's time;
    `source` is a Case.Source or a calling AE title. Meant for figures, not for listing to a
    user: no access rule applies, so callers must be admin or radiologist views that show
    aggregates only. One query, filtered, ordered and cut by the database: a busy site's
    monitoring reads the window it shows, not every image the version ever saw."""
    images = _outcome_images(
        model_version=model_version, source=source, modality=modality, manufacturer=manufacturer
    )
    if since:
        images = images.filter(result_at__gte=since)
    if until:
        images = images.filter(result_at__lt=until)
    latest = Review.objects.filter(case_id=OuterRef("case_id")).order_by("-version")
    done = Image.Status.DONE
    images = images.annotate(
        at=F("result_at"),
        finding=Subquery(latest.values("finding")[:1]),
        signed_at=Subquery(latest.values("signed_at")[:1]),
    )
    if signed_only:
        images = images.filter(Exists(latest))
    if judged_only:
        # The analysed ones: "not refused" among images with a result, a negative test
        # so that the database keeps walking the time index.
        images = images.exclude(status=Image.Status.REFUSED).filter(finding__in=list(_TRUTH))
    fields = (
        "pk", "case_id", "at", "case__source", "case__source_ae", "modality", "manufacturer",
        "width", "height", "bits_stored", "status", "refusal_reason", "refusal_model_version",
        "prediction__pk", "prediction__model_version", "prediction__probability",
        "prediction__label", "prediction__threshold", "finding", "signed_at",
    )  # fmt: skip
    if last is None:
        rows = list(images.order_by("at", "pk").values_list(*fields))
    else:
        rows = list(images.order_by("-at", "-pk").values_list(*fields)[:last])[::-1]
    return [_outcome(row, done=done) for row in rows]


_TRUTH = {"pneumonia": 1, "normal": 0}


def input_facts_counted(
    *,
    until: datetime,
    model_version: str | None = None,
    source: str | None = None,
    modality: str | None = None,
    manufacturer: str | None = None,
) -> list[tuple[str, str, int | None, int | None, int]]:
    """The acquisition facts of the analysed or refused images before `until` (filtered as
    `image_outcomes`), counted by the database: (manufacturer, modality, bits stored, longer
    side or None where a side is unknown, images). The input-drift baseline: all of a
    version's history, read as a few hundred groups rather than as one row per image."""
    images = _outcome_images(
        model_version=model_version, source=source, modality=modality, manufacturer=manufacturer
    ).filter(result_at__lt=until)
    longer = DbCase(
        When(width__gt=0, height__gt=0, then=Greatest("width", "height")),
        default=None,
        output_field=IntegerField(),
    )
    counted = (
        images.annotate(longer=longer)
        .order_by()
        .values_list("manufacturer", "modality", "bits_stored", "longer")
        .annotate(images=Count("pk"))
    )
    return list(counted)


def _outcome_images(
    *,
    model_version: str | None,
    source: str | None = None,
    modality: str | None = None,
    manufacturer: str | None = None,
) -> QuerySet[Image]:
    # Exactly the done and refused images (a constraint ties the time to the status), by
    # the column whose index the time-ordered reads walk.
    images = Image.objects.filter(result_at__isnull=False)
    if model_version:
        images = images.filter(
            Q(prediction__model_version=model_version)
            | Q(status=Image.Status.REFUSED, refusal_model_version=model_version)
        )
    if source:
        images = images.filter(Q(case__source=source) | Q(case__source_ae=source))
    if modality:
        images = images.filter(modality=modality)
    if manufacturer:
        images = images.filter(manufacturer=manufacturer)
    return images


def _outcome(row: tuple, *, done: str) -> ImageOutcome:
    (pk, case_id, at, source, sender, modality, manufacturer, width, height, bits, status,
     reason, refusing_version, prediction, version, probability, label, threshold,
     finding, signed_at) = row  # fmt: skip
    predicted = status == done and prediction is not None  # a refusal's old result is not its
    return ImageOutcome(
        image_id=pk,
        case_id=case_id,
        at=at,
        source=source,
        sender=sender,
        modality=modality,
        manufacturer=manufacturer,
        width=width,
        height=height,
        bits_stored=bits,
        status=status,
        refusal_reason=reason,
        model_version=version if predicted else refusing_version,
        probability=probability if predicted else None,
        ai_label=label if predicted else None,
        threshold=threshold if predicted else None,
        finding=finding,
        signed_at=signed_at,
    )


def outcome_facts(*, model_version: str) -> list[tuple[str, str, str, str]]:
    """The distinct (source, calling AE, modality, manufacturer) of the images a version
    analysed or refused: the monitoring page's filter choices, without reading every row."""
    facts = _outcome_images(model_version=model_version).values_list(
        "case__source", "case__source_ae", "modality", "manufacturer"
    )
    return list(facts.order_by().distinct())
