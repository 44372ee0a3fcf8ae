"""The monitoring report: for one model version and a run of days or weeks, what the AI did
with the site's images and how it agreed with the signed reports, split by source, modality
and manufacturer, with score and input drift. The page and the API show the same dict."""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from django.utils import timezone

from chestnet_site.errors import ServiceError
from diagnosis import selectors as clinical
from diagnosis.selectors import ImageOutcome
from monitoring import figures
from registry import selectors as registry
from registry.models import ModelVersion

PERIODS = {"day": 1, "week": 7}
DEFAULT_SPAN = {"day": 14, "week": 8}  # periods shown when no start date is given
MAX_PERIODS = 120
SPLITS: dict[str, Callable[[ImageOutcome], str]] = {
    "by_source": lambda row: row.source_name or "unknown",
    "by_modality": lambda row: row.modality or "unknown",
    "by_manufacturer": lambda row: row.manufacturer or "unknown",
}


class BadQuery(ServiceError):
    """A monitoring query that cannot be answered as asked (a 400, with this message)."""


@dataclass(frozen=True)
class Query:
    version: ModelVersion
    period: str  # "day" or "week"
    start: date  # the first day of the first period
    end: date  # the last day shown (inclusive)
    source: str = ""
    modality: str = ""
    manufacturer: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": self.version.version,
            "period": self.period,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "source": self.source or None,
            "modality": self.modality or None,
            "manufacturer": self.manufacturer or None,
        }


def query_from(params: dict[str, str]) -> Query:
    """A Query from request parameters (version, period, start, end, source, modality,
    manufacturer); BadQuery with a plain message for anything it cannot use."""
    name = (params.get("version") or "").strip()
    version = (
        ModelVersion.objects.filter(version=name).first() if name else registry.active_version()
    )
    if version is None:
        raise BadQuery(f"No model version {name!r}." if name else "No model version is active.")
    period = (params.get("period") or "week").strip()
    if period not in PERIODS:
        raise BadQuery("period must be 'day' or 'week'.")
    end = _date(params.get("end"), "end") or timezone.localdate()
    start = _date(params.get("start"), "start")
    if start is None:
        start = end - timedelta(days=PERIODS[period] * DEFAULT_SPAN[period] - 1)
    if start > end:
        raise BadQuery("start must not be after end.")
    if (end - start).days // PERIODS[period] + 1 > MAX_PERIODS:
        raise BadQuery(f"At most {MAX_PERIODS} periods at once: choose a later start or weeks.")
    return Query(
        version=version,
        period=period,
        start=start,
        end=end,
        source=_text(params.get("source")),
        modality=_text(params.get("modality")).upper(),
        manufacturer=_text(params.get("manufacturer")),
    )


def _date(value: str | None, name: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise BadQuery(f"{name} must be a date as YYYY-MM-DD.") from None


def _text(value: str | None) -> str:
    return " ".join((value or "").split())[:64]


def _moment(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


def report(query: Query) -> dict[str, Any]:
    """Per period and for the whole span: counts, refusals by reason, AI positive rate,
    confusion against signed findings with sensitivity, specificity, PPV and agreement (95%
    Wilson intervals), reliability, score drift against the version's reference, and the
    input mix with its drift against the images before the span."""
    step = timedelta(days=PERIODS[query.period])
    since, until = _moment(query.start), _moment(query.end + timedelta(days=1))
    chosen: dict[str, Any] = {
        "model_version": query.version.version,
        "source": query.source or None,
        "modality": query.modality or None,
        "manufacturer": query.manufacturer or None,
    }
    rows = clinical.image_outcomes(since=since, until=until, **chosen)
    baseline = clinical.input_facts_counted(until=since, **chosen)
    times = [row.at for row in rows]  # oldest first: each period is a slice
    periods = []
    start = query.start
    while start <= query.end:
        stop = min(start + step, query.end + timedelta(days=1))
        inside = rows[bisect_left(times, _moment(start)) : bisect_left(times, _moment(stop))]
        periods.append(
            {
                "start": start.isoformat(),
                "end": (stop - timedelta(days=1)).isoformat(),
                **figures.group_figures(inside),
                **_splits(inside),
            }
        )
        start = stop
    reference = figures.score_reference(query.version.card)
    return {
        "query": query.as_dict(),
        "threshold": query.version.active_threshold or query.version.card.get("threshold"),
        "summary": figures.group_figures(rows),
        **_splits(rows),
        "periods": periods,
        "reliability": figures.reliability(rows),
        "score_drift": figures.score_drift(rows, reference),
        "inputs": figures.input_mix(rows),
        "input_drift": figures.input_drift(rows, baseline),
    }


def _splits(rows: Sequence[ImageOutcome]) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = {}
    for name, key in SPLITS.items():
        groups: dict[str, list[ImageOutcome]] = defaultdict(list)
        for row in rows:
            groups[key(row)].append(row)
        result[name] = {
            value: figures.group_figures(group) for value, group in sorted(groups.items())
        }
    return result


def filter_choices(version: ModelVersion) -> dict[str, list[str]]:
    """The sources, modalities and manufacturers seen with a version: the page's filters."""
    facts = clinical.outcome_facts(model_version=version.version)
    return {
        "source": sorted({sender or source for source, sender, _, _ in facts} - {""}),
        "modality": sorted({modality for _, _, modality, _ in facts} - {""}),
        "manufacturer": sorted({maker for _, _, _, maker in facts} - {""}),
    }
