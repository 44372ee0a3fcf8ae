"""The layers of docs/architecture.md hold: imports run one way (ml at the bottom, then the
project's plumbing, the model registry, the clinical app, model operations on top) and no
group of modules imports itself round, not even through an import inside a function. The
product never imports the developer tooling (devtools/) or the tests."""

from __future__ import annotations

from pathlib import Path

from tests.support import import_graph

ROOT = Path(__file__).resolve().parents[1]


def test_every_import_runs_down_the_layers():
    assert import_graph.violations(import_graph.graph(ROOT)) == []


def test_no_modules_import_each_other_round():
    assert import_graph.cycles(import_graph.graph(ROOT)) == []


def test_the_web_side_never_imports_model_operations_or_django_into_ml():
    edges = import_graph.graph(ROOT)
    clinical = {t for s, ts in edges.items() if s.startswith(("diagnosis", "registry")) for t in ts}
    assert not {t for t in clinical if t.startswith("mlops")}
    sources = "".join(path.read_text() for path in (ROOT / "ml").rglob("*.py"))
    assert "import django" not in sources and "from django" not in sources


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for package in import_graph.PACKAGES:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return tmp_path


def test_the_check_catches_a_clinical_module_reaching_into_model_operations(tmp_path):
    root = _tree(
        tmp_path,
        {
            "diagnosis/services.py": "def sign():\n    from mlops.feedback import copy\n",
            "mlops/feedback.py": "from diagnosis import selectors\n",
            "diagnosis/selectors.py": "",
        },
    )
    assert import_graph.violations(import_graph.graph(root)) == [
        "diagnosis.services -> mlops.feedback"
    ]


def test_the_check_catches_model_operations_writing_clinical_models(tmp_path):
    root = _tree(tmp_path, {"mlops/services.py": "from diagnosis.models import Image\n"})
    (root / "diagnosis" / "models.py").write_text("")
    assert import_graph.violations(import_graph.graph(root)) == [
        "mlops.services -> diagnosis.models"
    ]


def test_the_check_catches_the_product_importing_dev_tooling_or_tests(tmp_path):
    root = _tree(
        tmp_path,
        {
            "chestnet_site/run.py": "def main():\n    from devtools import processes\n",
            "diagnosis/services.py": "from tests.support import factories\n",
        },
    )
    assert import_graph.violations(import_graph.graph(root)) == [
        "chestnet_site.run -> devtools",
        "diagnosis.services -> tests",
    ]


def test_the_check_catches_a_cycle_through_function_level_imports(tmp_path):
    root = _tree(
        tmp_path,
        {
            "mlops/services.py": "def start():\n    from mlops import tasks\n",
            "mlops/tasks.py": "from mlops.services import start\n",
        },
    )
    assert import_graph.cycles(import_graph.graph(root)) == [["mlops.services", "mlops.tasks"]]
