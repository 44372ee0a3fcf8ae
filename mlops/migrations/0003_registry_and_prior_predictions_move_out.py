"""ModelVersion and Activation now belong to the registry, PriorPrediction to diagnosis;
mlops' remaining links point at the registry's model (state only: tables stay)."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("mlops", "0002_version_provenance"),
        ("registry", "0001_initial"),
        ("diagnosis", "0005_prior_prediction"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.AlterField(
                    model_name="evaluation",
                    name="version",
                    field=models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="evaluations",
                        to="registry.modelversion",
                    ),
                ),
                migrations.AlterField(
                    model_name="trainingrun",
                    name="model_version",
                    field=models.OneToOneField(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="training_run",
                        to="registry.modelversion",
                    ),
                ),
                migrations.DeleteModel(name="Activation"),
                migrations.DeleteModel(name="ModelVersion"),
                migrations.DeleteModel(name="PriorPrediction"),
            ],
        )
    ]
