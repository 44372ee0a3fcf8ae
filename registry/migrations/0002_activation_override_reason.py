"""An activation below the roll-out floors keeps the reason given for it (mlops.rollout)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("registry", "0001_initial")]

    operations = [
        migrations.AddField(
            model_name="activation",
            name="override_reason",
            field=models.TextField(blank=True),
        ),
    ]
