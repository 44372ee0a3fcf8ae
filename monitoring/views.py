"""The monitoring page (admins and radiologists) and its alert acknowledgement (admins)."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from accounts import roles
from accounts.permissions import alert_acknowledger_required, monitoring_required
from monitoring import alerts, selectors, svg
from registry import selectors as registry


@require_GET
@monitoring_required
def monitoring_page(request: HttpRequest) -> HttpResponse:
    open_alerts = alerts.alerts_check()
    context = {
        "alerts": open_alerts,
        "versions": registry.version_list(),
        "params": request.GET,
        "error": "",
        "may_acknowledge": roles.is_admin(request.user),
    }
    status = 200
    try:
        query = selectors.query_from(request.GET.dict())
    except selectors.BadQuery as exc:
        context["error"], status = str(exc), 400
    else:
        data = selectors.report(query)
        context.update(
            query=query,
            report=data,
            choices=selectors.filter_choices(query.version),
            reliability_svg=svg.reliability_svg(data["reliability"]),
            scores_svg=svg.scores_svg(data["score_drift"]),
        )
    response = render(request, "monitoring/page.html", context, status=status)
    response["Cache-Control"] = "private, no-store"
    return response


@require_POST
@alert_acknowledger_required
def alert_acknowledge(request: HttpRequest, alert_id: int) -> HttpResponse:
    try:
        alerts.alert_acknowledge(
            alert_id=alert_id, user=request.user, note=request.POST.get("note", "")
        )
    except alerts.AcknowledgeRefused as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, "Alert acknowledged.")
    return redirect("monitoring:page")
