"""ml.evaluate returns what it found; printing it and choosing exit statuses is ml.cli's."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ml.evaluate import evaluate_folder, predict_files


@pytest.fixture
def folder(shared_data, tmp_path) -> Path:
    for label in ("NORMAL", "PNEUMONIA"):
        (tmp_path / label).mkdir()
        for path in sorted((shared_data / "chest_xray/train" / label).iterdir())[:2]:
            shutil.copy(path, tmp_path / label / path.name)
    (tmp_path / "NORMAL" / "broken.jpeg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    return tmp_path


def test_evaluate_folder_returns_the_summary_rows_and_refusals_without_printing(
    folder, tiny_model_path, capsys
):
    summary, rows, refused = evaluate_folder(str(folder), model=str(tiny_model_path), report=None)
    assert (summary["data_dir"], summary["submitted"], summary["refused"]) == (str(folder), 5, 1)
    assert len(rows) == 4
    assert [(path.name, reason) for path, reason, _ in refused] == [("broken.jpeg", "unreadable")]
    assert capsys.readouterr().out == ""


def test_predict_files_yields_each_line_and_whether_its_file_opened(
    folder, tiny_model_path, capsys
):
    chest = str(sorted((folder / "PNEUMONIA").iterdir())[0])
    missing = str(folder / "missing.png")
    results = list(predict_files([chest, missing], model=str(tiny_model_path), heatmap_dir=None))
    assert [(line["file"], opened) for line, opened in results] == [(chest, True), (missing, False)]
    assert "probability" in results[0][0] and results[1][0]["refused"] == "unreadable"
    assert capsys.readouterr().out == ""
