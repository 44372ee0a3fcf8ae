"""Register the configured model (CHESTNET_MODEL_PATH, else the shipped default) as the
first, active version on a fresh install. Safe to run on every start."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from registry.services import ensure_default_version


class Command(BaseCommand):
    help = "Register the shipped default model as the first version if none exists."

    def handle(self, *args, **options) -> None:
        version = ensure_default_version()
        if version is not None:
            self.stdout.write(f"Registered and activated {version.version}.")
