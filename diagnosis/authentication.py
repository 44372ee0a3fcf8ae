"""The API's token authentication: tokens expire CHESTNET_API_TOKEN_TTL_H hours after they
were issued. REST_FRAMEWORK names this module, and DRF imports it while importing its own
views, so it imports nothing that imports `rest_framework.views` (the views that issue and
revoke tokens are in `diagnosis.access_api`)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone
from rest_framework.authentication import TokenAuthentication
from rest_framework.exceptions import AuthenticationFailed

from diagnosis.roles import is_integration


def token_expired(token: Any) -> bool:
    """A person's token lasts CHESTNET_API_TOKEN_TTL_H hours (they log in again); an
    integration's CHESTNET_INTEGRATION_TOKEN_TTL_D days (it has no password: an admin
    renews it with `manage.py integration_account NAME`)."""
    if is_integration(token.user):
        lifetime = timedelta(days=settings.CHESTNET_INTEGRATION_TOKEN_TTL_D)
    else:
        lifetime = timedelta(hours=settings.CHESTNET_API_TOKEN_TTL_H)
    return token.created < timezone.now() - lifetime


class ExpiringTokenAuthentication(TokenAuthentication):
    """`Authorization: Token <key>`, refused once the token is older than
    CHESTNET_API_TOKEN_TTL_H hours."""

    def authenticate_credentials(self, key: str) -> tuple[Any, Any]:
        user, token = super().authenticate_credentials(key)
        if token_expired(token):
            raise AuthenticationFailed(
                "Token expired. Get a new one with POST /api/v1/auth/token/."
            )
        return user, token
