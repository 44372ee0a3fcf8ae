"""An image has a result time exactly while it has a result (done or refused): monitoring
reads a version's results by that time alone, which lets the database walk its index."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("diagnosis", "0019_image_result_at")]

    operations = [
        migrations.AddConstraint(
            model_name="image",
            constraint=models.CheckConstraint(
                condition=models.Q(status__in=["done", "refused"], result_at__isnull=False)
                | (~models.Q(status__in=["done", "refused"]) & models.Q(result_at__isnull=True)),
                name="image_result_at_with_a_result",
            ),
        ),
    ]
