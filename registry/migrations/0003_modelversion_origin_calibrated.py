"""A version can be a base version calibrated to this site (mlops site calibration)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("registry", "0002_activation_override_reason")]

    operations = [
        migrations.AlterField(
            model_name="modelversion",
            name="origin",
            field=models.CharField(
                choices=[
                    ("shipped", "Shipped default"),
                    ("trained", "Trained here"),
                    ("calibrated", "Calibrated to this site"),
                ],
                max_length=10,
            ),
        ),
    ]
