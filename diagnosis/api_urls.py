"""The REST API's routes, under /api/v1/ (chestnet_site.urls)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.urls import URLPattern, path
from drf_spectacular.views import SpectacularAPIView
from rest_framework.views import APIView

from accounts.api import ApiDocsView, TokenLoginApi, TokenLogoutAllApi, TokenLogoutApi
from diagnosis import api


def _api(route: str, view: type[APIView], name: str) -> URLPattern:
    """A route to an API view, which DRF authenticates itself (`api.public`)."""
    return path(route, api.public(view.as_view()), name=name)


urlpatterns = [
    _api("auth/token/", TokenLoginApi, "api_token"),
    _api("auth/logout/", TokenLogoutApi, "api_logout"),
    _api("auth/logout-all/", TokenLogoutAllApi, "api_logout_all"),
    _api("cases/", api.CaseListCreateApi, "api_cases"),
    _api("cases/<int:case_id>/", api.CaseDetailApi, "api_case"),
    _api("cases/<int:case_id>/review/", api.CaseReviewApi, "api_case_review"),
    _api("cases/<int:case_id>/claim/", api.CaseClaimApi, "api_case_claim"),
    _api("cases/<int:case_id>/release/", api.CaseReleaseApi, "api_case_release"),
    # Before the file route below, whose <str:kind> would take "header" too.
    _api("images/<int:image_id>/header/", api.ImageHeaderApi, "api_image_header"),
    _api("images/<int:image_id>/<str:kind>/", api.ImageFileApi, "api_image_file"),
    _api("worklist/", api.WorklistApi, "api_worklist"),
    _api("worklist/claim-next/", api.WorklistClaimNextApi, "api_worklist_claim_next"),
    # Both need a signed-in user (SPECTACULAR_SETTINGS["SERVE_PERMISSIONS"]): the schema
    # answers 401 without a session or token; the page, for browsers, sends an anonymous
    # visitor to the login form (DRF views opt out of LoginRequiredMiddleware).
    _api("schema/", SpectacularAPIView, "api_schema"),
    path("docs/", login_required(ApiDocsView.as_view()), name="api_docs"),
]
