"""Open monitoring alerts on every page an administrator sees (one indexed query)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from accounts import roles
from monitoring.models import Alert


def alerts(request: HttpRequest) -> dict[str, Any]:
    user = getattr(request, "user", None)
    if user is None or not roles.is_admin(user):
        return {}
    try:
        count = Alert.objects.filter(cleared_at__isnull=True, acknowledged_at__isnull=True).count()
    except Exception:  # a page must not fail for its banner (a database being migrated)
        return {}
    return {"monitoring_alerts": count}
