from chestnet_site import health


class DicomnetConfig(health.HealthAppConfig):
    name = "dicomnet"
    verbose_name = "DICOM network"
    # /healthz: whether our listener answers a C-ECHO, and the PACS outbox.
    health_probes = {"dicom_listener": "dicomnet.listener.listener_state"}
    health_checks = {"pacs_outbox": "dicomnet.services.outbox_health"}
