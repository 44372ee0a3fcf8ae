"""Predictions replaced by a re-analysis are clinical records: diagnosis takes over mlops'
PriorPrediction table as it is (state only)."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

import diagnosis.models


class Migration(migrations.Migration):
    dependencies = [
        ("diagnosis", "0004_review_without_ai_result"),
        ("mlops", "0002_version_provenance"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.CreateModel(
                    name="PriorPrediction",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True,
                                primary_key=True,
                                serialize=False,
                                verbose_name="ID",
                            ),
                        ),
                        ("probability", models.FloatField()),
                        ("label", models.CharField(max_length=12)),
                        ("threshold", models.FloatField()),
                        ("model_version", models.CharField(max_length=100)),
                        (
                            "heatmap",
                            models.FileField(blank=True, upload_to=diagnosis.models.heatmap_path),
                        ),
                        ("timings", models.JSONField(default=dict)),
                        ("predicted_at", models.DateTimeField()),
                        ("superseded_at", models.DateTimeField(auto_now_add=True)),
                        (
                            "image",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="+",
                                to="diagnosis.image",
                            ),
                        ),
                        (
                            "superseded_by",
                            models.ForeignKey(
                                null=True,
                                on_delete=django.db.models.deletion.SET_NULL,
                                related_name="+",
                                to=settings.AUTH_USER_MODEL,
                            ),
                        ),
                    ],
                    options={"db_table": "mlops_priorprediction", "ordering": ["-superseded_at"]},
                )
            ],
        )
    ]
