"""Site calibration: refit a model's probabilities and decision threshold on a site's own
labelled radiographs, without retraining.

The network ranks a new site's images well, but its operating point does not transfer: the
same threshold that caught 97% of pneumonias at 0.9 specificity on the held-out batches may
catch them at 0.8 elsewhere. A site labels at least `MIN_PER_CLASS` images of each class;
balanced Platt scaling on the base model's logit gives p_site = sigmoid(a * logit(p) + b),
the threshold is chosen again for the target sensitivity, and (a, b) are folded into the
final Dense layer like the base calibration, so the new artifact serves like any other.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from ml import metrics
from ml.artifact import DEFAULT_ARTIFACT, load_card, write_card
from ml.config import LOGIT_LAYER
from ml.data import LABELS

log = logging.getLogger(__name__)

MIN_PER_CLASS = 50
# Scores are clipped before the logit: a base probability of exactly 0 or 1 (float32
# saturation) would otherwise become an infinite logit.
EPSILON = 1e-6
REFERENCE_BINS = 20


class NotEnoughLabels(ValueError):
    """Fewer labelled images of a class than a calibration needs."""


class CalibrationFailed(ValueError):
    """The site's images give no usable calibration (ranked backwards or perfectly separated)."""


@dataclass(frozen=True)
class SiteCalibration:
    scale: float
    shift: float  # p_site = sigmoid(scale * logit(p_base) + shift)
    threshold: float  # in the recalibrated probability space
    target_sensitivity: float
    counts: dict[str, int]  # {"NORMAL": n0, "PNEUMONIA": n1}
    # ml.metrics.summary at `threshold` on the fitting set (in-sample), with operating
    # points and seeded bootstrap 95% intervals of sensitivity and specificity.
    figures: dict = field(repr=False)
    # Histogram of the recalibrated scores on the fitting set: the drift reference.
    score_reference: dict = field(repr=False)

    def apply(self, scores) -> np.ndarray:
        """Recalibrated probabilities for the base model's probabilities."""
        return metrics.sigmoid(self.scale * _logit(scores) + self.shift)

    def as_card_entry(
        self, *, base_version: str, base_sha256: str, site: str = "", fitted_on: str = ""
    ) -> dict:
        figures = self.figures
        return {
            "method": "platt on the base model's logit, classes weighted equally",
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "site": site,
            "fitted_on": fitted_on,
            "images": dict(self.counts),
            "target_sensitivity": self.target_sensitivity,
            "scale": self.scale,
            "shift": self.shift,
            "threshold": self.threshold,
            "sensitivity": figures["sensitivity"],
            "sensitivity_ci95": figures["sensitivity_ci95"],
            "specificity": figures["specificity"],
            "specificity_ci95": figures["specificity_ci95"],
            "expected_calibration_error": figures["expected_calibration_error"],
            "roc_auc": figures["roc_auc"],
            "figures_are": "in-sample: measured on the images the calibration was fitted on",
            "base_version": base_version,
            "base_sha256": base_sha256,
            "score_reference": self.score_reference,
        }


def fit_site_calibration(
    scores,
    targets,
    *,
    target_sensitivity: float = 0.97,
    min_per_class: int = MIN_PER_CLASS,
    bootstrap: int = 1000,
    seed: int = 0,
) -> SiteCalibration:
    """Balanced Platt scaling of the base model's probabilities `scores` against 0/1
    `targets`, and the most specific threshold meeting `target_sensitivity` on them."""
    if bootstrap < 1:
        raise ValueError("bootstrap must be at least 1 resample.")
    scores, targets = _checked(scores, targets)
    counts = {label: int((targets == i).sum()) for i, label in enumerate(LABELS)}
    require_labels(counts, min_per_class)
    _check_overlap(scores, targets)
    scale, shift = metrics.fit_platt(_logit(scores), targets, balanced=True)
    _check_fit(scale, shift)
    recalibrated = metrics.sigmoid(scale * _logit(scores) + shift)
    threshold = metrics.threshold_for_sensitivity(targets, recalibrated, target_sensitivity)
    return SiteCalibration(
        scale=scale,
        shift=shift,
        threshold=threshold,
        target_sensitivity=float(target_sensitivity),
        counts=counts,
        figures=site_figures(targets, recalibrated, threshold, bootstrap=bootstrap, seed=seed),
        score_reference=score_reference(recalibrated, source=_reference_source(counts)),
    )


def require_labels(counts: dict[str, int], min_per_class: int) -> None:
    """Raise NotEnoughLabels unless every class has at least `min_per_class` images (and
    always at least one: a calibration needs both classes)."""
    min_per_class = max(min_per_class, 1)
    if min(counts.values()) >= min_per_class:
        return
    found = " and ".join(f"{counts[label]} {label}" for label in LABELS)
    raise NotEnoughLabels(
        f"Site calibration needs at least {min_per_class} labelled images of each class; "
        f"found {found}."
    )


def site_figures(
    targets: np.ndarray, scores: np.ndarray, threshold: float, *, bootstrap: int, seed: int
) -> dict:
    """ml.metrics.summary plus operating points and bootstrap percentile 95% intervals of
    sensitivity and specificity (each class resampled on its own, threshold held fixed)."""
    figures = metrics.summary(targets, scores, threshold, bootstrap=bootstrap)
    rng = np.random.default_rng(seed)
    for name, cls in (("sensitivity", 1), ("specificity", 0)):
        hits = (scores >= threshold) if cls else (scores < threshold)
        figures[f"{name}_ci95"] = _bootstrap_rate(hits[targets == cls], bootstrap, rng)
    figures["bootstrap_rounds"] = bootstrap
    figures["operating_points"] = metrics.operating_points(targets, scores)
    return figures


def score_reference(scores: np.ndarray, *, source: str) -> dict:
    edges = np.linspace(0.0, 1.0, REFERENCE_BINS + 1)
    counts = metrics.histogram(np.asarray(scores, float), edges)
    return {"edges": edges.tolist(), "counts": counts.tolist(), "source": source}


def write_calibrated_artifact(
    base_model: Path,
    calibration: SiteCalibration,
    *,
    output: Path,
    version: str,
    site: str = "",
    fitted_on: str = "",
    validation: dict | None = None,
    command: str = "",
) -> dict:
    """The base artifact with the site calibration folded into its final layer, written to
    `output` with its card; returns the card. `validation`: figures on held-back site images
    (else the fitting set's own, in-sample figures are recorded and the card says so)."""
    import keras

    import ml.model  # noqa: F401  (registers the custom layers the file refers to)

    base_model, output = Path(base_model), Path(output)
    if output.resolve() == base_model.resolve():
        raise ValueError("The calibrated artifact must not overwrite its base model.")
    base_card = load_card(base_model)
    model = keras.saving.load_model(base_model, compile=False)
    layer = model.get_layer(LOGIT_LAYER)
    kernel, bias = layer.get_weights()
    layer.set_weights([kernel * calibration.scale, bias * calibration.scale + calibration.shift])
    output.parent.mkdir(parents=True, exist_ok=True)
    model.save(output)
    entry = calibration.as_card_entry(
        base_version=base_card.version,
        base_sha256=base_card.sha256,
        site=site,
        fitted_on=fitted_on,
    )
    entry["command"] = command
    card = _calibrated_card(base_card.to_dict(), calibration, entry, version, validation)
    return write_card(output, card)


def calibrate_folder(
    data_dir,
    *,
    output,
    model=None,
    version: str | None = None,
    target_sensitivity: float = 0.97,
    min_per_class: int = MIN_PER_CLASS,
    batch_size: int = 32,
    site: str = "",
    command: str = "",
) -> dict:
    """Score DATA_DIR/{NORMAL,PNEUMONIA} with the model at `model` (None: the shipped
    default), fit a site calibration on the images it analysed (refused ones do not count)
    and write the calibrated artifact to `output`; returns its card."""
    from ml.evaluate import evaluate_items, labelled_files
    from ml.predictor import Predictor

    files = labelled_files(Path(data_dir))
    # Refuse before minutes of inference when the folder cannot be enough.
    require_labels(_file_counts(files), min_per_class)
    base = Path(model) if model else DEFAULT_ARTIFACT
    predictor = Predictor.load(base)
    summary, rows, _ = evaluate_items(predictor, files, batch_size=batch_size)
    targets = np.array([row[1] for row in rows], dtype=float)
    scores = np.array([row[2] for row in rows], dtype=float)
    calibration = fit_site_calibration(
        scores, targets, target_sensitivity=target_sensitivity, min_per_class=min_per_class
    )
    card = write_calibrated_artifact(
        base,
        calibration,
        output=Path(output),
        version=version or f"{predictor.version}-site-{datetime.now(UTC):%Y%m%d}",
        site=site,
        fitted_on=str(data_dir),
        command=command,
    )
    card["site_calibration"].update(scoring=_scoring(summary))
    return write_card(Path(output), {k: v for k, v in card.items() if k not in ("sha256", "file")})


def _calibrated_card(
    base: dict[str, Any],
    calibration: SiteCalibration,
    entry: dict,
    version: str,
    validation: dict | None,
) -> dict[str, Any]:
    moved = ("sha256", "file", "validation", "validation_protocol", "in_batch_validation")
    card = {key: value for key, value in base.items() if key not in moved}
    card.update(
        version=version,
        created=entry["date"],
        threshold=calibration.threshold,
        threshold_rule=(
            f"Highest threshold with sensitivity >= {calibration.target_sensitivity:.2f} on "
            f"the site's own labelled images (site calibration{_at(entry['site'])}; a missed "
            "pneumonia costs more than a second look)."
        ),
        calibration=_composed(base.get("calibration"), calibration),
        validation=calibration.figures if validation is None else validation,
        validation_protocol=_protocol(validation is None, entry["site"]),
        base_validation=base.get("validation"),
        base_validation_protocol=base.get("validation_protocol", ""),
        site_calibration=entry,
    )
    if "in_batch_validation" in base:
        card["base_in_batch_validation"] = base["in_batch_validation"]
    if base.get("ensemble", {}).get("member_bias"):
        card["ensemble"] = {
            **base["ensemble"],
            "member_bias": [
                calibration.scale * b + calibration.shift for b in base["ensemble"]["member_bias"]
            ],
        }
    return card


def _composed(base: dict | None, site: SiteCalibration) -> dict:
    """The calibration from the raw logit, base then site: a(s z + h) + b."""
    scale, shift = (base["scale"], base["shift"]) if base else (1.0, 0.0)
    return {
        "method": "platt, classes weighted equally; then site platt, classes weighted equally",
        "scale": site.scale * scale,
        "shift": site.scale * shift + site.shift,
        "base": base,
        "site": {"scale": site.scale, "shift": site.shift},
        "fitted_on": "base: see 'base'; site: the site's labelled images (site_calibration)",
    }


def _protocol(in_sample: bool, site: str) -> str:
    base = (
        "'base_validation' is the base model's own validation at its own threshold, before "
        "site calibration (see 'base_validation_protocol')."
    )
    if in_sample:
        return (
            f"'validation' is measured on the same site images{_at(site)} that the "
            "calibration and threshold were fitted on: in-sample figures flatter the model "
            "(sensitivity meets the target by construction). Score held-back site images "
            f"with `python -m ml evaluate` to measure it. {base}"
        )
    return (
        f"'validation' was measured on held-back site images{_at(site)} that the "
        f"calibration and threshold were not fitted on. {base}"
    )


def _at(site: str) -> str:
    return f" at {site}" if site else ""


def _scoring(summary: dict) -> dict:
    """How the folder was scored: refusals (not counted) and the base model's figures."""
    keys = ("threshold", "sensitivity", "specificity", "roc_auc", "expected_calibration_error")
    return {
        "submitted": summary["submitted"],
        "refused": summary["refused"],
        "refused_by_reason": summary["refused_by_reason"],
        "refused_by_label": summary["refused_by_label"],
        "base_model_at_its_threshold": {key: summary[key] for key in keys},
    }


def _file_counts(files: list[tuple[Path, int]]) -> dict[str, int]:
    return {label: sum(1 for _, t in files if t == i) for i, label in enumerate(LABELS)}


def _checked(scores, targets) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    targets = np.asarray(targets, dtype=np.float64).reshape(-1)
    if scores.shape != targets.shape:
        raise ValueError(f"{len(scores)} scores but {len(targets)} targets.")
    if not np.isin(targets, (0.0, 1.0)).all():
        raise ValueError("Targets must be 0 (NORMAL) or 1 (PNEUMONIA).")
    if not np.isfinite(scores).all():
        raise ValueError("Scores must be finite probabilities.")
    return scores, targets


def _logit(scores) -> np.ndarray:
    p = np.clip(np.asarray(scores, dtype=np.float64), EPSILON, 1.0 - EPSILON)
    return np.log(p) - np.log1p(-p)


def _check_overlap(scores: np.ndarray, targets: np.ndarray) -> None:
    """Platt scaling has no finite fit when every pneumonia outscores every normal image:
    Newton's method would push the scale towards infinity and the probabilities to 0 or 1."""
    if scores[targets == 0].max() < scores[targets == 1].min():
        raise CalibrationFailed(
            "The model separates these site images perfectly, so no calibration can be "
            "estimated from them; add images, including difficult ones."
        )


def _check_fit(scale: float, shift: float) -> None:
    if not (np.isfinite(scale) and np.isfinite(shift)) or scale <= 0:
        raise CalibrationFailed(
            "The model ranks this site's images backwards or not at all (fitted scale "
            f"{scale:.3g}): it should not be used here, calibrated or not."
        )


def _bootstrap_rate(hits: np.ndarray, rounds: int, rng: np.random.Generator) -> list:
    if len(hits) == 0 or rounds <= 0:
        return [None, None]
    draws = rng.integers(0, len(hits), size=(rounds, len(hits)))
    low, high = np.percentile(hits[draws].mean(axis=1), [2.5, 97.5])
    return [float(low), float(high)]


def _reference_source(counts: dict[str, int]) -> str:
    images = " and ".join(f"{counts[label]} {label}" for label in LABELS)
    return f"recalibrated scores of the site images the calibration was fitted on ({images})"
