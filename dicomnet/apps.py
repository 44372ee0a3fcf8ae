from django.apps import AppConfig


class DicomnetConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "dicomnet"
    verbose_name = "DICOM network"

    def ready(self) -> None:
        from chestnet_site.health import check_register
        from dicomnet.services import outbox_health

        check_register("pacs_outbox", outbox_health)
