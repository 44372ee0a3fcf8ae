"""Before the model registry leaves mlops: a run points at the version it produced (not the
version at its run), so that the registry keeps no link back to mlops; and the feedback
dataset remembers which signed reports it has pulled."""

import django.db.models.deletion
from django.db import migrations, models


def runs_point_at_their_versions(apps, schema_editor):
    ModelVersion = apps.get_model("mlops", "ModelVersion")
    TrainingRun = apps.get_model("mlops", "TrainingRun")
    for version_id, run_id in ModelVersion.objects.filter(run__isnull=False).values_list(
        "pk", "run_id"
    ):
        TrainingRun.objects.filter(pk=run_id).update(model_version_id=version_id)


def versions_point_at_their_runs(apps, schema_editor):
    ModelVersion = apps.get_model("mlops", "ModelVersion")
    TrainingRun = apps.get_model("mlops", "TrainingRun")
    for run_id, version_id, dataset_id in TrainingRun.objects.filter(
        model_version__isnull=False
    ).values_list("pk", "model_version_id", "dataset_id"):
        ModelVersion.objects.filter(pk=version_id).update(run_id=run_id, dataset_id=dataset_id)


def reports_signed_so_far_were_copied(apps, schema_editor):
    """Until now signing pushed each report into the feedback dataset at once."""
    Review = apps.get_model("diagnosis", "Review")
    Dataset = apps.get_model("mlops", "Dataset")
    latest = Review.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    Dataset.objects.update(feedback_after_review=latest)


class Migration(migrations.Migration):
    dependencies = [
        ("diagnosis", "0004_review_without_ai_result"),
        ("mlops", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="trainingrun",
            name="model_version",
            field=models.OneToOneField(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="training_run",
                to="mlops.modelversion",
            ),
        ),
        migrations.RunPython(runs_point_at_their_versions, versions_point_at_their_runs),
        migrations.RemoveField(model_name="modelversion", name="run"),
        migrations.RemoveField(model_name="modelversion", name="dataset"),
        migrations.AddField(
            model_name="dataset",
            name="feedback_after_review",
            field=models.PositiveBigIntegerField(default=0),
        ),
        migrations.RunPython(reports_signed_so_far_were_copied, migrations.RunPython.noop),
    ]
