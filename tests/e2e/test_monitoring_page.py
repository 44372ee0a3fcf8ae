"""An admin sees a monitoring alert raised by the site's signed cases, reads the figures and
plots, and acknowledges it in a real Chromium. Screenshot: docs/screenshots/monitoring.png."""

from __future__ import annotations

from pathlib import Path

import pytest

from accounts import roles
from diagnosis.models import AuditEvent
from monitoring.models import Alert
from registry.models import ModelVersion
from tests.support import factories
from tests.support.site_cases import SiteCase, site_cases

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def test_an_admin_reads_the_monitoring_and_acknowledges_an_alert(login, live_server, settings):
    settings.CHESTNET_ALERT_MAX_PSI = 100.0
    ModelVersion.objects.create(
        version="base-1",
        origin=ModelVersion.Origin.SHIPPED,
        artifact="models/base-1.keras",
        card_file="models/base-1.json",
        card={"version": "base-1", "threshold": 0.5},
        sha256="0" * 64,
        is_active=True,
        active_threshold=0.5,
    )
    factories.UserFactory(username="mon-admin", role=roles.ADMIN, is_staff=True)
    owner = factories.UserFactory(username="mon-clinician", role=roles.CLINICIAN)
    reader = factories.UserFactory(username="mon-radiologist", role=roles.RADIOLOGIST)
    # 30 normal children, 12 of them flagged (specificity 0.60); 25 pneumonias, all caught.
    specs = [SiteCase((0.8 if i < 12 else 0.1,), "normal", manufacturer="Acme") for i in range(30)]
    specs += [SiteCase((0.9,), "pneumonia", manufacturer="Zeta") for _ in range(25)]
    specs += [SiteCase((None,), "indeterminate")]
    site_cases(specs, owner=owner, radiologist=reader)

    page = login(live_server.url, "mon-admin")
    page.goto(f"{live_server.url}/monitoring/")
    alert = page.locator("#alerts .alert-row")
    assert "Specificity below its floor: 0.600" in alert.inner_text()
    summary = page.locator("#summary").inner_text()
    assert "25 / 12 / 18 / 0" in summary  # tp / fp / tn / fn
    assert page.locator("#calibration svg").count() == 1
    page.goto(f"{live_server.url}/mlops/")
    assert "1 monitoring alert" in page.locator(".alert-banner").inner_text()
    page.click(".alert-banner a")
    page.fill("#alerts input[name=note]", "Calibrating to the site's signed cases.")
    with page.expect_navigation():
        page.click("#alerts button[type=submit]")
    assert "Alert acknowledged." in page.locator(".flash").first.inner_text()
    assert "Acknowledged by mon-admin" in page.locator("#alerts").inner_text()
    assert page.locator(".alert-banner").count() == 0
    page.screenshot(path=str(SHOTS / "monitoring.png"), full_page=True)
    assert Alert.objects.get().acknowledged_by.username == "mon-admin"
    assert AuditEvent.objects.filter(action="alert_acknowledged").count() == 1
