"""The model registry takes over mlops' ModelVersion and Activation tables as they are
(state only: no table is created, renamed or copied)."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

ID = (
    "id",
    models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID"),
)


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("mlops", "0002_version_provenance"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.CreateModel(
                    name="ModelVersion",
                    fields=[
                        ID,
                        ("version", models.CharField(max_length=100, unique=True)),
                        (
                            "origin",
                            models.CharField(
                                choices=[
                                    ("shipped", "Shipped default"),
                                    ("trained", "Trained here"),
                                ],
                                max_length=10,
                            ),
                        ),
                        ("artifact", models.CharField(max_length=255)),
                        ("card_file", models.CharField(max_length=255)),
                        ("card", models.JSONField(default=dict)),
                        ("sha256", models.CharField(max_length=64)),
                        ("is_active", models.BooleanField(default=False)),
                        ("active_threshold", models.FloatField(blank=True, null=True)),
                        ("operating_point", models.CharField(blank=True, max_length=100)),
                        ("activated_at", models.DateTimeField(blank=True, null=True)),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        (
                            "activated_by",
                            models.ForeignKey(
                                null=True,
                                on_delete=django.db.models.deletion.SET_NULL,
                                related_name="+",
                                to=settings.AUTH_USER_MODEL,
                            ),
                        ),
                    ],
                    options={
                        "db_table": "mlops_modelversion",
                        "ordering": ["-created_at"],
                        "constraints": [
                            models.UniqueConstraint(
                                condition=models.Q(("is_active", True)),
                                fields=("is_active",),
                                name="mlops_one_active_version",
                            )
                        ],
                    },
                ),
                migrations.CreateModel(
                    name="Activation",
                    fields=[
                        ID,
                        ("threshold", models.FloatField()),
                        ("operating_point", models.CharField(max_length=100)),
                        ("at", models.DateTimeField(auto_now_add=True)),
                        (
                            "actor",
                            models.ForeignKey(
                                null=True,
                                on_delete=django.db.models.deletion.SET_NULL,
                                related_name="+",
                                to=settings.AUTH_USER_MODEL,
                            ),
                        ),
                        (
                            "version",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="activations",
                                to="registry.modelversion",
                            ),
                        ),
                    ],
                    options={"db_table": "mlops_activation", "ordering": ["-at", "-pk"]},
                ),
            ],
        )
    ]
