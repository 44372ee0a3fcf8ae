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


def token_expired(token: Any) -> bool:
    return token.created < timezone.now() - timedelta(hours=settings.CHESTNET_API_TOKEN_TTL_H)


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
