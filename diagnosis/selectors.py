"""Every read of the clinical workflow, with the access rules applied in one place."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from django.db.models import (
    BooleanField,
    CharField,
    Count,
    DateTimeField,
    Expression,
    F,
    FloatField,
    GeneratedField,
    IntegerField,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.db.models import Case as When_
from django.db.models.functions import Coalesce
from django.shortcuts import get_object_or_404

from diagnosis import roles
from diagnosis.models import AuditEvent, Case, Image, PriorPrediction, Review
from ml.outcome import REFUSAL_REASONS


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


@dataclass(frozen=True)
class WorklistSort:
    """An ordering of the worklist: model fields, all ascending or all descending, ending in
    the id, each with an index that starts with `status` (see Case.Meta.indexes)."""

    label: str
    keys: tuple[str, ...]
    descending: bool = False


WORKLIST_SORTS: dict[str, WorklistSort] = {
    "priority": WorklistSort(
        "Priority, then AI probability", ("priority_rank", "ai_rank", "waiting_since", "id")
    ),
    "waiting": WorklistSort("Longest waiting first", ("waiting_since", "id")),
    "study_newest": WorklistSort("Study time, newest first", ("study_time", "id"), True),
    "study_oldest": WorklistSort("Study time, oldest first", ("study_time", "id")),
}
WORKLIST_DEFAULT_SORT = "priority"
WORKLIST_PAGE_SIZE = 50


def worklist_for(
    *,
    user,
    urgency: str | None = None,
    flagged: bool | None = None,
    claim: str | None = None,
    source: str | None = None,
    sort: str = WORKLIST_DEFAULT_SORT,
) -> QuerySet[Case]:
    """Cases awaiting review. By default STAT first, then urgent, then routine; within each,
    highest AI probability first (cases with no analysed image, all refused by the AI, come
    after those with one), then longest waiting. `claim` is 'mine', 'unclaimed' or None
    (all). Each case carries its images' facts (`image_count`, `refused_images`,
    `refusal_reason`, `refusal_explanation`, `preview_image`), from one query."""
    cases = (
        _worklist_filtered(user=user, urgency=urgency, flagged=flagged, claim=claim, source=source)
        .select_related("owner", "claimed_by")
        .annotate(**_image_facts())
        .annotate(refusal_explanation=_refusal_explanation())
    )
    return cases.order_by(*_ordering(WORKLIST_SORTS[sort]))


def _ordering(order: WorklistSort) -> list[str]:
    return [f"-{key}" if order.descending else key for key in order.keys]


# Case.priority_rank of each urgency: a filter on it is a prefix of the priority index.
_URGENCY_RANK = {Case.Urgency.STAT: 0, Case.Urgency.URGENT: 1, Case.Urgency.ROUTINE: 2}


def _worklist_filtered(
    *,
    user,
    urgency: str | None = None,
    flagged: bool | None = None,
    claim: str | None = None,
    source: str | None = None,
) -> QuerySet[Case]:
    cases = Case.objects.filter(status=Case.Status.AWAITING_REVIEW)
    if urgency:
        cases = cases.filter(priority_rank=_URGENCY_RANK[Case.Urgency(urgency)])
    if flagged is not None:
        cases = cases.filter(ai_flagged=flagged)
    if claim == "mine":
        cases = cases.filter(claimed_by=user)
    elif claim == "unclaimed":
        cases = cases.filter(claimed_by__isnull=True)
    if source:
        cases = cases.filter(source=source)
    return cases


def _image_facts() -> dict[str, Any]:
    """Correlated subqueries, not a join with GROUP BY: the database computes them only for
    the rows of the page, so a page costs the same with 100 or 100,000 cases waiting."""
    images = Image.objects.filter(case=OuterRef("pk")).order_by()
    refused = images.filter(status=Image.Status.REFUSED)
    return {
        "image_count": _count(images),
        "refused_images": _count(refused),
        "refusal_reason": Subquery(refused.order_by("pk").values("refusal_reason")[:1]),
        "preview_image": Subquery(images.exclude(preview="").order_by("pk").values("pk")[:1]),
    }


def _count(images: QuerySet[Image]) -> Coalesce:
    counted = images.values("case").annotate(n=Count("pk")).values("n")
    return Coalesce(Subquery(counted, output_field=IntegerField()), Value(0))


def _refusal_explanation() -> When_:
    """The plain-words reason for clinicians (never the bare code)."""
    return When_(
        *(When(refusal_reason=code, then=Value(text)) for code, text in REFUSAL_REASONS.items()),
        default=Value(""),
        output_field=CharField(),
    )


class InvalidCursor(ValueError):
    """A page cursor this sort did not make (edited, or from another ordering)."""


@dataclass(frozen=True)
class WorklistPage:
    """One page of the worklist, the cursor of the next (None on the last page), and a
    version that changes whenever anything the page shows changes."""

    cases: list[Case]
    next_cursor: str | None
    sort: str

    @property
    def version(self) -> str:
        facts = [[getattr(case, field) for field in _SHOWN] for case in self.cases]
        text = json.dumps([self.sort, self.next_cursor, facts], default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:20]


# What a row shows (and the API returns): a change to any of them is a new version.
_SHOWN = (
    "pk",
    "patient_id",
    "age",
    "sex",
    "urgency",
    "status",
    "accession_number",
    "study_time",
    "source",
    "source_ae",
    "image_count",
    "refused_images",
    "refusal_reason",
    "preview_image",
    "max_probability",
    "ai_flagged",
    "claimed_by_id",
    "owner_id",
    "waiting_since",
)


def worklist_page(
    *,
    user,
    urgency: str | None = None,
    flagged: bool | None = None,
    claim: str | None = None,
    source: str | None = None,
    sort: str = WORKLIST_DEFAULT_SORT,
    after: str = "",
    size: int = WORKLIST_PAGE_SIZE,
) -> WorklistPage:
    """A page of `worklist_for`, after the case the cursor `after` names (keyset pagination:
    a seek on the sort's index, never OFFSET, so a deep page is as fast as the first, and
    cases added or removed meanwhile neither repeat nor skip a row). Raises InvalidCursor."""
    order = WORKLIST_SORTS[sort]
    cases = worklist_for(
        user=user, urgency=urgency, flagged=flagged, claim=claim, source=source, sort=sort
    )
    if after:
        cases = cases.filter(_beyond(order, cursor_decode(after, order)))
    rows = list(cases[: size + 1])
    more = len(rows) > size
    rows = rows[:size]
    return WorklistPage(
        cases=rows, next_cursor=cursor_encode(rows[-1], order) if more else None, sort=sort
    )


def cursor_encode(case: Case, order: WorklistSort) -> str:
    values = [getattr(case, key) for key in order.keys]
    text = json.dumps([v.isoformat() if isinstance(v, datetime) else v for v in values])
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def cursor_decode(cursor: str, order: WorklistSort) -> list[Any]:
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(raw, list) or len(raw) != len(order.keys):
            raise InvalidCursor("The page cursor does not fit this ordering.")
        return [_key_value(key, value) for key, value in zip(order.keys, raw, strict=True)]
    except (ValueError, TypeError) as exc:  # binascii.Error and JSONDecodeError included
        raise InvalidCursor("The page cursor is not valid.") from exc


def _key_value(key: str, value: Any) -> Any:
    field = Case._meta.get_field(key)
    kind = field.output_field if isinstance(field, GeneratedField) else field
    if isinstance(kind, DateTimeField) and isinstance(value, str):
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            raise InvalidCursor("A page cursor's time has no zone.")
        return parsed
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidCursor(f"The page cursor's {key} is not valid.")
    return float(value) if isinstance(kind, FloatField) else int(value)


class _RowCompare(Expression):
    """`(a, b, ...) > (x, y, ...)` (or `<`) as SQL row values: SQLite (3.15+) and PostgreSQL
    answer it by seeking the index on the same columns. (Django's own tuple lookup expands
    it into ORs on SQLite, which scans the index from its start.)"""

    conditional = True
    output_field = BooleanField()

    def __init__(self, columns: list[Any], values: list[Any], operator: str) -> None:
        super().__init__()
        self.columns, self.values, self.operator = columns, values, operator

    def get_source_expressions(self) -> list[Any]:
        return list(self.columns)

    def set_source_expressions(self, exprs: Sequence[Any]) -> None:
        self.columns = list(exprs)

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, tuple[Any, ...]]:
        left: list[str] = []
        right: list[str] = []
        params: list[Any] = []
        for column in self.columns:
            sql, column_params = compiler.compile(column)
            left.append(sql)
            params += column_params
        for column, value in zip(self.columns, self.values, strict=True):
            sql, value_params = compiler.compile(Value(value, output_field=column.output_field))
            right.append(sql)
            params += value_params
        return f"({', '.join(left)}) {self.operator} ({', '.join(right)})", tuple(params)


def _beyond(order: WorklistSort, values: list[Any]) -> _RowCompare:
    # Beside `status = 'awaiting_review'`, the index's first column: SQLite seeks on the row
    # value only when it starts at the column after the equality (with the status in the
    # tuple too, it reads the index from the start of the status).
    columns = [F(key) for key in order.keys]
    return _RowCompare(columns, values, "<" if order.descending else ">")


def worklist_next_unclaimed(
    *,
    user,
    urgency: str | None = None,
    flagged: bool | None = None,
    source: str | None = None,
    sort: str = WORKLIST_DEFAULT_SORT,
) -> int | None:
    """The id of the first unclaimed case of the worklist in this ordering and these
    filters, locked for the calling transaction (PostgreSQL; rows another transaction holds
    are skipped, so two radiologists never wait on, or get, the same case)."""
    order = WORKLIST_SORTS[sort]
    cases = _worklist_filtered(
        user=user, urgency=urgency, flagged=flagged, claim="unclaimed", source=source
    )
    cases = cases.order_by(*_ordering(order))
    return cases.select_for_update(skip_locked=True).values_list("pk", flat=True).first()


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
        return {"pneumonia": 1, "normal": 0}.get(self.finding or "")

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
) -> list[ImageOutcome]:
    """Every analysed or refused image (optionally only those of signed cases), oldest
    first. `since`/`until` bound the result's time; `source` is a Case.Source or a calling
    AE title. Meant for figures, not for listing to a user: no access rule applies, so
    callers must be admin or radiologist views that show aggregates only."""
    images = (
        Image.objects.filter(status__in=[Image.Status.DONE, Image.Status.REFUSED])
        .select_related("case", "prediction")
        .order_by("pk")
    )
    if source:
        images = images.filter(Q(case__source=source) | Q(case__source_ae=source))
    if modality:
        images = images.filter(modality=modality)
    if manufacturer:
        images = images.filter(manufacturer=manufacturer)
    if model_version:
        images = images.filter(
            Q(prediction__model_version=model_version)
            | Q(status=Image.Status.REFUSED, refusal_model_version=model_version)
        )
    latest = _latest_findings(images.values_list("case_id", flat=True))
    rows = []
    for image in images:
        prediction = getattr(image, "prediction", None) if image.status == "done" else None
        at = prediction.created_at if prediction else (image.claimed_at or image.created_at)
        if (since and at < since) or (until and at >= until):
            continue
        finding, signed_at = latest.get(image.case_id, (None, None))
        if signed_only and finding is None:
            continue
        rows.append(
            ImageOutcome(
                image_id=image.pk,
                case_id=image.case_id,
                at=at,
                source=image.case.source,
                sender=image.case.source_ae,
                modality=image.modality,
                manufacturer=image.manufacturer,
                width=image.width,
                height=image.height,
                bits_stored=image.bits_stored,
                status=image.status,
                refusal_reason=image.refusal_reason,
                model_version=prediction.model_version
                if prediction
                else image.refusal_model_version,
                probability=prediction.probability if prediction else None,
                ai_label=prediction.label if prediction else None,
                threshold=prediction.threshold if prediction else None,
                finding=finding,
                signed_at=signed_at,
            )
        )
    rows.sort(key=lambda row: (row.at, row.image_id))
    return rows


def _latest_findings(case_ids: Any) -> dict[int, tuple[str, datetime]]:
    """case id -> (finding, signed_at) of its latest report version."""
    latest: dict[int, tuple[str, datetime]] = {}
    reviews = Review.objects.filter(case_id__in=case_ids).order_by("case_id", "version")
    for case_id, finding, signed_at in reviews.values_list("case_id", "finding", "signed_at"):
        latest[case_id] = (finding, signed_at)
    return latest
