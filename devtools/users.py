"""Users with a role, and API tokens issued as a login issues them (the lifetime of the
user's kind of account), without the HTTP round trip and the audit event: for tests and
benchmarks."""

from __future__ import annotations

from typing import Any


def user_with_role(username: str, role: str) -> Any:
    """The user `username` (made if missing), in the group `role` (accounts.roles)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    user = get_user_model().objects.get_or_create(username=username)[0]
    user.groups.add(Group.objects.get_or_create(name=role)[0])
    return user


def token_for(user: Any, *, client: str = "tests") -> str:
    """A new token's secret, for `Authorization: Token <secret>`."""
    from accounts import services, tokens

    lifetime = tokens.token_lifetime(user)
    return services.token_issue(user=user, client=client, lifetime=lifetime).secret
