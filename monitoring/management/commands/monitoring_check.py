from __future__ import annotations

from django.core.management.base import BaseCommand

from monitoring.alerts import alerts_check


class Command(BaseCommand):
    help = "Check the active model version's figures against the alert floors; list open alerts."

    def handle(self, *args, **options) -> None:
        open_alerts = alerts_check()
        for alert in open_alerts:
            state = "acknowledged" if alert.acknowledged_at else "NEW"
            self.stdout.write(f"{state}: {alert.message}")
        if not open_alerts:
            self.stdout.write("No open alerts.")
