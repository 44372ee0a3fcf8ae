"""`/metrics` (mounted by chestnet_site.urls): who may read the Prometheus figures, and the
view that serves them.

A scraper has no session: it shows the bearer token CHESTNET_METRICS_TOKEN, or connects
from an address in CHESTNET_METRICS_ALLOWED_IPS. The address is the connection's own
(REMOTE_ADDR). A request relayed by a reverse proxy reaches us from the proxy's address,
loopback in the documented set-up, whoever sent it; X-Forwarded-For names the sender but can
be written by anyone. So a relayed request (one carrying a forwarding header) is never let
in by its address: it needs the token. A scrape reads aggregates only, so it is not audited.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods
from prometheus_client import CONTENT_TYPE_LATEST

from monitoring import prometheus

logger = logging.getLogger(__name__)
PLAIN = "text/plain; charset=utf-8"
# Headers a reverse proxy adds: their presence means REMOTE_ADDR is the proxy's.
RELAYED = ("HTTP_X_FORWARDED_FOR", "HTTP_FORWARDED", "HTTP_X_REAL_IP")


@login_not_required
@csrf_exempt
@never_cache
@require_http_methods(["GET", "HEAD"])
def metrics(request: HttpRequest) -> HttpResponse:
    if not scrape_allowed(request):
        return HttpResponse(
            "Forbidden: /metrics needs the metrics token or an allowed address.\n",
            status=403,
            content_type=PLAIN,
        )
    try:
        body = prometheus.exposition()
    except DatabaseError as exc:
        logger.error("Metrics unavailable: %s", type(exc).__name__)
        response = HttpResponse(
            "Metrics unavailable: the database cannot be reached.\n", status=503, content_type=PLAIN
        )
        response["Retry-After"] = "60"
        return response
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)


def scrape_allowed(request: HttpRequest) -> bool:
    return _token_matches(request) or _address_allowed(request)


def _token_matches(request: HttpRequest) -> bool:
    expected = settings.CHESTNET_METRICS_TOKEN
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if not expected or scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), expected.encode())


def _address_allowed(request: HttpRequest) -> bool:
    if any(header in request.META for header in RELAYED):
        return False
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR") or "")
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # "::ffff:10.0.0.5" from a dual-stack listener
    return any(
        address in ipaddress.ip_network(allowed, strict=False)
        for allowed in settings.CHESTNET_METRICS_ALLOWED_IPS
    )
