from __future__ import annotations

from django.urls import path

from dicomnet import views

urlpatterns = [
    path("studies", views.stow_view, name="stow"),
    path("studies/<str:study_instance_uid>", views.stow_study_view, name="stow_study"),
]
