"""Which threshold a model version serves, and why.

A served threshold is decided in steps, each in one place:

1. Training chooses it. `ml.train` (and `ml.ensemble`, which built the shipped default)
   calibrates the probabilities and picks the highest threshold whose sensitivity reaches
   the target (0.97) on held-out acquisition batches; `ml.promote` may pick again on the
   same batches.
2. The card keeps it: `threshold`, `threshold_rule` saying how it was picked, and the
   validation operating points it was picked from (`ml.artifact.ModelCard`).
3. A site calibration may refit it (`ml.calibrate`; for the web, `mlops.execute.calibration`):
   a new version whose card's threshold reaches the target on the site's own signed
   cases, with the site's held-back figures as its validation.
4. Activation picks the operating point: the card's threshold ("card") or a target
   sensitivity read off the card's validation operating points (`threshold_for`).
   `mlops.rollout` judges the evidence at that threshold against the activation floors;
   below them only an override reason lets it through.
5. The registry stores it: `registry.services.version_activate` sets the version's
   `active_threshold` and `operating_point` (the description `threshold_for` gives) and
   keeps an `Activation` row with any override reason; a rollback re-uses an earlier row.
6. The workers load it: `diagnosis.inference` asks `active_model()` on every task and
   loads `ml.predictor.Predictor` at that threshold.
7. The predictor applies it: an image is flagged when its probability p >= threshold.

`served_point()` answers the question for the active version, with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass

from chestnet_site.errors import ServiceError
from registry.models import ModelVersion

CARD_DEFAULT = "card"
SENSITIVITY_MARKS = (0.90, 0.95, 0.97, 0.99)
# Why a version serves its threshold (ServedPoint.chosen).
CHOSEN_CARD = "card"  # the card's threshold, picked in training
CHOSEN_SITE = "site calibration"  # the card's threshold, refitted on the site's cases
CHOSEN_TARGET = "target sensitivity"  # a target sensitivity picked at activation
_CARD_PREFIX = "card default: "


@dataclass(frozen=True)
class ActiveModel:
    """What the workers must serve: the active version's file, at its threshold."""

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


@dataclass(frozen=True)
class ServedPoint:
    """The threshold a version serves, and why."""

    version: str
    threshold: float
    chosen: str  # CHOSEN_CARD, CHOSEN_SITE or CHOSEN_TARGET
    description: str  # the operating point as recorded at activation
    rule: str  # how the card's threshold was picked (its threshold_rule)
    override_reason: str  # why it serves below the activation floors; "" if it met them

    @property
    def reason(self) -> str:
        if self.chosen == CHOSEN_TARGET:
            why = f"A target sensitivity chosen at activation: {self.description}"
        elif self.chosen == CHOSEN_SITE:
            why = f"The site calibration's threshold: {self.rule}"
        else:
            why = f"The card's threshold, chosen in training: {self.rule}"
        why = why.rstrip(".") + "."
        if self.override_reason:
            why += f" Activated below the floors: {self.override_reason}"
        return why


def served_point(version: ModelVersion | None = None) -> ServedPoint | None:
    """The threshold `version` (default: the active version) serves and why; None when it
    is not the active version, or no version is."""
    if version is None:
        version = ModelVersion.objects.filter(is_active=True).first()
    if version is None or not version.is_active or version.active_threshold is None:
        return None
    card = version.model_card
    activation = version.activations.first()  # the latest: the one that made it active
    if not version.operating_point.startswith(_CARD_PREFIX):
        chosen = CHOSEN_TARGET
    else:
        chosen = CHOSEN_SITE if card.site_calibration else CHOSEN_CARD
    return ServedPoint(
        version=version.version,
        threshold=version.active_threshold,
        chosen=chosen,
        description=version.operating_point,
        rule=_rule(card.threshold_rule),
        override_reason=activation.override_reason if activation else "",
    )


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
        card = version.model_card
        return float(card.threshold), _CARD_PREFIX + _rule(card.threshold_rule)
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


def _rule(text: str | None) -> str:
    return "as trained" if text is None else text
