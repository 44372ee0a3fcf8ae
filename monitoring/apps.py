from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "monitoring"
    verbose_name = "Monitoring"

    def ready(self) -> None:
        from chestnet_site.health import check_register
        from monitoring.alerts import alerts_health, gauges
        from monitoring.prometheus import gauge_source_register

        check_register("monitoring", alerts_health)
        gauge_source_register(gauges)
