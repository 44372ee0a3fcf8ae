"""Free text people type: what of it can be seen."""

from __future__ import annotations

import unicodedata


def visible(text: str) -> str:
    """`text` with runs of white space made one space, and format and control characters
    (zero-width spaces and joiners, direction marks, soft hyphens) removed: a reason made
    only of them is empty, not a reason."""
    kept = "".join(
        ch for ch in text if unicodedata.category(ch) not in {"Cf", "Cc"} or ch in "\t\n"
    )
    return " ".join(kept.split())
