"""When each image got its result, stored and indexed: monitoring used to compute it per row
(the prediction's time, else the claim's, else the upload's) and sort every finished image
of a version by it to find the latest 200."""

from django.db import migrations, models
from django.db.models import OuterRef, Subquery
from django.db.models.functions import Coalesce


def fill_result_at(apps, schema_editor):
    """The time monitoring computed before: the prediction's for an analysed image, else
    the worker's claim (a refusal by the model), else the image's own (refused on arrival)."""
    Image = apps.get_model("diagnosis", "Image")
    Prediction = apps.get_model("diagnosis", "Prediction")
    predicted = Prediction.objects.filter(image_id=OuterRef("pk")).values("created_at")[:1]
    Image.objects.filter(status="done").update(
        result_at=Coalesce(Subquery(predicted), "claimed_at", "created_at")
    )
    Image.objects.filter(status="refused").update(result_at=Coalesce("claimed_at", "created_at"))


class Migration(migrations.Migration):
    dependencies = [("diagnosis", "0018_image_view_position_patient_priors")]

    operations = [
        migrations.AddField(
            model_name="image",
            name="result_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddIndex(
            model_name="image",
            index=models.Index(fields=["result_at", "id"], name="image_result_at"),
        ),
        migrations.RunPython(fill_result_at, migrations.RunPython.noop, elidable=True),
    ]
