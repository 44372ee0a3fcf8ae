"""ml.evaluate returns what it found; printing it and choosing exit statuses is ml.cli's."""

from __future__ import annotations

from ml.evaluate import evaluate_folder, predict_files


def test_evaluate_folder_returns_the_summary_rows_and_refusals_without_printing(
    labelled_folder, tiny_model_path, capsys
):
    summary, rows, refused = evaluate_folder(
        str(labelled_folder), model=str(tiny_model_path), report=None
    )
    assert (summary["data_dir"], summary["submitted"], summary["refused"]) == (
        str(labelled_folder),
        9,
        1,
    )
    assert len(rows) == 8
    assert [(path.name, reason) for path, reason, _ in refused] == [("broken.jpeg", "unreadable")]
    assert capsys.readouterr().out == ""


def test_predict_files_yields_each_line_and_whether_its_file_opened(
    labelled_folder, tiny_model_path, capsys
):
    chest = str(sorted((labelled_folder / "PNEUMONIA").iterdir())[0])
    missing = str(labelled_folder / "missing.png")
    results = list(predict_files([chest, missing], model=str(tiny_model_path), heatmap_dir=None))
    assert [(line["file"], opened) for line, opened in results] == [(chest, True), (missing, False)]
    assert "probability" in results[0][0] and results[1][0]["refused"] == "unreadable"
    assert capsys.readouterr().out == ""
