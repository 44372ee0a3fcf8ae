"""Every main page carries the strict Content-Security-Policy (no inline script or style,
scripts and styles only from the app's origin) and runs under it in a real Chromium without
a single violation: the login, the clinician's pages, the worklist, the review page with its
viewer decoding a JPEG 2000 DICOM in its worker (WebAssembly) and a length measured, the
model operations and monitoring pages, the API documentation (Swagger UI) and the Django
admin.

The live server hands static files out before the middleware; WhiteNoise, which serves them
in production, hands them out after it, with the policy. A worker runs under the policy of
its own script's response, so the browser gets static files with the header the app gives
them (asked of the app through the middleware, as WhiteNoise serves it)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.core.files.base import ContentFile
from django.test import Client

from accounts import roles
from diagnosis import services
from registry.models import ModelVersion
from tests.support import factories, transfer_syntaxes
from tests.support.factories import TEST_PASSWORD
from tests.support.site_cases import SiteCase, site_cases

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# Every violation the page reports (its own document; a worker's are logged to the console).
RECORD_VIOLATIONS = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.cspViolations.push(
    `${event.effectiveDirective} blocked ${event.blockedURI || "inline"} ` +
    `at ${event.sourceFile}:${event.lineNumber}`);
});
"""
STRICT = (
    "default-src 'self'",
    "script-src 'self' 'wasm-unsafe-eval'",
    "style-src 'self'",
    "object-src 'none'",
    "frame-ancestors 'none'",
)


@pytest.fixture(autouse=True)
def _media_in_tmp(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


class Pages:
    """Opens pages in one browser context that records CSP violations, and keeps what each
    page's header and violations were."""

    def __init__(self, browser: Any, base: str, static_policy: str) -> None:
        self.base, self.static_policy = base, static_policy
        self.context = browser.new_context(viewport={"width": 1400, "height": 950})
        self.context.add_init_script(RECORD_VIOLATIONS)
        self.context.route("**/static/**", self._as_whitenoise_serves)
        self.page = self.context.new_page()
        self.console: list[str] = []
        self.page.on("console", self._note_console)
        self.problems: dict[str, list[str]] = {}

    def _as_whitenoise_serves(self, route: Any) -> None:
        response = route.fetch()
        headers = {**response.headers, "content-security-policy": self.static_policy}
        route.fulfill(response=response, headers=headers)

    def _note_console(self, message: Any) -> None:
        # The page's and its workers' messages: Chromium logs each refusal, and a worker's
        # refused WebAssembly only there.
        if re.search(r"content.security.policy", message.text, flags=re.IGNORECASE):
            self.console.append(message.text)

    def sign_in(self, username: str) -> None:
        self.open("/accounts/login/")
        self.page.fill("input[name=username]", username)
        self.page.fill("input[name=password]", TEST_PASSWORD)
        with self.page.expect_navigation():
            self.page.click("button[type=submit]")

    def open(self, path: str, *, ready: str | None = None, then: Callable | None = None) -> None:
        response = self.page.goto(f"{self.base}{path}")
        assert response is not None and response.ok, f"{path}: {response and response.status}"
        problems = _weaker_than_strict(response.headers.get("content-security-policy", ""))
        if ready:
            self.page.wait_for_selector(ready, timeout=60_000)
        if then:
            then(self.page)
        self.page.wait_for_load_state("networkidle")
        problems += self.page.evaluate("window.cspViolations")
        problems += self.console
        self.console = []
        self.problems[path] = problems

    def close(self) -> None:
        self.context.close()


def _weaker_than_strict(policy: str) -> list[str]:
    problems = [f"missing {part!r}" for part in STRICT if part not in policy]
    return problems + (["unsafe-inline allowed"] if "unsafe-inline" in policy else [])


@pytest.fixture
def pages(browser, live_server) -> Iterator[Callable[[str], Pages]]:
    served = Client().get("/static/viewer/viewer.js")
    static_policy = served.get("Content-Security-Policy", "")
    assert served.status_code == 200 and not _weaker_than_strict(static_policy), static_policy
    opened: list[Pages] = []

    def signed_in(username: str = "") -> Pages:
        pages = Pages(browser, live_server.url, static_policy)
        if username:
            pages.sign_in(username)
        opened.append(pages)
        return pages

    yield signed_in
    for each in opened:
        each.close()


def _no_violations(pages: Pages) -> None:
    assert pages.problems and all(not found for found in pages.problems.values()), "\n".join(
        f"{path}: {found}" for path, found in pages.problems.items() if found
    )


def test_the_login_page_runs_under_the_policy(pages):
    anonymous = pages("")
    anonymous.open("/accounts/login/", ready="input[name=username]")
    _no_violations(anonymous)


def test_a_clinicians_pages_and_the_api_documentation_run_under_the_policy(pages):
    clinician = factories.UserFactory(username="csp-clinician", role=roles.CLINICIAN)
    case = factories.awaiting_review_case(owner=clinician)
    browser = pages("csp-clinician")
    browser.open("/cases/", ready="table, .empty, main")
    browser.open("/cases/new/", ready="input[type=file]")
    browser.open(f"/cases/{case.pk}/", ready="#case-root")
    # Swagger UI draws the operations once the schema has loaded through its setup script.
    browser.open("/api/v1/docs/", ready=".swagger-ui .opblock")
    _no_violations(browser)


def _measure(page: Any) -> None:
    """A length drawn on the first viewer: Cornerstone writes its text label into the SVG."""
    page.locator(".cn-viewer [data-mode=measure]").first.click()
    viewer = page.locator(".cn-viewer [data-viewport]").first
    viewer.scroll_into_view_if_needed()
    page.wait_for_timeout(500)
    box = viewer.bounding_box()
    start = (box["x"] + box["width"] * 0.4, box["y"] + box["height"] * 0.4)
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move(start[0] + 120, start[1] + 80, steps=8)
    page.mouse.up()
    page.wait_for_selector(".cn-viewer [data-measurement][data-value]", timeout=10_000)


def test_the_worklist_and_the_review_viewer_run_under_the_policy(pages):
    factories.UserFactory(username="csp-radiologist", role=roles.RADIOLOGIST)
    case = factories.CaseFactory(patient_id="CSP-1")
    factories.PredictionFactory(
        image__case=case,
        image__original=ContentFile(transfer_syntaxes.sample("j2k-lossless").data, "x.dcm"),
        image__original_format="dicom",
    )
    services.case_refresh_status(case_id=case.pk)
    browser = pages("csp-radiologist")
    browser.open("/worklist/", ready="#worklist-rows tr")
    # The JPEG 2000 original decodes in the viewer's worker (WebAssembly codec).
    browser.open(f"/cases/{case.pk}/review/", ready=".cn-viewer.cn-ready", then=_measure)
    assert browser.page.locator(".cn-viewer.cn-failed").count() == 0
    assert browser.page.locator("[data-viewer-error]").first.is_hidden()
    _no_violations(browser)


def test_the_admin_pages_run_under_the_policy(pages):
    ModelVersion.objects.create(
        version="csp-1",
        origin=ModelVersion.Origin.SHIPPED,
        artifact="models/csp-1.keras",
        card_file="models/csp-1.json",
        card={"version": "csp-1", "threshold": 0.5},
        sha256="0" * 64,
        is_active=True,
        active_threshold=0.5,
    )
    factories.UserFactory(username="csp-admin", role=roles.ADMIN, is_staff=True, is_superuser=True)
    owner = factories.UserFactory(username="csp-owner", role=roles.CLINICIAN)
    reader = factories.UserFactory(username="csp-reader", role=roles.RADIOLOGIST)
    specs = [SiteCase((0.8,), "pneumonia"), SiteCase((0.2,), "normal")] * 3
    case_id = site_cases(specs, owner=owner, radiologist=reader)[0]
    browser = pages("csp-admin")
    browser.open("/mlops/", ready="main")
    browser.open("/mlops/runs/", ready="main")
    browser.open("/mlops/versions/", ready="main")
    browser.open("/monitoring/", ready="#calibration svg")
    browser.open("/audit/", ready="main")
    browser.open("/admin/", ready="#content")
    browser.open("/admin/diagnosis/case/", ready="#changelist")
    browser.open(f"/admin/diagnosis/case/{case_id}/change/", ready="#content-main")
    _no_violations(browser)
