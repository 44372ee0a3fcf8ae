"""The radiologists' worklist: its filters and orderings (parsed once, for the page, its
poll, claim-next and the API), its keyset pages with their cursor and version, and claiming
the next case."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from datetime import datetime
from typing import Any

from django.db import transaction
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
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.db.models import Case as When_
from django.db.models.functions import Coalesce
from django.utils import timezone

from diagnosis.models import AuditEvent, Case, Image
from diagnosis.services.audit import audit_record
from ml.outcome import REFUSAL_REASONS


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
CLAIM_NEXT_TRIES = 5

# Case.priority_rank of each urgency: a filter on it is a prefix of the priority index.
_URGENCY_RANK = {Case.Urgency.STAT: 0, Case.Urgency.URGENT: 1, Case.Urgency.ROUTINE: 2}


@dataclass(frozen=True)
class WorklistFilters:
    """The worklist's filters and order. `claim` is 'mine', 'unclaimed' or None (all);
    None elsewhere means all too."""

    urgency: str | None = None
    flagged: bool | None = None
    claim: str | None = None
    source: str | None = None
    sort: str = WORKLIST_DEFAULT_SORT

    @classmethod
    def from_query(cls, params: Mapping[str, Any]) -> WorklistFilters:
        """From a page's query string or form; unknown values mean "all"."""
        flagged = {"yes": True, "no": False}.get(params.get("flagged", ""))
        urgency = params.get("urgency") or None
        claim = params.get("claim") or None
        source = params.get("source") or None
        sort = params.get("sort") or WORKLIST_DEFAULT_SORT
        return cls(
            urgency=urgency if urgency in Case.Urgency.values else None,
            flagged=flagged,
            claim=claim if claim in ("mine", "unclaimed") else None,
            source=source if source in Case.Source.values else None,
            sort=sort if sort in WORKLIST_SORTS else WORKLIST_DEFAULT_SORT,
        )

    @classmethod
    def from_valid(cls, data: Mapping[str, Any]) -> WorklistFilters:
        """From values already checked (the API's query serializer); other keys are left."""
        return cls(**{field.name: data[field.name] for field in fields(cls) if field.name in data})

    def query(self) -> dict[str, str]:
        """The filters as the URL carries them: only those that differ from the default."""
        flagged = {None: "", True: "yes", False: "no"}[self.flagged]
        params = {**asdict(self), "flagged": flagged}
        if params["sort"] == WORKLIST_DEFAULT_SORT:
            params["sort"] = ""
        return {name: value for name, value in params.items() if value}

    @property
    def order(self) -> WorklistSort:
        return WORKLIST_SORTS[self.sort]


def worklist_for(*, user, **filters: Any) -> QuerySet[Case]:
    """Cases awaiting review (`filters`: those of WorklistFilters). By default STAT first,
    then urgent, then routine; within each, highest AI probability first (cases with no
    analysed image, all refused by the AI, come after those with one), then longest
    waiting. Each case carries its images' facts (`image_count`, `refused_images`,
    `refusal_reason`, `refusal_explanation`, `preview_image`), from one query."""
    return _cases(user, WorklistFilters(**filters))


def _cases(user, filters: WorklistFilters) -> QuerySet[Case]:
    cases = (
        _filtered(user, filters)
        .select_related("owner", "claimed_by")
        .annotate(**_image_facts())
        .annotate(refusal_explanation=_refusal_explanation())
    )
    return cases.order_by(*_ordering(filters.order))


def _ordering(order: WorklistSort) -> list[str]:
    return [f"-{key}" if order.descending else key for key in order.keys]


def _filtered(user, filters: WorklistFilters) -> QuerySet[Case]:
    cases = Case.objects.filter(status=Case.Status.AWAITING_REVIEW)
    if filters.urgency:
        cases = cases.filter(priority_rank=_URGENCY_RANK[Case.Urgency(filters.urgency)])
    if filters.flagged is not None:
        cases = cases.filter(ai_flagged=filters.flagged)
    if filters.claim == "mine":
        cases = cases.filter(claimed_by=user)
    elif filters.claim == "unclaimed":
        cases = cases.filter(claimed_by__isnull=True)
    if filters.source:
        cases = cases.filter(source=filters.source)
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
    *, user, after: str = "", size: int = WORKLIST_PAGE_SIZE, **filters: Any
) -> WorklistPage:
    """A page of `worklist_for`, after the case the cursor `after` names (keyset pagination:
    a seek on the sort's index, never OFFSET, so a deep page is as fast as the first, and
    cases added or removed meanwhile neither repeat nor skip a row). Raises InvalidCursor."""
    return page_for(user=user, filters=WorklistFilters(**filters), after=after, size=size)


def page_for(
    *, user, filters: WorklistFilters, after: str = "", size: int = WORKLIST_PAGE_SIZE
) -> WorklistPage:
    """`worklist_page` with the filters parsed already."""
    order = filters.order
    cases = _cases(user, filters)
    if after:
        cases = cases.filter(_beyond(order, cursor_decode(after, order)))
    rows = list(cases[: size + 1])
    more = len(rows) > size
    rows = rows[:size]
    return WorklistPage(
        cases=rows, next_cursor=cursor_encode(rows[-1], order) if more else None, sort=filters.sort
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


def worklist_next_unclaimed(*, user, filters: WorklistFilters) -> int | None:
    """The id of the first unclaimed case of the worklist in this ordering and these
    filters (their `claim` does not apply), locked for the calling transaction (PostgreSQL;
    rows another transaction holds are skipped, so two radiologists never wait on, or get,
    the same case)."""
    cases = _filtered(user, replace(filters, claim="unclaimed"))
    cases = cases.order_by(*_ordering(filters.order))
    return cases.select_for_update(skip_locked=True).values_list("pk", flat=True).first()


def case_claim_next(*, user, filters: WorklistFilters | None = None) -> Case | None:
    """Claim the top unclaimed case of the worklist in this ordering and these filters
    ("claim next"; their `claim` does not apply). Atomic: the candidate is locked
    (PostgreSQL, skipping rows another claim holds) and taken by a conditional update, so
    two radiologists at once get two different cases; if another took it first anyway, the
    next one is tried. None when no unclaimed case matches."""
    filters = filters or WorklistFilters()
    for _ in range(CLAIM_NEXT_TRIES):
        with transaction.atomic():
            case_id = worklist_next_unclaimed(user=user, filters=filters)
            if case_id is None:
                return None
            taken = Case.objects.filter(
                pk=case_id, claimed_by__isnull=True, status=Case.Status.AWAITING_REVIEW
            ).update(claimed_by=user, claimed_at=timezone.now())
            if taken:
                case = Case.objects.get(pk=case_id)
                audit_record(
                    actor=user, action=AuditEvent.Action.CLAIMED, case=case, detail="claim next"
                )
                return case
    return None
