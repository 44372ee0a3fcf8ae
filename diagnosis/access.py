"""Who may sign in, from where and for how long: the lockout after repeated failures
(django-axes calls `client_address` and `lockout_response`), the audit of logins and
logouts, the lifetime of API tokens and the idle timeout of web sessions."""

from __future__ import annotations

import ipaddress
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
from rest_framework.authtoken.models import Token

from diagnosis import services
from diagnosis.authentication import token_expired
from diagnosis.models import AuditEvent

# chestnet_site.urls mounts the API here; its refusals are JSON, the site's are pages.
logger = logging.getLogger(__name__)
API_PREFIX = "/api/"


def is_api_request(request: HttpRequest) -> bool:
    """A request from a program (the REST API or DICOMweb), answered in JSON, not HTML."""
    return request.path.startswith((API_PREFIX, "/dicomweb/"))


def client_address(request: Any) -> str | None:
    """The client's IP address. REMOTE_ADDR, unless CHESTNET_PROXY_COUNT reverse proxies
    stand in front: then the address the outermost one saw, counted from the right of
    X-Forwarded-For (entries further left are whatever the client sent, never trusted)."""
    address = request.META.get("REMOTE_ADDR")
    hops = settings.CHESTNET_PROXY_COUNT
    if hops:
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
        forwarded = [entry.strip() for entry in forwarded if entry.strip()]
        if len(forwarded) >= hops:
            address = forwarded[-hops]
    try:
        return str(ipaddress.ip_address(address or ""))
    except ValueError:
        return None


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


@transaction.atomic
def token_issue(*, user: Any) -> Token:
    """The user's API token (one per user, shared by their clients); an expired one is
    replaced by a new key."""
    token, created = Token.objects.select_for_update().get_or_create(user=user)
    if not created and token_expired(token):
        token.delete()
        token = Token.objects.create(user=user)
    return token


def tokens_revoke(*, user: Any) -> int:
    deleted, _ = Token.objects.filter(user=user).delete()
    return deleted


# --- login audit --------------------------------------------------------------------------


def _way_in(request: Any) -> str:
    path = getattr(request, "path", "") or ""
    return "api" if path.startswith(API_PREFIX) else "web"


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
    """Signing out of the web or the API ends the user's API token too."""
    if user is None:  # an anonymous visitor pressed "log out"
        return
    tokens_revoke(user=user)
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


class UnavailableMiddleware:
    """A database or object store that is down is a 503 with a sentence, not a 500: the
    request's transaction was rolled back, so nothing was half saved; the log names the
    fault, never the request's data."""

    MESSAGE = (
        "ChestNet cannot reach its database or image store just now; nothing was saved. "
        "Try again in a minute; if it persists, contact support."
    )

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        from django.db import OperationalError

        from chestnet_site.faults import OBJECT_STORE_FAULTS

        if not isinstance(exception, (OperationalError, *OBJECT_STORE_FAULTS)):
            return None
        logger.error("Service unavailable: %s", type(exception).__name__)
        if is_api_request(request):
            response: HttpResponse = JsonResponse({"detail": self.MESSAGE}, status=503)
        else:
            response = HttpResponse(
                f"<h1>Service unavailable</h1><p>{self.MESSAGE}</p>", status=503
            )
        response["Retry-After"] = "60"
        return response
