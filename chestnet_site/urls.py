from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from diagnosis import views

urlpatterns = [
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("healthz", views.healthz, name="healthz"),
    path("api/v1/", include("diagnosis.api_urls")),
    path("mlops/", include("mlops.urls")),
    path("dicomweb/", include("dicomnet.urls")),
    path("", include("diagnosis.urls")),
]
handler403 = "diagnosis.views.error_403"
handler404 = "diagnosis.views.error_404"
handler500 = "diagnosis.views.error_500"
