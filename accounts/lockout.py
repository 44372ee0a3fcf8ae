"""The answer to a login refused by the lockout after repeated failures: django-axes calls
`lockout_response` (AXES_LOCKOUT_CALLABLE), and so does the API's token endpoint."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

from axes.helpers import get_client_username, get_cool_off
from axes.models import AccessAttempt
from django.db.models import Max
from django.http import HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone

from accounts.addresses import client_address
from chestnet_site.middleware import API_PREFIX


def lockout_response(
    request: Any, original_response: HttpResponse | None = None, credentials: Any = None
) -> HttpResponse:
    """The answer to a login refused by the lockout (AXES_LOCKOUT_CALLABLE): 429 with
    Retry-After; a JSON `detail` under the API, the login page's message elsewhere."""
    seconds = _lockout_seconds_left(request, credentials)
    minutes = math.ceil(seconds / 60)
    detail = (
        "Too many failed logins for this username from this address. "
        f"Try again in {minutes} minute{'s' if minutes != 1 else ''}."
    )
    response: HttpResponse
    if request.path.startswith(API_PREFIX):
        response = JsonResponse({"detail": detail}, status=429)
    else:
        context = {"detail": detail, "minutes": minutes}
        response = render(request, "registration/locked_out.html", context, status=429)
    response["Retry-After"] = str(seconds)
    return response


def _lockout_seconds_left(request: Any, credentials: Any) -> int:
    cool_off = get_cool_off(request) or timedelta(0)
    last = AccessAttempt.objects.filter(
        username=get_client_username(request, credentials),
        ip_address=client_address(request),
    ).aggregate(last=Max("attempt_time"))["last"]
    left = last + cool_off - timezone.now() if last is not None else cool_off
    return max(1, math.ceil(left.total_seconds()))
