"""`GET /api/v1/monitoring/`: the monitoring report as JSON (admins and radiologists)."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import SeesMonitoring
from monitoring import alerts, selectors

_PARAMETERS = [
    OpenApiParameter("version", str, description="model version (default: the active one)"),
    OpenApiParameter("period", str, enum=["day", "week"], description="default week"),
    OpenApiParameter(
        "start", OpenApiTypes.DATE, description="first day (default: 14 days or 8 weeks back)"
    ),
    OpenApiParameter("end", OpenApiTypes.DATE, description="last day, inclusive (default today)"),
    OpenApiParameter("source", str, description="upload, dimse, stow, or a calling AE title"),
    OpenApiParameter("modality", str),
    OpenApiParameter("manufacturer", str),
]


class MonitoringApi(APIView):
    """Per period and for the whole span: images analysed and refused (by reason), AI
    positive rate, and against signed reports the confusion counts (`confusion`: tp, fp, tn,
    fn of analysed images against the signed final finding; "other" and "indeterminate" are
    left out), sensitivity, specificity, PPV and agreement with 95% Wilson intervals
    (`*_ci95`), split by source, modality and manufacturer; reliability bins, score drift
    (PSI, KS) against the version's reference, the input mix and its drift; open alerts."""

    permission_classes = [SeesMonitoring]

    @extend_schema(parameters=_PARAMETERS, responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request) -> Response:
        try:
            query = selectors.query_from(request.query_params.dict())
        except selectors.BadQuery as exc:
            raise ValidationError({"detail": str(exc)}) from exc
        data = selectors.report(query)
        data["alerts"] = [
            {
                "kind": alert.kind,
                "model_version": alert.model_version,
                "value": alert.value,
                "limit": alert.limit,
                "window": alert.window,
                "message": alert.message,
                "raised_at": alert.raised_at.isoformat(),
                "acknowledged": alert.acknowledged_at is not None,
            }
            for alert in alerts.open_alerts()
        ]
        return Response(data, headers={"Cache-Control": "private, no-store"})
