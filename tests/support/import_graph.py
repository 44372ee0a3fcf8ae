"""The project's import graph, read from the source (every import statement, also those
inside functions: a lazy import is still a dependency), and the layer rules it must keep.
Used by tests/test_architecture.py and `python -m tests.support.import_graph` (prints the
cross-package edges for docs/architecture.md)."""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

from chestnet_site.project_apps import PROJECT_APPS

PACKAGES = ("ml", "chestnet_site", *PROJECT_APPS)
# Developer tooling and test scaffolding: they may import the product, never the reverse.
SCAFFOLDING = ("devtools", "tests")

# Floors, bottom up. A module may import its own floor and those below; `accounts` (identity:
# roles and who may do what, sign-in, API tokens, people's accounts, the client's address)
# is below every app; `mlops`, `dicomnet` (the DICOM
# network) and `monitoring`, side by side on the top floor, reach the clinical app only
# through its services and selectors, never its models, and not each other.
ALLOWED: dict[str, tuple[str, ...]] = {
    "ml": ("ml",),
    "chestnet_site": ("chestnet_site",),
    "accounts": ("ml", "chestnet_site", "accounts"),
    "registry": ("ml", "chestnet_site", "accounts", "registry"),
    "diagnosis": ("ml", "chestnet_site", "accounts", "registry", "diagnosis"),
    "mlops": (
        "ml",
        "chestnet_site",
        "accounts",
        "registry",
        "mlops",
        "diagnosis.services",
        "diagnosis.selectors",
    ),
    "dicomnet": (
        "ml",
        "chestnet_site",
        "accounts",
        "registry",
        "dicomnet",
        "diagnosis.services",
        "diagnosis.selectors",
    ),
    "monitoring": (
        "ml",
        "chestnet_site",
        "accounts",
        "registry",
        "monitoring",
        "diagnosis.services",
        "diagnosis.selectors",
    ),
}
# The project's wiring sits on top of everything: it names every app's URLs.
WIRING = ("chestnet_site.urls",)


def modules(root: Path) -> dict[str, Path]:
    """Module name -> file, for every package module except migrations."""
    found = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if "migrations" in parts:
                continue
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def graph(root: Path) -> dict[str, set[str]]:
    """Module -> the project modules it imports (and `devtools`, `tests` where it imports
    them)."""
    known = modules(root)
    edges: dict[str, set[str]] = defaultdict(set)
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for target in _imported(ast.parse(path.read_text()), package):
            resolved = _resolve(target, known) or _scaffolding(target)
            if resolved and resolved != name:
                edges[name].add(resolved)
    return {name: edges.get(name, set()) for name in known}


def _imported(tree: ast.AST, package: str) -> list[str]:
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            names += [f"{base}.{alias.name}" for alias in node.names]
    return names


def _resolve(target: str, known: dict[str, Path]) -> str | None:
    """The longest project module that `target` names (a module, or a name in one)."""
    parts = target.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in known:
            return candidate
    return None


def _scaffolding(target: str) -> str | None:
    """`devtools` or `tests` when `target` is in one of them, else None."""
    top = target.split(".")[0]
    return top if top in SCAFFOLDING else None


def _floor(module: str) -> str:
    return module.split(".")[0]


def violations(edges: dict[str, set[str]]) -> list[str]:
    """Imports that run the wrong way, as 'a -> b' lines; an import of `devtools` or `tests`
    is one for every package of the product (drawn 'a -> devtools')."""
    wrong = []
    for source, targets in sorted(edges.items()):
        if source in WIRING:
            continue
        allowed = ALLOWED[_floor(source)]
        for target in sorted(targets):
            if not any(target == a or target.startswith(a + ".") for a in allowed):
                wrong.append(f"{source} -> {target}")
    return wrong


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def component(module: str) -> str:
    """The unit drawn in docs/architecture.md: `ml`, `chestnet_site`, or an app's module."""
    parts = module.split(".")
    return parts[0] if parts[0] in ("ml", "chestnet_site") else ".".join(parts[:2])


def cross_edges(edges: dict[str, set[str]]) -> list[str]:
    """Edges between different top-level packages, drawn per component."""
    lines = {
        f"{component(a)} -> {component(b)}"
        for a, targets in edges.items()
        for b in targets
        if _floor(a) != _floor(b)
    }
    return sorted(lines)


if __name__ == "__main__":
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2]
    edges = graph(root)
    print("\n".join(cross_edges(edges)))
    for group in cycles(edges):
        print("cycle:", " <-> ".join(group))
