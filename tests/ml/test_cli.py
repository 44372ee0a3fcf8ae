"""The command line as a user runs it: a real subprocess, the tiny model for speed."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

from ml.cli import _HEADLINE

REPO = Path(__file__).resolve().parents[2]


def run_ml(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ml", *args], cwd=REPO, capture_output=True, text=True, timeout=300
    )


def run_evaluate(folder: Path, model: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    """`python -m ml evaluate` of `folder`: predictions to tmp_path/predictions.csv, the
    report to tmp_path/report."""
    out, report = tmp_path / "predictions.csv", tmp_path / "report"
    return run_ml(
        *("evaluate", str(folder), "--predictions", str(out), "--model", str(model)),
        *("--report", str(report)),
    )


def test_evaluate_writes_predictions_report_and_lists_unreadable_files(
    labelled_folder, tiny_model_path, tmp_path
):
    out = tmp_path / "predictions.csv"
    result = run_evaluate(labelled_folder, tiny_model_path, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "refused (unreadable):" in result.stderr and "broken.jpeg" in result.stderr
    with out.open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 8 and set(rows[0]) == {"path", "probability", "label"}
    headline = json.loads(result.stdout)
    assert (headline["count"], headline["submitted"], headline["refused"]) == (8, 9, 1)
    assert headline["refused_by_reason"] == {"unreadable": 1}
    assert {"roc_auc", "sensitivity", "specificity", "threshold"} <= set(headline)
    assert all(row["label"] in {"NORMAL", "PNEUMONIA"} for row in rows)
    report = json.loads((tmp_path / "report/metrics.json").read_text())
    # The report holds every figure of the headline, and the confusion matrix.
    for key in (*_HEADLINE, "confusion_matrix"):
        assert key in report
    for plot in ("roc.png", "precision_recall.png", "calibration.png", "confusion_matrix.png"):
        assert (tmp_path / "report" / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluate_explains_a_folder_without_class_subfolders(tmp_path, tiny_model_path):
    result = run_ml(
        "evaluate",
        str(tmp_path),
        "--predictions",
        str(tmp_path / "p.csv"),
        "--model",
        str(tiny_model_path),
    )
    assert result.returncode == 2
    assert "NORMAL" in result.stderr and "Traceback" not in result.stderr


def test_predict_prints_one_json_line_per_file_and_writes_heatmaps(
    labelled_folder, tiny_model_path, tmp_path
):
    files = sorted((labelled_folder / "PNEUMONIA").iterdir())[:2]
    result = run_ml(
        "predict", *map(str, files), "--model", str(tiny_model_path), "--heatmap-dir", str(tmp_path)
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["file"] for line in lines] == [str(f) for f in files]
    assert all(Path(line["heatmap"]).exists() for line in lines)


def test_predict_refuses_a_broken_file_with_a_reason_code(labelled_folder, tiny_model_path):
    result = run_ml(
        "predict", str(labelled_folder / "NORMAL" / "broken.jpeg"), "--model", str(tiny_model_path)
    )
    assert result.returncode == 0, result.stderr  # a refusal is a result
    line = json.loads(result.stdout.splitlines()[0])
    assert line["refused"] == "unreadable" and line["message"]
    assert "probability" not in line and "label" not in line


def test_predict_exits_non_zero_for_a_file_that_cannot_be_opened(tmp_path, tiny_model_path):
    result = run_ml("predict", str(tmp_path / "missing.png"), "--model", str(tiny_model_path))
    assert result.returncode == 1
    assert json.loads(result.stdout)["refused"] == "unreadable"


def test_predict_lines_follow_the_integration_contract(
    labelled_folder, gated_ensemble_path, tmp_path
):
    from pydicom.data import get_testdata_file

    chest = sorted((labelled_folder / "PNEUMONIA").iterdir())[0]
    ct = get_testdata_file("CT_small.dcm")
    result = run_ml("predict", str(chest), ct, "--model", str(gated_ensemble_path), "--age", "4")
    assert result.returncode == 0, result.stderr
    analysed, refused = (json.loads(line) for line in result.stdout.splitlines())
    assert {"probability", "label", "threshold", "model_version", "uncertainty", "warnings"} <= set(
        analysed
    )
    assert 0.0 <= analysed["uncertainty"] <= 0.5 and analysed["warnings"] == []
    assert refused == {
        "file": ct,
        "refused": "not_chest_radiograph",
        "message": refused["message"],
    }


def test_predict_warns_when_no_age_is_stated_or_in_the_header(labelled_folder, tiny_model_path):
    chest = sorted((labelled_folder / "NORMAL").glob("*.jpeg"))[0]
    unknown = run_ml("predict", str(chest), "--model", str(tiny_model_path))
    known = run_ml("predict", str(chest), "--model", str(tiny_model_path), "--age", "3")
    assert unknown.returncode == known.returncode == 0, unknown.stderr + known.stderr
    unknown_line, known_line = json.loads(unknown.stdout), json.loads(known.stdout)
    assert "probability" in unknown_line  # analysed: an unknown age is not refused
    assert unknown_line["warnings"] == [
        "Age unknown: the AI was validated on children aged 1 to 5 years only."
    ]
    assert known_line["warnings"] == []


def test_evaluate_leaves_refused_files_out_of_the_csv_and_counts_them(
    labelled_folder, gated_ensemble_path, tmp_path
):
    from pydicom.data import get_testdata_file

    folder = tmp_path / "eval"
    shutil.copytree(labelled_folder, folder)
    shutil.copy(get_testdata_file("CT_small.dcm"), folder / "NORMAL" / "ct.dcm")
    out = tmp_path / "predictions.csv"
    result = run_evaluate(folder, gated_ensemble_path, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "refused (not_chest_radiograph):" in result.stderr and "ct.dcm" in result.stderr
    assert "refused (unreadable):" in result.stderr and "broken.jpeg" in result.stderr
    with out.open() as handle:
        paths = [row["path"] for row in csv.DictReader(handle)]
    assert not any(p.endswith(("ct.dcm", "broken.jpeg")) for p in paths)
    report = json.loads((tmp_path / "report/metrics.json").read_text())
    assert report["submitted"] == 10 and report["refused"] == 10 - len(paths)
    assert report["refused_by_reason"]["not_chest_radiograph"] >= 1
    assert report["refused_by_label"]["NORMAL"] >= 2


def test_benchmark_reports_every_stage_next_to_the_bare_forward_pass(
    tiny_model_path, radiograph_set
):
    result = run_ml(
        "benchmark",
        *("--model", str(tiny_model_path), "--runs", "3", "--batch-size", "2"),
        *("--data-root", str(radiograph_set)),
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    for stage in (
        "bare_compiled_forward",
        "gate_predict_no_heatmap",
        "gate_predict_heatmap",
        "preprocess_full_size_jpeg",
        "gradcam_tf_keras_vis",
        "gradcam_compiled",
    ):
        assert report[stage]["p50_ms"] > 0 and report[stage]["p95_ms"] >= report[stage]["p50_ms"]
    assert report["batch_throughput_images_per_s"] > 0 and report["peak_rss_mib"] > 0
