"""The site's own pages: /healthz and the error pages every app's views fall back on."""

from __future__ import annotations

import sys
from typing import Any

from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from chestnet_site import health
from chestnet_site.middleware import (
    INTERNAL_ERROR_MESSAGE,
    is_api_request,
    unavailable_response,
)


@login_not_required
@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Database, broker, worker and DICOM listener state for load balancers and operators;
    no patient data."""
    state: dict[str, Any] = {"database": health.database_state()}
    state["broker"], state["workers"] = health.broker_state()
    state.update(health.probes_run())  # the processes apps add (the DICOM listener)
    state["storage"] = health.storage_state()
    state.update(health.checks_run())  # the apps' checks (the PACS outbox, orphans, alerts)
    status = 200 if state["database"] == "ok" else 503
    return JsonResponse({"status": "ok" if status == 200 else "degraded", **state}, status=status)


def error_403(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if is_api_request(request):
        return JsonResponse({"detail": str(exception or "Forbidden.")}, status=403)
    return render(request, "403.html", {"message": str(exception or "")}, status=403)


def error_404(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if is_api_request(request):
        return JsonResponse({"detail": "Not found."}, status=404)
    return render(request, "404.html", status=404)


def error_500(request: HttpRequest) -> HttpResponse:
    """Never a traceback: a sentence (JSON for API clients); the log has the details. A
    fault met before any view ran (a temporary folder that fills while an upload's body is
    read) is the 503 of a service that is down or full, as a view's would be."""
    unavailable = unavailable_response(request, sys.exc_info()[1] or Exception())
    if unavailable is not None:
        return unavailable
    if is_api_request(request):
        return JsonResponse({"detail": INTERNAL_ERROR_MESSAGE}, status=500)
    return HttpResponse(f"<h1>Server error</h1><p>{INTERNAL_ERROR_MESSAGE}</p>", status=500)
