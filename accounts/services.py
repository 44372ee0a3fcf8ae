"""Issuing, revoking and recording the use of API tokens. Whoever calls decides a token's
lifetime and tells the audit trail (`accounts.tokens`): this module knows neither roles
nor the trail."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from accounts.models import ApiToken
from chestnet_site.text import visible

# A token's last use is written at most this often (sooner when its address changes), so
# that a busy client does not cost a write per request.
LAST_USE_EVERY = timedelta(minutes=1)
DEFAULT_CLIENT = "api"


@dataclass(frozen=True)
class IssuedToken:
    token: ApiToken
    secret: str  # for `Authorization: Token <secret>`: shown once, never stored


def client_name(text: str | None) -> str:
    """What a client calls itself, as people will read it: visible characters only, cut to
    the column's length; "api" when nothing is left."""
    limit = ApiToken._meta.get_field("client").max_length or 100
    return visible(text or "")[:limit].strip() or DEFAULT_CLIENT


class TokenLimitReached(Exception):
    """The account already holds CHESTNET_API_TOKENS_PER_USER live tokens."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"This account already holds {limit} live API tokens, the most one account may."
            " Revoke one (POST /api/v1/auth/logout/ with it, or all of them with"
            " /api/v1/auth/logout-all/), ask an administrator to, or wait until one expires."
        )


@transaction.atomic
def token_issue(*, user: Any, client: str | None, lifetime: timedelta) -> IssuedToken:
    """A new token for `user`, valid for `lifetime`; the user's other tokens keep working
    (each client has its own), its expired ones are cleared away. Refused with
    TokenLimitReached when the user holds CHESTNET_API_TOKENS_PER_USER live ones."""
    # The user's row is locked so that two logins at once count each other's token.
    list(get_user_model().objects.select_for_update().filter(pk=user.pk).values_list("pk"))
    ApiToken.objects.filter(user=user, expiry__lte=timezone.now()).delete()
    limit = settings.CHESTNET_API_TOKENS_PER_USER
    if ApiToken.objects.filter(user=user).count() >= limit:
        raise TokenLimitReached(limit)
    token, secret = ApiToken.objects.create(user=user, expiry=lifetime, client=client_name(client))
    return IssuedToken(token=token, secret=secret)


def token_revoke(*, token: ApiToken) -> None:
    """The token stops working at once (its row is deleted: nothing of it is kept to use)."""
    ApiToken.objects.filter(pk=token.pk).delete()


def tokens_revoke(*, user: Any) -> int:
    """Every token of `user`; returns how many there were."""
    deleted, _ = ApiToken.objects.filter(user=user).delete()
    return deleted


def token_used(*, token: ApiToken, address: str | None) -> None:
    """Records that `token` was just used from `address`."""
    now = timezone.now()
    recent = token.last_used_at is not None and now - token.last_used_at < LAST_USE_EVERY
    if recent and token.last_used_from == address:
        return
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=now, last_used_from=address)
    token.last_used_at, token.last_used_from = now, address
