"""API tokens for tests and benchmarks, issued as a login issues them (the lifetime of the
user's kind of account), without the HTTP round trip and the audit event."""

from __future__ import annotations

from typing import Any


def token_for(user: Any, *, client: str = "tests") -> str:
    """A new token's secret, for `Authorization: Token <secret>`."""
    from accounts import services
    from diagnosis import access

    lifetime = access.token_lifetime(user)
    return services.token_issue(user=user, client=client, lifetime=lifetime).secret
