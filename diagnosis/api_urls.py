from __future__ import annotations

from django.urls import path
from drf_spectacular.views import SpectacularAPIView

from diagnosis import api

urlpatterns = [
    path("auth/token/", api.public(api.TokenView.as_view()), name="api_token"),
    path("cases/", api.public(api.CaseListCreateApi.as_view()), name="api_cases"),
    path("cases/<int:case_id>/", api.public(api.CaseDetailApi.as_view()), name="api_case"),
    path(
        "cases/<int:case_id>/review/",
        api.public(api.CaseReviewApi.as_view()),
        name="api_case_review",
    ),
    path("worklist/", api.public(api.WorklistApi.as_view()), name="api_worklist"),
    path("schema/", api.public(SpectacularAPIView.as_view()), name="api_schema"),
]
