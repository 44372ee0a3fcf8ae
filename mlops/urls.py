from __future__ import annotations

from django.urls import path

from mlops import views

app_name = "mlops"
urlpatterns = [
    path("", views.home, name="home"),
    path("datasets/new/", views.dataset_create, name="dataset_create"),
    path("datasets/<int:dataset_id>/", views.dataset_detail, name="dataset_detail"),
    path("datasets/<int:dataset_id>/import/", views.dataset_import, name="dataset_import"),
    path("datasets/<int:dataset_id>/split/", views.dataset_split, name="dataset_split"),
    path("datasets/<int:dataset_id>/export/", views.dataset_export, name="dataset_export"),
    path("datasets/<int:dataset_id>/feedback/", views.dataset_feedback, name="dataset_feedback"),
    path("datasets/<int:dataset_id>/train/", views.run_start, name="run_start"),
    path("imports/<int:job_id>/", views.import_detail, name="import_detail"),
    path("imports/<int:job_id>/status/", views.import_status, name="import_status"),
    path("images/<int:image_id>/", views.image_detail, name="image_detail"),
    path("images/<int:image_id>/<str:kind>.png", views.image_file, name="image_file"),
    path("runs/", views.run_list, name="run_list"),
    path("runs/<int:run_id>/", views.run_detail, name="run_detail"),
    path("runs/<int:run_id>/status/", views.run_status, name="run_status"),
    path("runs/<int:run_id>/cancel/", views.run_cancel, name="run_cancel"),
    path("versions/", views.version_list, name="version_list"),
    path("versions/compare/", views.version_compare, name="version_compare"),
    path("versions/<int:version_id>/", views.version_detail, name="version_detail"),
    path("versions/<int:version_id>/activate/", views.version_activate, name="version_activate"),
    path("versions/<int:version_id>/calibrate/", views.version_calibrate, name="version_calibrate"),
    path(
        "calibrations/<int:calibration_id>/",
        views.calibration_detail,
        name="calibration_detail",
    ),
    path(
        "calibrations/<int:calibration_id>/status/",
        views.calibration_status,
        name="calibration_status",
    ),
    path(
        "activations/<int:activation_id>/rollback/", views.version_rollback, name="version_rollback"
    ),
    path(
        "evaluations/<int:evaluation_id>/<str:plot>.png",
        views.evaluation_plot,
        name="evaluation_plot",
    ),
    path("cases/<int:case_id>/rerun/", views.case_rerun, name="case_rerun"),
    path("cases/<int:case_id>/predictions/", views.case_predictions, name="case_predictions"),
]
