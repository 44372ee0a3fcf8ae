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
        # pydicom warns, in the log and on stderr, with the value of every header element
        # it finds invalid while reading (a birth date, an age): patient data. The values
        # that matter are checked where they are used (ml.header, dicomnet.objects).
        from pydicom import config

        config.settings.reading_validation_mode = config.IGNORE
