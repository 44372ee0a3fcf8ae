"""Alerts: the active version's recent figures checked against configurable floors (settings
CHESTNET_ALERT_*), raised where they fall past them, cleared when they are back, and
acknowledged by a person (audited). Checked by beat every CHESTNET_ALERT_CHECK_S, by
`manage.py monitoring_check` and when the monitoring page opens."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from chestnet_site.errors import ServiceError
from chestnet_site.text import WordsRequired, require_words
from diagnosis import selectors as clinical
from diagnosis import services as clinical_services
from monitoring import figures
from monitoring.models import Alert
from registry import selectors as registry

logger = logging.getLogger(__name__)

# diagnosis.models.AuditEvent.Action value (monitoring never imports the clinical models).
ALERT_ACKNOWLEDGED = "alert_acknowledged"


@dataclass(frozen=True)
class Check:
    """One figure over its window, against its limit; `value` None: too few images."""

    kind: str
    value: float | None
    limit: float
    window: int
    below: bool  # True: a floor (alert when under), False: a ceiling (alert when over)

    @property
    def breached(self) -> bool:
        if self.value is None:
            return False
        return self.value < self.limit if self.below else self.value > self.limit

    def message(self, version: str) -> str:
        words = dict(Alert.Kind.choices)[self.kind]
        relation = "floor" if self.below else "ceiling"
        return (
            f"{words}: {self.value:.3f} over the last {self.window} images of {version} "
            f"({relation} {self.limit:.3f})."
        )


def checks_for(version: str, card: dict[str, Any]) -> list[Check]:
    """The alert figures of `version` over its last CHESTNET_ALERT_WINDOW images."""
    window = settings.CHESTNET_ALERT_WINDOW
    minimum = settings.CHESTNET_ALERT_MIN_IMAGES
    rows = clinical.image_outcomes(model_version=version, last=window)
    judged = clinical.image_outcomes(model_version=version, judged_only=True, last=window)
    confusion = figures.confusion_counts(judged)
    positives = confusion["tp"] + confusion["fn"]
    negatives = confusion["tn"] + confusion["fp"]
    analysed = [r for r in rows if r.probability is not None]
    refused = sum(r.status == "refused" for r in rows)
    psi = None
    reference = figures.score_reference(card)
    if reference is not None and len(analysed) >= minimum:
        psi = figures.score_drift(analysed, reference)["psi"]
    return [
        _check(Alert.Kind.SENSITIVITY, _share(confusion["tp"], positives, minimum), positives),
        _check(Alert.Kind.SPECIFICITY, _share(confusion["tn"], negatives, minimum), negatives),
        _check(Alert.Kind.REFUSAL_RATE, _share(refused, len(rows), minimum), len(rows)),
        _check(Alert.Kind.SCORE_DRIFT, psi, len(analysed)),
    ]


# Each alert's limit: the setting that holds it, and whether it is a floor (alert when
# under) or a ceiling (alert when over).
LIMITS: dict[str, tuple[str, bool]] = {
    Alert.Kind.SENSITIVITY: ("CHESTNET_ALERT_MIN_SENSITIVITY", True),
    Alert.Kind.SPECIFICITY: ("CHESTNET_ALERT_MIN_SPECIFICITY", True),
    Alert.Kind.REFUSAL_RATE: ("CHESTNET_ALERT_MAX_REFUSAL_RATE", False),
    Alert.Kind.SCORE_DRIFT: ("CHESTNET_ALERT_MAX_PSI", False),
}


def _check(kind: str, value: float | None, window: int) -> Check:
    setting, below = LIMITS[kind]
    return Check(kind, value, getattr(settings, setting), window, below=below)


def _share(count: int, total: int, minimum: int) -> float | None:
    """count / total, or None when `total` is under `minimum` (too few to judge)."""
    return count / total if total >= minimum else None


def alerts_check() -> list[Alert]:
    """Check the active version; raise, update or clear its alerts. Returns the open ones."""
    active = registry.active_version()
    if active is None:
        return []
    now = timezone.now()
    with transaction.atomic():
        open_alerts = {
            alert.kind: alert
            for alert in Alert.objects.select_for_update().filter(
                model_version=active.version, cleared_at__isnull=True
            )
        }
        for check in checks_for(active.version, active.card):
            alert = open_alerts.get(check.kind)
            if check.breached:
                assert check.value is not None  # breached implies a value
                if alert is None:
                    alert = Alert(kind=check.kind, model_version=active.version)
                    logger.warning("Monitoring alert raised: %s", check.message(active.version))
                alert.value, alert.limit, alert.window = check.value, check.limit, check.window
                alert.message = check.message(active.version)[:300]
                alert.checked_at = now
                alert.save()
            elif alert is not None and check.value is not None:
                alert.cleared_at = alert.checked_at = now
                alert.save(update_fields=["cleared_at", "checked_at"])
                logger.info("Monitoring alert cleared: %s (%s)", check.kind, active.version)
    return list(Alert.objects.filter(cleared_at__isnull=True))


class AcknowledgeRefused(ServiceError):
    pass


def alert_acknowledge(*, alert_id: int, user, note: str) -> Alert:
    """Record that `user` has seen the alert and what they are doing about it (audited)."""
    try:
        note = require_words(note, field="a note saying what is being done about the alert")
    except WordsRequired as exc:
        raise AcknowledgeRefused(str(exc)) from exc
    with transaction.atomic():
        alert = Alert.objects.select_for_update().filter(pk=alert_id).first()
        if alert is None:
            raise AcknowledgeRefused("No such alert.")
        if alert.acknowledged_at is not None:
            raise AcknowledgeRefused("This alert was already acknowledged.")
        alert.acknowledged_by = user
        alert.acknowledged_at = timezone.now()
        alert.acknowledgement = note[:300]
        alert.save(update_fields=["acknowledged_by", "acknowledged_at", "acknowledgement"])
        clinical_services.audit_record(
            actor=user,
            action=ALERT_ACKNOWLEDGED,
            detail=f"{alert.get_kind_display()} ({alert.model_version}): {note}",
        )
    return alert


def open_alerts() -> list[Alert]:
    return list(Alert.objects.filter(cleared_at__isnull=True).select_related("acknowledged_by"))


def alerts_health() -> dict[str, Any]:
    """For /healthz: open alerts by kind, and how many nobody has acknowledged yet."""
    alerts = list(
        Alert.objects.filter(cleared_at__isnull=True).values_list("kind", "acknowledged_at")
    )
    return {
        "open_alerts": sorted({kind for kind, _ in alerts}),
        "unacknowledged": sum(at is None for _, at in alerts),
    }


_GAUGES: dict[str, str] = {
    Alert.Kind.SENSITIVITY: "chestnet_monitoring_sensitivity",
    Alert.Kind.SPECIFICITY: "chestnet_monitoring_specificity",
    Alert.Kind.REFUSAL_RATE: "chestnet_monitoring_refusal_rate",
    Alert.Kind.SCORE_DRIFT: "chestnet_monitoring_score_psi",
}


def gauges() -> list[tuple[str, str, dict[str, str], float]]:
    """For /metrics: the active version's alert figures over their windows (those with
    enough images), their limits, and the open alerts by kind."""
    active = registry.active_version()
    samples: list[tuple[str, str, dict[str, str], float]] = []
    if active is not None:
        labels = {"model_version": active.version}
        for check in checks_for(active.version, active.card):
            words = dict(Alert.Kind.choices)[check.kind]
            if check.value is not None:
                samples.append(
                    (
                        _GAUGES[check.kind],
                        f"{check.kind} over the alert window",
                        labels,
                        check.value,
                    )
                )
            samples.append(
                (f"{_GAUGES[check.kind]}_limit", f"The alert limit: {words}", labels, check.limit)
            )
    open_by_kind: dict[str, int] = dict.fromkeys(_GAUGES, 0)
    for kind in Alert.objects.filter(cleared_at__isnull=True).values_list("kind", flat=True):
        open_by_kind[kind] = open_by_kind.get(kind, 0) + 1
    for kind, count in open_by_kind.items():
        samples.append(
            ("chestnet_monitoring_alerts_open", "Open monitoring alerts", {"kind": kind}, count)
        )
    return samples
