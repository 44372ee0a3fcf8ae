"""Does site calibration (ml.calibrate) restore the operating point on images from other
acquisition batches, and does a label-free adaptation do as well? The figures behind the
"Site calibration" section of docs/model.md.

    .venv/bin/python scripts/site_calibration_study.py [MODEL.keras] [--json OUT.json]

Everything runs on the held-out acquisition batches of the model's own card (rebuilt like
ml.promote.validation_set), split by patient into the lower ("first") and upper ("last")
file-name numbers of each family:

1. Site calibration fitted on one end, evaluated on the other (both directions) at target
   sensitivity 0.97, beside the uncalibrated model at its card threshold; and 20 random
   patient-level halves of all held-out images (fit on one, evaluate on the other).
2. Label-free adaptation on the evaluation end's own images: (i) batch-normalisation
   statistics re-estimated on them (AdaBN); (ii) the site prevalence estimated by EM on the
   scores (Saerens et al. 2002), then either the threshold moved by the change in prior
   odds, or the threshold re-chosen for the target sensitivity with the EM posteriors
   standing in for labels.

The model runs once per image set; scores are cached under build/site_calibration/ (keyed
by the artifact's sha256), so reruns take seconds. The withheld test split is not read.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ml import metrics  # noqa: E402
from ml.calibrate import fit_site_calibration, write_calibrated_artifact  # noqa: E402
from ml.data import Record, acquisition_batch, load_arrays, patient_split  # noqa: E402
from ml.train import config_from_dict, split_for  # noqa: E402

BUILD = Path(__file__).resolve().parent.parent / "build" / "site_calibration"
TARGET = 0.97
SEEDS = 20
ENDS = ("first", "last")


# Data and scores (the only part that runs the network)


def held_out(predictor) -> tuple[list[Record], np.ndarray, np.ndarray]:
    config = config_from_dict(predictor.card.training_config)
    records = split_for(config).validation
    cache = Path(config.cache_dir) if config.cache_dir else None
    images, targets = load_arrays(
        records, Path(config.data_root), size=predictor.image_size, cache_dir=cache
    )
    return records, images, targets.astype(np.float64)


def ends_by_patient(records: list[Record]) -> np.ndarray:
    """'first' or 'last' per record: each family's numbers split at their median, a patient
    going wholly to the end most of their images fall in."""
    numbers = defaultdict(list)
    for record in records:
        family, number = acquisition_batch(record)  # type: ignore[misc]
        numbers[family].append(number)
    median = {family: np.median(values) for family, values in numbers.items()}
    votes: dict[tuple[str, str], Counter] = defaultdict(Counter)
    for record in records:
        family, number = acquisition_batch(record)  # type: ignore[misc]
        votes[(record.label, record.patient)]["first" if number <= median[family] else "last"] += 1
    end = {key: ("first" if v["first"] >= v["last"] else "last") for key, v in votes.items()}
    return np.array([end[(r.label, r.patient)] for r in records])


def cached(name: str, sha: str, compute) -> dict[str, np.ndarray]:
    path = BUILD / f"{name}-{sha[:12]}.npz"
    if path.exists():
        with np.load(path) as stored:
            return dict(stored)
    values = compute()
    BUILD.mkdir(parents=True, exist_ok=True)
    np.savez(path, **values)
    return values


def adabn_scores(model_path: Path, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """The model's probabilities after re-estimating every batch-normalisation layer's
    statistics on `images` (no labels), layer by layer in network order."""
    import keras

    import ml.model  # noqa: F401  (custom layers)
    from ml.config import TRIM_LAYER

    model = keras.saving.load_model(model_path, compile=False)
    x = images.astype(np.float32) / 255.0
    names = {layer.name for layer in model.layers}
    trim = model.get_layer(TRIM_LAYER) if TRIM_LAYER in names else None
    view = _batched(lambda b: trim(b), x, batch_size) if trim else x
    for member in [layer for layer in model.layers if isinstance(layer, keras.Model)]:
        norms = [n for n in member.layers if isinstance(n, keras.layers.BatchNormalization)]
        for bn in norms:
            probe = keras.Model(member.inputs, bn.input)
            mean, var = _moments(probe, view, batch_size)
            bn.moving_mean.assign(mean)
            bn.moving_variance.assign(var)
    probabilities = _batched(lambda b: model(b, training=False), x, batch_size)
    return probabilities[:, 0].astype(np.float64)


def _batched(fn, x: np.ndarray, batch_size: int) -> np.ndarray:
    return np.concatenate(
        [np.asarray(fn(x[i : i + batch_size])) for i in range(0, len(x), batch_size)]
    )


def _moments(probe, x: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    total = total_sq = 0.0
    count = 0
    for i in range(0, len(x), batch_size):
        out = np.asarray(probe(x[i : i + batch_size], training=False), dtype=np.float64)
        total = total + out.sum(axis=(0, 1, 2))
        total_sq = total_sq + (out**2).sum(axis=(0, 1, 2))
        count += out.shape[0] * out.shape[1] * out.shape[2]
    mean = total / count
    return mean.astype(np.float32), np.maximum(total_sq / count - mean**2, 0).astype(np.float32)


def fold_check(model_path: Path, predictor, images, scores, targets, ends) -> float:
    """Largest |served probability - calibration.apply(base)| of a calibrated copy of the
    real artifact, on 64 images: the fold is exact on the shipped ensemble too."""
    fit = ends == "first"
    calibration = fit_site_calibration(scores[fit], targets[fit], target_sensitivity=TARGET)
    output = BUILD / "fold-check.keras"
    write_calibrated_artifact(model_path, calibration, output=output, version="fold-check")
    from ml.predictor import Predictor

    served = Predictor.load(output).probabilities(images[~fit][:64])
    return float(np.abs(served - calibration.apply(scores[~fit][:64])).max())


# Figures (NumPy only, on cached scores)


def wilson(successes: int, total: int) -> list[float]:
    return list(metrics.wilson_interval(successes, total) or (float("nan"), float("nan")))


def ece_ci(targets, scores, rounds: int = 1000, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(targets), size=(rounds, len(targets)))
    values = [metrics.expected_calibration_error(targets[d], scores[d]) for d in draws]
    return [float(v) for v in np.percentile(values, [2.5, 97.5])]


def operating_point(targets, scores, threshold, *, with_ci: bool = True) -> dict:
    point = metrics.at_threshold(targets, scores, threshold)
    cm = point["confusion_matrix"]
    row = {
        "threshold": float(threshold),
        "sensitivity": point["sensitivity"],
        "specificity": point["specificity"],
        "ece": metrics.expected_calibration_error(targets, scores),
        "auc": metrics.roc_auc(targets, scores),
        "positives": cm["tp"] + cm["fn"],
        "negatives": cm["tn"] + cm["fp"],
    }
    if with_ci:
        row["sensitivity_ci95"] = wilson(cm["tp"], cm["tp"] + cm["fn"])
        row["specificity_ci95"] = wilson(cm["tn"], cm["tn"] + cm["fp"])
        row["ece_ci95"] = ece_ci(targets, scores)
    return row


def oracle_specificity(targets, scores) -> float:
    """Specificity at the threshold the evaluation labels themselves would choose."""
    threshold = metrics.threshold_for_sensitivity(targets, scores, TARGET)
    return metrics.at_threshold(targets, scores, threshold)["specificity"]


def em_prevalence(scores: np.ndarray, prior: float = 0.5, iterations: int = 200) -> float:
    """Saerens et al. (2002): the class prior under which the model's posteriors, adjusted
    from the prior they assume (even odds: balanced Platt scaling), average to it."""
    p = np.clip(scores, 1e-6, 1 - 1e-6)
    pi = prior
    for _ in range(iterations):
        odds = (pi / prior) * p / ((pi / prior) * p + ((1 - pi) / (1 - prior)) * (1 - p))
        pi, previous = float(odds.mean()), pi
        if abs(pi - previous) < 1e-9:
            break
    return pi


def _adjusted(scores: np.ndarray, pi: float) -> np.ndarray:
    p = np.clip(scores, 1e-6, 1 - 1e-6)
    return pi * p / (pi * p + (1 - pi) * (1 - p))


def prior_shift_threshold(threshold: float, reference_pi: float, site_pi: float) -> float:
    """Move the threshold's log-odds by the change in prior log-odds (Bayes rule)."""
    logit = np.log(threshold / (1 - threshold))
    delta = np.log(site_pi / (1 - site_pi)) - np.log(reference_pi / (1 - reference_pi))
    return float(metrics.sigmoid(logit - delta))


def soft_label_threshold(scores: np.ndarray, pi: float) -> float:
    """The highest threshold whose sensitivity, counted with the EM posteriors as soft
    labels instead of true ones, reaches the target."""
    q = _adjusted(scores, pi)
    order = np.argsort(-scores)
    caught = np.cumsum(q[order]) / q.sum()
    index = int(np.searchsorted(caught, TARGET))
    return float(scores[order][min(index, len(scores) - 1)])


def base_equivalent(calibration) -> float:
    """The site threshold as a threshold on the base model's probabilities."""
    logit = np.log(calibration.threshold / (1 - calibration.threshold))
    return float(metrics.sigmoid((logit - calibration.shift) / calibration.scale))


def threshold_spread(scores, targets, rounds: int = 200, seed: int = 0) -> list[float]:
    """95% range of the target-sensitivity threshold (on base probabilities) over
    resamples of the fitting images: how precisely that many images pin it down."""
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(rounds):
        draw = rng.integers(0, len(scores), len(scores))
        values.append(metrics.threshold_for_sensitivity(targets[draw], scores[draw], TARGET))
    return [float(v) for v in np.percentile(values, [2.5, 97.5])]


def directions(scores, adapted, targets, ends, threshold) -> dict:
    results = {}
    reference_pi = em_prevalence(scores)  # the shipped threshold was chosen on all of them
    for fit_end, eval_end in (("first", "last"), ("last", "first")):
        fit, ev = ends == fit_end, ends == eval_end
        calibration = fit_site_calibration(scores[fit], targets[fit], target_sensitivity=TARGET)
        s, t = scores[ev], targets[ev]
        site_pi = em_prevalence(s)
        results[f"fit {fit_end}, evaluate {eval_end}"] = {
            "fit_counts": calibration.counts,
            "site_scale_shift": [calibration.scale, calibration.shift],
            "base_equivalent_threshold": base_equivalent(calibration),
            "base_threshold_bootstrap_95": threshold_spread(scores[fit], targets[fit]),
            "shipped": operating_point(t, s, threshold),
            "site_calibrated": operating_point(t, calibration.apply(s), calibration.threshold),
            "adabn_at_shipped_threshold": operating_point(t, adapted[eval_end], threshold),
            "em_prevalence": {"estimated": site_pi, "true": float(t.mean())},
            "prior_shift": operating_point(
                t, s, prior_shift_threshold(threshold, reference_pi, site_pi)
            ),
            "em_soft_labels": operating_point(t, s, soft_label_threshold(s, site_pi)),
            "oracle_specificity": {
                "shipped": oracle_specificity(t, s),
                "adabn": oracle_specificity(t, adapted[eval_end]),
            },
        }
    return results


def random_halves(records, scores, targets, threshold) -> dict:
    index = {r.path: i for i, r in enumerate(records)}
    rows = []
    for seed in range(SEEDS):
        split = patient_split(records, val_fraction=0.5, seed=seed)
        fit = np.array([index[r.path] for r in split.train])
        ev = np.array([index[r.path] for r in split.validation])
        calibration = fit_site_calibration(
            scores[fit], targets[fit], target_sensitivity=TARGET, bootstrap=100
        )
        site = operating_point(
            targets[ev], calibration.apply(scores[ev]), calibration.threshold, with_ci=False
        )
        shipped = operating_point(targets[ev], scores[ev], threshold, with_ci=False)
        rows.append({"site": site, "shipped": shipped})
    return {"seeds": SEEDS, "rows": rows, "summary": _spread(rows)}


def _spread(rows: list[dict]) -> dict:
    out = {}
    for which in ("shipped", "site"):
        for key in ("sensitivity", "specificity", "ece"):
            values = np.array([row[which][key] for row in rows])
            out[f"{which}_{key}"] = {
                "mean": float(values.mean()),
                "min": float(values.min()),
                "max": float(values.max()),
            }
        meets = [
            r[which]["sensitivity"] >= 0.95
            and r[which]["specificity"] >= 0.90
            and r[which]["ece"] <= 0.05
            for r in rows
        ]
        out[f"{which}_meets_test_target"] = int(sum(meets))
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("model", nargs="?")
    parser.add_argument("--json", default=str(BUILD / "results.json"))
    args = parser.parse_args()
    from ml.artifact import DEFAULT_ARTIFACT
    from ml.predictor import Predictor

    model_path = Path(args.model) if args.model else DEFAULT_ARTIFACT
    predictor = Predictor.load(model_path)
    sha, threshold = predictor.card.sha256, float(predictor.card.threshold)
    records, images, targets = held_out(predictor)
    ends = ends_by_patient(records)
    base = cached("scores", sha, lambda: {"scores": predictor.probabilities(images)})
    scores = base["scores"]
    auc = metrics.roc_auc(targets, scores)
    if abs(auc - predictor.card.validation["roc_auc"]) > 1e-3:
        raise SystemExit(f"Held-out AUC {auc:.4f} does not reproduce the card's: data changed?")
    adapted = {
        end: cached(
            f"adabn-{end}",
            sha,
            lambda end=end: {"scores": adabn_scores(model_path, images[ends == end])},
        )["scores"]
        for end in ENDS
    }
    results = {
        "model": predictor.version,
        "threshold": threshold,
        "ends": {
            end: {
                "NORMAL": int(((ends == end) & (targets == 0)).sum()),
                "PNEUMONIA": int(((ends == end) & (targets == 1)).sum()),
            }
            for end in ENDS
        },
        "directions": directions(scores, adapted, targets, ends, threshold),
        "random_patient_halves": random_halves(records, scores, targets, threshold),
        "fold_check_max_abs_error": fold_check(
            model_path, predictor, images, scores, targets, ends
        ),
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    return 0


def table(results: dict) -> str:
    lines = [
        "| fit -> evaluate | method | threshold | sensitivity (95% CI) | specificity (95% CI) "
        "| ECE (95% CI) |",
        "|---|---|---|---|---|---|",
    ]
    names = {
        "shipped": "shipped, card threshold",
        "site_calibrated": "site calibration (labels of the other end)",
        "adabn_at_shipped_threshold": "label-free: BN statistics re-estimated",
        "prior_shift": "label-free: threshold moved by EM prevalence",
        "em_soft_labels": "label-free: threshold from EM soft labels",
    }
    for direction, entry in results["directions"].items():
        for key, name in names.items():
            row = entry[key]
            lines.append(
                f"| {direction} | {name} | {row['threshold']:.3f} | {_ci(row, 'sensitivity')} "
                f"| {_ci(row, 'specificity')} | {_ci(row, 'ece')} |"
            )
    return "\n".join(lines)


def _ci(row: dict, key: str) -> str:
    low, high = row[f"{key}_ci95"]
    return f"{row[key]:.3f} ({low:.3f}-{high:.3f})"


if __name__ == "__main__":
    raise SystemExit(main())
