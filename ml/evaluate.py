"""Scoring a model on a labelled folder, and the `predict` command."""

from __future__ import annotations

import csv
import json
import logging
import sys
from pathlib import Path

import numpy as np

from ml import metrics
from ml.data import LABELS
from ml.preprocessing import ImageError

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
    data_dir: str, *, predictions: str, model: str | None, report: str | None, batch_size: int = 32
) -> int:
    from ml.predictor import Predictor

    files = labelled_files(Path(data_dir))
    if not files:
        raise ValueError(f"No images found under {data_dir}.")
    summary, rows, unreadable = evaluate_items(Predictor.load(model), files, report=report)
    for path, reason in unreadable:
        print(f"unreadable: {path}: {reason}", file=sys.stderr)
    _write_predictions(Path(predictions), rows)
    _print_headline({**summary, "data_dir": str(data_dir)})
    return 0


def evaluate_items(
    predictor, items: list[tuple[Path, int]], *, report: str | Path | None = None
) -> tuple[dict, list[tuple[Path, int, float, str]], list[tuple[Path, str]]]:
    """Score (path, target) pairs at the predictor's threshold: the summary metrics, one row
    per readable file and the unreadable ones with their reasons. Writes the report if asked."""
    from tqdm import tqdm

    rows, unreadable = [], []
    for path, target in tqdm(items, desc="evaluate", unit="img", file=sys.stderr):
        try:
            result = predictor.predict(Path(path).read_bytes(), heatmap=False)
        except (ImageError, OSError) as exc:
            unreadable.append((path, str(exc)))
            continue
        rows.append((path, target, result.probability, result.label))
    if not rows:
        raise ValueError("None of the images could be read.")
    targets = np.array([row[1] for row in rows], dtype=float)
    scores = np.array([row[2] for row in rows], dtype=float)
    summary = metrics.summary(targets, scores, predictor.threshold)
    summary.update(model_version=predictor.version, unreadable=len(unreadable))
    if report:
        write_report(Path(report), targets, scores, summary)
    return summary, rows, unreadable


def _write_predictions(path: Path, rows: list[tuple[Path, int, float, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "probability", "label"])
        for file, _target, probability, label in rows:
            writer.writerow([str(file), f"{probability:.6f}", label])


def _print_headline(summary: dict) -> None:
    keys = (
        "count",
        "accuracy",
        "sensitivity",
        "specificity",
        "precision",
        "f1",
        "roc_auc",
        "roc_auc_ci95",
        "expected_calibration_error",
        "threshold",
    )
    print(json.dumps({key: summary[key] for key in keys}, indent=2))


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


def predict_files(files: list[str], *, model: str | None, heatmap_dir: str | None) -> int:
    from ml.overlay import render_overlay
    from ml.predictor import Predictor

    predictor = Predictor.load(model)
    out = Path(heatmap_dir) if heatmap_dir else None
    if out:
        out.mkdir(parents=True, exist_ok=True)
    failures = 0
    for name in files:
        line: dict = {"file": name}
        try:
            result = predictor.predict(Path(name).read_bytes(), heatmap=out is not None)
        except (ImageError, OSError) as exc:
            failures += 1
            print(json.dumps({**line, "error": str(exc)}))
            continue
        line.update(
            probability=round(result.probability, 6),
            label=result.label,
            threshold=result.threshold,
            model_version=result.model_version,
        )
        if out is not None and result.heatmap is not None:
            target = out / f"{Path(name).name}.heatmap.png"
            target.write_bytes(render_overlay(result.image, result.heatmap))
            line["heatmap"] = str(target)
        print(json.dumps(line))
    return 1 if failures else 0
