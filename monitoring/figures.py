"""The figures of monitoring, from outcome rows (diagnosis.selectors.ImageOutcome): what the
AI did with a site's images, and how it agreed with the radiologists' signed findings.

Pure functions of the rows, so the page, the API, the alerts and /metrics compute one thing
one way. Proportions come with 95% Wilson intervals; a figure with nothing to count is None,
never 0."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from diagnosis.selectors import ImageOutcome as Outcome
from ml import metrics

# The score histogram monitoring compares against a version's reference: 10 equal bins,
# the bins of the card's validation calibration table (every card has one).
SCORE_EDGES = np.linspace(0.0, 1.0, 11)
# Bins coarser than the reference's are merged into these, finer ones are summed.
RELIABILITY_BINS = 10


def _rate(successes: int, total: int) -> tuple[float | None, list[float] | None]:
    if total <= 0:
        return None, None
    interval = metrics.wilson_interval(successes, total)
    return successes / total, list(interval) if interval else None


def group_figures(rows: Sequence[Outcome]) -> dict[str, Any]:
    """Counts, rates and agreement of one group of rows (a period, a source, a scanner)."""
    analysed = [row for row in rows if row.status == "done" and row.probability is not None]
    refused = [row for row in rows if row.status == "refused"]
    positive = sum(row.ai_label == "PNEUMONIA" for row in analysed)
    signed = [row for row in analysed if row.finding is not None]
    judged = [row for row in signed if row.truth is not None]
    confusion = confusion_counts(judged)
    tp, fp, tn, fn = (confusion[key] for key in ("tp", "fp", "tn", "fn"))
    sensitivity, sensitivity_ci = _rate(tp, tp + fn)
    specificity, specificity_ci = _rate(tn, tn + fp)
    ppv, ppv_ci = _rate(tp, tp + fp)
    npv, npv_ci = _rate(tn, tn + fn)
    agreement, agreement_ci = _rate(tp + tn, len(judged))
    positive_rate, positive_rate_ci = _rate(positive, len(analysed))
    refusal_rate, refusal_rate_ci = _rate(len(refused), len(rows))
    return {
        "images": len(rows),
        "analysed": len(analysed),
        "refused": len(refused),
        "refused_by_reason": dict(sorted(Counter(row.refusal_reason for row in refused).items())),
        "refusal_rate": refusal_rate,
        "refusal_rate_ci95": refusal_rate_ci,
        "ai_positive": positive,
        "ai_positive_rate": positive_rate,
        "ai_positive_rate_ci95": positive_rate_ci,
        "signed": len(signed),
        "signed_by_finding": dict(sorted(Counter(str(row.finding) for row in signed).items())),
        # Analysed images of signed cases whose final finding is normal or pneumonia:
        # "other" and "indeterminate" are neither right nor wrong for a pneumonia flag.
        "judged": len(judged),
        "confusion": confusion,
        "sensitivity": sensitivity,
        "sensitivity_ci95": sensitivity_ci,
        "specificity": specificity,
        "specificity_ci95": specificity_ci,
        "ppv": ppv,
        "ppv_ci95": ppv_ci,
        "npv": npv,
        "npv_ci95": npv_ci,
        "agreement": agreement,
        "agreement_ci95": agreement_ci,
    }


def confusion_counts(judged: Iterable[Outcome]) -> dict[str, int]:
    """tp/fp/tn/fn of the AI's label against the signed finding."""
    counts = {"tp": 0, "fp": 0, "tn": 0, "fn": 0}
    for row in judged:
        flagged = row.ai_label == "PNEUMONIA"
        key = ("t" if flagged == bool(row.truth) else "f") + ("p" if flagged else "n")
        counts[key] += 1
    return counts


def reliability(rows: Sequence[Outcome], *, bins: int = RELIABILITY_BINS) -> dict[str, Any]:
    """The reliability diagram's bins (mean predicted probability against the observed
    rate of pneumonia among judged images) and the expected calibration error."""
    judged = [row for row in rows if row.truth is not None and row.probability is not None]
    if not judged:
        return {"count": 0, "bins": [], "expected_calibration_error": None}
    targets = np.array([row.truth for row in judged], float)
    scores = np.array([row.probability for row in judged], float)
    return {
        "count": len(judged),
        "bins": metrics.calibration_bins(targets, scores, bins=bins),
        "expected_calibration_error": metrics.expected_calibration_error(
            targets, scores, bins=bins
        ),
    }


@dataclass(frozen=True)
class Reference:
    """A version's score distribution where it was validated: counts per SCORE_EDGES bin."""

    counts: np.ndarray
    source: str


def score_reference(card: Mapping[str, Any]) -> Reference | None:
    """The reference distribution of a model card: the site calibration's, else the
    validation calibration table's bin counts; None on a card with neither."""
    entry = (card.get("site_calibration") or {}).get("score_reference") or card.get(
        "score_reference"
    )
    if entry and entry.get("edges") and entry.get("counts"):
        edges = np.asarray(entry["edges"], float)
        counts = np.asarray(entry["counts"], float)
        return Reference(_rebin(edges, counts), str(entry.get("source", "site calibration")))
    table = (card.get("validation") or {}).get("calibration") or []
    if len(table) == len(SCORE_EDGES) - 1:
        counts = np.array([float(b.get("count", 0)) for b in table])
        if counts.sum() > 0:
            return Reference(counts, "validation")
    return None


def _rebin(edges: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Counts on `edges` summed into SCORE_EDGES bins (by each bin's centre)."""
    centres = (edges[:-1] + edges[1:]) / 2
    which = np.clip(np.digitize(centres, SCORE_EDGES[1:-1]), 0, len(SCORE_EDGES) - 2)
    return np.bincount(which, weights=counts, minlength=len(SCORE_EDGES) - 1)


def score_drift(rows: Sequence[Outcome], reference: Reference | None) -> dict[str, Any]:
    """The analysed images' score histogram beside the reference's, with PSI and the
    (binned) Kolmogorov-Smirnov distance; the statistics are None without both."""
    scores = [row.probability for row in rows if row.probability is not None]
    current = metrics.histogram(np.asarray(scores, float), SCORE_EDGES)
    result: dict[str, Any] = {
        "edges": [float(e) for e in SCORE_EDGES],
        "counts": [int(c) for c in current],
        "reference_counts": None if reference is None else [float(c) for c in reference.counts],
        "reference_source": None if reference is None else reference.source,
        "psi": None,
        "ks": None,
    }
    if reference is not None and len(scores):
        result["psi"] = metrics.population_stability_index(reference.counts, current)
        result["ks"] = metrics.ks_statistic(reference.counts, current)
    return result


# (manufacturer, modality, bits stored, longer side or None, images): counted acquisition
# facts, as diagnosis.selectors.input_facts_counted reads them from the database.
InputFacts = tuple[str, str, int | None, int | None, int]


def input_mix(rows: Sequence[Outcome]) -> dict[str, dict[str, int]]:
    """What the images were: scanner makers, bit depths, sizes (by the longer side) and
    modalities, counted. Unknown values count as "unknown"."""
    return input_mix_counted(
        (row.manufacturer, row.modality, row.bits_stored, _longer(row.width, row.height), 1)
        for row in rows
    )


def input_mix_counted(groups: Iterable[InputFacts]) -> dict[str, dict[str, int]]:
    """`input_mix` of facts already counted."""
    mix: dict[str, Counter[str]] = {fact: Counter() for fact in _FACTS}
    for maker, modality, bits, side, images in groups:
        mix["manufacturer"][maker or "unknown"] += images
        mix["modality"][modality or "unknown"] += images
        mix["bits_stored"][str(bits or "unknown")] += images
        mix["size"][size_bucket(side)] += images
    return {fact: _ordered(counts) for fact, counts in mix.items()}


_FACTS = ("manufacturer", "modality", "bits_stored", "size")


def _longer(width: int | None, height: int | None) -> int | None:
    return max(width, height) if width and height else None


def size_bucket(side: int | None) -> str:
    """The size class of an image by its longer side in pixels (None: unknown)."""
    if not side:
        return "unknown"
    for limit in (512, 1024, 2048, 3072):
        if side <= limit:
            return f"<= {limit} px"
    return "> 3072 px"


def _ordered(counts: Counter[str]) -> dict[str, int]:
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def input_drift(current: Sequence[Outcome], baseline: Iterable[InputFacts]) -> dict[str, Any]:
    """Per input fact, the PSI of this period's mix against the baseline's (the images
    before it, counted); None where either side is empty."""
    counted = list(baseline)
    now, before = input_mix(current), input_mix_counted(counted)
    drift: dict[str, float | None] = {}
    for fact in now:
        keys = sorted(set(now[fact]) | set(before[fact]))
        a = np.array([before[fact].get(k, 0) for k in keys], float)
        b = np.array([now[fact].get(k, 0) for k in keys], float)
        drift[fact] = metrics.population_stability_index(a, b) if a.sum() and b.sum() else None
    return {"psi": drift, "baseline_images": sum(group[-1] for group in counted)}
