"""How the monitoring page writes a proportion: "0.91 (0.84-0.95)", or "-" with nothing to count."""

from __future__ import annotations

from typing import Any

from django import template

register = template.Library()


@register.simple_tag
def rate(group: dict[str, Any], name: str) -> str:
    value, interval = group.get(name), group.get(f"{name}_ci95")
    if value is None:
        return "–"
    text = f"{value:.2f}"
    if interval:
        text += f" ({interval[0]:.2f}–{interval[1]:.2f})"
    return text


@register.filter
def number(value: Any, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


_FACTS = {
    "manufacturer": "Manufacturer",
    "modality": "Modality",
    "bits_stored": "Bits stored",
    "size": "Size (longer side)",
}


@register.simple_tag
def fact_name(fact: str) -> str:
    return _FACTS.get(fact, fact)
