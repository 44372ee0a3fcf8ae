"""`manage.py dicom_listener`: the C-STORE SCP that `make run` starts beside the web and the
workers (CHESTNET_DICOM_PORT, CHESTNET_DICOM_AET, CHESTNET_DICOM_BIND)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from dicomnet.listener import ListenerUnavailable, serve

# Exit status of a listener that cannot start for a reason a restart will not fix (its port
# is in use): `make run` then runs on without it instead of starting it again.
EX_CONFIG = 78


class Command(BaseCommand):
    help = "Receive chest radiographs over the DICOM network (C-STORE, C-ECHO)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--port", type=int, default=settings.CHESTNET_DICOM_PORT)
        parser.add_argument("--bind", default=settings.CHESTNET_DICOM_BIND)

    def handle(self, *args: Any, port: int, bind: str, **options: Any) -> None:
        if port == 0:
            raise CommandError("CHESTNET_DICOM_PORT is 0: the DICOM listener is turned off.")
        try:
            serve(host=bind, port=port)
        except ListenerUnavailable as exc:
            self.stderr.write(str(exc))
            raise SystemExit(EX_CONFIG) from None
