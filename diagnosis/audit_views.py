"""The audit trail's pages for administrators: the filtered list and its CSV export."""

from __future__ import annotations

import csv
import itertools

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from accounts.permissions import audit_reader_required
from diagnosis import selectors
from diagnosis.forms import AuditFilterForm
from diagnosis.models import AuditEvent

# "user" and "role": the actor as they were when the event was written.
AUDIT_COLUMNS = ("at", "user", "action", "case", "cases listed", "detail", "source", "role")


@never_cache
@require_GET
@audit_reader_required
def audit_list(request: HttpRequest) -> HttpResponse:
    """The audit trail for administrators, filterable by user, case and dates."""
    form = AuditFilterForm(request.GET or None)
    events = selectors.audit_events(**form.filters())
    page = Paginator(events, 100).get_page(request.GET.get("page"))
    return render(request, "diagnosis/audit_list.html", {"form": form, "page": page})


@never_cache
@require_GET
@audit_reader_required
def audit_export(request: HttpRequest) -> StreamingHttpResponse:
    """The same filtered trail as CSV (streamed: the trail only grows)."""
    events = selectors.audit_events(**AuditFilterForm(request.GET or None).filters())
    writer = csv.writer(_Echo())
    rows = (_audit_row(event) for event in events.iterator(chunk_size=2000))
    response = StreamingHttpResponse(
        (writer.writerow(row) for row in itertools.chain([AUDIT_COLUMNS], rows)),
        content_type="text/csv",
    )
    response["Content-Disposition"] = 'attachment; filename="chestnet-audit.csv"'
    return response


class _Echo:
    def write(self, value: str) -> str:
        return value


def _audit_row(event: AuditEvent) -> tuple:
    listed = " ".join(str(case_id) for case_id in event.subject_ids)
    return (
        event.at.isoformat(),
        event.actor_username,
        event.action,
        event.case_ref or "",
        listed,
        event.detail,
        event.source or "",
        event.actor_role,
    )
