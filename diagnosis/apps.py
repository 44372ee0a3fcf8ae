from __future__ import annotations

from chestnet_site import health


class DiagnosisConfig(health.HealthAppConfig):
    name = "diagnosis"
    verbose_name = "Diagnosis"
    # /healthz: the last sweep of files no row names (diagnosis.orphans).
    health_checks = {"orphans": "diagnosis.orphans.orphans_health"}

    def ready(self) -> None:
        # What accounts tell (logins, logouts, tokens, changes to people's accounts) goes to
        # the audit trail.
        from diagnosis import account_events

        account_events.connect_signals()
        # pydicom warns, in the log and on stderr, with the value of every header element
        # it finds invalid while reading (a birth date, an age): patient data. The values
        # that matter are checked where they are used (ml.header, dicomnet.objects).
        from pydicom import config

        config.settings.reading_validation_mode = config.IGNORE
        super().ready()
