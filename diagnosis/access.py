"""Who may sign in, from where and for how long: the lockout after repeated failures
(django-axes calls `lockout_response`), the audit of logins and logouts, API tokens (issued,
revoked and audited here, kept by `accounts`) and the idle timeout of web sessions."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from axes.helpers import get_client_username, get_cool_off
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db import transaction
from django.db.models import Max
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone

import accounts.services
from accounts.addresses import client_address
from accounts.models import ApiToken
from accounts.services import IssuedToken
from diagnosis import roles, services
from diagnosis.models import AuditEvent

# chestnet_site.urls mounts the API here; its refusals are JSON, the site's are pages.
logger = logging.getLogger(__name__)
API_PREFIX = "/api/"


def is_api_request(request: HttpRequest) -> bool:
    """A request from a program (the REST API or DICOMweb), answered in JSON, not HTML."""
    return request.path.startswith((API_PREFIX, "/dicomweb/"))


# --- lockout (django-axes) ----------------------------------------------------------------


def lockout_response(
    request: Any, original_response: HttpResponse | None = None, credentials: Any = None
) -> HttpResponse:
    """The answer to a login refused by the lockout (AXES_LOCKOUT_CALLABLE): 429 with
    Retry-After; a JSON `detail` under the API, the login page's message elsewhere."""
    seconds = _lockout_seconds_left(request, credentials)
    minutes = math.ceil(seconds / 60)
    detail = (
        "Too many failed logins for this username from this address. "
        f"Try again in {minutes} minute{'s' if minutes != 1 else ''}."
    )
    response: HttpResponse
    if request.path.startswith(API_PREFIX):
        response = JsonResponse({"detail": detail}, status=429)
    else:
        context = {"detail": detail, "minutes": minutes}
        response = render(request, "registration/locked_out.html", context, status=429)
    response["Retry-After"] = str(seconds)
    return response


def _lockout_seconds_left(request: Any, credentials: Any) -> int:
    cool_off = get_cool_off(request) or timedelta(0)
    last = AccessAttempt.objects.filter(
        username=get_client_username(request, credentials),
        ip_address=client_address(request),
    ).aggregate(last=Max("attempt_time"))["last"]
    left = last + cool_off - timezone.now() if last is not None else cool_off
    return max(1, math.ceil(left.total_seconds()))


# --- API tokens -------------------------------------------------------------------------


# Each client of a user (a script, an integration, a viewer) holds a token of its own; the
# secret is shown once, when issued. Issuing and revoking are audited as logins and logouts
# (an admin's revocation as a deletion), naming the token by its prefix and client.


def token_lifetime(user: Any) -> timedelta:
    """A person's token lasts CHESTNET_API_TOKEN_TTL_H hours (they log in again); an
    integration's CHESTNET_INTEGRATION_TOKEN_TTL_D days (it has no password: an admin
    issues it with `manage.py integration_account NAME`)."""
    if roles.is_integration(user):
        return timedelta(days=settings.CHESTNET_INTEGRATION_TOKEN_TTL_D)
    return timedelta(hours=settings.CHESTNET_API_TOKEN_TTL_H)


def token_described(token: ApiToken) -> str:
    return f"token {token.prefix} ({token.client})"


@transaction.atomic
def api_login(*, request: Any, user: Any, client: str | None) -> IssuedToken:
    """POST /api/v1/auth/token/ with the right password: a new token for this client (the
    user's others keep working). As a form login does: audited (naming the token), the
    lockout's failure count reset."""
    issued = accounts.services.token_issue(user=user, client=client, lifetime=token_lifetime(user))
    request.auth = issued.token  # the request's credentials from now on: the audit names it
    user_logged_in.send(sender=type(user), request=request, user=user)
    return issued


@transaction.atomic
def api_logout(*, request: Any, everything: bool = False) -> int:
    """Revokes the token the request was made with (`everything`: all the user's tokens,
    every client's); returns how many were revoked."""
    token, user = request.auth, request.user
    if everything:
        revoked = accounts.services.tokens_revoke(user=user)
        detail = f"api, all {revoked} tokens"
    else:
        accounts.services.token_revoke(token=token)
        revoked, detail = 1, f"api, {token_described(token)}"
    _audit(request, user, AuditEvent.Action.LOGOUT, detail)
    return revoked


@transaction.atomic
def integration_token_issue(*, user: Any, client: str | None) -> IssuedToken:
    """A new token for a service account (`manage.py integration_account`), audited."""
    issued = accounts.services.token_issue(user=user, client=client, lifetime=token_lifetime(user))
    detail = f"integration_account, {token_described(issued.token)}"
    _audit(None, user, AuditEvent.Action.LOGIN, detail)
    return issued


@transaction.atomic
def integration_tokens_revoke(*, user: Any) -> int:
    revoked = accounts.services.tokens_revoke(user=user)
    _audit(None, user, AuditEvent.Action.LOGOUT, f"integration_account, all {revoked} tokens")
    return revoked


@transaction.atomic
def token_revoke_by_admin(*, token: ApiToken, admin: Any) -> None:
    """The admin's "revoke" (Django admin, API tokens): audited as a deletion."""
    detail = f"revoked the API {token_described(token)} of {token.user.get_username()}"
    accounts.services.token_revoke(token=token)
    services.audit_record(actor=admin, action=AuditEvent.Action.ADMIN_DELETED, detail=detail)


def _audit(request: Any, user: Any, action: str, detail: str) -> None:
    source = client_address(request) if request is not None else None
    services.audit_record(actor=user, action=action, detail=detail, source=source)


# --- login audit --------------------------------------------------------------------------


def _way_in(request: Any) -> str:
    path = getattr(request, "path", "") or ""
    if not path.startswith(API_PREFIX):
        return "web"
    token = getattr(request, "auth", None)
    return f"api, {token_described(token)}" if isinstance(token, ApiToken) else "api"


def _audit_login(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    services.audit_record(
        actor=user,
        action=AuditEvent.Action.LOGIN,
        detail=_way_in(request),
        source=client_address(request) if request is not None else None,
    )


def _audit_login_failed(
    sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs: Any
) -> None:
    # Django has already masked the password in `credentials`; only the username is kept.
    username = str(credentials.get("username") or "")
    if getattr(request, "axes_locked_out", False):
        username = f"{username} (locked out)"
    services.audit_record(
        actor=None,
        action=AuditEvent.Action.LOGIN_FAILED,
        detail=username,
        source=client_address(request) if request is not None else None,
    )


def _logout(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    """Signing out of the site ends its session, and only that: each API token belongs to a
    client of its own, which an API logout (`api_logout`) or an admin revokes."""
    if user is None:  # an anonymous visitor pressed "log out"
        return
    services.audit_record(
        actor=user,
        action=AuditEvent.Action.LOGOUT,
        detail=_way_in(request),
        source=client_address(request) if request is not None else None,
    )


def connect_signals() -> None:
    """Called once from DiagnosisConfig.ready."""
    user_logged_in.connect(_audit_login, dispatch_uid="chestnet-audit-login")
    user_login_failed.connect(_audit_login_failed, dispatch_uid="chestnet-audit-login-failed")
    user_logged_out.connect(_logout, dispatch_uid="chestnet-logout")


# --- sessions -----------------------------------------------------------------------------


class SessionActivityMiddleware:
    """The idle timeout (SESSION_COOKIE_AGE) counts from the person's last action: a page
    they open or a form they send renews the session; the page's own background requests
    (the case page's poll, progress polls: `fetch`, or `?poll=1`) do not, so a screen left
    open on a case still signs out. Listed after AuthenticationMiddleware."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and _is_activity(request):
            request.session.modified = True  # SessionMiddleware saves it with a new expiry
        return response


def _is_activity(request: HttpRequest) -> bool:
    if request.method not in ("GET", "HEAD"):
        return True
    if request.GET.get("poll") == "1":
        return False
    # Browsers mark what a script fetches; requests without the header count as activity.
    return request.headers.get("Sec-Fetch-Mode", "navigate") == "navigate"


# --- services that are down -----------------------------------------------------------------


UNAVAILABLE_MESSAGE = (
    "ChestNet cannot reach its database or image store just now; nothing was saved. "
    "Try again in a minute; if it persists, contact support."
)
FULL_MESSAGE = (
    "ChestNet's image store is full; nothing was saved. Try again later; if it persists, "
    "contact support."
)


def unavailable_message(exception: BaseException) -> str | None:
    """The sentence for a fault of a service the request needed (`chestnet_site.faults.
    unavailable`: a database or object store that is down, a disk or store that is full),
    answered with 503, never a 500 or a traceback: nothing was half saved (the transaction
    was rolled back, the files written for it deleted). None for any other exception. The
    log names the fault, never the request's data (nor a file's path)."""
    from chestnet_site import faults

    if not faults.unavailable(exception):
        return None
    full = faults.storage_full(exception)
    logger.error(
        "Service unavailable: %s%s", type(exception).__name__, " (storage full)" if full else ""
    )
    return FULL_MESSAGE if full else UNAVAILABLE_MESSAGE


def unavailable_response(request: HttpRequest, exception: BaseException) -> HttpResponse | None:
    """`unavailable_message`'s 503: JSON for programs, a page for browsers."""
    message = unavailable_message(exception)
    if message is None:
        return None
    if is_api_request(request):
        response: HttpResponse = JsonResponse({"detail": message}, status=503)
    else:
        response = HttpResponse(f"<h1>Service unavailable</h1><p>{message}</p>", status=503)
    response["Retry-After"] = "60"
    return response


class UnavailableMiddleware:
    """A database or object store that is down, or a disk or store that is full, is a 503
    with a sentence, not a 500 (`unavailable_response`). The API's views answer through
    `diagnosis.api.exception_handler`, with the same answer."""

    MESSAGE = UNAVAILABLE_MESSAGE

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        return unavailable_response(request, exception)


INTERNAL_ERROR_MESSAGE = (
    "An internal error occurred; it has been logged. Try again, or contact support."
)


class ApiErrorsMiddleware:
    """A program (the API, DICOMweb) never gets an HTML error page: with DEBUG on (`make
    run`) Django answers an unknown URL or an error outside the API's own views with its
    debug page, HTML showing code, settings and paths. Such an answer becomes JSON with a
    `detail` sentence and the same status; the traceback stays in the log."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        html = response.get("Content-Type", "").startswith("text/html")
        if response.status_code < 400 or not html or not is_api_request(request):
            return response
        if response.status_code >= 500:
            detail = INTERNAL_ERROR_MESSAGE
        else:
            detail = "Not found." if response.status_code == 404 else response.reason_phrase
        answer = JsonResponse({"detail": detail}, status=response.status_code)
        for header in ("Retry-After", "Allow", "WWW-Authenticate"):
            if header in response:
                answer[header] = response[header]
        return answer
