"""Access hardening: login lockout (form and API), the audit of logins, expiring and revoked
API tokens (more in tests/accounts/test_tokens.py), idle sessions, API throttling, and the API
documentation behind the login."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.sessions.models import Session
from django.contrib.staticfiles import finders
from django.test import RequestFactory
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle

from accounts.addresses import client_address
from accounts.models import ApiToken
from diagnosis.models import AuditEvent
from tests.support.factories import TEST_PASSWORD

pytestmark = pytest.mark.django_db

ADDRESS = "10.1.2.3"


def form_login(client, username, password, address=ADDRESS):
    return client.post(
        reverse("login"), {"username": username, "password": password}, REMOTE_ADDR=address
    )


def api_login(username, password, address=ADDRESS):
    return APIClient().post(
        reverse("api_token"), {"username": username, "password": password}, REMOTE_ADDR=address
    )


def token_client(key):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


# --- lockout ------------------------------------------------------------------------------


def test_the_form_locks_a_username_after_the_failure_limit_with_a_message(client, clinician):
    limit = settings.AXES_FAILURE_LIMIT
    for _ in range(limit - 1):
        response = form_login(client, clinician.username, "wrong")
        assert response.status_code == 200 and b"did not match" in response.content

    locked = form_login(client, clinician.username, "wrong")
    assert locked.status_code == 429
    assert b"Too many failed logins" in locked.content and b"15 minutes" in locked.content
    assert 0 < int(locked["Retry-After"]) <= 15 * 60

    # The right password does not get through while locked.
    assert form_login(client, clinician.username, TEST_PASSWORD).status_code == 429
    assert client.get(reverse("case_list")).status_code == 302


def test_thirty_wrong_passwords_on_the_api_meet_the_lock(clinician):
    statuses = [api_login(clinician.username, f"guess-{n}").status_code for n in range(30)]
    limit = settings.AXES_FAILURE_LIMIT
    assert statuses == [400] * (limit - 1) + [429] * (30 - limit + 1)

    response = api_login(clinician.username, TEST_PASSWORD)
    assert response.status_code == 429
    assert response["Content-Type"] == "application/json"
    assert "Too many failed logins" in response.json()["detail"]
    assert 0 < int(response["Retry-After"]) <= 15 * 60
    assert not ApiToken.objects.filter(user=clinician).exists()


def test_a_successful_login_resets_the_failure_count(client, clinician):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        api_login(clinician.username, "wrong")
    assert api_login(clinician.username, TEST_PASSWORD).status_code == 200
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert form_login(client, clinician.username, "wrong").status_code == 200
    assert form_login(client, clinician.username, TEST_PASSWORD).status_code == 302


def test_the_lock_holds_one_username_from_one_address_only(clinician, clinician2):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        api_login(clinician.username, "wrong", address="10.0.0.1")
    assert api_login(clinician.username, TEST_PASSWORD, address="10.0.0.1").status_code == 429
    assert api_login(clinician.username, TEST_PASSWORD, address="10.0.0.2").status_code == 200
    assert api_login(clinician2.username, TEST_PASSWORD, address="10.0.0.1").status_code == 200


def test_the_lock_ends_after_the_cool_off(clinician):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        api_login(clinician.username, "wrong")
    assert api_login(clinician.username, TEST_PASSWORD).status_code == 429
    # Attempts during the lock do not extend it: the cool-off counts from the locking one.
    AccessAttempt.objects.update(attempt_time=timezone.now() - settings.AXES_COOLOFF_TIME)
    assert api_login(clinician.username, TEST_PASSWORD).status_code == 200


# --- audit of logins ----------------------------------------------------------------------


def test_form_login_failure_and_logout_are_audited_with_the_address(client, clinician):
    form_login(client, clinician.username, "not-my-password")
    form_login(client, clinician.username, TEST_PASSWORD)
    client.post(reverse("logout"), REMOTE_ADDR=ADDRESS)

    # (The clinician's role, granted when the fixture made the account, is audited too.)
    signing = AuditEvent.objects.filter(action__startswith="log").order_by("pk")
    events = list(signing.values_list("action", "actor", "detail"))
    assert events == [
        ("login_failed", None, clinician.username),
        ("login", clinician.pk, "web"),
        ("logout", clinician.pk, "web"),
    ]
    assert set(signing.values_list("source", flat=True)) == {ADDRESS}
    assert not AuditEvent.objects.filter(detail__contains="not-my-password").exists()


def test_api_logins_are_audited_and_a_lock_is_noted(clinician):
    api_login(clinician.username, TEST_PASSWORD)
    for _ in range(settings.AXES_FAILURE_LIMIT + 1):
        api_login(clinician.username, "wrong")

    login = AuditEvent.objects.get(action="login")
    assert (login.actor, login.source) == (clinician, ADDRESS)
    assert login.detail == f"api, token {ApiToken.objects.get().prefix} (api)"
    failed = AuditEvent.objects.filter(action="login_failed").order_by("pk")
    assert failed.count() == settings.AXES_FAILURE_LIMIT + 1
    assert failed.first().detail == clinician.username
    assert failed.last().detail == f"{clinician.username} (locked out)"


def test_the_client_address_comes_from_the_proxy_only_when_configured(settings):
    request = RequestFactory().get(
        "/", REMOTE_ADDR="172.18.0.1", HTTP_X_FORWARDED_FOR="6.6.6.6, 10.9.8.7"
    )
    settings.CHESTNET_PROXY_COUNT = 0
    assert client_address(request) == "172.18.0.1"
    settings.CHESTNET_PROXY_COUNT = 1
    assert client_address(request) == "10.9.8.7"  # what our proxy saw, not "6.6.6.6"
    no_header = RequestFactory().get("/", REMOTE_ADDR="172.18.0.1")
    assert client_address(no_header) == "172.18.0.1"


# --- API tokens ---------------------------------------------------------------------------


def test_an_expired_token_is_refused_and_logging_in_again_issues_a_fresh_one(clinician):
    old = api_login(clinician.username, TEST_PASSWORD).json()["token"]
    assert token_client(old).get(reverse("api_cases")).status_code == 200
    ApiToken.objects.update(expiry=timezone.now() - timedelta(minutes=1))

    refused = token_client(old).get(reverse("api_cases"))
    assert refused.status_code == 401 and "expired" in refused.json()["detail"]

    fresh = api_login(clinician.username, TEST_PASSWORD).json()["token"]
    assert fresh != old
    assert token_client(fresh).get(reverse("api_cases")).status_code == 200


def test_api_logout_revokes_the_token(clinician):
    key = api_login(clinician.username, TEST_PASSWORD).json()["token"]
    prefix = ApiToken.objects.get().prefix
    client = token_client(key)
    assert client.post(reverse("api_logout"), REMOTE_ADDR=ADDRESS).status_code == 204
    assert client.get(reverse("api_cases")).status_code == 401
    logout = AuditEvent.objects.get(action="logout")
    assert (logout.actor, logout.source) == (clinician, ADDRESS)
    assert logout.detail == f"api, token {prefix} (api)"


def test_logging_out_of_the_site_leaves_the_api_tokens_working(client, clinician):
    """Each token belongs to a client of its own (a script, an integration): the site's
    logout ends the browser's session only."""
    key = api_login(clinician.username, TEST_PASSWORD).json()["token"]
    form_login(client, clinician.username, TEST_PASSWORD)
    client.post(reverse("logout"))
    assert token_client(key).get(reverse("api_cases")).status_code == 200
    assert client.get(reverse("case_list")).status_code == 302


def test_the_api_logout_needs_a_token(client_for, clinician):
    assert client_for(clinician).post(reverse("api_logout")).status_code in (401, 403)


# --- sessions -----------------------------------------------------------------------------


def test_sessions_end_after_thirty_idle_minutes_and_with_the_browser():
    assert settings.SESSION_COOKIE_AGE == 30 * 60
    assert settings.SESSION_EXPIRE_AT_BROWSER_CLOSE is True


def _expiry(client):
    return Session.objects.get(session_key=client.session.session_key).expire_date


def test_a_page_renews_the_session_but_the_case_pages_poll_does_not(client, clinician):
    form_login(client, clinician.username, TEST_PASSWORD)
    soon = timezone.now() + timedelta(minutes=5)
    Session.objects.update(expire_date=soon)

    client.get(reverse("api_cases") + "?poll=1")
    client.get(reverse("case_list"), HTTP_SEC_FETCH_MODE="cors")  # a script's fetch
    assert _expiry(client) == soon

    client.get(reverse("case_list"), HTTP_SEC_FETCH_MODE="navigate")
    renewed = _expiry(client) - timezone.now()
    assert timedelta(minutes=29) < renewed <= timedelta(minutes=30)


def test_an_idle_session_is_signed_out(client, clinician):
    form_login(client, clinician.username, TEST_PASSWORD)
    Session.objects.update(expire_date=timezone.now() - timedelta(seconds=1))
    response = client.get(reverse("case_list"))
    assert response.status_code == 302 and response.url.startswith(reverse("login"))


# --- API throttling -----------------------------------------------------------------------


def test_api_rates_leave_normal_use_alone():
    rates = settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]
    assert rates == {"user": "600/min", "anon": "60/min"}


def test_a_user_over_the_rate_gets_429_with_retry_after(api_client_for, clinician, monkeypatch):
    monkeypatch.setattr(UserRateThrottle, "rate", "3/min", raising=False)
    client = api_client_for(clinician)
    assert [client.get(reverse("api_cases")).status_code for _ in range(3)] == [200] * 3
    response = client.get(reverse("api_cases"))
    assert response.status_code == 429
    assert "throttled" in response.json()["detail"] and 0 < int(response["Retry-After"]) <= 60


def test_password_guessing_across_usernames_meets_the_anonymous_rate(monkeypatch):
    """Counted by address: a client-written X-Forwarded-For does not make a new client."""
    monkeypatch.setattr(AnonRateThrottle, "rate", "2/min", raising=False)
    statuses = [
        APIClient()
        .post(
            reverse("api_token"),
            {"username": f"nobody-{n}", "password": "guess"},
            HTTP_X_FORWARDED_FOR=f"10.0.0.{n}",
        )
        .status_code
        for n in range(3)
    ]
    assert statuses == [400, 400, 429]


# --- schema and documentation -------------------------------------------------------------


def test_the_schema_and_the_docs_page_need_a_login(client):
    assert APIClient().get(reverse("api_schema")).status_code == 401
    response = client.get(reverse("api_docs"))
    assert response.status_code == 302 and response.url.startswith(reverse("login"))


def test_the_docs_page_uses_only_local_files(client_for, clinician):
    response = client_for(clinician).get(reverse("api_docs"))
    assert response.status_code == 200
    html = response.content.decode()
    assert not re.search(r"https?://", html), "the page must not load anything from elsewhere"
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    static = [asset for asset in assets if asset.startswith("/static/")]
    assert any(a.endswith("swagger-ui-bundle.js") for a in static)
    for asset in static:
        assert finders.find(asset.split("/static/", 1)[1]), asset
    assert re.search(rf"expires\s+{settings.CHESTNET_API_TOKEN_TTL_H} hours", html)
