"""Import a labelled folder or zip from the server: NORMAL/ and PNEUMONIA/ folders,
optionally inside train/, val/ or test/ folders. All or nothing."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from mlops import services
from mlops.execute.imports import dataset_import_path, split_note
from mlops.models import Dataset
from mlops.sources import ImportRefused


class Command(BaseCommand):
    help = "Import a labelled dataset (folder or zip) into NAME, creating it if needed."

    def add_arguments(self, parser) -> None:
        parser.add_argument("name")
        parser.add_argument("path", type=Path)

    def handle(self, *args, name: str, path: Path, **options) -> None:
        if not path.exists():
            raise CommandError(f"{path} does not exist.")
        dataset = Dataset.objects.filter(name=name).first() or services.dataset_create(
            name=name, user=None
        )
        try:
            summary = dataset_import_path(dataset=dataset, path=path.resolve())
        except ImportRefused as exc:
            raise CommandError(f"Nothing imported: {exc}") from exc
        self.stdout.write(
            f"Imported {summary['imported']} image(s) into {dataset.name!r} "
            f"({', '.join(f'{k} {v}' for k, v in summary['by_label'].items()) or 'none'}); "
            f"skipped {summary['skipped']}{split_note(summary)}."
        )
        for reason, count in summary["skipped_reasons"].items():
            self.stdout.write(f"  skipped {count}: {reason}")
