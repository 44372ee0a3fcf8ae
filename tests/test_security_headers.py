"""The Content-Security-Policy (django-csp): on every response, pages, API and static files
alike, and strict: no inline script or style anywhere, so none may be left in the templates
or in the HTML the server draws. Chromium running every main page under it:
tests/e2e/test_content_security_policy.py."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.test import Client

from monitoring import svg

ROOT = Path(__file__).resolve().parents[1]
POLICY = {
    "default-src": "'self'",
    "script-src": "'self' 'wasm-unsafe-eval'",
    "style-src": "'self'",
    "img-src": "'self' data: blob:",
    "connect-src": "'self'",
    "worker-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'self'",
    "frame-ancestors": "'none'",
    "form-action": "'self'",
}
INLINE = {
    "inline script": re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE),
    "style block": re.compile(r"<style\b", re.IGNORECASE),
    "style attribute": re.compile(r"\sstyle\s*=", re.IGNORECASE),
    "event handler": re.compile(r"\son[a-z]+\s*=", re.IGNORECASE),
    "javascript: URL": re.compile(r"javascript:", re.IGNORECASE),
}


def _directives(header: str) -> dict[str, str]:
    parts = (part.strip().split(" ", 1) for part in header.split(";") if part.strip())
    return {name: value for name, value in parts}


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/accounts/login/", id="a-page"),
        pytest.param("/api/v1/cases/", id="an-api-answer"),
        pytest.param("/static/viewer/viewer.js", id="a-static-file"),
        pytest.param("/no-such-page/", id="an-error-page"),
    ],
)
def test_every_response_carries_the_strict_policy(path):
    response = Client().get(path)
    assert _directives(response["Content-Security-Policy"]) == POLICY


@pytest.mark.parametrize(
    "template", sorted(ROOT.glob("templates/**/*.html")), ids=lambda p: str(p.relative_to(ROOT))
)
def test_no_template_holds_inline_script_or_style(template):
    text = template.read_text()
    found = {name: pattern.findall(text) for name, pattern in INLINE.items()}
    assert not any(found.values()), found


def test_the_monitoring_plots_use_presentation_attributes_only():
    drawn = [
        svg.reliability_svg(
            {"bins": [{"count": 4, "mean_probability": 0.3, "observed_rate": 0.25}] * 2}
        ),
        svg.scores_svg({"edges": [0.0, 0.5, 1.0], "counts": [3, 1], "reference_counts": [2, 2]}),
    ]
    for plot in drawn:
        assert "<svg" in plot and not INLINE["style attribute"].search(plot)
        assert not INLINE["style block"].search(plot)
