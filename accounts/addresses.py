"""The client's address, as every part of ChestNet finds it: the audit trail, the login
lockout (django-axes), the API's anonymous rate and a token's last use."""

from __future__ import annotations

import ipaddress
from typing import Any

from django.conf import settings


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
