# The live worklist: STAT priority, the study's time, and sort keys the database keeps
# (generated columns) with one index per ordering, for keyset pages at any depth. And each
# image's name (the uploaded file's name, or the DICOM view), for the per-image review.

import django.db.models.expressions
import django.db.models.functions.comparison
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("diagnosis", "0010_network_source"),
    ]

    operations = [
        migrations.AlterField(
            model_name="case",
            name="urgency",
            field=models.CharField(
                choices=[("routine", "Routine"), ("urgent", "Urgent"), ("stat", "STAT")],
                default="routine",
                max_length=10,
            ),
        ),
        migrations.AddField(
            model_name="case",
            name="study_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="case",
            name="priority_rank",
            field=models.GeneratedField(
                db_persist=True,
                expression=models.Case(
                    models.When(urgency="stat", then=models.Value(0)),
                    models.When(urgency="urgent", then=models.Value(1)),
                    default=models.Value(2),
                ),
                output_field=models.SmallIntegerField(),
            ),
        ),
        migrations.AddField(
            model_name="case",
            name="ai_rank",
            field=models.GeneratedField(
                db_persist=True,
                expression=django.db.models.expressions.CombinedExpression(
                    models.Value(0.0),
                    "-",
                    django.db.models.functions.comparison.Coalesce(
                        models.F("max_probability"), models.Value(-1.0)
                    ),
                ),
                output_field=models.FloatField(),
            ),
        ),
        migrations.AddField(
            model_name="case",
            name="waiting_since",
            field=models.GeneratedField(
                db_persist=True,
                expression=django.db.models.functions.comparison.Coalesce(
                    models.F("ready_at"), models.F("created_at")
                ),
                output_field=models.DateTimeField(),
            ),
        ),
        migrations.AddField(
            model_name="case",
            name="study_time",
            field=models.GeneratedField(
                db_persist=True,
                expression=django.db.models.functions.comparison.Coalesce(
                    models.F("study_at"), models.F("created_at")
                ),
                output_field=models.DateTimeField(),
            ),
        ),
        # Superseded by case_worklist_priority (urgency as a rank, probability negated).
        migrations.RemoveIndex(
            model_name="case",
            name="diagnosis_c_status_dbed94_idx",
        ),
        migrations.AddIndex(
            model_name="case",
            index=models.Index(
                fields=["status", "priority_rank", "ai_rank", "waiting_since", "id"],
                name="case_worklist_priority",
            ),
        ),
        migrations.AddIndex(
            model_name="case",
            index=models.Index(
                fields=["status", "waiting_since", "id"], name="case_worklist_waiting"
            ),
        ),
        migrations.AddIndex(
            model_name="case",
            index=models.Index(fields=["status", "study_time", "id"], name="case_worklist_study"),
        ),
        migrations.AddField(
            model_name="image",
            name="name",
            field=models.CharField(blank=True, max_length=120),
        ),
    ]
