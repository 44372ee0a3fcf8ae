"""The API's token authentication (`Authorization: Token <secret>`), over django-rest-knox:
the secret is looked up by its first characters and checked against the stored digest in
constant time; an expired token is refused with a sentence saying how to get a new one;
each use is recorded (when, from where). REST_FRAMEWORK names this module, and DRF imports
it while importing its own views, so it imports nothing that imports `rest_framework.views`."""

from __future__ import annotations

from hmac import compare_digest
from typing import Any

from knox.auth import TokenAuthentication
from knox.crypto import hash_token
from knox.settings import CONSTANTS
from rest_framework.exceptions import AuthenticationFailed

from accounts import services
from accounts.addresses import client_address
from accounts.models import ApiToken

EXPIRED = "Token expired. Get a new one with POST /api/v1/auth/token/."
INVALID = "Invalid token."


class ApiTokenAuthentication(TokenAuthentication):
    """knox's scheme and keyword ("Token"), with ChestNet's expiry answer (the token is
    kept, not deleted on sight, so its client keeps being told why) and the record of use."""

    def authenticate(self, request: Any) -> tuple[Any, ApiToken] | None:
        found = super().authenticate(request)
        if found is not None:
            services.token_used(token=found[1], address=client_address(request))
        return found

    def authenticate_credentials(self, token: bytes) -> tuple[Any, ApiToken]:
        try:
            secret = token.decode()
        except UnicodeDecodeError:
            raise AuthenticationFailed(INVALID) from None
        digest = hash_token(secret)
        candidates = ApiToken.objects.filter(token_key=secret[: CONSTANTS.TOKEN_KEY_LENGTH])
        for candidate in candidates.select_related("user"):
            if compare_digest(digest, candidate.digest):
                if candidate.is_expired:
                    raise AuthenticationFailed(EXPIRED)
                return self.validate_user(candidate)
        raise AuthenticationFailed(INVALID)
