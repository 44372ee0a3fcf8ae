"""API tokens as the site issues and revokes them, for the token endpoints
(`accounts.api`), the `integration_account` command and the admin's "revoke": a lifetime by
kind of account, and every issue and revocation told to the audit trail (as logins and
logouts; an admin's revocation as a deletion), naming the token by its prefix and client.
Each client of a user (a script, an integration, a viewer) holds a token of its own; the
secret is shown once, when issued."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.signals import user_logged_in
from django.db import transaction

from accounts import roles, services
from accounts.models import ApiToken
from accounts.services import IssuedToken
from accounts.signals import AccountAction, account_event_send, token_described


def token_lifetime(user: Any) -> timedelta:
    """A person's token lasts CHESTNET_API_TOKEN_TTL_H hours (they log in again); an
    integration's CHESTNET_INTEGRATION_TOKEN_TTL_D days (it has no password: an admin
    issues it with `manage.py integration_account NAME`)."""
    if roles.is_integration(user):
        return timedelta(days=settings.CHESTNET_INTEGRATION_TOKEN_TTL_D)
    return timedelta(hours=settings.CHESTNET_API_TOKEN_TTL_H)


@transaction.atomic
def api_login(*, request: Any, user: Any, client: str | None) -> IssuedToken:
    """POST /api/v1/auth/token/ with the right password: a new token for this client (the
    user's others keep working). As a form login does: audited (naming the token), the
    lockout's failure count reset."""
    issued = services.token_issue(user=user, client=client, lifetime=token_lifetime(user))
    request.auth = issued.token  # the request's credentials from now on: the audit names it
    user_logged_in.send(sender=type(user), request=request, user=user)
    return issued


@transaction.atomic
def api_logout(*, request: Any, everything: bool = False) -> int:
    """Revokes the token the request was made with (`everything`: all the user's tokens,
    every client's); returns how many were revoked."""
    token, user = request.auth, request.user
    if everything:
        revoked = services.tokens_revoke(user=user)
        detail = f"api, all {revoked} tokens"
    else:
        services.token_revoke(token=token)
        revoked, detail = 1, f"api, {token_described(token)}"
    account_event_send(actor=user, action=AccountAction.LOGOUT, detail=detail, request=request)
    return revoked


@transaction.atomic
def integration_token_issue(*, user: Any, client: str | None) -> IssuedToken:
    """A new token for a service account (`manage.py integration_account`), audited."""
    issued = services.token_issue(user=user, client=client, lifetime=token_lifetime(user))
    detail = f"integration_account, {token_described(issued.token)}"
    account_event_send(actor=user, action=AccountAction.LOGIN, detail=detail)
    return issued


@transaction.atomic
def integration_tokens_revoke(*, user: Any) -> int:
    revoked = services.tokens_revoke(user=user)
    detail = f"integration_account, all {revoked} tokens"
    account_event_send(actor=user, action=AccountAction.LOGOUT, detail=detail)
    return revoked


@transaction.atomic
def token_revoke_by_admin(*, token: ApiToken, admin: Any) -> None:
    """The admin's "revoke" (Django admin, API tokens): audited as a deletion."""
    detail = f"revoked the API {token_described(token)} of {token.user.get_username()}"
    services.token_revoke(token=token)
    account_event_send(actor=admin, action=AccountAction.ADMIN_DELETED, detail=detail)
