"""Start a training run on the `training` queue (a running worker does the work), follow
its progress and print the new model version."""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError

from ml.config import ARCHS
from mlops import services
from mlops.models import Dataset, TrainingRun


class Command(BaseCommand):
    help = "Train a model version on a dataset's train/validation splits; prints the version."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--dataset", required=True)
        parser.add_argument("--epochs", type=int)
        parser.add_argument("--arch", choices=ARCHS)
        parser.add_argument("--image-size", type=int)
        parser.add_argument("--width", type=int)
        parser.add_argument("--stages", type=int)
        parser.add_argument("--seed", type=int)
        parser.add_argument("--no-wait", action="store_true", help="queue the run and return")
        parser.add_argument("--timeout", type=float, default=24 * 3600)

    def handle(self, *args, **options) -> None:
        dataset = Dataset.objects.filter(name=options["dataset"]).first()
        if dataset is None:
            raise CommandError(f"No dataset named {options['dataset']!r}.")
        keys = ("epochs", "arch", "image_size", "width", "stages", "seed")
        try:
            run = services.training_run_start(
                dataset=dataset, user=None, **{k: options[k] for k in keys}
            )
        except services.ServiceError as exc:
            raise CommandError(f"Refused: {exc}") from exc
        self.stderr.write(f"Queued training run {run.pk} on the 'training' queue.")
        if options["no_wait"]:
            return
        run = self._follow(run, options["timeout"])
        if run.status != TrainingRun.Status.SUCCEEDED or run.model_version is None:
            raise CommandError(f"Run {run.pk} {run.status}: {run.error or 'no version produced'}")
        self.stdout.write(run.model_version.version)

    def _follow(self, run: TrainingRun, timeout: float) -> TrainingRun:
        deadline, shown = time.monotonic() + timeout, 0
        while time.monotonic() < deadline:
            run.refresh_from_db()
            for epoch in run.history[shown:]:
                self.stderr.write(
                    f"epoch {epoch['epoch']}/{epoch['epochs']} loss {epoch.get('loss', 0):.4f} "
                    f"val_auc {epoch.get('val_auc', 0):.4f}"
                )
            shown = len(run.history)
            if run.is_finished:
                return run
            time.sleep(1)
        raise CommandError(f"Run {run.pk} did not finish in time; it continues in the worker.")
