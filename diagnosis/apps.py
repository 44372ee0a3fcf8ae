from __future__ import annotations

from django.apps import AppConfig


class DiagnosisConfig(AppConfig):
    name = "diagnosis"
    verbose_name = "Diagnosis"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Logins, failed logins and logouts go to the audit trail; logout revokes API tokens.
        from diagnosis import access

        access.connect_signals()
