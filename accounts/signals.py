"""What accounts tell the audit trail, which they do not keep: `account_event`, sent for
each login, failed login and logout (web or API: Django's signals, received here), each API
token issued or revoked and each change to a person's account (`accounts.people`). The
clinical app, which owns the trail, connects the receiver that records it
(`diagnosis.account_events`), inside the sender's transaction."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import Signal

from accounts.addresses import client_address
from accounts.models import ApiToken
from chestnet_site.middleware import API_PREFIX

# Sent with `actor` (a user, or None: "system"), `action` (an AccountAction), `detail` and
# `source` (the client's address, or None).
account_event = Signal()


class AccountAction(StrEnum):
    """The actions, as the audit trail names them (values of
    diagnosis.models.AuditEvent.Action)."""

    LOGIN = "login"
    LOGIN_FAILED = "login_failed"
    LOGOUT = "logout"
    ADMIN_DELETED = "admin_deleted"
    USER_DEACTIVATED = "user_deactivated"
    USER_REACTIVATED = "user_reactivated"
    ROLES_CHANGED = "roles_changed"
    USER_RENAMED = "user_renamed"
    USER_DELETED = "user_deleted"
    USER_DELETE_REFUSED = "user_delete_refused"


def account_event_send(*, actor: Any, action: str, detail: str, request: Any = None) -> None:
    """Tells the trail that `actor` did `action`; `request` names the client's address."""
    source = client_address(request) if request is not None else None
    account_event.send(sender=__name__, actor=actor, action=action, detail=detail, source=source)


def token_described(token: ApiToken) -> str:
    return f"token {token.prefix} ({token.client})"


# --- Django's logins and logouts ----------------------------------------------------------


def _way_in(request: Any) -> str:
    path = getattr(request, "path", "") or ""
    if not path.startswith(API_PREFIX):
        return "web"
    token = getattr(request, "auth", None)
    return f"api, {token_described(token)}" if isinstance(token, ApiToken) else "api"


def _logged_in(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    account_event_send(
        actor=user, action=AccountAction.LOGIN, detail=_way_in(request), request=request
    )


def _login_failed(
    sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs: Any
) -> None:
    # Django has already masked the password in `credentials`; only the username is kept.
    username = str(credentials.get("username") or "")
    if getattr(request, "axes_locked_out", False):
        username = f"{username} (locked out)"
    account_event_send(
        actor=None, action=AccountAction.LOGIN_FAILED, detail=username, request=request
    )


def _logged_out(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    """Signing out of the site ends its session, and only that: each API token belongs to a
    client of its own, which an API logout (`accounts.tokens.api_logout`) or an admin
    revokes."""
    if user is None:  # an anonymous visitor pressed "log out"
        return
    account_event_send(
        actor=user, action=AccountAction.LOGOUT, detail=_way_in(request), request=request
    )


def connect_signals() -> None:
    """Called once from AccountsConfig.ready."""
    user_logged_in.connect(_logged_in, dispatch_uid="chestnet-audit-login")
    user_login_failed.connect(_login_failed, dispatch_uid="chestnet-audit-login-failed")
    user_logged_out.connect(_logged_out, dispatch_uid="chestnet-logout")
