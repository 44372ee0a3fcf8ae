"""Worker side of site calibrations: fit the calibration on the fitting part (ml.calibrate),
measure the base version (at the threshold each image was served at) and the calibrated
scores (at the new threshold) on the held-back part, fold the fit into a copy of the base
artifact (Keras, in this worker child or the command's process) and register it as a new
version whose card's validation is the held-back figures: the activation floors
(mlops.rollout) judge it on the site's own held-back cases."""

from __future__ import annotations

import logging
import shlex
import shutil
from pathlib import Path

import numpy as np
from django.db import transaction
from django.utils import timezone

from ml import calibrate, metrics
from mlops.calibration import CalibrationFilters, CalibrationItem, calibration_fail, counts_text
from mlops.execute.workspace import work_folder
from mlops.models import SiteCalibration
from mlops.services import event_record
from registry.artifacts import local_artifact
from registry.models import ModelVersion
from registry.services import version_register

logger = logging.getLogger(__name__)

# The held-back validation's bootstrap of ROC AUC (ml.metrics.summary).
AUC_BOOTSTRAP = 1000


def calibration_execute(*, calibration_id: int) -> str:
    """Idempotent: only the delivery that moves it from queued to running does the work."""
    if not SiteCalibration.objects.filter(
        pk=calibration_id, status=SiteCalibration.Status.QUEUED
    ).update(status=SiteCalibration.Status.RUNNING, started_at=timezone.now()):
        return "skipped"
    calibration = SiteCalibration.objects.select_related("base_version", "requested_by").get(
        pk=calibration_id
    )
    work = work_folder(f"calibration-{calibration_id}-")
    try:
        _calibrate(calibration, work)
    except (calibrate.NotEnoughLabels, calibrate.CalibrationFailed) as exc:
        _fail(calibration, str(exc))
        return "failed"
    except Exception as exc:
        logger.exception("Site calibration %s failed", calibration_id)
        _fail(calibration, f"The calibration failed: {type(exc).__name__}: {exc}")
        return "failed"
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return "done"


def calibration_lost(calibration_id: int, *, reason: str) -> None:
    """The worker lost the calibration's process."""
    calibration_fail(calibration_id, reason=reason)


def _fail(calibration: SiteCalibration, reason: str) -> None:
    calibration_fail(calibration.pk, reason=reason)
    event_record(
        actor=calibration.requested_by,
        action="calibration_failed",
        detail=f"calibration {calibration.pk} of {calibration.base_version.version}: {reason}",
    )


def _calibrate(calibration: SiteCalibration, work: Path) -> ModelVersion:
    items = [CalibrationItem.from_row(row) for row in calibration.items]
    fitting = [item for item in items if not item.held_back]
    kept = [item for item in items if item.held_back]
    options = calibration.options
    fit = calibrate.fit_site_calibration(
        _column(fitting, "probability"),
        _column(fitting, "truth"),
        target_sensitivity=options["target_sensitivity"],
        min_per_class=options["min_per_class"],
    )
    targets, scores = _column(kept, "truth"), _column(kept, "probability")
    before = decision_figures(targets, scores, thresholds=_column(kept, "threshold"))
    recalibrated = fit.apply(scores)
    after = decision_figures(targets, recalibrated, thresholds=np.full(len(kept), fit.threshold))
    output = work / "out" / "model.keras"
    calibrate.write_calibrated_artifact(
        local_artifact(calibration.base_version),
        fit,
        output=output,
        version=_version_name(calibration),
        site=options.get("site", ""),
        fitted_on=_fitted_on(calibration),
        validation=held_back_validation(targets, recalibrated, fit.threshold, after=after),
        command=_command(calibration),
    )
    return _register(calibration, output, fit=fit, before=before, after=after)


def _register(calibration: SiteCalibration, output: Path, **figures) -> ModelVersion:
    with transaction.atomic():
        version = version_register(path=output, origin=ModelVersion.Origin.CALIBRATED)
        SiteCalibration.objects.filter(pk=calibration.pk).update(
            status=SiteCalibration.Status.DONE,
            new_version=version,
            fit=_fit_record(figures["fit"]),
            before=figures["before"],
            after=figures["after"],
            finished_at=timezone.now(),
        )
        event_record(
            actor=calibration.requested_by,
            action="calibration_done",
            detail=f"{calibration.base_version.version} calibrated into {version.version} "
            f"(threshold {version.model_card.threshold:.4f})",
        )
    logger.info("Site calibration %s registered %s", calibration.pk, version.version)
    return version


def _column(items: list[CalibrationItem], name: str) -> np.ndarray:
    return np.array([getattr(item, name) for item in items], dtype=np.float64)


# --- figures on the held-back part -----------------------------------------------------


def decision_figures(targets: np.ndarray, scores: np.ndarray, *, thresholds: np.ndarray) -> dict:
    """Counts, sensitivity, specificity and PPV (each with its Wilson 95% interval), ECE
    and ROC AUC of flagging `scores >= thresholds` (a threshold per image: the base served
    each image at the threshold active then)."""
    flagged, positive = scores >= thresholds, targets == 1
    tp, fn = int((flagged & positive).sum()), int((~flagged & positive).sum())
    fp, tn = int((flagged & ~positive).sum()), int((~flagged & ~positive).sum())
    both_classes = 0 < positive.sum() < len(targets)
    return {
        "images": len(targets),
        "positives": int(positive.sum()),
        "thresholds": sorted({float(t) for t in thresholds}),
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        "sensitivity": rate(tp, tp + fn),
        "specificity": rate(tn, tn + fp),
        "ppv": rate(tp, tp + fp),
        "expected_calibration_error": metrics.expected_calibration_error(targets, scores),
        "roc_auc": metrics.roc_auc(targets, scores) if both_classes else None,
    }


def rate(hits: int, total: int) -> dict:
    """A proportion with its Wilson 95% interval; value and interval None when total is 0."""
    interval = metrics.wilson_interval(hits, total)
    return {
        "value": hits / total if total else None,
        "hits": hits,
        "total": total,
        "ci95": list(interval) if interval else None,
    }


def held_back_validation(
    targets: np.ndarray, scores: np.ndarray, threshold: float, *, after: dict
) -> dict:
    """The card's `validation`: ml.metrics.summary of the calibrated scores on the
    held-back part at the new threshold, with the whole ROC curve (every distinct score,
    so each offered operating point reads exactly) and the Wilson intervals."""
    summary = metrics.summary(targets, scores, threshold, bootstrap=AUC_BOOTSTRAP)
    summary["operating_points"] = metrics.operating_points(targets, scores, limit=len(targets))
    summary["sensitivity_ci95"] = after["sensitivity"]["ci95"]
    summary["specificity_ci95"] = after["specificity"]["ci95"]
    summary["interval"] = "Wilson score 95%"
    summary["held_back_site_cases"] = True
    return summary


# --- names and provenance --------------------------------------------------------------


def _version_name(calibration: SiteCalibration) -> str:
    base = calibration.base_version.version[:64]
    return f"{base}-site-{timezone.now():%Y%m%d}-{calibration.pk}"


def _fitted_on(calibration: SiteCalibration) -> str:
    filters = CalibrationFilters.from_json(calibration.filters)
    return (
        f"signed reports of cases analysed by {calibration.base_version.version} "
        f"({filters.describe()}): {counts_text(calibration.counts)}"
    )


def _command(calibration: SiteCalibration) -> str:
    """The command that asks for the same calibration (recorded on the card)."""
    filters, options = calibration.filters, calibration.options
    words = ["python manage.py calibrate_model", shlex.quote(calibration.base_version.version)]
    for key in ("since", "until", "source", "modality", "manufacturer", "site"):
        value = filters.get(key) or options.get(key)
        if value:
            words.append(f"--{key} {shlex.quote(str(value))}")
    words.append(f"--holdout {options['holdout']}")
    words.append(f"--target-sensitivity {options['target_sensitivity']}")
    words.append(f"--min-per-class {options['min_per_class']}")
    return " ".join(words)


def _fit_record(fit: calibrate.SiteCalibration) -> dict:
    """What the job shows of the fit: its parameters and in-sample figures."""
    keys = ("sensitivity", "specificity", "roc_auc", "expected_calibration_error")
    return {
        "scale": fit.scale,
        "shift": fit.shift,
        "threshold": fit.threshold,
        "target_sensitivity": fit.target_sensitivity,
        "counts": dict(fit.counts),
        "in_sample": {key: fit.figures.get(key) for key in keys},
    }
