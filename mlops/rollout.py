"""Safe roll-out: whether a model version may serve clinical analyses, and activation and
rollback under that policy (the browser and `manage.py activate_model` alike).

A version is judged on evidence: its latest finished test evaluation here (mlops
Evaluation), else its card's held-out validation (the shipped default, an imported file; for
a site calibration, the site's held-back cases: mlops.execute.calibration).
At the threshold it would serve, the evidence must reach the floors (ROC AUC, sensitivity,
specificity: settings CHESTNET_ACTIVATION_MIN_*) on at least
CHESTNET_ACTIVATION_MIN_TEST_IMAGES images. Below them, activation needs an override reason
in words (`chestnet_site.text.require_words`), kept on the registry's Activation row and in
the audit trail with who gave it.

The version an activation replaces is withdrawn: unreported cases it analysed go through
the new active version again (`diagnosis.services.reanalyse_unreported`). The registry
(`registry.services`) records activations and judges nothing; this module decides. Which
threshold an operating point means, and why a version serves its own, is
`registry.operating_point`."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction

from chestnet_site.errors import ServiceError
from chestnet_site.text import require_words
from diagnosis import services as clinical
from mlops.models import Evaluation
from registry import selectors as registry
from registry import services as registry_services
from registry.models import Activation, ModelVersion
from registry.operating_point import CARD_DEFAULT, threshold_for

# diagnosis.models.AuditEvent.Action values (mlops never imports the clinical models).
ACTIVATED = "activated"
ACTIVATION_OVERRIDDEN = "activation_overridden"


@dataclass(frozen=True)
class Evidence:
    """What a version is judged on, at the threshold it would serve."""

    source: str
    images: int
    threshold: float
    roc_auc: float | None
    sensitivity: float | None
    specificity: float | None


@dataclass(frozen=True)
class Verdict:
    evidence: Evidence
    failures: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.failures


@dataclass(frozen=True)
class Rollout:
    """An activation that happened: the version now active, and the one it withdrew."""

    version: ModelVersion
    verdict: Verdict
    override_reason: str
    withdrawn: str | None
    reanalysed: int

    @property
    def overridden(self) -> bool:
        return bool(self.override_reason)


class ActivationRefused(ServiceError):
    """The evidence falls below the floors and no override reason was given."""

    def __init__(self, *, version: ModelVersion, verdict: Verdict) -> None:
        self.verdict = verdict
        evidence = verdict.evidence
        super().__init__(
            f"{version.version} was not activated: its evidence ({evidence.source}) falls "
            f"below the activation floors: {'; '.join(verdict.failures)}. To activate it "
            "anyway, give an override reason."
        )


def floors() -> dict[str, float]:
    return {
        "roc_auc": settings.CHESTNET_ACTIVATION_MIN_AUC,
        "sensitivity": settings.CHESTNET_ACTIVATION_MIN_SENSITIVITY,
        "specificity": settings.CHESTNET_ACTIVATION_MIN_SPECIFICITY,
        "images": settings.CHESTNET_ACTIVATION_MIN_TEST_IMAGES,
    }


# --- evidence and verdict --------------------------------------------------------------


def activation_evidence(*, version: ModelVersion, threshold: float) -> Evidence:
    """The latest finished test evaluation of the version, else its card's validation, read
    at `threshold`. An evaluation stores its whole ROC curve (every distinct score), so any
    threshold can be read exactly; the card keeps a thinned curve, so only its own threshold
    and its listed points (the ones activation offers) count."""
    evaluation = (
        Evaluation.objects.filter(version=version, status=Evaluation.Status.DONE)
        .select_related("dataset")
        .order_by("-created_at", "-pk")
        .first()
    )
    if evaluation is not None:
        source = f"test evaluation on {evaluation.dataset.name}"
        return _evidence(source, evaluation.metrics, threshold, complete_curve=True)
    # A site calibration's card carries the figures on the site's held-back cases.
    held_back = version.validation.get("held_back_site_cases")
    source = "card's validation on held-back site cases" if held_back else "card's validation"
    return _evidence(source, version.validation, threshold, complete_curve=False)


def activation_check(*, version: ModelVersion, threshold: float) -> Verdict:
    evidence = activation_evidence(version=version, threshold=threshold)
    return Verdict(evidence=evidence, failures=tuple(_failures(evidence)))


def _evidence(source: str, summary: dict, threshold: float, *, complete_curve: bool) -> Evidence:
    sensitivity, specificity = _figures_at(summary, threshold, complete_curve=complete_curve)
    return Evidence(
        source=source,
        images=int(summary.get("count") or 0),
        threshold=threshold,
        roc_auc=summary.get("roc_auc"),
        sensitivity=sensitivity,
        specificity=specificity,
    )


def _figures_at(
    summary: dict, threshold: float, *, complete_curve: bool
) -> tuple[float | None, float | None]:
    """(sensitivity, specificity) of `score >= threshold`, or (None, None) when the summary
    cannot tell."""
    if _same(summary.get("threshold"), threshold):
        return summary.get("sensitivity"), summary.get("specificity")
    points = summary.get("operating_points") or []
    for point in points:
        if _same(point["threshold"], threshold):
            return point["sensitivity"], point["specificity"]
    if not (complete_curve and points):
        return None, None
    # On a complete curve the lowest point at or above the threshold flags the same images.
    reaching = [p for p in points if p["threshold"] >= threshold]
    if not reaching:
        return 0.0, 1.0  # no score reaches it: nothing is flagged
    point = min(reaching, key=lambda p: p["threshold"])
    return point["sensitivity"], point["specificity"]


def _same(a: float | None, b: float) -> bool:
    return a is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def _failures(evidence: Evidence) -> list[str]:
    limits = floors()
    failures = []
    if evidence.images < limits["images"]:
        failures.append(
            f"it rests on {evidence.images} image(s), fewer than {limits['images']:.0f}"
        )
    if evidence.roc_auc is None:
        failures.append(f"ROC AUC unknown (floor {limits['roc_auc']:.2f})")
    elif evidence.roc_auc < limits["roc_auc"]:
        failures.append(f"ROC AUC {evidence.roc_auc:.3f} below {limits['roc_auc']:.2f}")
    for name in ("sensitivity", "specificity"):
        value = getattr(evidence, name)
        at = f"at threshold {evidence.threshold:.4f}"
        if value is None:
            failures.append(f"{name} unknown {at} (floor {limits[name]:.2f})")
        elif value < limits[name]:
            failures.append(f"{name} {value:.3f} {at} below {limits[name]:.2f}")
    return failures


# --- activation and rollback -----------------------------------------------------------


def rollout_activate(
    *,
    version: ModelVersion,
    user,
    operating_point: str = CARD_DEFAULT,
    override_reason: str = "",
    by: str = "",
) -> Rollout:
    """Activate the version at the operating point if its evidence meets the floors, or
    with a non-blank override reason; raises ActivationRefused otherwise. `by` names a
    caller that is not a user (the command line) in the audit trail."""
    threshold, _description = threshold_for(version, operating_point)
    return _roll_out(
        version=version,
        verdict=activation_check(version=version, threshold=threshold),
        user=user,
        override_reason=override_reason,
        by=by,
        activate=lambda reason: registry_services.version_activate(
            version=version, user=user, operating_point=operating_point, override_reason=reason
        ),
    )


def rollout_rollback(
    *, activation: Activation, user, override_reason: str = "", by: str = ""
) -> Rollout:
    """Re-activate an earlier activation's version at its threshold, under the same floors
    (a weak version needs an override again)."""
    return _roll_out(
        version=activation.version,
        verdict=activation_check(version=activation.version, threshold=activation.threshold),
        user=user,
        override_reason=override_reason,
        by=by,
        activate=lambda reason: registry_services.version_rollback(
            activation=activation, user=user, override_reason=reason
        ),
    )


def _roll_out(
    *,
    version: ModelVersion,
    verdict: Verdict,
    user,
    override_reason: str,
    by: str,
    activate: Callable[[str], ModelVersion],
) -> Rollout:
    reason = "" if verdict.passed else override_reason_check(override_reason)
    if not verdict.passed and not reason:
        raise ActivationRefused(version=version, verdict=verdict)
    with transaction.atomic():
        previous = registry.active_version()
        active = activate(reason)
        clinical.audit_record(
            actor=user,
            action=ACTIVATION_OVERRIDDEN if reason else ACTIVATED,
            detail=_audit_detail(active, verdict, reason, by),
        )
        withdrawn = previous.version if previous and previous.pk != active.pk else None
        # Queued on commit, so the workers pick them up with the new version active.
        count = (
            clinical.reanalyse_unreported(model_version=withdrawn, user=user) if withdrawn else 0
        )
    return Rollout(
        version=active,
        verdict=verdict,
        override_reason=reason,
        withdrawn=withdrawn,
        reanalysed=count,
    )


def override_reason_check(text: str) -> str:
    """No reason (""; below the floors, activation is then refused), or one in words: a
    reason typed but made of invisible characters, spaces or punctuation is refused
    (WordsRequired: a ServiceError, and a ValidationError for the forms)."""
    if not text.strip():
        return ""
    return require_words(text, field="the override reason")


def _audit_detail(version: ModelVersion, verdict: Verdict, reason: str, by: str) -> str:
    """Who (when not a user), what, and why first: audit details are cut at 300 characters."""
    head = f"{by}: " if by else ""
    what = f"{version.version} at threshold {version.active_threshold:.4f}"
    if reason:
        return f"{head}{what} below the floors; reason: {reason}; {'; '.join(verdict.failures)}"
    evidence = f"{verdict.evidence.source}, {verdict.evidence.images} images"
    return f"{head}{what} ({version.operating_point}); evidence: {evidence}"


def rollout_summary(rollout: Rollout) -> str:
    """One line for the page or the command: what is active, and what was withdrawn."""
    version = rollout.version
    lines = [
        f"{version.version} is active at threshold {version.active_threshold:.4f} "
        f"({version.operating_point})."
    ]
    if rollout.overridden:
        lines.append("Activated below the floors; the override and its reason are recorded.")
    if rollout.withdrawn:
        lines.append(
            f"{rollout.reanalysed} unreported case(s) analysed by {rollout.withdrawn} queued "
            "for re-analysis."
        )
    return " ".join(lines)
