"""Activate a model version (or roll back to an earlier one): new analyses use it."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from chestnet_site.errors import ServiceError
from registry import selectors, services
from registry.models import ModelVersion


class Command(BaseCommand):
    help = "Activate VERSION at the card's threshold or a target validation sensitivity."

    def add_arguments(self, parser) -> None:
        parser.add_argument("version")
        parser.add_argument(
            "--sensitivity",
            help="target validation sensitivity, e.g. 0.97 (default: the card's threshold)",
        )

    def handle(self, *args, version: str, sensitivity: str | None, **options) -> None:
        found = ModelVersion.objects.filter(version=version).first()
        if found is None:
            known = ", ".join(ModelVersion.objects.values_list("version", flat=True)[:20])
            raise CommandError(f"No model version {version!r}. Known: {known or 'none'}.")
        try:
            found = services.version_activate(
                version=found, user=None, operating_point=sensitivity or selectors.CARD_DEFAULT
            )
        except ServiceError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"Activated {found.version} at threshold {found.active_threshold:.4f} "
            f"({found.operating_point})."
        )
