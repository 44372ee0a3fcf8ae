"""The Django apps of this repository, bottom floor first (docs/architecture.md): what the
settings add to INSTALLED_APPS after Django's and the libraries' apps, and the packages the
import-graph check (tests/support/import_graph.py) reads besides ml/ and chestnet_site/."""

from __future__ import annotations

PROJECT_APPS = ("accounts", "registry", "diagnosis", "mlops", "dicomnet", "monitoring")
