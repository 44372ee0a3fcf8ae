"""Calibrate a model version to this site's signed cases, in this process (Keras loads
here, not in a worker): the new version is registered, not activated. Prints it and the
before/after figures on the held-back cases."""

from __future__ import annotations

from datetime import date

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from chestnet_site.errors import ServiceError
from mlops import calibration
from mlops.execute.calibration import calibration_execute
from mlops.models import SiteCalibration
from registry.models import ModelVersion


def _day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"{value!r} is not a date (YYYY-MM-DD).") from None


class Command(BaseCommand):
    help = (
        "Calibrate VERSION to this site's signed cases (normal/pneumonia reports) into a new "
        "version, holding back part of the cases to measure it; activate it with "
        "activate_model."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("version")
        parser.add_argument("--since", type=_day, help="first day (YYYY-MM-DD) of the analyses")
        parser.add_argument("--until", type=_day, help="last day (YYYY-MM-DD), inclusive")
        parser.add_argument("--source", default="", help="upload, dimse, stow or a calling AE")
        parser.add_argument("--modality", default="")
        parser.add_argument("--manufacturer", default="")
        parser.add_argument(
            "--holdout",
            type=float,
            default=settings.CHESTNET_CALIBRATION_HOLDOUT,
            help="share of the cases held back to measure it (default %(default)s)",
        )
        parser.add_argument(
            "--target-sensitivity",
            type=float,
            default=settings.CHESTNET_CALIBRATION_TARGET_SENSITIVITY,
        )
        parser.add_argument(
            "--min-per-class", type=int, default=settings.CHESTNET_CALIBRATION_MIN_PER_CLASS
        )
        parser.add_argument("--site", default="", help="the site's name, recorded on the card")

    def handle(self, *args, version: str, **options) -> None:
        base = ModelVersion.objects.filter(version=version).first()
        if base is None:
            known = ", ".join(ModelVersion.objects.values_list("version", flat=True)[:20])
            raise CommandError(f"No model version {version!r}. Known: {known or 'none'}.")
        filters = calibration.CalibrationFilters(
            since=options["since"],
            until=options["until"],
            source=options["source"].strip(),
            modality=options["modality"].strip(),
            manufacturer=options["manufacturer"].strip(),
        )
        try:
            job = calibration.calibration_create(
                version=base,
                filters=filters,
                user=None,
                holdout=options["holdout"],
                target_sensitivity=options["target_sensitivity"],
                min_per_class=options["min_per_class"],
                site=options["site"],
            )
        except ServiceError as exc:
            raise CommandError(f"Refused: {exc}") from exc
        self.stderr.write(f"Calibrating {base.version}: {calibration.counts_text(job.counts)}.")
        calibration_execute(calibration_id=job.pk)
        self._report(SiteCalibration.objects.select_related("new_version").get(pk=job.pk))

    def _report(self, job: SiteCalibration) -> None:
        if job.status != SiteCalibration.Status.DONE or job.new_version is None:
            raise CommandError(f"Calibration {job.pk} failed: {job.error}")
        self.stdout.write(job.new_version.version)
        self.stdout.write("On the held-back cases (Wilson 95% intervals):")
        width = max(len(name) for _, name in calibration.ROWS)
        self.stdout.write(f"{'':{width}}  {'before (as served)':38}  after (calibrated)")
        for row in calibration.comparison_rows(before=job.before, after=job.after):
            self.stdout.write(f"{row['name']:{width}}  {row['before']:38}  {row['after']}")
        self.stdout.write(
            f"Registered, not active: python manage.py activate_model {job.new_version.version}"
        )
