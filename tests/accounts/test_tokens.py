"""API tokens as secrets (issue 21): stored as digests, one per client, each with its
expiry, last use and address; revoked one by one (API logout, the admin) and never by a web
logout; shown to admins without the secret; issued to service accounts by a command."""

from __future__ import annotations

import hashlib
import importlib
from datetime import timedelta

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import roles
from accounts.models import ApiToken
from diagnosis.models import AuditEvent
from tests.support import factories
from tests.support.factories import TEST_PASSWORD

pytestmark = pytest.mark.django_db

ADDRESS = "10.1.2.3"
EXPIRED = "Token expired. Get a new one with POST /api/v1/auth/token/."


@pytest.fixture
def site_admin(db):
    return factories.UserFactory(
        username="site-admin", role=roles.ADMIN, is_staff=True, is_superuser=True
    )


def api_login(user, client_name=None, address=ADDRESS, **headers):
    body = {"username": user.username, "password": TEST_PASSWORD}
    if client_name is not None:
        body["client"] = client_name
    return APIClient().post(reverse("api_token"), body, REMOTE_ADDR=address, **headers)


def issue(user, client_name=None):
    response = api_login(user, client_name)
    assert response.status_code == 200, response.content
    return response.json()["token"]


def token_client(secret):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {secret}")
    return client


def works(secret, address=ADDRESS):
    return token_client(secret).get(reverse("api_cases"), REMOTE_ADDR=address).status_code == 200


# --- storage --------------------------------------------------------------------------------


def test_the_database_keeps_a_digest_never_the_secret(clinician):
    secret = issue(clinician, "scanner")
    row = ApiToken.objects.values().get()
    assert row["digest"] == hashlib.sha512(secret.encode()).hexdigest()
    assert not [column for column, value in row.items() if secret in str(value)]
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {ApiToken._meta.db_table}")
        stored = " ".join(str(value) for value in cursor.fetchone())
    assert secret not in stored and secret[:20] not in stored


def test_neither_the_clear_text_tokens_nor_knoxs_unused_table_exist():
    assert "rest_framework.authtoken" not in settings.INSTALLED_APPS
    tables = connection.introspection.table_names()
    assert "authtoken_token" not in tables and "knox_authtoken" not in tables


def test_the_admins_old_token_page_is_gone(client, site_admin):
    client.force_login(site_admin)
    assert client.get("/admin/authtoken/tokenproxy/").status_code == 404
    assert client.get("/admin/authtoken/token/").status_code == 404


@pytest.mark.django_db(transaction=True)
def test_the_migration_drops_the_clear_text_table():
    migration = importlib.import_module("accounts.migrations.0002_forget_clear_tokens")
    with connection.schema_editor() as editor:
        editor.execute("CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY)")
        editor.execute("INSERT INTO authtoken_token VALUES ('0123456789abcdef')")
        migration.forget_clear_tokens(None, editor)
    assert "authtoken_token" not in connection.introspection.table_names()


# --- one token per client ---------------------------------------------------------------------


def test_the_login_answers_the_token_its_expiry_and_its_client(clinician):
    before = timezone.now()
    body = api_login(clinician, "night-batch").json()
    assert set(body) == {"token", "expiry", "client"} and body["client"] == "night-batch"
    token = ApiToken.objects.get()
    lifetime = timedelta(hours=settings.CHESTNET_API_TOKEN_TTL_H)
    assert before + lifetime <= token.expiry <= timezone.now() + lifetime
    assert body["expiry"].startswith(token.expiry.strftime("%Y-%m-%dT%H:%M:%S"))


def test_a_client_without_a_name_is_named_by_its_user_agent(clinician):
    agent = "ChestNet-Uploader/2.1 (Windows NT 10.0; Win64; x64) " + "x" * 80
    assert api_login(clinician, HTTP_USER_AGENT=agent).json()["client"] == agent[:60].strip()
    assert api_login(clinician).json()["client"] == "api"
    assert api_login(clinician, "\u200b\u200b").json()["client"] == "api"


def test_each_client_has_its_own_token_and_its_logout_revokes_only_that_one(clinician):
    viewer, script = issue(clinician, "viewer"), issue(clinician, "script")
    assert viewer != script and works(viewer) and works(script)

    response = token_client(viewer).post(reverse("api_logout"), REMOTE_ADDR=ADDRESS)
    assert response.status_code == 204
    refused = token_client(viewer).get(reverse("api_cases"))
    assert refused.status_code == 401 and refused.json()["detail"] == "Invalid token."
    assert works(script)
    assert list(ApiToken.objects.values_list("client", flat=True)) == ["script"]


def test_logout_all_revokes_every_token_of_the_user_and_no_one_elses(clinician, clinician2):
    first, second = issue(clinician, "a"), issue(clinician, "b")
    other = issue(clinician2, "a")
    response = token_client(first).post(reverse("api_logout_all"))
    assert response.status_code == 200 and response.json() == {"revoked": 2}
    assert not works(first) and not works(second) and works(other)


def test_the_logouts_need_a_token_not_a_session(client_for, clinician):
    client = client_for(clinician)
    assert client.post(reverse("api_logout")).status_code in (401, 403)
    assert client.post(reverse("api_logout_all")).status_code in (401, 403)


def test_one_token_more_than_the_limit_is_refused_until_one_is_revoked_or_expires(
    settings, clinician
):
    settings.CHESTNET_API_TOKENS_PER_USER = 2
    with CaptureQueriesContext(connection) as captured:
        first = issue(clinician, "a")
    if connection.features.has_select_for_update:  # two logins at once count each other's
        assert any(" FOR UPDATE" in query["sql"] for query in captured)
    issue(clinician, "b")
    refused = api_login(clinician, "c")
    assert refused.status_code == 403
    assert refused.json()["detail"].startswith("This account already holds 2 live API tokens")
    assert ApiToken.objects.filter(user=clinician).count() == 2  # nothing half-issued
    logins = AuditEvent.objects.filter(actor=clinician, action="login")
    assert logins.count() == 2  # the refused one is not a login
    token_client(first).post(reverse("api_logout"), REMOTE_ADDR=ADDRESS)
    assert works(issue(clinician, "c"))
    ApiToken.objects.update(expiry=timezone.now() - timedelta(seconds=1))
    issue(clinician, "d")  # the expired ones no longer count


def test_integration_account_says_when_the_account_holds_the_most_tokens(settings, capsys):
    settings.CHESTNET_API_TOKENS_PER_USER = 1
    _command_token(capsys, "pacs-router", "--client", "router-a")
    with pytest.raises(CommandError, match="already holds 1 live API tokens"):
        call_command("integration_account", "pacs-router", "--client", "router-b")
    assert list(ApiToken.objects.values_list("client", flat=True)) == ["router-a"]


# --- expiry -----------------------------------------------------------------------------------


def test_an_expired_token_is_refused_with_a_sentence_and_cleared_at_the_next_login(clinician):
    old = issue(clinician, "script")
    ApiToken.objects.update(expiry=timezone.now() - timedelta(seconds=1))
    refused = token_client(old).get(reverse("api_cases"))
    assert refused.status_code == 401 and refused.json()["detail"] == EXPIRED
    assert token_client(old).get(reverse("api_cases")).json()["detail"] == EXPIRED  # kept

    fresh = issue(clinician, "script")
    assert fresh != old and works(fresh)
    assert ApiToken.objects.count() == 1  # the expired one went with the new login


def test_a_persons_token_lasts_the_configured_hours(settings, clinician):
    settings.CHESTNET_API_TOKEN_TTL_H = 2
    issue(clinician)
    left = ApiToken.objects.get().expiry - timezone.now()
    assert timedelta(hours=1, minutes=59) < left <= timedelta(hours=2)


def test_an_integrations_token_lasts_the_configured_days(settings, capsys):
    settings.CHESTNET_INTEGRATION_TOKEN_TTL_D = 30
    call_command("integration_account", "pacs-router")
    left = ApiToken.objects.get().expiry - timezone.now()
    assert timedelta(days=29, hours=23) < left <= timedelta(days=30)
    assert (timezone.now() + left).date().isoformat() in capsys.readouterr().out


def test_an_inactive_users_token_is_refused(clinician):
    secret = issue(clinician)
    clinician.is_active = False
    clinician.save(update_fields=["is_active"])
    assert token_client(secret).get(reverse("api_cases")).status_code == 401


def test_a_wrong_or_malformed_token_is_refused():
    for header in ("Token 0123456789abcdef0123", "Token", "Token a b", "Token é"):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=header)
        response = client.get(reverse("api_cases"))
        assert response.status_code == 401 and "detail" in response.json(), header


# --- last use ---------------------------------------------------------------------------------


def test_a_tokens_last_use_and_address_are_recorded_at_most_once_a_minute(clinician):
    secret = issue(clinician)
    assert ApiToken.objects.get().last_used_at is None

    assert works(secret, address="10.9.9.9")
    token = ApiToken.objects.get()
    assert token.last_used_from == "10.9.9.9"
    assert timezone.now() - token.last_used_at < timedelta(seconds=5)

    with CaptureQueriesContext(connection) as queries:
        assert works(secret, address="10.9.9.9")
    assert not [q for q in queries if q["sql"].startswith("UPDATE") and "token" in q["sql"]]

    assert works(secret, address="10.7.7.7")  # another address is written at once
    assert ApiToken.objects.get().last_used_from == "10.7.7.7"

    a_while_ago = timezone.now() - timedelta(minutes=2)
    ApiToken.objects.update(last_used_at=a_while_ago)
    assert works(secret, address="10.7.7.7")
    assert ApiToken.objects.get().last_used_at > a_while_ago


# --- audit ------------------------------------------------------------------------------------


def test_issuing_and_revoking_are_audited_naming_the_token_and_its_client(clinician):
    secret = issue(clinician, "night-batch")
    prefix = ApiToken.objects.get().prefix
    token_client(secret).post(reverse("api_logout"), REMOTE_ADDR=ADDRESS)

    events = (
        AuditEvent.objects.filter(action__in=["login", "logout"])
        .order_by("pk")
        .values_list("action", "actor", "detail", "source")
    )
    described = f"token {prefix} (night-batch)"
    assert list(events) == [
        ("login", clinician.pk, f"api, {described}", ADDRESS),
        ("logout", clinician.pk, f"api, {described}", ADDRESS),
    ]
    assert not AuditEvent.objects.filter(detail__contains=secret[:15]).exists()


# --- the admin --------------------------------------------------------------------------------


def test_admins_see_the_tokens_but_never_their_secret_or_digest(client, site_admin, clinician):
    secret = issue(clinician, "pacs-bridge")
    token = ApiToken.objects.get()
    token_client(secret).get(reverse("api_cases"), REMOTE_ADDR="10.9.9.9")
    client.force_login(site_admin)

    listing = client.get(reverse("admin:accounts_apitoken_changelist"))
    detail = client.get(reverse("admin:accounts_apitoken_change", args=[token.pk]))
    for page in (listing, detail):
        html = page.content.decode()
        assert page.status_code == 200
        assert "pacs-bridge" in html and token.prefix in html and "10.9.9.9" in html
        assert secret[:15] not in html and token.digest not in html
        assert token.digest[:16] not in html
    assert client.get(reverse("admin:accounts_apitoken_add")).status_code == 403
    found = client.get(reverse("admin:accounts_apitoken_changelist"), {"q": token.prefix})
    assert "pacs-bridge" in found.content.decode()


def test_an_admin_revokes_a_token_and_the_revocation_is_audited(client, site_admin, clinician):
    revoked, kept = issue(clinician, "lost-laptop"), issue(clinician, "desktop")
    token = ApiToken.objects.get(client="lost-laptop")
    client.force_login(site_admin)

    response = client.post(
        reverse("admin:accounts_apitoken_changelist"),
        {"action": "revoke", "_selected_action": [token.pk]},
    )
    assert response.status_code == 302
    assert not works(revoked) and works(kept)
    event = AuditEvent.objects.get(action="admin_deleted")
    assert event.actor == site_admin
    assert event.detail == f"revoked the API token {token.prefix} (lost-laptop) of dr-clinician"


def test_the_admin_offers_no_delete_that_skips_the_audit(client, site_admin, clinician):
    issue(clinician)
    token = ApiToken.objects.get()
    client.force_login(site_admin)
    listing = client.get(reverse("admin:accounts_apitoken_changelist")).content.decode()
    assert "delete_selected" not in listing
    assert client.get(reverse("admin:accounts_apitoken_delete", args=[token.pk])).status_code == 403


# --- service accounts ---------------------------------------------------------------------------


def _command_token(capsys, *args):
    call_command("integration_account", *args)
    return capsys.readouterr().out.strip().rsplit(" ", 1)[-1]


def test_integration_account_prints_a_working_token_per_client(capsys):
    router = _command_token(capsys, "pacs-router", "--client", "router-a")
    other = _command_token(capsys, "pacs-router", "--client", "router-b")
    assert works(router)
    assert sorted(ApiToken.objects.values_list("client", flat=True)) == ["router-a", "router-b"]
    assert works(other)
    assert AuditEvent.objects.filter(action="login", detail__contains="router-a").exists()


def test_integration_account_revoke_all_ends_every_token_of_the_account(capsys, clinician):
    router = _command_token(capsys, "pacs-router")
    person = issue(clinician)
    call_command("integration_account", "pacs-router", "--revoke-all")
    assert "1 token(s) revoked" in capsys.readouterr().out
    assert not works(router) and works(person)
    assert AuditEvent.objects.filter(action="logout", detail__contains="all 1 tokens").exists()


# --- the lockout --------------------------------------------------------------------------------


def test_the_lockout_still_guards_the_token_endpoint(clinician):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        APIClient().post(
            reverse("api_token"),
            {"username": clinician.username, "password": "wrong"},
            REMOTE_ADDR=ADDRESS,
        )
    locked = api_login(clinician, "script")
    assert locked.status_code == 429 and "Too many failed logins" in locked.json()["detail"]
    assert not ApiToken.objects.exists()
