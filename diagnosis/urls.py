from __future__ import annotations

from django.urls import path

from diagnosis import audit_views, review_views, views

urlpatterns = [
    path("", views.home, name="home"),
    path("cases/", views.case_list, name="case_list"),
    path("cases/new/", views.case_new, name="case_new"),
    path("cases/<int:case_id>/", views.case_detail, name="case_detail"),
    path("cases/<int:case_id>/claim/", views.case_claim, name="case_claim"),
    path("cases/<int:case_id>/release/", views.case_release, name="case_release"),
    path("cases/<int:case_id>/review/", review_views.case_review, name="case_review"),
    path(
        "cases/<int:case_id>/review/live/",
        review_views.case_review_live,
        name="case_review_live",
    ),
    path("cases/<int:case_id>/reassign/", views.report_reassign, name="report_reassign"),
    path("images/<int:image_id>/retry/", views.image_retry, name="image_retry"),
    path("images/<int:image_id>/<str:kind>/", views.image_file, name="image_file"),
    path("worklist/", views.worklist, name="worklist"),
    path("worklist/rows/", views.worklist_rows, name="worklist_rows"),
    path("worklist/claim-next/", views.worklist_claim_next, name="worklist_claim_next"),
    path("audit/", audit_views.audit_list, name="audit_list"),
    path("audit/export.csv", audit_views.audit_export, name="audit_export"),
]
