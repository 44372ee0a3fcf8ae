from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.urls import path
from drf_spectacular.views import SpectacularAPIView

from diagnosis import access_api, api

urlpatterns = [
    path("auth/token/", api.public(access_api.TokenLoginApi.as_view()), name="api_token"),
    path("auth/logout/", api.public(access_api.TokenLogoutApi.as_view()), name="api_logout"),
    path(
        "auth/logout-all/",
        api.public(access_api.TokenLogoutAllApi.as_view()),
        name="api_logout_all",
    ),
    path("cases/", api.public(api.CaseListCreateApi.as_view()), name="api_cases"),
    path("cases/<int:case_id>/", api.public(api.CaseDetailApi.as_view()), name="api_case"),
    path(
        "cases/<int:case_id>/review/",
        api.public(api.CaseReviewApi.as_view()),
        name="api_case_review",
    ),
    path(
        "cases/<int:case_id>/claim/", api.public(api.CaseClaimApi.as_view()), name="api_case_claim"
    ),
    path(
        "cases/<int:case_id>/release/",
        api.public(api.CaseReleaseApi.as_view()),
        name="api_case_release",
    ),
    # Before the file route below, whose <str:kind> would take "header" too.
    path(
        "images/<int:image_id>/header/",
        api.public(api.ImageHeaderApi.as_view()),
        name="api_image_header",
    ),
    path(
        "images/<int:image_id>/<str:kind>/",
        api.public(api.ImageFileApi.as_view()),
        name="api_image_file",
    ),
    path("worklist/", api.public(api.WorklistApi.as_view()), name="api_worklist"),
    path(
        "worklist/claim-next/",
        api.public(api.WorklistClaimNextApi.as_view()),
        name="api_worklist_claim_next",
    ),
    # Both need a signed-in user (SPECTACULAR_SETTINGS["SERVE_PERMISSIONS"]): the schema
    # answers 401 without a session or token; the page, for browsers, sends an anonymous
    # visitor to the login form (DRF views opt out of LoginRequiredMiddleware).
    path("schema/", api.public(SpectacularAPIView.as_view()), name="api_schema"),
    path("docs/", login_required(access_api.ApiDocsView.as_view()), name="api_docs"),
]
