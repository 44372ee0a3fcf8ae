from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.urls import include, path

from chestnet_site import views
from monitoring import metrics_urls
from monitoring.api import MonitoringApi

urlpatterns = [
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("healthz", views.healthz, name="healthz"),
    path("metrics", metrics_urls.metrics, name="metrics"),
    # DRF answers 401/403 itself: the site-wide login redirect must not intercept the API.
    path(
        "api/v1/monitoring/",
        login_not_required(MonitoringApi.as_view()),
        name="api_monitoring",
    ),
    path("api/v1/", include("diagnosis.api_urls")),
    path("monitoring/", include("monitoring.urls")),
    path("mlops/", include("mlops.urls")),
    path("dicomweb/", include("dicomnet.urls")),
    path("", include("diagnosis.urls")),
]
handler403 = "chestnet_site.views.error_403"
handler404 = "chestnet_site.views.error_404"
handler500 = "chestnet_site.views.error_500"
