"""Reads of the registry: the active model (what workers serve) and operating points."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import QuerySet

from chestnet_site.errors import ServiceError
from registry.models import Activation, ModelVersion

CARD_DEFAULT = "card"
SENSITIVITY_MARKS = (0.90, 0.95, 0.97, 0.99)


def active_version() -> ModelVersion | None:
    return ModelVersion.objects.filter(is_active=True).first()


@dataclass(frozen=True)
class ActiveModel:
    pk: int
    version: str
    sha256: str
    threshold: float | None

    @property
    def key(self) -> tuple:
        return (self.pk, self.sha256, self.threshold)


def active_model() -> ActiveModel | None:
    """What the workers must serve: one indexed query, cheap enough for every task."""
    row = (
        ModelVersion.objects.filter(is_active=True)
        .values_list("pk", "version", "sha256", "active_threshold")
        .first()
    )
    return ActiveModel(*row) if row else None


def version_list() -> QuerySet[ModelVersion]:
    return ModelVersion.objects.all()


def activation_history(*, version: ModelVersion | None = None) -> QuerySet[Activation]:
    activations = Activation.objects.select_related("version", "actor")
    return activations.filter(version=version) if version is not None else activations


def operating_point(version: ModelVersion, target: float) -> dict | None:
    """The most specific validation point reaching `target` sensitivity (the highest
    threshold that does), or None."""
    points = version.validation.get("operating_points") or []
    reaching = [p for p in points if p["sensitivity"] >= target]
    return max(reaching, key=lambda p: p["threshold"]) if reaching else None


def operating_points(version: ModelVersion) -> list[dict]:
    """The validation points at the usual sensitivity targets, for the version's page."""
    marks = []
    for target in SENSITIVITY_MARKS:
        point = operating_point(version, target)
        if point is not None:
            marks.append({"target": target, **point})
    return marks


def threshold_for(version: ModelVersion, choice: str) -> tuple[float, str]:
    """(threshold, description) for "card" or a target sensitivity such as "0.97"."""
    if choice == CARD_DEFAULT:
        rule = _fitting(version.card.get("threshold_rule", "as trained"), 84)
        return float(version.card["threshold"]), f"card default: {rule}"
    try:
        target = float(choice)
    except ValueError:
        raise ServiceError(f"Unknown operating point {choice!r}.") from None
    point = operating_point(version, target)
    if point is None:
        raise ServiceError(
            f"This version has no validation operating point with sensitivity ≥ {target:.2f}."
        )
    return float(point["threshold"]), (
        f"sensitivity ≥ {target:.2f} (validation: sensitivity {point['sensitivity']:.3f}, "
        f"specificity {point['specificity']:.3f})"
    )


def _fitting(text: str, limit: int) -> str:
    """`text` cut at a word to at most `limit` characters, with "…" where cut
    (Activation.operating_point holds 100 characters)."""
    if len(text) <= limit:
        return text
    return text[: limit - 1].rsplit(" ", 1)[0].rstrip(" ,;:(") + "…"
