from __future__ import annotations

from django.apps import AppConfig


class DiagnosisConfig(AppConfig):
    name = "diagnosis"
    verbose_name = "Diagnosis"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Logins, failed logins and logouts go to the audit trail.
        from diagnosis import access

        access.connect_signals()
        # Deactivations, role changes and deletions of accounts, by any path.
        from diagnosis import people

        people.connect_signals()
        # pydicom warns, in the log and on stderr, with the value of every header element
        # it finds invalid while reading (a birth date, an age): patient data. The values
        # that matter are checked where they are used (ml.header, dicomnet.objects).
        from pydicom import config

        config.settings.reading_validation_mode = config.IGNORE
        # /healthz: the last sweep of files no row names (diagnosis.orphans).
        from chestnet_site.health import check_register
        from diagnosis.orphans import orphans_health

        check_register("orphans", orphans_health)
