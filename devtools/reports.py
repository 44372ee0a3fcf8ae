"""What the report and benchmark scripts (scripts/) do with their findings: print them as
JSON, or put them in their own section of a Markdown page (docs/benchmarks.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def print_report(report: dict[str, Any], json_path: str | None = None) -> None:
    """`report` printed as indented JSON, and written to `json_path` too when one is given."""
    text = json.dumps(report, indent=2)
    if json_path:
        Path(json_path).write_text(text + "\n")
    print(text)


def write_section(
    path: Path, section: str, *, start: str, end: str, heading: str = "", new_page: str = ""
) -> None:
    """`section`, which begins with the marker `start` and ends with `end`, in place of the
    page's part between those markers; appended (under `heading`, if given) when the page
    has none. A missing page is begun with `new_page`."""
    text = path.read_text() if path.exists() else new_page
    if start in text and end in text:
        before, rest = text.split(start, 1)
        text = before + section + rest.split(end, 1)[1]
    else:
        lead = f"\n\n{heading}" if heading else ""
        text = text.rstrip() + lead + "\n\n" + section + "\n"
    path.write_text(text)
