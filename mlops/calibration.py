"""Site calibration, the web side: which signed cases a calibration of a version is fitted
and judged on, the refusal when they cannot be enough (at once, before anything is queued),
and the job for the worker (mlops.execute.calibration fits, folds the fit into a new
artifact, registers the version and measures it).

The set: images the base version analysed (a refused image has no score), of cases whose
latest signed report found "normal" or "pneumonia" (the radiologist's finding is the label;
"other" and "indeterminate" say neither), narrowed by dates, source, modality and
manufacturer. The split is by case, never by image: a seeded hash of the case id puts all
of a case's images on one side, so the same set always splits the same way and no case
vouches for a fit it took part in."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from chestnet_site.errors import ServiceError
from diagnosis import selectors as clinical
from mlops.models import Label, SiteCalibration
from mlops.services import event_record, job_end, job_enqueue
from registry.models import ModelVersion

# Published by name (mlops.tasks imports the worker side, which imports this module).
CALIBRATION_TASK = "mlops.tasks.calibration_run_task"
SPLIT_SEED = 0
PARTS = ("fitting", "held_back")


@dataclass(frozen=True)
class CalibrationFilters:
    """Which signed cases count; `until` is inclusive (the whole day)."""

    since: date | None = None
    until: date | None = None
    source: str = ""  # Case source ("upload", "dimse", "stow") or a calling AE title
    modality: str = ""
    manufacturer: str = ""

    def as_json(self) -> dict:
        return {
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "source": self.source,
            "modality": self.modality,
            "manufacturer": self.manufacturer,
        }

    @classmethod
    def from_json(cls, data: dict) -> CalibrationFilters:
        return cls(
            since=_day(data.get("since")),
            until=_day(data.get("until")),
            source=data.get("source") or "",
            modality=data.get("modality") or "",
            manufacturer=data.get("manufacturer") or "",
        )

    def describe(self) -> str:
        parts = []
        if self.since or self.until:
            parts.append(f"{self.since or 'the first'} to {self.until or 'today'}")
        for name in ("source", "modality", "manufacturer"):
            if getattr(self, name):
                parts.append(f"{name} {getattr(self, name)}")
        return ", ".join(parts) or "all signed cases"


def _day(value: str | None) -> date | None:
    return date.fromisoformat(value) if value else None


@dataclass(frozen=True)
class CalibrationItem:
    """One signed image: its base score, the threshold it was served at, the label (1
    pneumonia, 0 normal) and its side of the split. Stored as a row on the job."""

    image_id: int
    case_id: int
    probability: float
    threshold: float
    truth: int
    held_back: bool

    def as_row(self) -> list:
        return [
            self.image_id,
            self.case_id,
            self.probability,
            self.threshold,
            self.truth,
            self.held_back,
        ]

    @classmethod
    def from_row(cls, row: list) -> CalibrationItem:
        image_id, case_id, probability, threshold, truth, held_back = row
        return cls(
            image_id, case_id, float(probability), float(threshold), int(truth), bool(held_back)
        )


@dataclass(frozen=True)
class CalibrationSet:
    items: list[CalibrationItem]
    problems: list[str]

    def part(self, name: str) -> list[CalibrationItem]:
        return [item for item in self.items if item.held_back == (name == "held_back")]

    def counts(self) -> dict[str, dict[str, int]]:
        """Images per class and cases, per part: {"fitting": {"NORMAL": n, "PNEUMONIA":
        n, "cases": n}, "held_back": {...}}."""
        return {name: _count(self.part(name)) for name in PARTS}


def _count(items: list[CalibrationItem]) -> dict[str, int]:
    counts = {label: sum(1 for i in items if i.truth == t) for t, label in enumerate(Label.values)}
    return {**counts, "cases": len({item.case_id for item in items})}


# --- the set and its split -------------------------------------------------------------


def calibration_outcomes(*, version: ModelVersion, filters: CalibrationFilters) -> list:
    """The signed, labelled images the version analysed that match the filters
    (diagnosis.selectors.ImageOutcome rows)."""
    since, until = _bounds(filters)
    rows = clinical.image_outcomes(
        since=since,
        until=until,
        model_version=version.version,
        source=filters.source or None,
        modality=filters.modality or None,
        manufacturer=filters.manufacturer or None,
        signed_only=True,
    )
    return [
        row
        for row in rows
        if row.status == "done"
        and row.model_version == version.version
        and row.probability is not None
        and row.truth is not None
    ]


def _bounds(filters: CalibrationFilters) -> tuple[datetime | None, datetime | None]:
    """The dates as the start of the first day and the end of the last, in local time."""

    def start(day: date) -> datetime:
        return timezone.make_aware(datetime.combine(day, time.min))

    since = start(filters.since) if filters.since else None
    until = start(filters.until + timedelta(days=1)) if filters.until else None
    return since, until


def held_back(case_id: int, *, holdout: float, seed: int = SPLIT_SEED) -> bool:
    """Whether the case is held back to judge the calibration (about `holdout` of all
    cases): a hash of the seed and the case id, the same on every call."""
    digest = hashlib.sha256(f"site-calibration:{seed}:{case_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < holdout


def calibration_set(
    *, version: ModelVersion, filters: CalibrationFilters, holdout: float, min_per_class: int
) -> CalibrationSet:
    """The matching signed images split by case, and what keeps them from a calibration."""
    items = [
        CalibrationItem(
            image_id=row.image_id,
            case_id=row.case_id,
            probability=float(row.probability),
            threshold=float(row.threshold),
            truth=int(row.truth),
            held_back=held_back(row.case_id, holdout=holdout),
        )
        for row in calibration_outcomes(version=version, filters=filters)
    ]
    chosen = CalibrationSet(items=items, problems=[])
    return CalibrationSet(items=items, problems=_problems(chosen.counts(), min_per_class))


def _problems(counts: dict[str, dict[str, int]], min_per_class: int) -> list[str]:
    fitting, kept = counts["fitting"], counts["held_back"]
    problems = []
    short = [label for label in Label.values if fitting[label] < min_per_class]
    if short:
        found = " and ".join(f"{fitting[label]} {label}" for label in Label.values)
        problems.append(
            f"Not enough signed cases to fit a calibration: the fitting part has {found} "
            f"image(s); each class needs at least {min_per_class}."
        )
    missing = [label for label in Label.values if kept[label] == 0]
    if missing:
        problems.append(
            f"The held-back part has no {' and no '.join(missing)} image, so the calibrated "
            "version could not be judged on this site's cases."
        )
    if problems:
        problems.append("Widen the dates or filters, or wait for more signed reports.")
    return problems


# --- the job ---------------------------------------------------------------------------


def calibration_options(
    *,
    holdout: float | None = None,
    target_sensitivity: float | None = None,
    min_per_class: int | None = None,
    site: str = "",
) -> dict:
    """The job's options, the settings' defaults for those not given; ServiceError for a
    value out of range."""
    if holdout is None:
        holdout = settings.CHESTNET_CALIBRATION_HOLDOUT
    if target_sensitivity is None:
        target_sensitivity = settings.CHESTNET_CALIBRATION_TARGET_SENSITIVITY
    if min_per_class is None:
        min_per_class = settings.CHESTNET_CALIBRATION_MIN_PER_CLASS
    if not 0.05 <= holdout <= 0.9:
        raise ServiceError("Hold back between 5% and 90% of the cases.")
    if not 0.5 <= target_sensitivity < 1:
        raise ServiceError("The target sensitivity must be at least 0.5 and below 1.")
    if min_per_class < 1:
        raise ServiceError("At least one image of each class is needed.")
    return {
        "holdout": holdout,
        "target_sensitivity": target_sensitivity,
        "min_per_class": min_per_class,
        "seed": SPLIT_SEED,
        "site": site.strip()[:100],
    }


def calibration_create(
    *, version: ModelVersion, filters: CalibrationFilters, user, **given
) -> SiteCalibration:
    """Choose and split the cases now and record the job (queued, not published): refused
    with ServiceError, before anything is stored, when the set cannot be enough."""
    if filters.since and filters.until and filters.since > filters.until:
        raise ServiceError("The first date is after the last.")
    options = calibration_options(**given)
    chosen = calibration_set(
        version=version,
        filters=filters,
        holdout=options["holdout"],
        min_per_class=options["min_per_class"],
    )
    if chosen.problems:
        raise ServiceError(" ".join(chosen.problems))
    counts = chosen.counts()
    with transaction.atomic():
        calibration = SiteCalibration.objects.create(
            base_version=version,
            filters=filters.as_json(),
            options=options,
            items=[item.as_row() for item in chosen.items],
            counts=counts,
            requested_by=user,
        )
        event_record(
            actor=user,
            action="calibration_queued",
            detail=f"{version.version}, {filters.describe()}: {counts_text(counts)}",
        )
    return calibration


def calibration_start(
    *, version: ModelVersion, filters: CalibrationFilters, user, **given
) -> SiteCalibration:
    """`calibration_create`, then the worker's task once it commits (the `training`
    queue's worker loads Keras; the web process never does)."""
    with transaction.atomic():
        calibration = calibration_create(version=version, filters=filters, user=user, **given)
        job_enqueue(
            CALIBRATION_TASK,
            SiteCalibration,
            calibration.pk,
            unavailable="The task queue is unavailable; start it again.",
        )
    return calibration


def calibration_fail(calibration_id: int, *, reason: str) -> None:
    """Fail a calibration that has not ended yet."""
    job_end(SiteCalibration, calibration_id, status=SiteCalibration.Status.FAILED, error=reason)


# --- reading the figures ---------------------------------------------------------------


def counts_text(counts: dict[str, dict[str, int]]) -> str:
    def part(name: str, title: str) -> str:
        c = counts[name]
        return f"{title} {c['NORMAL']} NORMAL + {c['PNEUMONIA']} PNEUMONIA ({c['cases']} cases)"

    return f"{part('fitting', 'fitting')}; {part('held_back', 'held back')}"


ROWS = (
    ("threshold", "Threshold (on its own probabilities)"),
    ("tp", "True positives"),
    ("fp", "False positives"),
    ("tn", "True negatives"),
    ("fn", "False negatives (missed pneumonia)"),
    ("sensitivity", "Sensitivity"),
    ("specificity", "Specificity"),
    ("ppv", "Positive predictive value"),
    ("expected_calibration_error", "Calibration error (ECE)"),
    ("roc_auc", "ROC AUC"),
)


def comparison_rows(*, before: dict, after: dict) -> list[dict[str, str]]:
    """The before/after table on the held-back cases, as text: rates with their Wilson
    95% intervals and counts (the page and the command show the same)."""
    return [
        {"key": key, "name": name, "before": _shown(key, before), "after": _shown(key, after)}
        for key, name in ROWS
    ]


def _shown(key: str, figures: dict) -> str:
    value = figures.get(key)
    if key == "threshold":
        low, high = min(figures["thresholds"]), max(figures["thresholds"])
        return f"{low:.4f}" if low == high else f"{low:.4f} to {high:.4f} (as served)"
    if isinstance(value, dict):  # a rate
        if value["value"] is None:
            return f"undefined (0/{value['total']})"
        low, high = value["ci95"]
        return f"{value['value']:.3f} ({low:.3f}–{high:.3f}) {value['hits']}/{value['total']}"
    if value is None:
        return "undefined"
    return str(value) if isinstance(value, int) else f"{value:.3f}"
