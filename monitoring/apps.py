from chestnet_site import health


class MonitoringConfig(health.HealthAppConfig):
    name = "monitoring"
    verbose_name = "Monitoring"
    health_checks = {"monitoring": "monitoring.alerts.alerts_health"}

    def ready(self) -> None:
        super().ready()
        from monitoring.alerts import gauges
        from monitoring.prometheus import gauge_source_register

        gauge_source_register(gauges)
