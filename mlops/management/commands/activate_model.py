"""Activate a model version under the roll-out policy (mlops.rollout): refused below the
activation floors unless an override reason is given; the withdrawn version's unreported
cases are re-analysed."""

from __future__ import annotations

import getpass

from django.core.management.base import BaseCommand, CommandError

from chestnet_site.errors import ServiceError
from mlops import rollout
from registry import selectors
from registry.models import ModelVersion


class Command(BaseCommand):
    help = (
        "Activate VERSION at the card's threshold or a target validation sensitivity, if its "
        "evidence meets the activation floors (or with --override-reason)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("version")
        parser.add_argument(
            "--sensitivity",
            help="target validation sensitivity, e.g. 0.97 (default: the card's threshold)",
        )
        parser.add_argument(
            "--override-reason",
            default="",
            help="activate although the evidence falls below the floors; recorded with the "
            "activation and in the audit trail",
        )

    def handle(self, *args, version: str, sensitivity: str | None, **options) -> None:
        found = ModelVersion.objects.filter(version=version).first()
        if found is None:
            known = ", ".join(ModelVersion.objects.values_list("version", flat=True)[:20])
            raise CommandError(f"No model version {version!r}. Known: {known or 'none'}.")
        try:
            done = rollout.rollout_activate(
                version=found,
                user=None,
                operating_point=sensitivity or selectors.CARD_DEFAULT,
                override_reason=options["override_reason"],
                by=f"manage.py activate_model as {_os_user()}",
            )
        except ServiceError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(rollout.rollout_summary(done))


def _os_user() -> str:
    """Who ran the command, for the audit trail (there is no signed-in user here)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry or login name (some containers)
        return "an unknown account"
