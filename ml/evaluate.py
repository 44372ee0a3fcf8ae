"""Scoring a model on a labelled folder, and predicting files one by one: the data behind
`python -m ml evaluate` and `predict` (ml.cli prints it)."""

from __future__ import annotations

import csv
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ml import metrics
from ml.data import LABELS

log = logging.getLogger(__name__)


def labelled_files(data_dir: Path) -> list[tuple[Path, int]]:
    """(path, target) for every image under DATA_DIR/NORMAL and DATA_DIR/PNEUMONIA."""
    missing = [label for label in LABELS if not (data_dir / label).is_dir()]
    if missing:
        raise ValueError(
            f"{data_dir} must contain the folders {', '.join(LABELS)}; "
            f"missing {', '.join(missing)}."
        )
    return [
        (path, target)
        for target, label in enumerate(LABELS)
        for path in sorted((data_dir / label).rglob("*"))
        # Every file is tried, so one with a wrong suffix or content is reported, not skipped.
        if path.is_file() and not path.name.startswith(".")
    ]


def evaluate_folder(
    data_dir: str, *, model: str | None, report: str | None, batch_size: int = 32
) -> tuple[dict, list[tuple[Path, int, float, str]], list[tuple[Path, str, str]]]:
    """`evaluate_items` over every file of DATA_DIR/{NORMAL,PNEUMONIA} with the model at
    `model` (None: the shipped default); the summary also names `data_dir`."""
    from ml.predictor import Predictor

    files = labelled_files(Path(data_dir))
    if not files:
        raise ValueError(f"No images found under {data_dir}.")
    summary, rows, refused = evaluate_items(
        Predictor.load(model), files, report=report, batch_size=batch_size
    )
    return {**summary, "data_dir": str(data_dir)}, rows, refused


def evaluate_items(
    predictor,
    items: list[tuple[Path, int]],
    *,
    report: str | Path | None = None,
    batch_size: int = 32,
) -> tuple[dict, list[tuple[Path, int, float, str]], list[tuple[Path, str, str]]]:
    """Score (path, target) pairs at the predictor's threshold: the summary metrics over
    the analysed files, one row per analysed file, and the refused ones (path, reason,
    message). Refusals are counted in the summary, overall and per reason and class."""
    from tqdm import tqdm

    rows, refused = [], []
    chunks = range(0, len(items), batch_size)
    for start in tqdm(chunks, desc="evaluate", unit="batch", file=sys.stderr):
        chunk = items[start : start + batch_size]
        outcomes = predictor.predict_batch([_read(path) for path, _ in chunk])
        for (path, target), outcome in zip(chunk, outcomes, strict=True):
            if outcome.refused:
                refused.append((path, outcome.reason, outcome.message))
            else:
                rows.append((path, target, outcome.probability, outcome.label))
    if not rows:
        raise ValueError("Every image was refused; none could be scored.")
    targets = np.array([row[1] for row in rows], dtype=float)
    scores = np.array([row[2] for row in rows], dtype=float)
    summary = metrics.summary(targets, scores, predictor.threshold)
    summary.update(model_version=predictor.version, **_refusal_counts(items, refused))
    if report:
        write_report(Path(report), targets, scores, summary)
    return summary, rows, refused


def _read(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError:
        return b""  # refused as unreadable, like an empty file


def _refusal_counts(items: list[tuple[Path, int]], refused: list[tuple[Path, str, str]]) -> dict:
    target_of = {str(path): target for path, target in items}
    by_reason: dict[str, int] = {}
    by_label = dict.fromkeys(LABELS, 0)
    for path, reason, _ in refused:
        by_reason[reason] = by_reason.get(reason, 0) + 1
        by_label[LABELS[target_of[str(path)]]] += 1
    return {
        "submitted": len(items),
        "refused": len(refused),
        "refused_rate": len(refused) / max(len(items), 1),
        "refused_by_reason": by_reason,
        "refused_by_label": by_label,
    }


def write_predictions(path: Path, rows: list[tuple[Path, int, float, str]]) -> None:
    """The CSV of analysed files: path, probability, label."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "probability", "label"])
        for file, _target, probability, label in rows:
            writer.writerow([str(file), f"{probability:.6f}", label])


def write_report(folder: Path, targets: np.ndarray, scores: np.ndarray, summary: dict) -> None:
    """metrics.json plus ROC, precision-recall, calibration and confusion-matrix PNGs."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    plots = {
        "roc.png": _plot_roc,
        "precision_recall.png": _plot_precision_recall,
        "calibration.png": _plot_calibration,
        "confusion_matrix.png": _plot_confusion,
    }
    for name, draw in plots.items():
        figure, axes = plt.subplots(figsize=(5, 5), dpi=100)
        draw(axes, targets, scores, summary)
        figure.tight_layout()
        figure.savefig(folder / name)
        plt.close(figure)


def _plot_roc(axes, targets, scores, summary) -> None:
    fpr, tpr, _ = metrics.roc_curve(targets, scores)
    if summary["roc_auc"] is None:
        label = "AUC undefined (one class only)"
    else:
        low, high = summary["roc_auc_ci95"]
        label = f"AUC {summary['roc_auc']:.3f} (95% CI {low:.3f}-{high:.3f})"
    axes.plot(fpr, tpr, label=label)
    axes.plot([0, 1], [0, 1], linestyle=":", color="grey")
    axes.scatter(
        [1 - summary["specificity"]],
        [summary["sensitivity"]],
        color="red",
        zorder=3,
        label=f"threshold {summary['threshold']:.3f}",
    )
    axes.set(xlabel="1 - specificity", ylabel="sensitivity", title="ROC")
    axes.legend(loc="lower right")


def _plot_precision_recall(axes, targets, scores, summary) -> None:
    precision, recall = metrics.precision_recall_curve(targets, scores)
    axes.plot(recall, precision)
    axes.scatter([summary["sensitivity"]], [summary["precision"]], color="red", zorder=3)
    axes.set(
        xlabel="recall (sensitivity)", ylabel="precision", title="Precision-recall", ylim=(0, 1.02)
    )


def _plot_calibration(axes, targets, scores, summary) -> None:
    bins = [b for b in summary["calibration"] if b["count"]]
    axes.plot([0, 1], [0, 1], linestyle=":", color="grey")
    axes.plot([b["mean_probability"] for b in bins], [b["observed_rate"] for b in bins], marker="o")
    axes.set(
        xlabel="predicted P(pneumonia)",
        ylabel="observed rate",
        title=f"Calibration (ECE {summary['expected_calibration_error']:.3f})",
        xlim=(0, 1),
        ylim=(0, 1),
    )


def _plot_confusion(axes, targets, scores, summary) -> None:
    cm = summary["confusion_matrix"]
    grid = np.array([[cm["tn"], cm["fp"]], [cm["fn"], cm["tp"]]])
    axes.imshow(grid, cmap="Blues")
    for (row, column), value in np.ndenumerate(grid):
        axes.text(column, row, str(value), ha="center", va="center", fontsize=16)
    axes.set(
        xticks=[0, 1],
        yticks=[0, 1],
        xticklabels=["pred NORMAL", "pred PNEUMONIA"],
        yticklabels=["NORMAL", "PNEUMONIA"],
        title="Confusion matrix",
    )


def predict_files(
    files: list[str], *, model: str | None, heatmap_dir: str | None, age_years: float | None = None
) -> Iterator[tuple[dict[str, Any], bool]]:
    """For each file in order, as it is analysed: its JSON line, and whether the file could
    be opened. Analysed files carry probability, label, threshold, model_version,
    uncertainty and warnings; refused ones carry `refused` (the reason code) and `message`.
    With `heatmap_dir`, each analysed file's overlay is written there."""
    from ml.predictor import Predictor

    predictor = Predictor.load(model)
    out = Path(heatmap_dir) if heatmap_dir else None
    if out:
        out.mkdir(parents=True, exist_ok=True)
    for name in files:
        try:
            data = Path(name).read_bytes()
        except OSError as exc:
            opened = False
            line = {
                "refused": "unreadable",
                "message": f"The file cannot be opened: {exc.strerror}.",
            }
        else:
            opened = True
            outcome = predictor.predict(data, heatmap=out is not None, age_years=age_years)
            line = _outcome_line(outcome, name, out)
        yield {"file": name, **line}, opened


def _outcome_line(outcome, name: str, out: Path | None) -> dict:
    from ml.overlay import render_overlay

    if outcome.refused:
        return {"refused": outcome.reason, "message": outcome.message}
    line = {
        "probability": round(outcome.probability, 6),
        "label": outcome.label,
        "threshold": outcome.threshold,
        "model_version": outcome.model_version,
        "uncertainty": None if outcome.uncertainty is None else round(outcome.uncertainty, 6),
        "warnings": list(outcome.warnings),
    }
    if out is not None and outcome.heatmap is not None:
        target = out / f"{Path(name).name}.heatmap.png"
        target.write_bytes(render_overlay(outcome.image, outcome.heatmap))
        line["heatmap"] = str(target)
    return line
