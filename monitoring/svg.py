"""The monitoring plots as SVG drawn on the server: nothing is fetched or run in the browser.
Text is escaped; sizes are fixed so the page lays out before anything loads."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any

from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT, PAD = 320, 240, 36
INK, GRID, BAR, REFERENCE = "#1f2933", "#d9dee3", "#2f6fb3", "#c2410c"


def _x(value: float) -> float:
    return PAD + value * (WIDTH - 2 * PAD)


def _y(value: float) -> float:
    return HEIGHT - PAD - value * (HEIGHT - 2 * PAD)


def _frame(title: str, x_label: str, y_label: str, body: Sequence[str]) -> SafeString:
    ticks = []
    for i in range(0, 11, 2):
        v = i / 10
        ticks.append(
            f'<line x1="{_x(v):.1f}" y1="{_y(0):.1f}" x2="{_x(v):.1f}" y2="{_y(1):.1f}" '
            f'stroke="{GRID}"/><text x="{_x(v):.1f}" y="{HEIGHT - PAD + 14}" font-size="10" '
            f'text-anchor="middle">{v:.1f}</text>'
        )
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{escape(title)}" '
        f'font-family="sans-serif" fill="{INK}">',
        f"<title>{escape(title)}</title>",
        *ticks,
        f'<rect x="{PAD}" y="{PAD}" width="{WIDTH - 2 * PAD}" height="{HEIGHT - 2 * PAD}" '
        f'fill="none" stroke="{INK}"/>',
        *body,
        f'<text x="{WIDTH / 2}" y="{HEIGHT - 6}" font-size="11" text-anchor="middle">'
        f"{escape(x_label)}</text>",
        f'<text x="12" y="{HEIGHT / 2}" font-size="11" text-anchor="middle" '
        f'transform="rotate(-90 12 {HEIGHT / 2})">{escape(y_label)}</text>',
        f'<text x="{PAD}" y="{PAD - 10}" font-size="12" font-weight="bold">{escape(title)}</text>',
        "</svg>",
    ]
    return mark_safe("".join(parts))  # noqa: S308  (every text above is escaped)


def reliability_svg(reliability: dict[str, Any]) -> SafeString:
    """Observed rate of pneumonia against mean predicted probability per bin, with the
    diagonal of perfect calibration; a dot's area grows with its bin's count."""
    body = [
        f'<line x1="{_x(0):.1f}" y1="{_y(0):.1f}" x2="{_x(1):.1f}" y2="{_y(1):.1f}" '
        f'stroke="{INK}" stroke-dasharray="4 3"/>'
    ]
    points = [
        b
        for b in reliability.get("bins", [])
        if b.get("count") and b.get("mean_probability") is not None
    ]
    largest = max((b["count"] for b in points), default=1)
    if len(points) > 1:
        path = " ".join(
            f"{_x(b['mean_probability']):.1f},{_y(b['observed_rate']):.1f}" for b in points
        )
        body.append(f'<polyline points="{path}" fill="none" stroke="{BAR}" stroke-width="2"/>')
    for b in points:
        radius = 2.5 + 5 * (b["count"] / largest) ** 0.5
        body.append(
            f'<circle cx="{_x(b["mean_probability"]):.1f}" cy="{_y(b["observed_rate"]):.1f}" '
            f'r="{radius:.1f}" fill="{BAR}"><title>{b["count"]} images: predicted '
            f"{b['mean_probability']:.2f}, observed {b['observed_rate']:.2f}</title></circle>"
        )
    if not points:
        body.append(_empty("No signed cases yet"))
    return _frame("Reliability (signed cases)", "Predicted probability", "Observed rate", body)


def scores_svg(drift: dict[str, Any]) -> SafeString:
    """This span's score histogram (bars) against the version's reference (line), both as
    shares of their totals."""
    edges = drift["edges"]
    counts = drift["counts"]
    total = sum(counts)
    body = []
    tallest = 1e-9
    shares = [c / total for c in counts] if total else [0.0] * len(counts)
    reference = drift.get("reference_counts")
    ref_shares = [c / sum(reference) for c in reference] if reference and sum(reference) else None
    tallest = max([*shares, *(ref_shares or []), 1e-9])
    for low, high, share in zip(edges[:-1], edges[1:], shares, strict=True):
        top = _y(share / tallest)
        body.append(
            f'<rect x="{_x(low) + 1:.1f}" y="{top:.1f}" width="{_x(high) - _x(low) - 2:.1f}" '
            f'height="{_y(0) - top:.1f}" fill="{BAR}" opacity="0.75"><title>{low:.1f}-{high:.1f}:'
            f" {share:.1%}</title></rect>"
        )
    if ref_shares:
        path = " ".join(
            f"{_x((low + high) / 2):.1f},{_y(share / tallest):.1f}"
            for low, high, share in zip(edges[:-1], edges[1:], ref_shares, strict=True)
        )
        body.append(
            f'<polyline points="{path}" fill="none" stroke="{REFERENCE}" stroke-width="2"/>'
        )
    if not total:
        body.append(_empty("No analysed images"))
    return _frame("Scores (bars) vs reference (line)", "P(pneumonia)", "Share", body)


def _empty(text: str) -> str:
    return (
        f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" font-size="12" text-anchor="middle">'
        f"{escape(text)}</text>"
    )
